"""Reports for the finance bureau: tables, figures and a self-contained HTML page, in Chinese or English.

Data and drawing are kept apart: each ``*_table`` function returns a pandas DataFrame computed from a
run folder; each ``plot_*`` function only draws such a table on a matplotlib ``Axes``.
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

from sim import budget as budget_module
from sim import montecarlo
from sim import scenario as scenario_module
from sim.errors import FiscalsimError
from sim.policy import Policy
from sim.results import Run, load, write_run

FONT_FILE = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKtc-Regular-subset.otf"
LANGS = ("zh", "en")

LABELS = {
    "en": {
        "title": "Binjiang 2024 policy package: claims, cash and budgets",
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
        "day": "Day of 2024",
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
        "title": "濱江區2024年經濟高質量發展政策:申報、撥付與預算",
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
        "day": "2024年第幾天",
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

BUREAUS_EN = {
    "區科技局": "Science & Technology Bureau", "區經信局": "Economy & IT Bureau",
    "區發改局": "Development & Reform Bureau", "區商務局": "Commerce Bureau",
    "區文廣旅體局": "Culture & Tourism Bureau", "區衛生健康局": "Health Bureau",
}

# One-at-a-time sensitivity: (label en, label zh, override path, baseline value, upper bound).  The value
# is scaled by the factor (each size class of a table); the path None scales the enterprise population.
SENSITIVITY = (
    ("R&D growth (mean)", "研發增速均值", "population.core.rd_growth.mean", 0.06, None),
    ("R&D intensity, large firms", "大企業研發強度", "population.sizes.large.rd_intensity.median", 0.03, None),
    ("R&D intensity, medium firms", "中型企業研發強度", "population.sizes.medium.rd_intensity.median", 0.035, None),
    ("Revenue of large firms", "大企業營收", "population.sizes.large.revenue.median", 50000, None),
    ("Technology-transaction reward rate (assumed 1%)", "技術交易獎勵比例(假設1%)",
     "policy.rules.a15-tech-transactions.rate", 0.01, 1.0),
    ("Incubated-firm rent subsidy share (assumed 50%)", "在孵企業房租補貼比例(假設50%)",
     "policy.rules.a16-incubated-rent.rate", 0.5, 1.0),
    ("Firms selling technology", "技術交易企業比例", "population.enterprise.tech_transaction_value.probability",
     {"small": 0.02, "medium": 0.12, "large": 0.35}, 1.0),
    ("Firms in incubators", "在孵企業比例", "population.enterprise.incubated_rent.probability", {"small": 0.05}, 1.0),
    ("Insured exporters, large firms", "大企業出口信保投保率", "population.sizes.large.insured_exporter", 0.2, 1.0),
    ("Export credit-insurance premiums", "出口信保保費", "population.shocks.export_credit_premium", 1.0, None),
    ("Article 13 cap, larger firms", "第十三條大企業補助上限", "policy.rules.a13-rd-increase-large.cap", 300, None),
    ("Bank credit-loan growth", "銀行信用貸款增量",
     "population.segments.banks.attributes.credit_loan_increase.median", 15000, None),
    ("Number of claimants (all segments)", "申報主體數量(全部類型)", None, 1.0, None),
)


def _override(path: str, value) -> dict:
    """{"a": {"b": value}} from "a.b" (rule ids contain '-', never '.')."""
    out: dict = value
    for part in reversed(path.split(".")):
        out = {part: out}
    return out


def _scaled(value, factor: float, upper: float | None):
    if isinstance(value, dict):
        return {k: _scaled(v, factor, upper) for k, v in value.items()}
    scaled = value * factor
    return min(scaled, upper) if upper is not None else scaled


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


def bureau_name(name: str, lang: str) -> str:
    return name if lang == "zh" else BUREAUS_EN.get(name, name)


def domain_claims_table(run: Run, policy: Policy) -> pd.DataFrame:
    """Per domain: mean, P5/P50/P95 of district-paid claims, the claims budget, P(overrun), run-out."""
    levels = montecarlo.level_totals(run.rules, "domain")
    rows = []
    for key in policy.domain_keys:
        district = levels.loc[levels["key"] == key, "district"].to_numpy()
        budget = policy.domain(key).claims_budget.value
        rows.append({"domain": key, "mean": district.mean(), "p5": np.quantile(district, 0.05),
                     "p50": np.quantile(district, 0.5), "p95": np.quantile(district, 0.95),
                     "claims_budget": budget, "p_overrun": float((district > budget).mean()),
                     "mean_shortfall": float(np.maximum(district - budget, 0).mean())})
    table = pd.DataFrame(rows)
    if "process_runout_summary" in run.tables:
        runout = run["process_runout_summary"].set_index("domain")
        table["p_runout"] = table["domain"].map(runout["p_runout"])
        table["runout_date_p50"] = table["domain"].map(runout["runout_date_p50"])
    return table


def article_table(run: Run) -> pd.DataFrame:
    """Replication x article district-paid claims (long)."""
    out = montecarlo.level_totals(run.rules, "article").rename(columns={"key": "article"})
    return out[["replication", "article", "district"]]


def cash_fan_table(run: Run, policy: Policy) -> pd.DataFrame:
    if "process_cash_fan" not in run.tables:
        return pd.DataFrame()
    fan = run["process_cash_fan"].copy()
    fan["claims_budget"] = fan["domain"].map(lambda k: policy.domain(k).claims_budget.value)
    return fan


def waits_table(run: Run) -> pd.DataFrame:
    return run["process_waits_bureau"] if "process_waits_bureau" in run.tables else pd.DataFrame()


def queue_table(run: Run) -> pd.DataFrame:
    return run["process_queues"] if "process_queues" in run.tables else pd.DataFrame()


def sensitivity_table(base: scenario_module.Scenario, seed: int, replications: int = 10, n: int | None = None,
                      step: float = 0.2) -> pd.DataFrame:
    """One-at-a-time sensitivity of mean total district-paid claims to policy and population parameters.

    Each parameter is moved down and up by ``step`` (20%) with the same seed as the base, so common
    random numbers make the differences precise with few replications.
    """
    policy, spec = scenario_module.apply(base)
    reference = _total(policy, spec, seed, replications, n)
    rows = []
    for label_en, label_zh, path, value, upper in SENSITIVITY:
        totals = []
        for factor in (1 - step, 1 + step):
            if path is None:
                totals.append(_total(policy, spec, seed, replications, n, scale=factor))
                continue
            data = {"name": f"sensitivity {label_en} x{factor:g}", "model": base.model,
                    **_override(path, _scaled(value, factor, upper))}
            changed_policy, changed_spec = scenario_module.apply(scenario_module.from_dict(data))
            totals.append(_total(changed_policy, changed_spec, seed, replications, n))
        rows.append({"parameter": label_en, "parameter_zh": label_zh, "base": reference,
                     "low": totals[0] - reference, "high": totals[1] - reference})
    table = pd.DataFrame(rows)
    table["swing"] = (table["high"] - table["low"]).abs()
    return table.sort_values("swing", ascending=False, ignore_index=True)


def _total(policy, spec, seed, replications, n, scale: float = 1.0) -> float:
    if n is not None:
        n = int(round(n * scale))
        scale = 1.0
    result = montecarlo.run(policy, spec, replications, seed, n=n, scale=scale, progress=False)
    return float(montecarlo.level_totals(result.rules, "domain").groupby("replication")["district"].sum().mean())


def lp_table(run: Run, policy: Policy) -> pd.DataFrame:
    """Coverage LP per domain (shortfall, shadow price) and the CVaR-sized budget, from RUN_DIR/budget."""
    folder = run.path / "budget"
    tables = load(folder).tables if (folder / "manifest.json").is_file() else budget_module.analyse(policy, run.rules)
    cover = tables["coverage_domains"][["domain", "claims_budget", "claims", "shortfall", "shadow_price"]]
    cvar = tables["cvar_budgets"][["domain", "cvar_budget"]]
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


def plot_article_distributions(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    t = LABELS[lang]
    articles = sorted(table["article"].unique())
    data = [np.maximum(table.loc[table["article"] == a, "district"].to_numpy(), 1.0) for a in articles]
    ax.boxplot(data, orientation="horizontal", showfliers=False, whis=(5, 95))
    labels = [f"{a} {policy.article(a).heading_zh[:10]}" if lang == "zh" else f"{a} {policy.article(a).name_en[:28]}"
              for a in articles]
    ax.set_yticks(np.arange(1, len(articles) + 1), labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel(t["claims"])
    ax.set_title(t["articles"])


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


def plot_waits(table: pd.DataFrame, lang: str, ax) -> None:
    t = LABELS[lang]
    names = [bureau_name(b, lang) for b in table["bureau"]]
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["days_to_payment_p50"], height=0.4, label=t["p50"], color="#55A868")
    ax.barh(y + 0.2, table["days_to_payment_p95"], height=0.4, label=t["p95"], color="#DD8452")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel(t["days"])
    ax.set_title(t["waits"])
    ax.legend(fontsize=8)


def plot_queues(table: pd.DataFrame, lang: str, ax) -> None:
    t = LABELS[lang]
    for bureau, part in table.groupby("bureau", sort=False):
        ax.plot(part["day"], part["waiting_mean"], label=bureau_name(bureau, lang), linewidth=1)
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
def write_report(run_dir: str | Path, lang: str = "zh", out: str | Path | None = None,
                 sensitivity_replications: int = 10, force: bool = True) -> Path:
    """Write ``report.html`` (figures embedded), the PNG figures and the tables for a finished run."""
    if lang not in LANGS:
        raise FiscalsimError(f"--lang must be one of {', '.join(LANGS)}, got {lang!r}")
    import matplotlib.pyplot as plt

    run = load(run_dir)
    policy = run.policy()
    _style(lang)
    t = LABELS[lang]
    tables: dict[str, pd.DataFrame] = {"domain_claims": domain_claims_table(run, policy)}
    figures: dict[str, object] = {}

    fig, ax = plt.subplots(figsize=(9, 4.2))
    plot_domain_claims(tables["domain_claims"], policy, lang, ax)
    figures["claims_vs_budget"] = fig

    tables["articles"] = article_table(run)
    fig, ax = plt.subplots(figsize=(9, 6.5))
    plot_article_distributions(tables["articles"], policy, lang, ax)
    figures["articles"] = fig

    fan = cash_fan_table(run, policy)
    if len(fan):
        tables["cash_fan"] = fan
        fig, axes = plt.subplots(2, 3, figsize=(10, 5.5))
        plot_cash_fan(fan, policy, lang, axes.ravel())
        fig.suptitle(t["cash"])
        fig.supxlabel(t["month"])
        fig.supylabel(t["cumulative"])
        figures["cash_fan"] = fig
        tables["waits"] = waits_table(run)
        tables["queues"] = queue_table(run)
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
        plot_waits(tables["waits"], lang, left)
        plot_queues(tables["queues"], lang, right)
        figures["waits_queues"] = fig

    manifest = run.manifest
    base = (scenario_module.load(manifest["scenario_file"]) if manifest.get("scenario_file")
            else scenario_module.baseline(manifest.get("model")))
    tables["sensitivity"] = sensitivity_table(base, int(manifest.get("seed", 0)), sensitivity_replications,
                                              n=manifest.get("n"))
    fig, ax = plt.subplots(figsize=(9, 5))
    plot_tornado(tables["sensitivity"], lang, ax)
    figures["tornado"] = fig

    tables["lp"] = lp_table(run, policy)
    fig, ax = plt.subplots(figsize=(9, 3.8))
    plot_lp(tables["lp"], policy, lang, ax)
    figures["lp"] = fig

    out = Path(out) if out is not None else Path(run_dir) / "report"
    pngs: dict[str, bytes] = {}
    for name, fig in figures.items():
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        pngs[name] = buffer.getvalue()
    page = _html(run, policy, lang, tables, pngs)
    written = write_run(out, {k: v for k, v in tables.items() if len(v)},
                        {"kind": "fiscalsim report", "run": str(run.path), "lang": lang,
                         "figures": [f"{name}.png" for name in pngs]},
                        force=force, files={"report.html": page}, binary={f"{n}.png": d for n, d in pngs.items()})
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
    return f"""<!DOCTYPE html>
