"""Reports for the finance bureau: tables, figures and a self-contained HTML page, in Chinese or English.

The report only reads: every figure comes from a table the pipeline wrote to the run folder (it runs no
replication and solves no LP).  Data and drawing are kept apart: each ``*_table`` function returns a
pandas DataFrame read from a run; each ``plot_*`` function only draws such a table on a matplotlib
``Axes``.
:func:`write_report` puts them together into ``RUN_DIR/report/`` (PNG figures, the tables as Parquet,
and ``report.html`` with the figures embedded).  Chinese labels use the Noto Sans CJK subset shipped in
``sim/fonts`` (SIL Open Font License), so no character renders as a box.
"""

from __future__ import annotations

import base64
import html
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import FiscalsimError
from sim.headline import ALEATORY, measure_of, ranking
from sim.policy import Policy
from sim.results import Run, load, write_run

FONT_FILE = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKtc-Regular-subset.otf"
LANGS = ("zh", "en")
DOMAIN_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")

LABELS = {
    "en": {
        "title": "claims, cash and budgets",
        "colon": ": ",
        "claims_vs_budget": "Expected claims per domain against the claims budget",
        "claims": "District-paid claims (萬元)",
        "budget": "Claims budget",
        "band": "P5-P95 over replications",
        "mean": "Mean",
        "articles": "Claims per article over replications",
        "article": "Article",
        "cash": "Cumulative cash paid by month against the claims budget",
        "month": "Month",
        "cumulative": "Cumulative paid (萬元)",
        "median": "Median",
        "waits": "Days from application to payment, by bureau",
        "days": "Days",
        "queue": "Applications waiting for review, by day",
        "day": "Day of the year",
        "waiting": "Waiting (mean over replications)",
        "verify_first": "What to verify first",
        "verify_intro": "Which assumption, if it were known, would most narrow the answer for {domain}: the assumption "
                        "groups ranked by their total Sobol index of the {measure} (the share of its variance they "
                        "account for, alone and with the others), with 95% bootstrap intervals; the luck of the year "
                        "last. Verify the first ones before acting on the overrun probability.",
        "measure_overrun": "overrun", "measure_shortfall": "shortfall", "measure_claims": "claims",
        "answer": "The answer per domain",
        "luck": "Luck of the year",
        "expected_shortfall": "Expected shortfall (萬元)",
        "driver": "Driven most by",
        "group": "Group", "where": "Number", "value": "Value", "mode": "Varies as", "low": "Low", "high": "High",
        "why": "Why",
        "calibration": "Calibration: the synthetic population beside sourced figures",
        "calibration_note": "A target used to set a parameter is met by construction and is not evidence; only "
                            "independent targets test the model.",
        "target": "Target", "target_value": "Target value", "simulated": "Simulated", "role": "Role",
        "evidence": "Evidence", "source": "Source",
        "role_set": "used to set a parameter", "role_independent": "independent evidence",
        "evidence_district": "the district's own figure", "evidence_zone": "the high-tech zone's figure",
        "evidence_neighbour": "another district's figure", "evidence_city": "city figure",
        "evidence_province": "provincial figure", "evidence_national": "national figure",
        "evidence_policy goal": "the policy's own goal", "evidence_derived": "derived",
        "evidence_assumed": "assumed",
        "total_index": "Total Sobol index (with 95% interval)",
        "first_index": "First-order index",
        "index": "Share of the variance of the overrun that the assumption accounts for",
        "aleatory": "The luck of the year (which firms claim)",
        "lp": "Budget LP: shortfall against expected claims, and the shadow price of one more 萬元",
        "shortfall": "Shortfall (萬元)",
        "shadow": "Shadow price",
        "p_overrun": "P(overrun)",
        "runout": "Run-out date (median)",
        "summary": "Summary per domain",
        "p50": "P50",
        "p95": "P95",
        "none": "none",
        "domain": "Domain",
        "scenario": "Scenario",
        "replications": "replications",
        "generated": "Money in 萬元. Figures and tables from the run folder",
        "assumptions": "Assumed numbers in this model",
        "cvar": "CVaR-sized budget",
    },
    "zh": {
        "title": "申報、撥付與預算",
        "colon": ":",
        "claims_vs_budget": "各領域預計申報額與可用於兌現的預算",
        "claims": "區級承擔的申報額(萬元)",
        "budget": "兌現預算",
        "band": "各次模擬的P5至P95區間",
        "mean": "均值",
        "articles": "各條款申報額的分布",
        "article": "條款",
        "cash": "按月累計撥付額與兌現預算",
        "month": "月份",
        "cumulative": "累計撥付(萬元)",
        "median": "中位數",
        "waits": "各部門從申報到撥付的天數",
        "days": "天數",
        "queue": "每日待審申報數(按部門)",
        "day": "年內第幾天",
        "waiting": "待審數(各次模擬均值)",
        "verify_first": "最需要先核實的假設",
        "verify_intro": "若能確知某個假設,{domain}的結論會收窄多少:按各假設組對{measure}的總Sobol指數排序"
                        "(該假設單獨及與其他假設共同解釋的方差份額),附95%自助法區間;年度隨機性列於最後。"
                        "據超支概率採取行動前,應先核實排在前面的假設。",
        "measure_overrun": "是否超支", "measure_shortfall": "缺口", "measure_claims": "申報額",
        "answer": "各領域的結論",
        "luck": "年度隨機性",
        "expected_shortfall": "預期缺口(萬元)",
        "driver": "影響最大的假設",
        "group": "假設組", "where": "數值", "value": "設定值", "mode": "變動方式", "low": "下限", "high": "上限",
        "why": "理由",
        "calibration": "校準:合成企業群體與有來源數據的對照",
        "calibration_note": "用於設定參數的目標按構造必然吻合,不能作為證據;只有獨立目標才能檢驗模型。",
        "target": "目標", "target_value": "目標值", "simulated": "模擬值", "role": "用途",
        "evidence": "證據類型", "source": "來源",
        "role_set": "用於設定參數", "role_independent": "獨立證據",
        "evidence_district": "本區數據", "evidence_zone": "高新區數據", "evidence_neighbour": "鄰區數據",
        "evidence_city": "全市數據", "evidence_province": "全省數據", "evidence_national": "全國數據",
        "evidence_policy goal": "政策自身目標", "evidence_derived": "推算", "evidence_assumed": "假設",
        "total_index": "總Sobol指數(95%區間)",
        "first_index": "一階指數",
        "index": "該假設可解釋的超支方差份額",
        "aleatory": "年度隨機性(哪些企業申報)",
        "lp": "預算線性規劃:預計申報的缺口與每增加1萬元的影子價格",
        "shortfall": "缺口(萬元)",
        "shadow": "影子價格",
        "p_overrun": "超支概率",
        "runout": "預算用盡日期(中位數)",
        "summary": "各領域摘要",
        "p50": "P50",
        "p95": "P95",
        "none": "無",
        "domain": "領域",
        "scenario": "情景",
        "replications": "次模擬",
        "generated": "金額單位:萬元。圖表來自模擬結果目錄",
        "assumptions": "本模型中的假設數值",
        "cvar": "按CVaR測算的預算",
    },
}

