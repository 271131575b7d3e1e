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


class _Page(HTMLParser):
    """The images, figure captions and the first table (class answer) of a report page."""

    def __init__(self):
        super().__init__()
        self.images, self.captions, self.answer = [], [], []
        self._in = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        elif tag == "figcaption":
            self._in = "caption"
            self.captions.append("")
        elif tag == "table" and attrs.get("class") == "answer" and not self.answer:
            self._in = "answer"
        elif tag == "tr" and self._in == "answer":
            self.answer.append([])
        elif tag in ("td", "th") and self._in == "answer":
            self.answer[-1].append("")

    def handle_endtag(self, tag):
        if (tag == "figcaption" and self._in == "caption") or (tag == "table" and self._in == "answer"):
            self._in = None

    def handle_data(self, data):
        if self._in == "caption":
            self.captions[-1] += data
        elif self._in == "answer" and self.answer and self.answer[-1]:
            self.answer[-1][-1] += data


def page_of(path):
    parser = _Page()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    for name in ("baseline", "rd-boom"):
        assert main(["run", name, "-r", "8", "--n", str(N), "-s", str(SEED), "-o", str(root / name),
                     "--no-progress", "--process-replications", "3", "--sensitivity-samples", "2"]) == 0
    return root


FIGURE_NAMES = {"claims", "articles", "cash", "waits", "needed", "verify"}


def test_main_job_writes_a_simplified_chinese_report_with_every_figure_and_caption(two_runs):
    page_file = two_runs / "baseline" / "report" / "report.zh-Hans.html"
    page = page_of(page_file)
    names = {img["data-file"].split(".")[0] for img in page.images}
    assert FIGURE_NAMES <= names <= FIGURE_NAMES | {"queues"}
    assert len(page.captions) == len(page.images) and all(len(c) > 30 for c in page.captions)
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,") and len(img["src"]) > 10_000
        file = page_file.parent / img["data-file"]
        assert file.is_file() and file.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page_file.read_text(encoding="utf-8")
    assert 'lang="zh-Hans"' in text and "科技创新政策" in text and "科技創新" not in text  # Simplified
    assert "超支概率" in text and "名词解释" in text and "基准情景" in text
    assert "@font-face" in text and report.FONT_FAMILY in text


def test_each_language_is_its_own_file(two_runs, tmp_path):
    folder = tmp_path / "r"
    for lang in ("zh-Hant", "en"):
        report.write_report(two_runs / "baseline", lang=lang, out=folder)
    hant = (folder / "report.zh-Hant.html").read_text(encoding="utf-8")
    english = (folder / "report.en.html").read_text(encoding="utf-8")
    assert 'lang="zh-Hant"' in hant and "科技創新政策" in hant and "超支概率" in hant and "預計兌現額" in hant
    assert "Science and technology innovation" in english and 'lang="en"' in english
    assert {p.name for p in folder.glob("claims.*.png")} == {"claims.zh-Hant.png", "claims.en.png"}


def test_the_terminal_the_report_and_compare_show_the_same_numbers(two_runs, capsys):
    import sim.compare
    import sim.results

    run = sim.results.load(two_runs / "baseline")
    shown = report.answer_display(report.answer_table(run), run.policy(), "zh-Hans", report.group_labels(run, "zh-Hans"))
    page = page_of(two_runs / "baseline" / "report" / "report.zh-Hans.html").answer
    assert page[0] == list(shown.columns) and page[1:] == shown.astype(str).values.tolist()
    assert main(["compare", str(two_runs / "baseline"), str(two_runs / "rd-boom")]) == 0
    terminal = capsys.readouterr().out
    tables = sim.compare.compare(two_runs / "baseline", two_runs / "rd-boom")
    domains = sim.compare.domains_display(tables, run.policy(), "zh-Hans")
    mine = domains[domains["情景"] == "基准情景"].set_index("领域")  # scenarios by their titles
    heading = {"claims": "预计兑现额(区级,亿元)", "budget": "可兑现预算(亿元,假设)", "gap": "缺口(亿元)"}
    for row in shown.itertuples(index=False):
        name, claims, budget, gap, overrun = row[0], row[1], row[2], row[3], row[4]
        assert mine.loc[name, heading["claims"]] == claims and mine.loc[name, heading["budget"]] == budget
        assert mine.loc[name, heading["gap"]] == gap and mine.loc[name, "超支概率"] == overrun.split(" ")[0]
        line = next(line for line in terminal.splitlines() if line.split()[:2] == [name, "基准情景"])
        assert line.split()[2] == claims and line.split()[4:6] == [budget, gap]
    from sim.cli import answer_text
    text = answer_text(run, "zh-Hans")
    for row in shown.astype(str).values.tolist():
        line = next(line for line in text.splitlines() if line.strip().startswith(row[0]))
        assert line.split() == [cell for value in row for cell in value.split()]


