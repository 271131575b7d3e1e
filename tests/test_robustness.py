"""Robustness: every bad input found by the hostile-user review gets one clean message or a correct result,
a killed run never looks complete, and the wrong results that no test caught are now caught."""

import json
import math
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import sim.montecarlo as mc
import sim.pipeline as pipeline
import sim.policy
import sim.population as pop
import sim.process as pr
import sim.results as results
import sim.scenario as scenario
from sim.cli import main
from sim.errors import FiscalsimError, PolicyError, ScenarioError, SpecError
from tests.models import model_copy

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "models" / "template"
BINJIANG = ROOT / "models" / sim.policy.default_model()


def load_all(folder):
    policy = sim.policy.load(folder)
    spec = pop.load_spec(folder, policy=policy)
    model = pr.load_process(folder, policy=policy)
    return policy, spec, model


def expect(error, message, call, *args, **kwargs):
    with pytest.raises(error) as info:
        call(*args, **kwargs)
    assert message in str(info.value), str(info.value)
    return str(info.value)


# ----------------------------------------------------------------------------- raw tracebacks, now clean
@pytest.mark.parametrize("name", ["policy.toml", "population.toml", "process.toml", "assumptions.toml",
                                  "examples/article-01.toml"])
def test_a_stray_non_utf8_byte_names_the_file_and_line(tmp_path, name):
    folder = model_copy(tmp_path)
    path = folder / name
    data = path.read_bytes()
    cut = data.index(b"\n", data.index(b"\n") + 1) + 1  # the start of line 3
    path.write_bytes(data[:cut] + b"# caf\xe9\n" + data[cut:])
    calls = {"policy.toml": lambda: sim.policy.load(folder), "population.toml": lambda: load_all(folder),
             "process.toml": lambda: load_all(folder),
             "assumptions.toml": lambda: __import__("sim.assumptions").assumptions.load_groups(folder),
             "examples/article-01.toml": lambda: sim.policy.load_examples(folder)}
    message = expect(FiscalsimError, "line 3: byte 0xe9 is not UTF-8", calls[name])
    assert name.split("/")[-1] in message


def test_a_scenario_with_a_non_utf8_byte(tmp_path):
    path = tmp_path / "s.toml"
    path.write_bytes(b'name = "x\xff"\n')
    expect(ScenarioError, "s.toml: line 1: byte 0xff is not UTF-8", scenario.load, path)


@pytest.mark.parametrize("edit, message", [
    (("policy.toml", ('base = "rd_increase"', 'base = ""')), "rule t01-rd-increase: base must not be empty"),
    (("policy.toml", ('kind = "rate"', 'kind = ""')), "rule t01-rd-increase: kind must not be empty"),
    (("policy.toml", ('domain = "innovation"\nrecurrence', 'domain = ""\nrecurrence')),
     "rule t01-rd-increase: domain must not be empty"),
    (("population.toml", ('size = "small"', 'size = ""')), "segment small-firms: size must not be empty"),
    (("population.toml", ('kind = "bernoulli"', 'kind = ""')), "rd_performer: kind must not be empty"),
])
def test_empty_strings_are_refused_where_a_name_is_needed(tmp_path, edit, message):
    folder = model_copy(tmp_path, edits=dict([edit]))
    expect(FiscalsimError, message, load_all, folder)


def without_rule(rule_id):
    """An edit of policy.toml that deletes one [[rules]] entry (not the last)."""
    def edit(text):
        start = text.index(f'[[rules]]\nid = "{rule_id}"')
        return text[:start] + text[text.index("[[rules]]", start + 5):]
    return edit


def test_a_rule_removed_while_the_population_still_draws_its_attribute_runs(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": without_rule("t05-patents"),
                                         "examples/article-05.toml": lambda t: "article = 4\n"})
    run = pipeline.run(model=str(folder), settings=pipeline.Settings(replications=2, stages=("claims",)),
                       progress=False)
    assert "t05-patents" not in set(run.rules["rule"]) and np.isfinite(run.rules["award"]).all()
    assert "patents" not in pop.load_spec(folder).columns  # drawn (the streams stay put) but not kept


@pytest.mark.parametrize("value, message", [("nan", "correlations must be finite"),
                                            ("1e308", "correlations must lie in [-1, 1]")])