# ----------------------------------------------------------------------------- fonts
def font_properties():
    """Register the shipped CJK font with matplotlib and return its family name."""
    from matplotlib import font_manager

    if not FONT_FILE.is_file():
        raise FiscalsimError(f"{FONT_FILE}: the CJK font shipped with fiscalsim is missing; reinstall fiscalsim")
    font_manager.fontManager.addfont(str(FONT_FILE))
    return font_manager.FontProperties(fname=str(FONT_FILE)).get_name()


def missing_glyphs(text: str) -> set[str]:
    """Characters of ``text`` the shipped font cannot draw (a box would show)."""
    from fontTools.ttLib import TTFont

    cmap = TTFont(str(FONT_FILE)).getBestCmap()
    return {ch for ch in set(text) if not ch.isspace() and ord(ch) not in cmap}


def _style(lang: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    family = font_properties()
    plt.rcParams.update({"font.family": "sans-serif", "font.sans-serif": [family, "DejaVu Sans"],
                         "axes.unicode_minus": False, "figure.dpi": 110, "savefig.dpi": 110,
                         "axes.spines.top": False, "axes.spines.right": False})


# ----------------------------------------------------------------------------- tables
def domain_name(policy: Policy, key: str, lang: str) -> str:
    domain = policy.domain(key)
    return domain.name_zh if lang == "zh" else domain.name_en


def domain_colour(policy: Policy, key: str) -> str:
    """The domain's colour: the model's own (``colour`` of the domain), else a default palette's."""
    colour = policy.domain(key).colour
    return colour or DOMAIN_COLOURS[list(policy.domain_keys).index(key) % len(DOMAIN_COLOURS)]


def report_title(policy: Policy, lang: str) -> str:
    """The model's short title in the report's language (``short_zh`` / ``short_en`` of ``[model]``)."""
    meta = policy.meta
    if lang == "en":
        return meta.get("short_en") or meta.get("title_en") or meta.get("id", "")
    return meta.get("short_zh") or meta.get("title_zh", "")


def bureau_labels(run: Run, lang: str) -> dict[str, str]:
    """Bureau name -> label in the report's language (the model's English names, from the run)."""
    if lang == "zh" or "process_bureaus" not in run:
        return {}
    table = run["process_bureaus"]
    return {b: (e or b) for b, e in zip(table["bureau"], table["name_en"])}


def domain_claims_table(run: Run) -> pd.DataFrame:
    """Per domain: district-paid claims (mean, P5/P50/P95), the claims budget, P(overrun), mean shortfall,
    and from the process stage P(runs out) and the median run-out date."""
    summary = run.summary("domain")
    table = pd.DataFrame({
        "domain": summary["domain"], "mean": summary["district_mean"], "p5": summary["district_p5"],
        "p50": summary["district_p50"], "p95": summary["district_p95"], "claims_budget": summary["claims_budget"],
        "p_overrun": summary["p_overrun"], "mean_shortfall": summary["mean_shortfall"],
    })
    if "process_runout_summary" in run:
        runout = run["process_runout_summary"].set_index("domain")
        table["p_runout"] = table["domain"].map(runout["p_runout"])
        table["runout_date_p50"] = table["domain"].map(runout["runout_date_p50"])
    return table


def article_table(run: Run) -> pd.DataFrame:
    """Per article: mean and P5/P95 of district-paid claims, with the article's domain."""
    summary = run.summary("article")
    policy = run.policy()
    domains = [policy.article(a).domain for a in summary["article"]]
    return pd.DataFrame({"article": summary["article"], "domain": domains,
                         "mean": summary["district_mean"], "p5": summary["district_p5"],
                         "p95": summary["district_p95"]})


def cash_fan_table(run: Run) -> pd.DataFrame:
    if "process_cash_fan" not in run:
        return pd.DataFrame()
    budgets = run.summary("domain").set_index("domain")["claims_budget"]
    fan = run["process_cash_fan"].copy()
    fan["claims_budget"] = fan["domain"].map(budgets)
    return fan


def waits_table(run: Run) -> pd.DataFrame:
    return run["process_waits_bureau"] if "process_waits_bureau" in run else pd.DataFrame()


def queue_table(run: Run) -> pd.DataFrame:
    return run["process_queues"] if "process_queues" in run else pd.DataFrame()


def group_labels(run: Run, lang: str) -> dict[str, str]:
    """Assumption group -> its label in the report's language (the model's assumptions.toml, kept in the run)."""
    try:
        groups = json.loads(run.text("assumptions.json"))
    except FiscalsimError:
        return {}
    labels = {key: value.get(f"label_{lang}", key) for key, value in groups.get("groups", {}).items()}
    labels[ALEATORY] = LABELS[lang]["aleatory"]
    return labels


def _sensitivity(run: Run) -> Run:
    """The run's own Sobol stage, or the more precise one of `fiscalsim sensitivity` where it ran."""
    stage = run.stage("sensitivity")
    return stage if stage is not None else run


def headline_table(run: Run) -> pd.DataFrame:
    """The decision-grade table per domain (sim.headline): P(overrun), its spread over the assumptions, the
    share that is the luck of the year, the expected shortfall, the verdict and the driver."""
    source = _sensitivity(run)
    return source["headline"] if "headline" in source else (run["headline"] if "headline" in run else pd.DataFrame())


def verify_first_table(run: Run, lang: str) -> pd.DataFrame:
    """For the domain most at risk, the assumption groups by total Sobol index (largest first), with intervals."""
    source, head = _sensitivity(run), headline_table(run)
    if "sobol_indices" not in source or not len(head):
        return pd.DataFrame()
    risk = head.sort_values(["p_overrun", "expected_shortfall"], ascending=False).iloc[0]
    measure = measure_of(source["sobol_indices"], risk["domain"])
    if measure is None:
        return pd.DataFrame()
    table = ranking(source["sobol_indices"], risk["domain"], measure)
    labels = group_labels(run, lang)
    return table.assign(label=[labels.get(g, g) for g in table["group"]])


def assumptions_table(run: Run, lang: str) -> pd.DataFrame:
    """Every uncertain number of the run's model with its group, value and plausible range."""
    if "assumption_numbers" not in run:
        return pd.DataFrame()
    labels = group_labels(run, lang)
    table = run["assumption_numbers"]
    return table.assign(label=[labels.get(g, g) for g in table["group"]])


def calibration_table(run: Run) -> pd.DataFrame:
    return run["calibration"] if "calibration" in run else pd.DataFrame()


def lp_table(run: Run) -> pd.DataFrame:
    """Coverage LP per domain (shortfall, shadow price) and the CVaR-sized budget, from the budget stage."""
    stage = run.stage("budget")
    if stage is None:
        return pd.DataFrame()
    cover = stage["coverage_domains"][["domain", "claims_budget", "claims", "shortfall", "shadow_price"]]
    cvar = stage["cvar_budgets"][["domain", "cvar_budget"]]
    return cover.merge(cvar, on="domain")


# ----------------------------------------------------------------------------- plots (drawing only)
def plot_domain_claims(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    t = LABELS[lang]
    names = [domain_name(policy, k, lang) for k in table["domain"]]
    y = np.arange(len(table))
    ax.barh(y, table["mean"], color="#4C72B0", alpha=0.85, label=t["mean"])
    ax.errorbar(table["p50"], y, xerr=[table["p50"] - table["p5"], table["p95"] - table["p50"]], fmt="none",
                ecolor="black", capsize=4, label=t["band"])
    ax.scatter(table["claims_budget"], y, marker="|", s=400, color="#C44E52", linewidths=3, label=t["budget"], zorder=3)
    for yi, (p, budget) in enumerate(zip(table["p_overrun"], table["claims_budget"])):
        ax.annotate(f"{t['p_overrun']} {p:.0%}", (max(budget, table["p95"].iloc[yi]), yi), xytext=(8, -4),
                    textcoords="offset points", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(t["claims"])
    ax.set_title(t["claims_vs_budget"])
    ax.legend(loc="lower right", fontsize=8)
    ax.xaxis.set_major_formatter(_thousands())


def plot_articles(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """Mean district-paid claims per article, largest first, coloured by domain, with P5-P95 whiskers."""
    t = LABELS[lang]
    table = table.sort_values("mean", ascending=True)
    keys = list(policy.domain_keys)
    colours = [domain_colour(policy, d) for d in table["domain"]]
    y = np.arange(len(table))
    ax.barh(y, table["mean"], color=colours)
    ax.errorbar(table["mean"], y, xerr=[table["mean"] - table["p5"], table["p95"] - table["mean"]], fmt="none",
                ecolor="black", capsize=2, linewidth=0.8)
    labels = [f"{a} {policy.article(a).heading_zh}" if lang == "zh" else f"{a} {policy.article(a).name_en}"
              for a in table["article"]]
    ax.set_yticks(y, labels, fontsize=7)
    ax.set_xlabel(t["claims"])
    ax.set_title(t["articles"])
    ax.xaxis.set_major_formatter(_thousands())
    from matplotlib.patches import Patch

    handles = [Patch(color=domain_colour(policy, key), label=domain_name(policy, key, lang))
               for key in keys if key in set(table["domain"])]
    ax.legend(handles=handles, fontsize=7, loc="lower right")


def plot_cash_fan(table: pd.DataFrame, policy: Policy, lang: str, axes) -> None:
    t = LABELS[lang]
    for ax, key in zip(axes, policy.domain_keys):
        part = table[table["domain"] == key].sort_values("month")
        ax.fill_between(part["month"], part["cumulative_p5"], part["cumulative_p95"], color="#4C72B0", alpha=0.3,
                        label=t["band"])
        ax.plot(part["month"], part["cumulative_p50"], color="#4C72B0", label=t["median"])
        ax.axhline(part["claims_budget"].iloc[0], color="#C44E52", linestyle="--", label=t["budget"])
        ax.set_title(domain_name(policy, key, lang), fontsize=9)
        ax.set_xticks(range(1, 13, 2))
        ax.yaxis.set_major_formatter(_thousands())
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=7, loc="upper left")


def plot_waits(table: pd.DataFrame, labels: dict[str, str], lang: str, ax) -> None:
    t = LABELS[lang]
    names = [labels.get(b, b) for b in table["bureau"]]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["days_to_payment_p50"], height=0.4, label=t["p50"], color="#55A868")
    ax.barh(y + 0.2, table["days_to_payment_p95"], height=0.4, label=t["p95"], color="#DD8452")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(t["days"])
    ax.set_title(t["waits"])
    ax.legend(fontsize=8)


def plot_queues(table: pd.DataFrame, labels: dict[str, str], lang: str, ax) -> None:
    t = LABELS[lang]
    for bureau, part in table.groupby("bureau", sort=False):
        ax.plot(part["day"], part["waiting_mean"], label=labels.get(bureau, bureau), linewidth=1)
    ax.set_xlabel(t["day"])
    ax.set_ylabel(t["waiting"])
    ax.set_title(t["queue"])
    ax.legend(fontsize=7)


def plot_verify_first(table: pd.DataFrame, domain: str, lang: str, ax, top: int = 12) -> None:
    """Total Sobol indices (bars, with 95% intervals) and first-order indices (dots) of the top groups."""
    t = LABELS[lang]
    shown = pd.concat([table[table["group"] != ALEATORY].head(top), table[table["group"] == ALEATORY]])
    y = np.arange(len(shown))
    total = shown["total"].clip(lower=0)
    ax.barh(y, total, color=["#8C8C8C" if g == ALEATORY else "#C44E52" for g in shown["group"]], label=t["total_index"])
    below, above = (total - shown["total_low"]).clip(lower=0), (shown["total_high"] - total).clip(lower=0)
    ax.errorbar(total, y, xerr=[below, above], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    ax.scatter(shown["first"].clip(lower=0), y, color="black", s=12, zorder=3, label=t["first_index"])
    ax.set_yticks(y, shown["label"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(shown["total_high"].max())))
    ax.set_xlabel(t["index"])
    ax.set_title(f"{t['verify_first']}: {domain}", fontsize=10)
    ax.legend(fontsize=8, loc="lower right")


def plot_lp(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    t = LABELS[lang]
    names = [domain_name(policy, k, lang) for k in table["domain"]]
    y = np.arange(len(table))
    ax.barh(y, table["shortfall"], color="#C44E52")
    for yi, (short, price) in enumerate(zip(table["shortfall"], table["shadow_price"])):
        ax.annotate(f"{t['shadow']} {price:.2f}", (short, yi), xytext=(6, -3), textcoords="offset points", fontsize=8)
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(t["shortfall"])
    ax.set_title(t["lp"], fontsize=10)
    ax.xaxis.set_major_formatter(_thousands())
    right = max(float(table["shortfall"].max()), 1.0)
    ax.set_xlim(0, right * 1.4)


def _thousands():
    from matplotlib.ticker import FuncFormatter

    return FuncFormatter(lambda x, _: f"{x:,.0f}")


# ----------------------------------------------------------------------------- the report
def _figures(run: Run, policy: Policy, lang: str) -> tuple[dict[str, pd.DataFrame], dict[str, object]]:
    """Every table the report shows and the figure drawn from each (matplotlib figures, not yet saved)."""
    import matplotlib.pyplot as plt

    t = LABELS[lang]
    tables: dict[str, pd.DataFrame] = {"domain_claims": domain_claims_table(run), "articles": article_table(run)}
    figures: dict[str, object] = {}
    fig, ax = plt.subplots(figsize=(9, 4.2))
    plot_domain_claims(tables["domain_claims"], policy, lang, ax)
    figures["claims_vs_budget"] = fig
    fig, ax = plt.subplots(figsize=(10, 7.5))
    plot_articles(tables["articles"], policy, lang, ax)
    figures["articles"] = fig
    fan = cash_fan_table(run)
    if len(fan):
        tables["cash_fan"] = fan
        count = len(policy.domain_keys)
        columns = min(3, count)
        rows = -(-count // columns)
        fig, axes = plt.subplots(rows, columns, figsize=(10, 2.8 * rows + 0.5), squeeze=False)
        for ax in axes.ravel()[count:]:
            ax.set_visible(False)
        plot_cash_fan(fan, policy, lang, axes.ravel()[:count])
        fig.suptitle(t["cash"])
        fig.supxlabel(t["month"])
        fig.supylabel(t["cumulative"])
        figures["cash_fan"] = fig
        tables["waits"], tables["queues"] = waits_table(run), queue_table(run)
        labels = bureau_labels(run, lang)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        plot_waits(tables["waits"], labels, lang, left)
        plot_queues(tables["queues"], labels, lang, right)
        figures["waits_queues"] = fig
    tables["headline"] = headline_table(run)
    tables["verify_first"] = verify_first_table(run, lang)
    if len(tables["verify_first"]):
        fig, ax = plt.subplots(figsize=(9, 5.5))
        domain = tables["verify_first"]["domain"].iloc[0]
        plot_verify_first(tables["verify_first"], domain_name(policy, domain, lang), lang, ax)
        figures["verify_first"] = fig
    tables["assumptions"], tables["calibration"] = assumptions_table(run, lang), calibration_table(run)
    tables["lp"] = lp_table(run)
    if len(tables["lp"]):
        fig, ax = plt.subplots(figsize=(9, 3.8))
        plot_lp(tables["lp"], policy, lang, ax)
        figures["lp"] = fig
    return tables, figures


def write_report(run: Run | str | Path, lang: str = "zh", out: str | Path | None = None, force: bool = True,
                 progress: bool = False) -> Path:
    """Write ``report.html`` (figures embedded), the PNG figures and the tables for a run (a folder or a
    :class:`~sim.results.Run`).  Reads the run's tables; computes nothing but the drawing."""
    if lang not in LANGS:
        raise FiscalsimError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    import matplotlib.pyplot as plt

    run = run if isinstance(run, Run) else load(run)
    policy = run.policy()
    _style(lang)
    tables, figures = _figures(run, policy, lang)
    pngs: dict[str, bytes] = {}
    for name, fig in figures.items():
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        pngs[name] = buffer.getvalue()
    page = _html(run, policy, lang, tables, pngs)
    out = Path(out) if out is not None else Path(run.path) / "report"
    written = write_run(out, {k: v for k, v in tables.items() if len(v)},
                        {"kind": "fiscalsim report", "run": str(run.path), "lang": lang,
                         "figures": [f"{name}.png" for name in pngs]},
                        force=force, files={"report.html": page, **{f"{n}.png": d for n, d in pngs.items()}})
    return written / "report.html"


VERDICT_WORDS = {
    "en": {"overrun likely": "an overrun is more likely than not under nine in ten plausible sets of assumptions",
           "depends on the assumptions": "whether it overruns depends on the assumptions",
           "overrun unlikely": "an overrun is less likely than not under nine in ten plausible sets of assumptions"},
    "zh": {"overrun likely": "在九成合理假設組合下超支的可能性均大於一半",
           "depends on the assumptions": "是否超支取決於假設",
           "overrun unlikely": "在九成合理假設組合下超支的可能性均小於一半"},
}


def headline_sentences(table: pd.DataFrame, policy: Policy, labels: dict[str, str], lang: str) -> list[str]:
    """One plain sentence per domain: how likely an overrun is, how much that depends on the assumptions, and
    which assumption drives it."""
    out = []
    for r in table.itertuples():
        name = domain_name(policy, r.domain, lang)
        verdict = VERDICT_WORDS[lang].get(r.verdict, r.verdict)  # a run of an older version: its own words
        driver = labels.get(r.driver, r.driver) if r.driver else ""
        spread = not pd.isna(r.p_overrun_p10)
        if lang == "en":
            text = f"{name}: an overrun in {r.p_overrun:.0%} of simulated years"
            if spread:
                text += (f" once the assumptions vary; given the assumptions, {r.p_overrun_p10:.0%} to "
                         f"{r.p_overrun_p90:.0%} (P10-P90 over the draws), so {verdict}. "
                         f"{r.aleatory_share:.0%} of the variation is the luck of the year")
                text += f"; the assumption that moves it most is {driver}." if driver else "."
            else:
                text += " with every assumption held at its value (their uncertainty is not included)."
        else:
            text = f"{name}:{r.p_overrun:.0%}的模擬年份超支"
            if spread:
                text += (f"(假設在合理範圍內變動);在給定假設下超支概率為{r.p_overrun_p10:.0%}至"
                         f"{r.p_overrun_p90:.0%}(各次假設抽樣的P10至P90),{verdict}。"
                         f"波動中{r.aleatory_share:.0%}來自年度隨機性")
                text += f",影響最大的假設是「{driver}」。" if driver else "。"
            else:
                text += "(所有假設取其設定值,未計入其不確定性)。"
        out.append(text)
    return out


def _rows_html(table: pd.DataFrame, columns: list[tuple[str, str, object]]) -> str:
    """An HTML table: columns are (heading, column name, formatter)."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h, _, _ in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(row[c]))}</td>" for _, c, fmt in columns) + "</tr>"
                   for _, row in table.iterrows())
    return f"<table><tr>{head}</tr>{body}</table>"


def _html(run: Run, policy: Policy, lang: str, tables: dict[str, pd.DataFrame], pngs: dict[str, bytes]) -> str:
    t = LABELS[lang]
    m = run.manifest
    claims = tables["domain_claims"]
    rows = []
    for r in claims.itertuples():
        runout = getattr(r, "runout_date_p50", None)
        rows.append(
            f"<tr><td>{html.escape(domain_name(policy, r.domain, lang))}</td><td>{r.mean:,.0f}</td>"
            f"<td>{r.p50:,.0f}</td><td>{r.p95:,.0f}</td><td>{r.claims_budget:,.0f}</td><td>{r.p_overrun:.0%}</td>"
            f"<td>{html.escape(runout) if isinstance(runout, str) else t['none']}</td></tr>")
    head = (f"<tr><th>{t['domain']}</th><th>{t['mean']}</th><th>{t['p50']}</th><th>{t['p95']}</th>"
            f"<th>{t['budget']}</th><th>{t['p_overrun']}</th><th>{t['runout']}</th></tr>")
    labels = group_labels(run, lang)
    said = headline_sentences(tables["headline"], policy, labels, lang) if len(tables["headline"]) else []
    sentences = "".join(f"<li>{html.escape(s)}</li>" for s in said)
    percent = "{:.0%}".format

    def maybe(x):
        return "—" if pd.isna(x) else f"{x:.0%}"
    head_table = tables["headline"]
    if len(head_table):
        head_table = head_table.assign(name=[domain_name(policy, d, lang) for d in head_table["domain"]],
                                       drv=[labels.get(d, d) for d in head_table["driver"]])
    headline_html = _rows_html(head_table, [
        (t["domain"], "name", str), (t["p_overrun"], "p_overrun", percent), ("P10", "p_overrun_p10", maybe),
        ("P90", "p_overrun_p90", maybe), (t["luck"], "aleatory_share", maybe),
        (t["expected_shortfall"], "expected_shortfall", "{:,.0f}".format), (t["driver"], "drv", str),
    ]) if len(tables["headline"]) else ""
    assumed = _rows_html(tables["assumptions"], [
        (t["group"], "label", str), (t["where"], "where", str), (t["value"], "point", str), (t["mode"], "mode", str),
        (t["low"], "low", "{:g}".format), (t["high"], "high", "{:g}".format), (t["why"], "why", str),
    ]) if len(tables["assumptions"]) else ""
    calibration = _rows_html(tables["calibration"], [
        (t["target"], "target", str), (t["target_value"], "target_value", "{:,.6g}".format),
        (t["simulated"], "mean", "{:,.6g}".format), (t["role"], "role", lambda x: t[f"role_{x}"]),
        (t["evidence"], "evidence", lambda x: t.get(f"evidence_{x}", x)), (t["source"], "source", str),
    ]) if len(tables["calibration"]) else ""
    images = {name: f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}" '
                    f'data-file="{name}.png"></figure>' for name, data in pngs.items()}
    verify = tables.get("verify_first", pd.DataFrame())
    verify_html = ""
    if len(verify):
        interval = "[{:.2f}, {:.2f}]".format
        shown = pd.concat([verify.head(8), verify.tail(1)]).assign(
            interval=lambda v: [interval(a, b) for a, b in zip(v["total_low"], v["total_high"])])
        what = shown["domain"].iloc[0]
        intro = t["verify_intro"].format(domain=domain_name(policy, what, lang),
                                         measure=t[f"measure_{shown['measure'].iloc[0]}"])
        verify_html = (f"<h2>{t['verify_first']}</h2><p>{html.escape(intro)}</p>" + images.pop("verify_first", "")
                       + _rows_html(shown, [(t["group"], "label", str), (t["total_index"], "total", "{:.2f}".format),
                                            ("95%", "interval", str), (t["first_index"], "first", "{:.2f}".format)]))
    replications = m.get("replications")
    title = f"{report_title(policy, lang)}{t['colon']}{t['title']}"
    return f"""<!DOCTYPE html>
<html lang="{'zh-Hant' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>body{{font-family:"Noto Sans CJK TC","Noto Sans",sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{margin:1.5em 0}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{t['scenario']}: <b>{html.escape(str(m.get('scenario')))}</b> · {replications} {t['replications']} ·
seed {m.get('seed')} · {m.get('population'):,} · {html.escape(t['generated'])}
<code>{html.escape(str(run.path))}</code></p>
<h2>{t['answer']}</h2><ul>{sentences}</ul>{headline_html}
<h2>{t['summary']}</h2><table>{head}{''.join(rows)}</table>
{"".join(images.values())}
{verify_html}
<h2>{t['assumptions']}</h2>{assumed}
<h2>{t['calibration']}</h2><p>{t['calibration_note']}</p>{calibration}
</body></html>
"""


# ----------------------------------------------------------------------------- comparison
def compare(*run_dirs: str | Path) -> dict[str, pd.DataFrame]:
    """Scenarios side by side per domain and per article: mean and P95 claims, P(overrun), run-out date,
    mean shortfall against the claims budget."""
    if len(run_dirs) < 1:
        raise FiscalsimError("compare needs at least one run folder")
    domain_rows, article_rows = [], []
    for path in run_dirs:
        run = load(path)
        name = run.manifest.get("scenario", str(path))
        table = domain_claims_table(run).assign(scenario=name, run=str(path))
        head = headline_table(run)
        if len(head):
            labels = group_labels(run, "en")
            head = head.assign(driver=[labels.get(d, d) for d in head["driver"]])
            table = table.merge(head[["domain", "p_overrun_p10", "p_overrun_p90", "expected_shortfall", "verdict",
                                      "driver"]], on="domain", how="left")
        domain_rows.append(table)
        article_rows.append(article_table(run).assign(scenario=name, run=str(path)))
    domains = pd.concat(domain_rows, ignore_index=True)
    columns = ["scenario", "domain", "mean", "p95", "claims_budget", "p_overrun", "mean_shortfall"]
    if "verdict" in domains:
        columns += ["p_overrun_p10", "p_overrun_p90", "verdict", "driver"]
    if "runout_date_p50" in domains:
        columns += ["p_runout", "runout_date_p50"]
    return {"domains": domains[columns + ["run"]], "articles": pd.concat(article_rows, ignore_index=True)}