def test_export_opens_with_openpyxl_and_round_trips_the_summary(two_runs, tmp_path):
    import openpyxl

    import sim.results

    out = tmp_path / "results.xlsx"
    assert main(["export", str(two_runs / "baseline"), "-o", str(out)]) == 0
    book = openpyxl.load_workbook(out, read_only=True)
    assert book.sheetnames[:4] == ["结论", "各领域", "各条款", "各规则"]
    rows = list(book["结论"].iter_rows(values_only=True))
    heading = list(rows[0])
    run = sim.results.load(two_runs / "baseline")
    answer = report.answer_table(run)
    for record, (_, expected) in zip(rows[1:], answer.iterrows()):
        got = dict(zip(heading, record))
        # Excel keeps 16 significant digits (openpyxl writes '%.16g'): the same number to that precision
        assert got["预计兑现额(区级,万元)"] == pytest.approx(expected["claims"], rel=1e-15, abs=0)
        assert got["可兑现预算(万元,假设)"] == pytest.approx(expected["claims_budget"], rel=1e-15, abs=0)
        assert got["超支概率"] == pytest.approx(expected["p_overrun"], rel=1e-15, abs=0)
    domains = list(book["各领域"].iter_rows(values_only=True))
    column = domains[0].index("区级兑现均值(万元)")
    assert [r[column] for r in domains[1:]] == pytest.approx(run.summary("domain")["district_mean"].tolist(),
                                                            rel=1e-15, abs=0)
    articles = list(book["各条款"].iter_rows(values_only=True))
    assert "第13条 更大力度实施企业研发投入补助政策" in [r[1] for r in articles]
    english = tmp_path / "en.xlsx"
    assert main(["export", str(two_runs / "baseline"), "-o", str(english), "--lang", "en"]) == 0
    assert openpyxl.load_workbook(english, read_only=True).sheetnames[0] == "Answer"
    assert main(["export", str(two_runs / "baseline"), "-o", str(tmp_path / "x.csv")]) == 2


def test_compare_finds_the_driver_and_writes_a_page(two_runs, tmp_path, capsys):
    import sim.compare

    tables = sim.compare.compare(two_runs / "baseline", two_runs / "rd-boom")
    articles = tables["articles"]
    assert articles.iloc[0]["article"] == 13 and articles.iloc[0]["d_claims"] > 0  # the largest change first
    assert (articles["d_claims"].abs().diff().dropna() <= 0).all()
    domains = tables["domains"].set_index(["scenario", "domain"])
    assert domains.loc[("rd-boom", "science_technology"), "d_claims"] > 0
    assert domains.loc[("baseline", "science_technology"), "d_claims"] == 0
    assert main(["compare", str(two_runs / "baseline"), str(two_runs / "rd-boom"), "--out", str(tmp_path / "c"),
                 "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "Art. 13" in out and "Difference" in out
    assert (tmp_path / "c" / "compare.en.html").is_file() and (tmp_path / "c" / "compare-domains.en.png").is_file()


@pytest.mark.parametrize("model", ["binjiang-2024", "template"])
def test_no_character_of_the_labels_or_model_renders_as_a_box(model):
    import sim.language
    import sim.policy
    policy = sim.policy.load(model)
    text = "".join(sim.language.labels("zh-Hans").values()) + "".join(sim.language.labels("zh-Hant").values())
    model_text = "".join(d.name_zh for d in policy.domains) + "".join(a.heading_zh for a in policy.articles)
    model_text += "".join(sim.process.load_process(model).bureaus)
    model_text += "".join(g.label_zh + g.what_zh for g in sim.assumptions.load_groups(model).values())
    model_text += "".join(a.lead for a in policy.articles) + "".join(map(str, policy.meta.values()))
    text += model_text + sim.language.simplified(model_text) + "0123456789,.-%()\u2212"
    assert report.missing_glyphs(text) == set()


def test_report_language_is_checked(two_runs):
    with pytest.raises(sim.errors.FiscalsimError, match="--lang must be one of zh-Hans, zh-Hant, en"):
        report.write_report(two_runs / "baseline", lang="fr")


def test_readme_main_job_command_is_the_full_pipeline():
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text(encoding="utf-8")
    first = re.findall(r"```bash\n(.+?)\n```", readme)[0]
    assert "fiscalsim run" in first and "--no-" not in first


def test_figures_drawn_side_by_side_in_worker_processes_are_the_same_bytes(two_runs):
    from sim import executors, results

    run = results.load(two_runs / "baseline")
    tables, here = report.draw_figures(run, "en")
    done = []
    _, side_by_side = report.draw_figures(run, "en", progress=done.append,
                                          side_by_side=executors.Processes(2).map)
    assert list(side_by_side) == list(here) and len(here) >= len(FIGURE_NAMES)
    assert all(side_by_side[name] == here[name] for name in here)
    assert sum(n for n in done if n) == len(here)  # the bar moved once per figure
