"""The fiscalsim command line: catalogue, awards for a firm table, explanations, bad tables."""

import json
import re
import shutil
import subprocess
import sys

import pandas as pd
import pytest

import sim.policy
from sim.cli import main

SAMPLE = sim.policy.resolve_model() / "sample-firms.csv"


def run(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_policy_catalogue_shows_all_54_articles_and_counts(capsys):
    code, out, _ = run(capsys, "policy")
    assert code == 0
    rows = [line for line in out.splitlines() if re.match(r"^\s*\d+\s+(investment|science|industry|serv|demand|liveli)", line)]
    assert {int(line.split()[0]) for line in rows} == set(range(1, 55))
    assert "54 articles; 45 award rules in 17 articles; 17 assumed numbers" in out
    assert "a13-rd-increase-sme" in out and "rd_spending >=10000: 200" in out
    assert "10%*" in out  # an assumed rate is flagged


def test_policy_inputs_lists_attributes_with_units(capsys):
    code, out, _ = run(capsys, "policy", "--inputs")
    assert code == 0
    assert re.search(r"rd_increase\s+enterprise\s+float\s+萬元\s+required", out)
    assert "required (no default): rd_spending, rd_increase, tech_sme_scale" in out


def test_awards_for_the_sample_writes_per_rule_columns(capsys, tmp_path):
    target = tmp_path / "awards.csv"
    code, out, _ = run(capsys, "awards", str(SAMPLE), "-o", str(target))
    assert code == 0 and "defaults used for absent columns" in out
    table = pd.read_csv(target, index_col="firm_id")
    assert table.loc["F001", "a13-rd-increase-sme"] == 50
    assert table.loc["F002", "a13-rd-increase-large"] == 300
    assert table.loc["F004", "district_total"] == 350  # 200 + 300 x 1/2 (article 11 split 1:1)
    assert table.loc["BANK01", "a38-bank-credit-loans"] == 200
    assert table["total"].sum() == pytest.approx(2858.6)


def test_explain_shows_rule_quote_and_arithmetic(capsys):
    code, out, _ = run(capsys, "awards", str(SAMPLE), "--explain", "4")
    assert code == 0
    assert "rule a13-rd-increase-sme: 200 萬元" in out
    assert "rd_spending = 12,000 -> 200" in out
    assert "直接給予200萬元補助" in out
    assert "district share 0.5 -> district pays 150" in out
    assert "total 500 萬元, district-paid 350 萬元" in out


def _bad(tmp_path, edit):
    frame = pd.read_csv(SAMPLE)
    edit(frame)
    path = tmp_path / "firms.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("edit, message", [
    (lambda f: [f.pop(c) for c in ("rd_increase", "tech_sme_scale")],
     "missing column rd_increase (研發投入增量): the model declares no default for it"),
    (lambda f: f.__setitem__("rd_spending", f["rd_spending"].astype(object).where(f.index != 2, "lots")),
     "column rd_spending (萬元): not a number in row 3 (values 'lots')"),
    (lambda f: f.__setitem__("export_credit_premium", f["export_credit_premium"].where(f.index != 5, -3)),
     "column export_credit_premium (萬元): negative in row 6"),
    (lambda f: f.__setitem__("q1_airfare", f["q1_airfare"].where(f.index != 0, None)),
     "column q1_airfare (萬元): empty or NaN in row 1"),
    (lambda f: f.__setitem__("credit_loan_increase", f["credit_loan_increase"].where(f.index != 6, float("inf"))),
     "column credit_loan_increase (萬元): infinite in row 7"),
    (lambda f: f.__setitem__("manufacturing", f["manufacturing"].where(f.index != 1, 2)),
     "column manufacturing (flag): a flag must be 0 or 1"),
    (lambda f: f.__setitem__("incubatees_hightech_filed", f["incubatees_hightech_filed"].where(f.index != 7, 2.5)),
     "a count must be a whole number: row 8"),
])
def test_bad_firm_table_names_column_and_rows_and_writes_nothing(capsys, tmp_path, edit, message):
    path = _bad(tmp_path, edit)
    target = tmp_path / "out.csv"
    code, out, err = run(capsys, "awards", str(path), "-o", str(target))
    assert code == 2
    assert message in err and "Traceback" not in err
    assert not target.exists()
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left either


def test_several_problems_are_listed_together(capsys, tmp_path):
    def edit(f):
        f["rd_spending"] = -1
        f.pop("tech_sme_scale")
    code, _, err = run(capsys, "awards", str(_bad(tmp_path, edit)))
    assert code == 2 and "2 problems" in err and "rows 1, 2, 3, 4, 5 and 7 more" in err


def test_explain_row_out_of_range(capsys):
    code, _, err = run(capsys, "awards", str(SAMPLE), "--explain", "99")
    assert code == 2 and "--explain takes a data row from 1 to 12" in err