def test_a_nonsense_copula_correlation(tmp_path, value, message):
    folder = model_copy(tmp_path, edits={"population.toml": ("[[1.0, 0.4], [0.4, 1.0]]",
                                                             f"[[1.0, {value}], [{value}, 1.0]]")})
    expect(SpecError, message, load_all, folder)


def test_a_scenario_tier_without_at():
    bad = scenario.from_dict({"name": "t", "policy": {"rules": {"a16-incubator-rating": {"tiers": [{"amount": 5}]}}}})
    expect(ScenarioError, "policy.rules.a16-incubator-rating.tiers, tier 1: give `at` and one value", scenario.apply, bad)


# The slow fuzz run (tests/test_fuzz.py, -m slow) found these; each is now a clean message or a correct run.
def test_a_calibration_target_on_an_attribute_no_rule_reads_is_still_counted(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": without_rule("t04-new-high-tech"),
                                         "examples/article-04.toml": lambda t: "article = 4\n"})
    spec = pop.load_spec(folder)
    assert "new_high_tech" in spec.columns  # calibration reads it, so the frame keeps it
    table = pop.calibration_table(spec, seed=1, replications=2)
    assert table.set_index("target").loc["new-high-tech", "mean"] > 0


@pytest.mark.parametrize("edit, message", [
    (("tail_alpha = { large = 2.0 }\n", ""), "tail_from and tail_alpha go together"),
    (("tail_alpha = { large = 2.0 }", "tail_alpha = { small = 2.0 }"), "tail_from and tail_alpha go together"),
    (('claimant = "enterprise"\nsize = "small"', 'claimant = ["enterprise"]\nsize = "small"'), "claimant must be text"),
    (("values = [0, 1, 2, 3, 4, 5]", "values = [0, 1, 2, 3, 4, nan]"), "values and probabilities must be finite"),
    (("mean = 0.08", "mean = {}"), "mean is an empty table"),
])
def test_population_mistakes_found_by_the_slow_fuzz_run(tmp_path, edit, message):
    folder = model_copy(tmp_path, edits={"population.toml": edit})
    expect(SpecError, message, pop.load_spec, folder)


# ----------------------------------------------------------------------------- nonsense, now refused
@pytest.mark.parametrize("edit, message", [
    (("policy.toml", ("amount = 20", "amount = 1e308")), "amount = 1e+308 is beyond any plausible value"),
    (("policy.toml", ("amount = 20", "amount = 1e9")), "amount must be <= 1e+08, got 1e+09"),
    (("policy.toml", ("\ncap = 50", "\ncap = inf")), "cap must be finite"),
    (("policy.toml", ('default = 0\ndescription = "National', 'default = 1e308\ndescription = "National')),
     "default = 1e+308 is beyond any plausible value"),
    (("population.toml", ("median = { small = 300, large = 20000 }", "median = { small = 1e308, large = 20000 }")),
     "median.small = 1e+308 is beyond any plausible value"),
    (("population.toml", ("sigma = { small = 1.2, large = 1.0 }", "sigma = { small = 1e308, large = 1.0 }")),
     "sigma.small = 1e+308 is beyond any plausible value"),
    (("population.toml", ("sigma = { small = 1.2, large = 1.0 }", "sigma = { small = 40, large = 1.0 }")),
     "sigma.small must lie in [0, 5], got 40"),
    (("population.toml", ("tail_alpha = { large = 2.0 }", "tail_alpha = { large = 0.01 }")),
     "tail_alpha.large must lie in [1.05, 10], got 0.01"),
    (("population.toml", ("mean = 0.08\nsd = 0.3", "mean = 0.08\nsd = 30")), "log growth 'rd_log_growth' is implausibly"),
    (("policy.toml", ('type = "float"\nunit = "萬元"\ndescription = "R&D spending', 'type = "float"\nunit = "元"\ndescription = "R&D spending')),
     "unit of a float attribute must be '萬元', got '元'"),
    (("population.toml", ('money_unit = "萬元"', 'money_unit = "元"')), "money_unit must be 萬元"),
    (("policy.toml", ('money_unit = "萬元"', 'money_unit = "億元"')), "money_unit must be 萬元, got '億元'"),
    (("policy.toml", ('id = "t02-matching"', 'id = ""')), "rules entry 2: id must not be empty"),
    (("policy.toml", ('quote = "每件給予2萬元獎勵,單個企業每年最高20萬元"', 'quote = " "')), "quote must not be empty"),
    (("policy.toml", ('name_en = "Invention patents"', 'name_en = ""')), "article 5: name_en must not be empty"),
    (("process.toml", ('[rules.t01-rd-increase]\n', '[rules.t01-rd-increase]\nwindow = ""\n')),
     "rules.t01-rd-increase: window must not be empty"),
    (("policy.toml", ("tiers = [{ at = 3, amount = 10 }", "tiers = [{ at = -3, amount = 10 }")),
     "tier 1: at must be >= 0, got -3"),
    (("policy.toml", ("year = 2024", "year = 1066")), "year must lie in 1990-2100, got 1066"),
    (("process.toml", ("year = 2024", "year = 2025")), "[calendar]: year 2025 is not the policy's year 2024"),
    (("population.toml", ("year = 2024", "year = 2023")), "[population]: year 2023 is not the policy's year 2024"),
])
def test_nonsense_numbers_units_and_empty_names_are_refused(tmp_path, edit, message):
    folder = model_copy(tmp_path, edits=dict([edit]))
    expect(FiscalsimError, message, load_all, folder)


