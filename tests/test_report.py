"""Shipped scenarios move claims the expected way; comparison tables; the HTML report and its figures."""

import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

import sim
import sim.assumptions
import sim.montecarlo as mc
import sim.process as pr
import sim.report as report
import sim.scenario as scenario
import sim.sensitivity
from sim.cli import main

SEED, N, REPS = 11, 20_000, 6


def run_scenario(name):
    chosen = scenario.load(name)
    policy, spec = scenario.apply(chosen)
    result = mc.run(policy, spec, REPS, SEED, n=N, progress=False)
    model = scenario.apply_process(chosen, policy)
    processes = [pr.simulate(mc.replication_claims(policy, spec, SEED, k, N), model, SEED, k) for k in range(2)]
    return result, processes


@pytest.fixture(scope="module")
def baseline():
    return run_scenario("baseline")


def rule_mean(result, prefix):
    rules = result.rules
    return rules.loc[rules["rule"].astype(str).str.startswith(prefix), "award"].sum() / result.replications


def test_every_scenario_ships_and_validates():
    names = sorted(p.stem for p in scenario.scenarios_root().glob("*.toml"))
    assert {"baseline", "rd-boom", "export-slump", "st-budget-2025", "article-13-caps-up", "staffing-cut"} <= set(names)
    for name in names:
        scenario.load(name)


def test_baseline_scenario_equals_the_model(baseline):
    again, _ = run_scenario("baseline")
    assert np.array_equal(again.rules["award"], baseline[0].rules["award"])


def test_rd_boom_raises_article_13_claims(baseline):
    boom, _ = run_scenario("rd-boom")
    assert rule_mean(boom, "a13-") > 1.05 * rule_mean(baseline[0], "a13-")


def test_cap_rise_raises_article_13_claims_and_nothing_else(baseline):
    caps, _ = run_scenario("article-13-caps-up")
    assert rule_mean(caps, "a13-") > rule_mean(baseline[0], "a13-")
    others = ~caps.rules["rule"].astype(str).str.startswith("a13-")
    assert np.array_equal(caps.rules.loc[others, "award"], baseline[0].rules.loc[others, "award"])


def test_export_slump_lowers_article_41_claims(baseline):
    slump, _ = run_scenario("export-slump")
    assert rule_mean(slump, "a41-") < 0.9 * rule_mean(baseline[0], "a41-")
    assert rule_mean(slump, "a13-") == rule_mean(baseline[0], "a13-")


def test_2025_budget_lowers_the_science_overrun_probability_on_the_same_claims(baseline):
    bigger, _ = run_scenario("st-budget-2025")
    assert np.array_equal(bigger.rules["award"], baseline[0].rules["award"])  # the same claims
    before = baseline[0].summary("domain").set_index("domain").loc["science_technology"]
    after = bigger.summary("domain").set_index("domain").loc["science_technology"]
    assert after["claims_budget"] == 91000 and after["p_overrun"] <= before["p_overrun"]


def test_staffing_cut_lengthens_the_bureaus_waits(baseline):
    _, cut = run_scenario("staffing-cut")
    def queue(processes):
        return np.mean([p.waits().set_index("bureau").loc["區科技局", "queue_days_mean"] for p in processes])
    assert queue(cut) > 1.5 * queue(baseline[1])


def test_pro_rata_cuts_instead_of_deferring():
    policy, spec = scenario.apply(scenario.load("pro-rata"))
    model = scenario.apply_process(scenario.load("pro-rata"), policy)
    claims = mc.replication_claims(policy, spec, SEED, 0)
    short = {d: 0.6 * b for d, b in model.budgets.items()}
    outcome = pr.simulate(claims, model, SEED, budgets=short).runout.set_index("domain")
    science = outcome.loc["science_technology"]
    assert science["cut"] > 0 and science["cut"] > science["deferred"]


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in ("baseline", "rd-boom"):
        assert main(["run", name, "-r", "8", "--n", str(N), "-s", str(SEED), "-o", str(root / name),
                     "--no-progress", "--process-replications", "3", "--sensitivity-samples", "2"]) == 0
    return root