<html lang="{'zh-Hant' if lang == 'zh' else 'en'}"><head><meta charset="utf-8">
<title>{html.escape(t['title'])}</title>
<style>body{{font-family:"Noto Sans CJK TC","Noto Sans",sans-serif;max-width:1100px;margin:2em auto;color:#222}}
table{{border-collapse:collapse}}td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}
td:first-child,th:first-child{{text-align:left}}figure{{margin:1.5em 0}}img{{max-width:100%}}</style></head>
<body><h1>{html.escape(t['title'])}</h1>
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
        policy = run.policy()
        name = run.manifest.get("scenario", str(path))
        table = domain_claims_table(run, policy).assign(scenario=name, run=str(path))
        domain_rows.append(table)
        articles = article_table(run).groupby("article")["district"].agg(
            mean="mean", p95=lambda x: np.quantile(x, 0.95)).reset_index()
        article_rows.append(articles.assign(scenario=name, run=str(path)))
    domains = pd.concat(domain_rows, ignore_index=True)
    columns = ["scenario", "domain", "mean", "p95", "claims_budget", "p_overrun", "mean_shortfall"]
    if "runout_date_p50" in domains:
        columns += ["p_runout", "runout_date_p50"]
    return {"domains": domains[columns + ["run"]], "articles": pd.concat(article_rows, ignore_index=True)}