def test_missing_file(capsys, tmp_path):
    code, _, err = run(capsys, "awards", str(tmp_path / "nope.csv"))
    assert code == 2 and "no such file" in err


def test_parquet_input(capsys, tmp_path):
    path = tmp_path / "firms.parquet"
    pd.read_csv(SAMPLE).to_parquet(path)
    code, out, _ = run(capsys, "awards", str(path))
    assert code == 0 and "total 2,858.60 萬元" in out


@pytest.mark.skipif(shutil.which("fiscalsim") is None, reason="console script not installed")
def test_console_script_runs_the_readme_main_job(tmp_path):
    done = subprocess.run(["fiscalsim", "awards", "--sample", "-o", str(tmp_path / "a.csv")],
                          capture_output=True, text=True, check=True)
    assert "wrote 12 rows x 45 rules" in done.stdout


def test_module_entry_point():
    done = subprocess.run([sys.executable, "-m", "sim.cli", "policy", "--inputs"],
                          capture_output=True, text=True, check=True)
    assert "rd_spending" in done.stdout


def test_calibrate_prints_targets_beside_the_synthetic_population(capsys):
    code, out, _ = run(capsys, "calibrate", "--replications", "2")
    assert code == 0
    assert "new-high-tech: count new_high_tech [enterprises]" in out
    assert "target 329 (band 329-362); synthetic expected 333.8" in out and "in band" in out
    assert "source: policy text" in out and "revenue P50" in out


def test_run_writes_a_run_folder_and_prints_the_domain_summary(capsys, tmp_path):
    out = tmp_path / "run"
    code, stdout, _ = run(capsys, "run", "--replications", "3", "--n", "8000", "--seed", "7",
                          "--out", str(out), "--no-progress")
    assert code == 0
    assert "基准情景:3 次模拟,每次 8,000 个申报主体(随机种子 7)" in stdout
    assert "科技创新政策" in stdout and "超支概率" in stdout and f"结果目录:{out}" in stdout
    assert "science_technology" not in stdout  # names, not keys
    import sim.results
    loaded = sim.results.load(out)
    assert loaded.manifest["seed"] == 7 and loaded.manifest["replications"] == 3
    assert loaded.manifest["population"] == 8000 and len(loaded.manifest["policy_hash"]) == 64
    assert set(loaded.tables) >= {"rules", "firms", "summary_rule", "summary_article", "summary_domain"}
    assert len(loaded.rules) == 3 * 45
    code, _, err = run(capsys, "run", "--replications", "1", "--n", "100", "--out", str(out), "--no-progress")
    assert code == 2 and "already exists" in err


def test_run_with_a_scenario_file_and_a_bad_one(capsys, tmp_path):
    good = tmp_path / "caps.toml"
    good.write_text('name = "caps"\n[policy.rules.a13-rd-increase-large]\ncap = 400\n', encoding="utf-8")
    code, stdout, _ = run(capsys, "run", str(good), "-r", "2", "--n", "5000", "-o", str(tmp_path / "r"), "--no-progress")
    assert code == 0 and "caps:2 次模拟" in stdout
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[policy.rules.a13-rd-increase-largest]\ncap = 400\n', encoding="utf-8")
    code, _, err = run(capsys, "run", str(bad), "-r", "2", "-o", str(tmp_path / "r2"))
    assert code == 2 and "policy.rules.a13-rd-increase-largest: no such rule" in err
    assert not (tmp_path / "r2").exists()


def test_threads_and_the_process_engine_are_the_users_to_choose(capsys, tmp_path):
    """--threads 1 keeps the work in this process, --process-engine simpy steps SimPy itself: the same tables;
    --threads 0 is refused with one message and nothing written."""
    common = ("-r", "2", "--n", "3000", "--no-sensitivity", "--no-report", "--no-progress")
    code, _, _ = run(capsys, "run", *common, "--threads", "1", "-o", str(tmp_path / "one"))
    assert code == 0
    code, _, _ = run(capsys, "run", *common, "--threads", "2", "--process-engine", "simpy", "-o", str(tmp_path / "two"))
    assert code == 0
    one, two = (json.loads((tmp_path / name / "manifest.json").read_text()) for name in ("one", "two"))
    assert (one["executor"], one["workers"], one["process_engines"]) == ("in-process", 1, {"recursion": 2})
    assert (two["executor"], two["workers"], two["process_engines"]) == ("processes", 2, {"simpy": 2})
    for table in ("rules.parquet", "process_outcomes.parquet", "process_queues.parquet"):
        assert (tmp_path / "one" / table).read_bytes() == (tmp_path / "two" / table).read_bytes(), table
    code, _, err = run(capsys, "run", *common, "--threads", "0", "-o", str(tmp_path / "none"))
    assert code != 0 and "--threads must be >= 1, got 0" in err and not (tmp_path / "none").exists()
