"""A finished run as one Excel workbook for a colleague: the plain answer first, then the tables behind it.

One sheet per table, headings in the reader's language, article headings and domain names beside the ids,
money in 萬元 (and the answer also in 億元), every money column labelled with its unit.  Numbers stay
numbers (to the 16 significant digits a workbook keeps), so the workbook adds up to the run's own
figures.  Written atomically.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pandas as pd

from sim import language
from sim import report as report_module
from sim.errors import FiscalsimError
from sim.results import Run, load

# column -> (Simplified Chinese, English) heading; money columns say 萬元 in the heading
STATISTICS = {
    "replications": ("模拟次数", "replications"),
    "mean": ("企业应得均值(万元)", "awards due, mean (萬元)"), "sd": ("企业应得标准差(万元)", "awards due, sd (萬元)"),
    "sem": ("企业应得均值的标准误(万元)", "awards due, standard error of the mean (萬元)"),
    "p5": ("企业应得P5(万元)", "awards due, P5 (萬元)"), "p50": ("企业应得中位数(万元)", "awards due, median (萬元)"),
    "p95": ("企业应得P95(万元)", "awards due, P95 (萬元)"), "p99": ("企业应得P99(万元)", "awards due, P99 (萬元)"),
    "district_mean": ("区级兑现均值(万元)", "district-paid, mean (萬元)"),
    "district_sd": ("区级兑现标准差(万元)", "district-paid, sd (萬元)"),
    "district_sem": ("区级兑现均值的标准误(万元)", "district-paid, standard error of the mean (萬元)"),
    "district_p5": ("区级兑现P5(万元)", "district-paid, P5 (萬元)"),
    "district_p50": ("区级兑现中位数(万元)", "district-paid, median (萬元)"),
    "district_p95": ("区级兑现P95(万元)", "district-paid, P95 (萬元)"),
    "district_p99": ("区级兑现P99(万元)", "district-paid, P99 (萬元)"),
    "claims_budget": ("可兑现预算(万元,设定值)", "claims budget (萬元, as set)"),
    "p_overrun": ("超支概率", "P(overrun)"), "mean_shortfall": ("平均缺口(万元)", "mean shortfall (萬元)"),
}
ANSWER = {
    "claims": ("预计兑现额(区级,万元)", "expected claims, district-paid (萬元)"),
    "claims_yi": ("预计兑现额(区级,亿元)", "expected claims, district-paid (億元)"),
    "gross": ("企业应得奖补(含市级,万元)", "awards due, city share included (萬元)"),
    "claims_budget": ("可兑现预算(万元,假设)", "claims budget (萬元, assumed)"),
    "gap": ("缺口(万元)", "gap (萬元)"),
    "p_overrun": ("超支概率", "P(overrun)"),
    "p_overrun_p10": ("给定假设时超支概率P10", "P(overrun) given the assumptions, P10"),
    "p_overrun_p90": ("给定假设时超支概率P90", "P(overrun) given the assumptions, P90"),
    "verdict": ("判断", "verdict"), "driver": ("影响最大的假设", "driven most by"),
    "p_runout": ("年内用尽概率", "P(runs out in the year)"),
    "runout_month": ("预计用尽月份", "likely month it runs out"),
    "deferred": ("缓付(万元)", "deferred (萬元)"), "cut": ("削减(万元)", "cut (萬元)"),
    "unpaid": ("年末尚未拨付(万元)", "unpaid at year end (萬元)"),
}
SHEETS = {"answer": ("结论", "Answer"), "domain": ("各领域", "Domains"), "article": ("各条款", "Articles"),
          "rule": ("各规则", "Rules"), "cash": ("按月拨付", "Cash by month"), "runout": ("预算用尽", "Run-out"),
          "assumptions": ("假设", "Assumptions"), "calibration": ("校准", "Calibration"),
          "design_rules": ("力度优化-条款", "Design, rules"), "design_domains": ("力度优化-领域", "Design, domains"),
          "targets": ("政策目标", "Targets"), "years": ("多年度兑现额", "Claims by year"),
          "commitments": ("多年度承诺", "Commitments"), "years_budget": ("多年度预算", "Budgets by year"),
          "about": ("说明", "About")}


def _pick(pair: tuple[str, str], lang: str) -> str:
    return language.own_text(pair[0], lang) if language.chinese(lang) else pair[1]


def sheets(run: Run, lang: str) -> dict[str, pd.DataFrame]:
    """Every sheet of the workbook, in order, with headings in ``lang``."""
    lang = language.check(lang)
    t = language.labels(lang)
    policy = run.policy()
    groups = report_module.group_labels(run, lang)
    out: dict[str, pd.DataFrame] = {}
    answer = report_module.answer_table(run)
    answer.insert(2, "claims_yi", answer["claims"] / 1e4)
    answer["verdict"] = [t.get(f"verdict_{v}", v) for v in answer["verdict"]]
    answer["driver"] = [groups.get(d, d) for d in answer["driver"]]
    named = answer.drop(columns=["domain"]).rename(columns={k: _pick(v, lang) for k, v in ANSWER.items()})
    named.insert(0, t["domain"], [report_module.domain_name(policy, d, lang) for d in answer["domain"]])
    out[_pick(SHEETS["answer"], lang)] = named

    def statistics(level: str, ids: dict[str, list]) -> pd.DataFrame:
        table = run.summary(level)
        columns = {k: _pick(v, lang) for k, v in STATISTICS.items() if k in table}
        shown = table.drop(columns=[level]).rename(columns=columns)
        for position, (heading, values) in enumerate(ids.items()):
            shown.insert(position, heading, values)
        return shown
    domains = run.summary("domain")["domain"]
    out[_pick(SHEETS["domain"], lang)] = statistics("domain", {
        "domain": list(domains), t["domain"]: [report_module.domain_name(policy, d, lang) for d in domains]})
    articles = run.summary("article")["article"]
    out[_pick(SHEETS["article"], lang)] = statistics("article", {
        t["article"]: list(articles), "": [report_module.article_name(policy, a, lang) for a in articles],
        t["domain"]: [report_module.domain_name(policy, policy.article(a).domain, lang) for a in articles]})
    rules = [policy.rule(r) for r in run.summary("rule")["rule"]]
    out[_pick(SHEETS["rule"], lang)] = statistics("rule", {
        "rule": [r.id for r in rules],
        t["article"]: [report_module.article_name(policy, r.article, lang) for r in rules],
        t["domain"]: [report_module.domain_name(policy, r.domain, lang) for r in rules],
        "name_en": [r.name_en for r in rules]})
    if "process_cash_fan" in run:
        cash = run["process_cash_fan"].copy()
        cash.insert(1, t["domain"], [report_module.domain_name(policy, d, lang) for d in cash["domain"]])
        out[_pick(SHEETS["cash"], lang)] = cash.rename(columns=lambda c: f"{c} (萬元)" if c.startswith(
            ("cumulative", "paid")) else c)
    if "process_runout_summary" in run:
        runout = run["process_runout_summary"].copy()
        runout.insert(1, t["domain"], [report_module.domain_name(policy, d, lang) for d in runout["domain"]])
        out[_pick(SHEETS["runout"], lang)] = runout.rename(columns=lambda c: f"{c} (萬元)" if c.endswith(
            ("_mean", "budget")) else c)
    numbers = report_module.assumptions_table(run, lang)
    if len(numbers):
        out[_pick(SHEETS["assumptions"], lang)] = numbers
    if "calibration" in run:
        out[_pick(SHEETS["calibration"], lang)] = run["calibration"]
    design = run.stage("design")
    if design is not None:  # numbers stay numbers: the design's own tables, money columns labelled 萬元
        money = ("support", "given_up", "budget", "claims", "cvar", "tolerance", "expected_shortfall")
        label = {c: f"{c} (萬元)" for t in ("rules", "lines") for c in design[t].columns if c.startswith(money)}
        rules = design["rules"].rename(columns=label)
        rules.insert(1, t["domain"], [report_module.domain_name(policy, d, lang) for d in design["rules"]["domain"]])
        out[_pick(SHEETS["design_rules"], lang)] = rules
        out[_pick(SHEETS["design_domains"], lang)] = design["lines"].rename(columns=label)
    if "years_summary" in run:  # a multi-year run: numbers, money in 萬元, domain names beside the keys
        money = {"mean", "p5", "p50", "p95", "claims_budget", "claims", "claims_p5", "claims_p95", "commitments",
                 "mean_shortfall"}
        for sheet, name in (("years", "years_summary"), ("commitments", "commitments"),
                            ("years_budget", "years_budget")):
            table = run[name].copy()
            table.insert(1 + list(table.columns).index("domain"), t["domain"],
                         [report_module.domain_name(policy, d, lang) for d in table["domain"]])
            out[_pick(SHEETS[sheet], lang)] = table.rename(columns={c: f"{c} (萬元)" for c in money})
    if policy.targets:
        out[_pick(SHEETS["targets"], lang)] = report_module.targets_table(run, policy)
    m = run.manifest
    about = [(t["scenario"], report_module.scenario_title(run, lang)), ("run", str(run.path)),
             (t["replications"], m.get("replications")), (t["seed"], m.get("seed")),
             (t["claimants"], m.get("population")), ("model", m.get("model")),
             ("uncertainty", m.get("uncertainty")), ("money", "萬元 (1億 = 10,000萬)")]
    about += [(t["definitions"], d) for d in report_module.definitions(lang, "process_runout_summary" in run)]
    out[_pick(SHEETS["about"], lang)] = pd.DataFrame(about, columns=["", ""])
    return out


def export(run_dir: str | Path | Run, output: str | Path, lang: str = language.DEFAULT) -> Path:
    """Write the workbook (``.xlsx``) atomically: complete or not at all."""
    output = Path(output)
    if output.suffix.lower() != ".xlsx":
        raise FiscalsimError(f"{output}: the export is an Excel workbook; give a file name ending in .xlsx")
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        raise FiscalsimError("fiscalsim export needs openpyxl: pip install openpyxl") from None
    run = run_dir if isinstance(run_dir, Run) else load(run_dir)
    tables = sheets(run, lang)
    output.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{output.name}.", suffix=".xlsx", dir=output.parent)
    os.close(handle)
    try:
        with pd.ExcelWriter(temp, engine="openpyxl") as writer:
            for name, table in tables.items():
                table.to_excel(writer, sheet_name=name[:31], index=False)
                sheet = writer.sheets[name[:31]]
                for column in sheet.columns:  # readable widths
                    width = max(len(str(c.value)) if c.value is not None else 0 for c in column[:50])
                    sheet.column_dimensions[column[0].column_letter].width = min(max(10, width * 1.3), 60)
        os.replace(temp, output)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    return output