def test_main_job_writes_a_report_with_every_figure(two_runs):
    page = two_runs / "baseline" / "report" / "report.html"
    assert page.is_file()
    parser = _Images()
    parser.feed(page.read_text(encoding="utf-8"))
    names = {img["data-file"] for img in parser.images}
    assert names == {"claims_vs_budget.png", "articles.png", "cash_fan.png", "waits_queues.png", "verify_first.png", "lp.png"}
    for img in parser.images:
        assert img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 10_000
        file = page.parent / img["data-file"]
        assert file.is_file() and file.stat().st_size > 10_000
        assert file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text(encoding="utf-8")
    assert "科技創新政策" in text and "超支概率" in text


def test_english_report_and_what_to_verify_first(two_runs, tmp_path):
    page = report.write_report(two_runs / "baseline", lang="en", out=tmp_path / "en")
    text = page.read_text(encoding="utf-8")
    assert "Science and technology innovation" in text and 'lang="en"' in text
    import sim.results
    run = sim.results.load(two_runs / "baseline")
    groups = sim.assumptions.load_groups(run.manifest["model"])
    verify = sim.results.load(tmp_path / "en")["verify_first"]
    # every assumption group once, ranked by total index, the luck of the year (aleatory) last
    assert (verify["total"][:-1].diff().dropna() <= 0).all()
    assert sorted(verify["group"][:-1]) == sorted(groups)
    assert verify["group"].iloc[-1] == sim.sensitivity.ALEATORY and len(verify) == len(groups) + 1
    assert set(verify["label"][:-1]) == {g.label_en for g in groups.values()}
    head = run["headline"].sort_values(["p_overrun", "expected_shortfall"], ascending=False)
    assert set(verify["domain"]) == {head["domain"].iloc[0]}  # the domain most at risk
    assert verify["label"].iloc[0] in text  # the first to verify is named on the page


def test_compare_puts_scenarios_side_by_side(two_runs, capsys):
    tables = sim.compare(two_runs / "baseline", two_runs / "rd-boom")
    domains = tables["domains"]
    assert set(domains["scenario"]) == {"baseline", "rd-boom"}
    assert {"mean", "p95", "p_overrun", "mean_shortfall", "runout_date_p50"} <= set(domains.columns)
    science = domains[domains["domain"] == "science_technology"].set_index("scenario")
    assert science.loc["rd-boom", "mean"] > science.loc["baseline", "mean"]
    assert main(["compare", str(two_runs / "baseline"), str(two_runs / "rd-boom")]) == 0
    out = capsys.readouterr().out
    assert "Per domain" in out and "rd-boom" in out


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_no_character_of_the_labels_or_model_renders_as_a_box(model):
    import sim.policy
    policy = sim.policy.load(model)
    text = "".join("".join(v) for v in report.LABELS["zh"].values())
    text += "".join(d.name_zh for d in policy.domains) + "".join(a.heading_zh for a in policy.articles)
    text += "".join(sim.process.load_process(model).bureaus)
    text += "".join(g.label_zh for g in sim.assumptions.load_groups(model).values())
    text += "".join(a.lead for a in policy.articles) + "".join(map(str, policy.meta.values())) + "0123456789,.-%()\u2212"
    assert report.missing_glyphs(text) == set()


def test_report_language_is_checked(two_runs):
    with pytest.raises(sim.errors.FiscalsimError, match="--lang must be one of zh, en"):
        report.write_report(two_runs / "baseline", lang="fr")


def test_readme_main_job_command_is_the_full_pipeline():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    first = re.findall(r"```bash\n(.+?)\n```", readme)[0]
    assert "fiscalsim run" in first and "--no-" not in first