@pytest.mark.parametrize("value, message", [("-5", "value must be >= 0, got -5"), ("nan", "value must be finite")])
def test_negative_or_non_finite_targets(tmp_path, value, message):
    folder = model_copy(tmp_path, BINJIANG, {"policy.toml": ("value = 329\nstretch", f"value = {value}\nstretch")})
    expect(PolicyError, message, sim.policy.load, folder)


def test_a_huge_scenario_shock_is_refused():
    bad = scenario.from_dict({"name": "t", "population": {"shocks": {"export_credit_premium": 1e308}}})
    expect(SpecError, "shocks.export_credit_premium = 1e+308 is beyond any plausible value", scenario.apply, bad)


def test_a_firm_table_with_a_huge_count_stops_and_writes_nothing(tmp_path, capsys):
    sample = pd.read_csv(BINJIANG / "sample-firms.csv")
    sample["fv_software_national"] = 0.0
    sample.loc[1, "fv_software_national"] = 1e308
    sample.to_csv(tmp_path / "firms.csv", index=False)
    assert main(["awards", str(tmp_path / "firms.csv"), "-o", str(tmp_path / "out.csv")]) == 2
    err = capsys.readouterr().err
    assert "column fv_software_national (products): beyond any plausible value" in err and "row 2" in err
    assert not (tmp_path / "out.csv").exists()


