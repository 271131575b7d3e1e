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
from pathlib import Path

import numpy as np
import pandas as pd

from sim.errors import FiscalsimError
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
        "tornado": "What moves total claims most (one at a time, -20% / +20%)",
        "change": "Change in mean total claims (萬元)",
        "low": "-20%",
        "high": "+20%",
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
        "tornado": "對申報總額影響最大的參數(逐一變動正負20%)",
        "change": "申報總額均值的變化(萬元)",
        "low": "減20%",
        "high": "增20%",
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


def sensitivity_table(run: Run) -> pd.DataFrame:
    return run["sensitivity"] if "sensitivity" in run else pd.DataFrame()


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


def plot_tornado(table: pd.DataFrame, lang: str, ax) -> None:
    t = LABELS[lang]
    labels = table["parameter_zh"] if lang == "zh" else table["parameter"]
    y = np.arange(len(table))
    ax.barh(y, table["low"], color="#4C72B0", label=t["low"])
    ax.barh(y, table["high"], color="#DD8452", label=t["high"])
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(t["change"])
    ax.set_title(t["tornado"])
    ax.legend(fontsize=8)
    ax.xaxis.set_major_formatter(_thousands())


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
    tables["sensitivity"] = sensitivity_table(run)
    if len(tables["sensitivity"]):
        fig, ax = plt.subplots(figsize=(9, 5))
        plot_tornado(tables["sensitivity"], lang, ax)
        figures["tornado"] = fig
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
    assumed = "".join(f"<li>{html.escape(where)} {html.escape(name)} = {p.value:g}: {html.escape(p.why)}</li>"
                      for where, name, p in policy.assumptions())
    images = "\n".join(
        f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}" '
        f'data-file="{name}.png"></figure>' for name, data in pngs.items())
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
<h2>{t['summary']}</h2><table>{head}{''.join(rows)}</table>
{images}
<h2>{t['assumptions']}</h2><ul>{assumed}</ul>
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
        domain_rows.append(domain_claims_table(run).assign(scenario=name, run=str(path)))
        article_rows.append(article_table(run).assign(scenario=name, run=str(path)))
    domains = pd.concat(domain_rows, ignore_index=True)
    columns = ["scenario", "domain", "mean", "p95", "claims_budget", "p_overrun", "mean_shortfall"]
    if "runout_date_p50" in domains:
        columns += ["p_runout", "runout_date_p50"]
    return {"domains": domains[columns + ["run"]], "articles": pd.concat(article_rows, ignore_index=True)}