# ----------------------------------------------------------------------------- late errors, now early
def _no_computation(monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("computed before the input was checked")
    monkeypatch.setattr(mc, "run", forbidden)


def test_a_bad_process_override_is_refused_before_any_replication(tmp_path, monkeypatch):
    path = tmp_path / "lottery.toml"
    path.write_text('name = "lottery"\n[process.payment]\nexhaustion = "lottery"\n', encoding="utf-8")
    _no_computation(monkeypatch)
    expect(SpecError, "exhaustion must be one of fcfs_defer, pro_rata, reject", pipeline.run, path, progress=False)


def test_an_existing_out_is_refused_before_any_replication(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    out.mkdir()
    _no_computation(monkeypatch)
    assert main(["run", "-r", "2", "-o", str(out), "--no-progress"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_a_bad_scenario_model_names_the_scenario_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nmodel = "no-such-model"\n', encoding="utf-8")
    message = expect(ScenarioError, "model 'no-such-model' is not a bundled model", scenario.load, path)
    assert "s.toml" in message


def test_a_scenario_whose_model_is_broken_names_the_scenario_file(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": ("\ncap = 50", "\ncap = -50")})
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nmodel = "model"\n'.replace('"model"', '"./model"'), encoding="utf-8")
    message = expect(ScenarioError, "cannot be loaded", scenario.load, path, allow_outside=True)
    assert "s.toml" in message and "cap must be >= 0" in message and str(folder.name) in message


# ----------------------------------------------------------------------------- run folders that tell the truth
def test_force_only_replaces_a_fiscalsim_folder(tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.docx").write_text("years of work")
    assert main(["run", "-r", "1", "-o", str(mine), "--force", "--no-progress"]) == 2
    assert "is not a fiscalsim run folder" in capsys.readouterr().err
    assert (mine / "thesis.docx").read_text() == "years of work"
    a_file = tmp_path / "notes.txt"
    a_file.write_text("x")
    expect(FiscalsimError, "is not a fiscalsim run folder", results.check_target, a_file, True)


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "run"
    pipeline.run(model="template", settings=pipeline.Settings(replications=3, stages=("claims", "budget")),
                 out=out, progress=False)
    return out


@pytest.mark.parametrize("damage, message", [
    (lambda f: (f / "rules.parquet").unlink(), "table rules.parquet is missing or damaged"),
    (lambda f: (f / "rules.parquet").write_bytes(b"PAR1 not really"), "table rules.parquet is missing or damaged"),
    (lambda f: (f / "manifest.json").write_text("{not json"), "manifest.json is damaged"),
    (lambda f: (f / "manifest.json").write_text("[1, 2]"), "not marked complete"),
    (lambda f: (f / "manifest.json").write_text(json.dumps({"kind": "fiscalsim run", "tables": []})),
     "not marked complete"),
    (lambda f: (f / "manifest.json").unlink(), "no manifest.json: not a finished run"),
])
def test_a_damaged_run_folder_is_refused_with_a_clear_message(tmp_path, small_run, damage, message):
    folder = tmp_path / "copy"
    shutil.copytree(small_run, folder)
    damage(folder)
    expect(FiscalsimError, message, results.load, folder)


KILLER = """
import os, signal, sys
import sim.pipeline as p, sim.report as r, sim.results as res
where = sys.argv[2]
def killing(function):
    def wrapper(*args, **kwargs):
        out = function(*args, **kwargs)
        os.kill(os.getpid(), signal.SIGKILL)
        return out
    return wrapper
if where == "writing":  # in the middle of writing the tables
    res.RunWriter.table = killing(res.RunWriter.table)
elif where == "manifest":  # the manifest written, the folder not yet renamed
    original = os.replace
    def replace(src, dst):
        os.kill(os.getpid(), signal.SIGKILL)
    res.os.replace = replace
elif where == "report":
    r.write_report = killing(r.write_report)
else:
    setattr(p, where, killing(getattr(p, where)))
p.run(model="template", settings=p.Settings(replications=3, sensitivity_samples=2), out=sys.argv[1],
      progress=False)
"""


@pytest.mark.parametrize("where", ["claims_stage", "process_stage", "budget_stage", "sensitivity_stage", "writing",
                                   "report", "manifest"])
def test_a_run_killed_at_any_stage_leaves_nothing_that_loads(tmp_path, where):
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-c", KILLER, str(out), where], cwd=ROOT, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == -signal.SIGKILL, done.stderr
    with pytest.raises(FiscalsimError):
        results.load(out)
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir() if p.name != ".run.lock"]  # its lock file, no longer held
    assert all(name.startswith(".run.partial-") for name in leftovers), leftovers
    for name in leftovers:  # a staging folder is never mistaken for a run
        with pytest.raises(FiscalsimError):
            results.load(tmp_path / name)


# ----------------------------------------------------------------------------- paths
def test_a_scenario_model_path_is_relative_to_the_scenario_file_and_stays_inside_the_models(tmp_path, monkeypatch):
    model_copy(tmp_path)
    path = tmp_path / "s.toml"
    path.write_text('name = "s"\nmodel = "model"\n'.replace('"model"', '"./model"'), encoding="utf-8")
    monkeypatch.chdir(ROOT)  # not where the scenario is
    expect(ScenarioError, "outside the models folder", scenario.load, path)
    loaded = scenario.load(path, allow_outside=True)
    assert Path(loaded.model) == (tmp_path / "model").resolve()
    inside = tmp_path / "inside.toml"
    inside.write_text(f'name = "i"\nmodel = "{os.path.relpath(TEMPLATE, tmp_path)}"\n', encoding="utf-8")
    assert Path(scenario.load(inside).model) == TEMPLATE.resolve()


def test_the_model_source_must_be_a_file_in_the_model_folder(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": ('source = "source.txt"', 'source = "../../etc/passwd"')})
    expect(PolicyError, "source must be a file name inside the model folder", sim.policy.load, folder)
    missing = model_copy(tmp_path / "b", edits={"policy.toml": ('source = "source.txt"', 'source = "text.txt"')})
    expect(PolicyError, "source 'text.txt' is not in the model folder", sim.policy.load, missing)


# ----------------------------------------------------------------------------- wrong results now caught
def test_the_award_intensity_applies_on_every_path():
    base = sim.policy.load("template")
    data = base.data()
    for rule in data["rules"]:
        rule["intensity"] = {"value": 0.5, "assumed": True, "why": "test",
                             "uncertainty": {"range": [0.4, 0.6], "group": "intensity", "why": "test"}}
    half = sim.policy.from_dict(data, "half", base.source_text)
    table = pop.population_frame(pop.load_spec("template", policy=base), 3, n=20_000)
    from sim import fused
    from sim.awards import evaluate, explain
    full_gross = evaluate(base, table, validate=False).gross
    half_gross = evaluate(half, table, validate=False).gross
    assert np.array_equal(half_gross, full_gross * 0.5)
    compiled = fused.compile_rules(half)
    assert np.array_equal(fused.awards_per_claimant(compiled, table, len(table)), half_gross)
    (award, _), _, _ = fused.totals(half, table, compiled)
    (full, _), _, _ = fused.totals(base, table)
    assert np.allclose(award, full * 0.5, rtol=1e-12)
    entry = next(e for e in explain(half, {"new_high_tech": 1}) if e["rule"] == "t04-new-high-tech")
    assert entry["award"] == 10.0 and "award intensity 0.5 applied" in entry["steps"]


def test_tiers_at_the_same_bound_are_refused(tmp_path):
    folder = model_copy(tmp_path, edits={"policy.toml": ("{ at = 4, amount = 20 }", "{ at = 3, amount = 20 }")})
    expect(PolicyError, "tiers must be listed with `at` strictly increasing", sim.policy.load, folder)


def _single(spec, segment_id, count):
    import dataclasses
    segment = next(s for s in spec.segments if s.id == segment_id)
    return dataclasses.replace(spec, segments=(dataclasses.replace(segment, count=count),))


def test_each_step_kind_draws_its_probability_with_power_to_see_a_five_percent_bias():
    # 400,000 large template firms: every flag below has an expected count of 16,000 or more, so a 5% bias
    # in a drawing step's probability is 4 standard deviations or more away.
    spec = _single(pop.load_spec("template"), "large-firms", 400_000)
    segment = spec.segments[0]
    frame = pop.population_frame(spec, 9)
    n = len(frame)
    for attribute in ("external_funds", "new_high_tech", "export_value"):  # amount, event, factor_event (product)
        share = spec.share_set(segment, attribute)
        observed = (frame[attribute] > 0).sum()
        sd = math.sqrt(n * share * (1 - share))
        assert n * share * 0.05 > 4 * sd, attribute  # the test has power
        assert abs(observed - n * share) < 4 * sd, (attribute, observed, n * share)
    patents = spec.step(segment, "patents").number("mean", segment)
    sd = math.sqrt(n * (patents + patents**2 * (math.exp(0.5**2) - 1)))
    assert n * patents * 0.05 > 4 * sd and abs(frame["patents"].sum() - n * patents) < 4 * sd
    rd = spec.step(segment, "rd_performer").number("probability", segment)  # bernoulli
    assert abs((frame["rd_spending"] > 0).sum() - n * rd) < 4 * math.sqrt(n * rd * (1 - rd))


def test_kept_claims_are_the_district_paid_part():
    policy, spec = scenario.apply(scenario.baseline())
    result = mc.run(policy, spec, 1, seed=4, n=30_000, keep_claims=1, progress=False)
    claims = result.claims[0]
    by_rule = np.bincount(claims.rule, weights=claims.amount, minlength=len(policy.rules))
    rows = result.rules.set_index("rule")
    for i, rule in enumerate(policy.rules):
        assert by_rule[i] == pytest.approx(rows.loc[rule.id, "district"], rel=1e-12, abs=1e-9), rule.id
    shared = [i for i, r in enumerate(policy.rules) if 0 < r.district_share.value < 1]
    assert shared and all(by_rule[i] < rows.loc[policy.rules[i].id, "award"] for i in shared if by_rule[i] > 0)


def test_the_shortfall_is_claims_above_the_budget_never_below():
    run = pipeline.run(model="template", settings=pipeline.Settings(replications=30, stages=("claims",)),
                       progress=False)
    summary = run.summary("domain").set_index("domain")
    levels = mc.level_totals(run.rules, "domain")
    budgets = run["budgets"]
    for domain, row in summary.iterrows():
        district = levels.loc[levels["key"] == domain].sort_values("replication")["district"].to_numpy()
        budget = budgets[budgets["domain"] == domain].sort_values("replication")["claims_budget"].to_numpy()
        assert len(np.unique(budget)) > 1  # the claims budget is drawn per assumption draw
        assert row["mean_shortfall"] == pytest.approx(np.maximum(district - budget, 0).mean())
        assert row["mean_shortfall"] >= 0
    assert (summary["mean_shortfall"] > 0).any()


def test_a_scenario_holds_its_own_numbers_and_keeps_the_other_draws():
    held = scenario.from_dict({"name": "held", "model": "template",
                               "policy": {"domains": {"innovation": {"claims_budget": 1200}}}})
    settings = pipeline.Settings(replications=6, per_draw=2, seed=2, n=5_000, stages=("claims", "sensitivity"),
                                 sensitivity_samples=4)
    run = pipeline.run(held, settings=settings, progress=False)
    base = pipeline.run(model="template", settings=settings, progress=False)

    def innovation(r):
        return r["budgets"].query("domain == 'innovation'")["claims_budget"]
    assert (innovation(run) == 1200).all() and innovation(base).nunique() == 3  # held vs drawn
    group = "claims-budget-innovation"
    others = [r["assumptions"][r["assumptions"]["group"] != group].reset_index(drop=True) for r in (run, base)]
    pd.testing.assert_frame_equal(*others)  # the other assumptions: the same draws (common random numbers)
    assert group in set(base["assumptions"]["group"]) and group not in set(run["assumptions"]["group"])
    sobol = run["sobol_indices"].query("group == @group")
    assert (sobol["total"].fillna(0) == 0).all() and (sobol["first"].fillna(0) == 0).all()  # exactly no effect
    drawn = base["sobol_indices"].query("group == @group and domain == 'innovation' and measure == 'shortfall'")
    assert drawn["total"].iloc[0] > 0


def test_deferred_means_the_budget_ran_out_and_unpaid_means_the_calendar():
    policy, spec = scenario.apply(scenario.baseline())
    model = pr.load_process(policy=policy)
    claims = mc.replication_claims(policy, spec, 3, 0)
    ample = pr.simulate(claims, model, seed=3, budgets={d: 1e9 for d in model.budgets})
    assert ample.apps.parts["deferred"].sum() == 0 and np.isnan(ample.runout_day).all()
    late = model.with_changes(payment_days=model.payment_days[:6])  # no payment run after June
    unpaid = pr.simulate(claims, late, seed=3, budgets={d: 1e9 for d in model.budgets})
    assert unpaid.apps.parts["unpaid"].sum() > 0 and unpaid.apps.parts["deferred"].sum() == 0
    short = pr.simulate(claims, model, seed=3, budgets={**model.budgets, "science_technology": 10_000.0})
    runout = short.runout.set_index("domain")
    assert runout.loc["science_technology", "deferred"] > 0
    assert not np.isnan(runout.loc["science_technology", "runout_day"])


# ----------------------------------------------------------------------------- the CLI's last line of defence
def test_an_internal_error_is_one_line_and_a_log(tmp_path, monkeypatch, capsys):
    import sim.cli as cli

    def broken(args):
        raise ZeroDivisionError("a fault of fiscalsim")
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    monkeypatch.setattr(cli, "cmd_policy", broken)
    parser = cli.build_parser
    monkeypatch.setattr(cli, "build_parser", lambda: _with(parser(), broken))
    assert cli.main(["policy"]) == cli.INTERNAL_ERROR
    err = capsys.readouterr().err
    assert "internal error, please report it: ZeroDivisionError: a fault of fiscalsim" in err
    log = next((tmp_path / "fiscalsim").glob("fiscalsim-error-*.log"))
    assert "Traceback" in log.read_text() and str(log) in err


def _with(parser, function):
    parser._subparsers._group_actions[0].choices["policy"].set_defaults(func=function)
    return parser
