"""Reports for the finance bureau: one plain answer, figures with captions, and a self-contained HTML page.

The report only reads: every figure comes from a table the pipeline wrote to the run folder (it runs no
replication and solves no LP).  Data and drawing are kept apart: each ``*_table`` function returns a
pandas DataFrame read from a run; each ``plot_*`` function only draws such a table on matplotlib axes.
:func:`write_report` puts them together into ``RUN_DIR/report/``: ``report.<lang>.html`` (figures and the
CJK font embedded, so the page is whole on a machine without a Chinese font), the figures as
``<name>.<lang>.png`` and the tables as Parquet.  Each language is its own file: drawing one leaves the
others.  Words come from :mod:`sim.language` (Simplified Chinese by default).
"""

from __future__ import annotations

import base64
import html
import io
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from sim import language
from sim.errors import FiscalsimError
from sim.headline import ALEATORY, measure_of, ranking
from sim.language import model_text, share, yi
from sim.policy import Policy
from sim.progress import progress_bar
from sim.results import MANIFEST, Run, load, write_run

FONT_FILE = Path(__file__).resolve().parent / "fonts" / "NotoSansCJKsc-Regular-subset.otf"
FONT_FAMILY = "FiscalsimCJK"  # the embedded face's name in the HTML
DOMAIN_COLOURS = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C")
RUNOUT_SHOWN = 0.05  # a run-out month is shown where the budget runs out in at least this share of years
QUEUEING = 1.0  # a bureau "queues" where on some day at least this many applications wait on average
FIGURES = ("claims", "articles", "cash", "waits", "queues", "needed", "years", "verify", "design")


# ----------------------------------------------------------------------------- fonts
def font_properties() -> str:
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


def style() -> None:
    import matplotlib

    if matplotlib.get_backend().lower() not in ("agg", "module://matplotlib_inline.backend_inline"):
        matplotlib.use("Agg")  # draw to files; a notebook keeps its inline backend
    import matplotlib.pyplot as plt

    family = font_properties()
    plt.rcParams.update({"font.family": "sans-serif", "font.sans-serif": [family, "DejaVu Sans"],
                         "axes.unicode_minus": False, "figure.dpi": 110, "savefig.dpi": 110,
                         "axes.spines.top": False, "axes.spines.right": False})


# ----------------------------------------------------------------------------- names in the reader's language
def domain_name(policy: Policy, key: str, lang: str) -> str:
    domain = policy.domain(key)
    return model_text(domain.name_zh, lang) if language.chinese(lang) else domain.name_en


def article_name(policy: Policy, number: int, lang: str) -> str:
    """'第15条 技术交易奖励' or 'Art. 15 Technology transactions'."""
    article = policy.article(number)
    head = language.labels(lang)["article_n"].format(n=number)
    return f"{head} {model_text(article.heading_zh, lang)}" if language.chinese(lang) else f"{head} {article.name_en}"


def domain_colour(policy: Policy, key: str) -> str:
    """The domain's colour: the model's own (``colour`` of the domain), else a default palette's."""
    colour = policy.domain(key).colour
    return colour or DOMAIN_COLOURS[list(policy.domain_keys).index(key) % len(DOMAIN_COLOURS)]


def report_title(policy: Policy, lang: str) -> str:
    """The model's short title in the report's language (``short_zh`` / ``short_en`` of ``[model]``)."""
    meta = policy.meta
    if lang == "en":
        return meta.get("short_en") or meta.get("title_en") or meta.get("id", "")
    return model_text(meta.get("short_zh") or meta.get("title_zh", ""), lang)


def scenario_title(run: Run, lang: str) -> str:
    """The run's scenario in the reader's words (its title, else its name)."""
    m = run.manifest
    if language.chinese(lang):
        return language.own_text(m.get("scenario_title_zh") or "", lang) or str(m.get("scenario"))
    return m.get("scenario_title_en") or str(m.get("scenario"))


def bureau_labels(run: Run, lang: str) -> dict[str, str]:
    """Bureau name -> its name in the report's language (the model's English names, from the run)."""
    if "process_bureaus" not in run:
        return {}
    table = run["process_bureaus"]
    if language.chinese(lang):
        return {b: model_text(b, lang) for b in table["bureau"]}
    return {b: (e or b) for b, e in zip(table["bureau"], table["name_en"])}


def _groups_of(run: Run, name: str) -> dict:
    """The ``groups`` table of a model file the run kept (``assumptions.json``, ``years.json``), {} without it."""
    try:
        return json.loads(run.text(name)).get("groups", {})
    except FiscalsimError:
        return {}


def group_labels(run: Run, lang: str) -> dict[str, str]:
    """Assumption group -> its label in the report's language: the model's assumptions.toml and, in a multi-year
    run, its years.toml (both kept in the run)."""
    chinese = language.chinese(lang)

    def label(key: str, value: dict) -> str:
        return model_text(value.get("label_zh", key), lang) if chinese else value.get("label_en", key)
    labels = {key: label(key, value) for key, value in _groups_of(run, "assumptions.json").items()}
    labels[ALEATORY] = language.labels(lang)["aleatory"]
    labels.update({key: label(key, value) for key, value in _groups_of(run, "years.json").items()})
    return labels


def group_texts(run: Run, lang: str) -> dict[str, str]:
    """Assumption group -> what it is, in the report's language."""
    groups = _groups_of(run, "assumptions.json")
    if language.chinese(lang):
        return {k: model_text(v.get("what_zh") or v.get("what", ""), lang) for k, v in groups.items()}
    return {k: v.get("what", "") for k, v in groups.items()}


# ----------------------------------------------------------------------------- tables (reading only)
def headline_table(run: Run) -> pd.DataFrame:
    """The decision-grade table per domain (sim.headline): P(overrun), its spread over the assumptions, the
    share that is the luck of the year, the expected shortfall, the verdict and the driver; from the finer
    `fiscalsim sensitivity` stage where it ran."""
    stage = run.stage("sensitivity")
    for source in (stage, run):
        if source is not None and "headline" in source:
            return source["headline"]
    return pd.DataFrame()


def answer_table(run: Run) -> pd.DataFrame:
    """The plain answer per domain (萬元 and shares): district-paid expected claims, the awards due with the
    city's share, the claims budget as set in the model, the gap, P(overrun) with its P10-P90 over the
    assumptions, the verdict and its driver, P(runs out) and the median month, and the means deferred, cut
    and unpaid at year end.  The terminal, the report, ``compare`` and the export all show this table."""
    policy = run.policy()
    summary = run.summary("domain").set_index("domain")
    head = headline_table(run)
    head = head.set_index("domain") if len(head) else None
    runout = run["process_runout_summary"].set_index("domain") if "process_runout_summary" in run else None
    rows = []
    for key in policy.domain_keys:
        s = summary.loc[key]
        budget = float(policy.domain(key).claims_budget.value)
        row = {"domain": key, "claims": float(s["district_mean"]), "gross": float(s["mean"]),
               "claims_budget": budget, "gap": float(s["district_mean"]) - budget,
               "p_overrun": float(s["p_overrun"]), "p_overrun_p10": np.nan, "p_overrun_p90": np.nan,
               "verdict": "", "driver": "", "p_runout": np.nan, "runout_month": np.nan,
               "deferred": np.nan, "cut": np.nan, "unpaid": np.nan}
        if head is not None and key in head.index:
            h = head.loc[key]
            row.update(p_overrun_p10=float(h["p_overrun_p10"]), p_overrun_p90=float(h["p_overrun_p90"]),
                       verdict=str(h["verdict"]), driver=str(h["driver"] or ""))
        if runout is not None and key in runout.index:
            r = runout.loc[key]
            date = r["runout_date_p50"]
            row.update(p_runout=float(r["p_runout"]), deferred=float(r["deferred_mean"]),
                       cut=float(r["cut_mean"]), unpaid=float(r["unpaid_mean"]),
                       runout_month=float(str(date)[5:7]) if isinstance(date, str) and date else np.nan)
        rows.append(row)
    return pd.DataFrame(rows)


def targets_table(run: Run, policy: Policy) -> pd.DataFrame:
    """Every quantified target of the text, and where the simulation speaks to it, its simulated value
    (the run's calibration statistic times the target's factor) and whether that statistic set a parameter."""
    calibration = run["calibration"].set_index("target") if "calibration" in run else pd.DataFrame()
    rows = []
    for target in policy.targets:
        row = {"target": target.id, "article": target.article, "domain": target.domain, "value": target.value,
               "stretch": target.stretch, "unit": target.unit, "comparison": target.comparison, "quote": target.quote,
               "simulated": np.nan, "role": "", "how": ""}
        link = target.progress
        if link is not None and link.calibration in calibration.index:
            row.update(simulated=float(calibration.loc[link.calibration, "mean"]) * link.factor,
                       role=str(calibration.loc[link.calibration, "role"]), how=link.why)
        rows.append(row)
    return pd.DataFrame(rows)


def targets_display(table: pd.DataFrame, policy: Policy, lang: str) -> pd.DataFrame:
    t = language.labels(lang)

    def amount(value: float, unit: str) -> str:
        if unit.startswith("ratio"):
            return f"{value:.1%}".replace(".0%", "%")
        return f"{value:,.6g} {unit}"
    rows = list(table.itertuples())
    return pd.DataFrame({
        t["target_article"]: [t["article_n"].format(n=int(r.article)) if pd.notna(r.article) else "—" for r in rows],
        t["domain"]: [domain_name(policy, r.domain, lang) for r in rows],
        t["target_quote"]: [model_text(r.quote, lang) for r in rows],
        t["target_value_unit"]: [f"{t['comparison_' + r.comparison]} {amount(r.value, r.unit)}" for r in rows],
        t["target_simulated"]: [amount(r.simulated, r.unit) if np.isfinite(r.simulated) else t["target_not_simulated"]
                                for r in rows],
        t["role"]: [t[f"role_{r.role}"] if r.role else "—" for r in rows],
    })


def design_rules_table(run: Run) -> pd.DataFrame:
    """The rules a saved design turns down, first cut (at the most ample budget) first, then deepest cut."""
    stage = run.stage("design")
    if stage is None:
        return pd.DataFrame()
    rules = stage["rules"]
    cut = rules[rules["latitude"] & (rules["cut"] > 1e-6)].copy()
    if "first_cut_at" not in cut:
        cut["first_cut_at"] = np.nan
    return cut.sort_values(["first_cut_at", "cut", "given_up"], ascending=False, kind="stable", na_position="last")


def design_lines_table(run: Run) -> pd.DataFrame:
    """Each domain of a saved design before and after, with the reallocation where there is one."""
    stage = run.stage("design")
    if stage is None:
        return pd.DataFrame()
    lines = stage["lines"]
    out = lines[lines["kind"] == "domain"].copy()
    if "reallocation" in stage:
        out = out.merge(stage["reallocation"], left_on="line", right_on="domain", how="left", suffixes=("", "_r"))
    return out


def design_path_table(run: Run) -> pd.DataFrame:
    """The nested design path of a saved design, for the rules it ever turns down (empty without a design)."""
    stage = run.stage("design")
    if stage is None or "path" not in stage:
        return pd.DataFrame(columns=["factor", "rule", "intensity"])
    path = stage["path"]
    cut = path.groupby("rule")["intensity"].min() < 1.0 - 1e-6
    return path[path["rule"].map(cut)].reset_index(drop=True)


def design_display(rules: pd.DataFrame, lines: pd.DataFrame, policy: Policy, lang: str
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The design's two tables as a reader sees them (the same strings in the terminal and the report)."""
    t = language.labels(lang)
    shown_rules = pd.DataFrame({
        t["design_rule"]: [f"{article_name(policy, int(r.article), lang)} {r.rule}" for r in rules.itertuples()],
        t["domain"]: [domain_name(policy, r.domain, lang) for r in rules.itertuples()],
        t["design_intensity"]: [f"{r.intensity:.0%}" for r in rules.itertuples()],
        t["design_floor"]: [f"{r.floor:.0%}" for r in rules.itertuples()],
        t["design_given_up"]: [yi(r.given_up) for r in rules.itertuples()],
        t["design_first_cut"]: [t["design_never"] if not np.isfinite(r.first_cut_at) else f"{r.first_cut_at:.1f}"
                                for r in rules.itertuples()],
    })
    shown_lines = {
        t["domain"]: [domain_name(policy, r.line, lang) for r in lines.itertuples()],
        t["design_budget_yi"]: [yi(r.budget_after) for r in lines.itertuples()],
        t["design_claims_before"]: [yi(r.claims_before) for r in lines.itertuples()],
        t["design_claims_after"]: [yi(r.claims_after) for r in lines.itertuples()],
        t["design_p_before"]: [share(r.p_overrun_before) for r in lines.itertuples()],
        t["design_p_after"]: [share(r.p_overrun_after) for r in lines.itertuples()],
        t["design_cvar_before"]: [yi(r.cvar_before) for r in lines.itertuples()],
        t["design_cvar_after"]: [yi(r.cvar_after) for r in lines.itertuples()],
        t["design_shadow"]: [f"{r.shadow_price_budget:.2f}" for r in lines.itertuples()],
    }
    if "change" in lines:
        shown_lines[t["design_change_yi"]] = [yi(r.change) for r in lines.itertuples()]
    return shown_rules, pd.DataFrame(shown_lines)


def design_intro(run: Run, lang: str) -> str:
    t = language.labels(lang)
    settings = run.stage("design").manifest.get("settings", {})
    level, tol = settings.get("level", 0.95), settings.get("tolerance", 0.01)
    return t["design_intro"].format(tail=f"{1 - level:.0%}", tol=f"{tol:.0%}" if tol >= 0.01 else f"{tol:.1%}")


def years_table(run: Run) -> pd.DataFrame:
    """Year x domain x origin: mean district-paid claims (萬元) of a multi-year run (empty for one year)."""
    if "years_summary" not in run:
        return pd.DataFrame(columns=["year", "domain", "origin", "mean"])
    return run["years_summary"][["year", "domain", "origin", "mean", "p5", "p95"]].copy()


def years_display(run: Run, lang: str) -> dict[str, pd.DataFrame]:
    """A multi-year run's tables as a reader sees them (the same strings in the terminal and the report):
    claims by year and origin, the commitments, each year's budget and risk, and the carry-over."""
    if "years_summary" not in run:
        return {}
    t = language.labels(lang)
    policy = run.policy()
    groups = group_labels(run, lang)
    domains = list(policy.domain_keys)
    summary = run["years_summary"]
    wide = summary.pivot_table(index="year", columns="origin", values="mean", aggfunc="sum", observed=False,
                               fill_value=0.0)
    claims = pd.DataFrame({t["year"]: wide.index.astype(int)})
    for origin in ("new", "commitment"):
        claims[t[f"origin_{origin}"]] = [yi(v) for v in wide.get(origin, pd.Series(0.0, wide.index))]
    claims[t["years_total"]] = [yi(v) for v in wide.sum(axis=1)]
    c = run["commitments"]
    commitments = pd.DataFrame({
        t["domain"]: [domain_name(policy, d, lang) for d in c["domain"]],
        t["granted"]: c["granted"].astype(int), t["due"]: c["year"].astype(int),
        t["mean_yi"]: [yi(v) for v in c["mean"]], "P5": [yi(v) for v in c["p5"]],
        "P50": [yi(v) for v in c["p50"]], "P95": [yi(v) for v in c["p95"]],
        t["from_assumptions"]: [share(v) if np.isfinite(v) else "—" for v in c["from_assumptions"]],
        t["driver"]: [t["driver_explains"].format(group=groups.get(k, k), share=share(v)) if k else "—"
                      for k, v in zip(c["driver"], c["driver_share"])]})
    b = run["years_budget"].copy()
    b["order"] = b["domain"].map({d: i for i, d in enumerate(domains)})
    b = b.sort_values(["year", "order"], kind="stable")
    budget = pd.DataFrame({
        t["year"]: b["year"].astype(int), t["domain"]: [domain_name(policy, d, lang) for d in b["domain"]],
        t["design_budget_yi"]: [yi(v) for v in b["claims_budget"]],
        t["years_claims"]: [yi(v) for v in b["claims"]], t["years_committed"]: [yi(v) for v in b["commitments"]],
        t["p_overrun"]: [share(v) for v in b["p_overrun"]]})
    if "years_coverage" in run:
        sized = run["years_coverage"].set_index(["year", "domain"])["cvar_budget"]
        budget[t["years_cvar"]] = [yi(sized.get((y, d), np.nan)) for y, d in zip(b["year"], b["domain"])]
    out = {"claims": claims, "commitments": commitments, "budget": budget}
    if "years_numbers" in run:
        n = run["years_numbers"]
        out["numbers"] = pd.DataFrame({
            t["years_numbers"]: n["number"], t["years_number"]: [f"{v:g}" for v in n["value"]],
            t["years_range"]: [f"{lo:g}–{hi:g}" if np.isfinite(lo) else "—" for lo, hi in zip(n["low"], n["high"])],
            t["years_why"]: n["why"]})
    if "years_process" in run:
        carry = run["years_process"].groupby(["year", "domain"], observed=True)["carried_out"].mean().reset_index()
        carry = carry[carry["carried_out"] > 0]
        out["carry"] = pd.DataFrame({t["year"]: carry["year"].astype(int),
                                     t["domain"]: [domain_name(policy, d, lang) for d in carry["domain"]],
                                     t["carried_out"]: [yi(v) for v in carry["carried_out"]]})
    return out


def plot_years(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """One bar per year, stacked by domain: the year's new awards solid, commitments hatched (億元)."""
    t = language.labels(lang)
    years = sorted(table["year"].unique())
    bottom = np.zeros(len(years))
    for domain in policy.domain_keys:
        for origin in ("new", "commitment"):
            part = table[(table["domain"] == domain) & (table["origin"] == origin)].set_index("year")["mean"]
            values = part.reindex(years, fill_value=0.0).to_numpy(float) / 1e4
            if not values.any():
                continue
            ax.bar([str(y) for y in years], values, bottom=bottom, color=domain_colour(policy, domain),
                   hatch="//" if origin == "commitment" else None, edgecolor="white", linewidth=0.5,
                   label=f"{domain_name(policy, domain, lang)} · {t[f'origin_{origin}']}")
            bottom += values
    ax.set_xlabel(t["year"])
    ax.set_ylabel(t["mean_yi"])
    ax.legend(fontsize=7, ncol=2, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def month_name(month: float, lang: str) -> str:
    if not np.isfinite(month):
        return "—"
    if language.chinese(lang):
        return f"{int(month)}月"
    return ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")[int(month) - 1]


def answer_display(table: pd.DataFrame, policy: Policy, lang: str,
                   groups: dict[str, str] | None = None) -> pd.DataFrame:
    """The answer table as a reader sees it: headings and words in ``lang``, money in 億元 (two decimals),
    shares in whole percent; the same strings in the terminal, the report and ``compare``."""
    t = language.labels(lang)
    groups = groups or {}

    def overrun(r) -> str:
        if np.isnan(r.p_overrun_p10):
            return share(r.p_overrun)
        return f"{share(r.p_overrun)} ({share(r.p_overrun_p10)}–{share(r.p_overrun_p90)})"

    def runout_month(r) -> str:
        return month_name(r.runout_month, lang) if r.p_runout >= RUNOUT_SHOWN else "—"
    rows = list(table.itertuples())
    shown = {
        t["domain"]: [domain_name(policy, r.domain, lang) for r in rows],
        t["claims_yi"]: [yi(r.claims) for r in rows],
        t["budget_yi"]: [yi(r.claims_budget) for r in rows],
        t["gap_yi"]: [yi(r.gap) for r in rows],
        t["p_overrun"]: [overrun(r) for r in rows],
        t["verdict"]: [t.get(f"verdict_{r.verdict}", r.verdict) if r.verdict else "—" for r in rows],
    }
    if table["p_runout"].notna().any():
        shown.update({t["p_runout"]: [share(r.p_runout) for r in rows],
                      t["runout_month"]: [runout_month(r) for r in rows],
                      t["deferred_yi"]: [yi(r.deferred) for r in rows],
                      t["cut_yi"]: [yi(r.cut) for r in rows],
                      t["unpaid_yi"]: [yi(r.unpaid) for r in rows]})
    if table["driver"].astype(bool).any():
        shown[t["driver"]] = [groups.get(r.driver, r.driver) or "—" for r in rows]
    return pd.DataFrame(shown)


def definitions(lang: str, process: bool = True) -> list[str]:
    """Every term of the answer table, defined once in words a bureau uses."""
    t = language.labels(lang)
    keys = ["def_claims", "def_gross", "def_budget", "def_gap", "def_p_overrun"]
    return [t[k] for k in keys + (["def_runout", "def_deferred"] if process else [])]


def headline_sentences(table: pd.DataFrame, policy: Policy, labels: dict[str, str], lang: str) -> list[str]:
    """One plain sentence per domain of the answer table: how likely an overrun is, how much that depends
    on the assumptions, and which assumption drives it."""
    t = language.labels(lang)
    out = []
    for r in table.itertuples():
        name = domain_name(policy, r.domain, lang)
        verdict = t.get(f"verdict_long_{r.verdict}", r.verdict)
        driver = labels.get(r.driver, r.driver) if r.driver else ""
        spread = not pd.isna(r.p_overrun_p10)
        if lang == "en":
            text = f"{name}: an overrun in {share(r.p_overrun)} of simulated years"
            if spread:
                text += (f" with the assumptions drawn from their ranges; given one set of assumptions, "
                         f"{share(r.p_overrun_p10)} to {share(r.p_overrun_p90)} (P10-P90 over the sets), so {verdict}")
                text += f"; the assumption that moves it most is {driver}." if driver else "."
            else:
                text += f" with {t['assumptions_fixed']}."
        else:
            text = f"{name}{t['colon']}{share(r.p_overrun)}的模拟年份超支"
            if spread:
                text += (f"(假设在合理范围内变动);给定一组假设时超支概率为{share(r.p_overrun_p10)}至"
                         f"{share(r.p_overrun_p90)}(各组假设的P10至P90),{verdict}")
                text += f";影响最大的假设是“{driver}”。" if driver else "。"
            else:
                text += f"({t['assumptions_fixed']})。"
            text = language.own_text(text, lang)
        out.append(text)
    return out


def article_table(run: Run) -> pd.DataFrame:
    """Per article: mean and P5/P95 of district-paid claims, its domain, and its share of the domain's claims
    budget; articles with claims only, largest first."""
    summary = run.summary("article")
    policy = run.policy()
    domains = [policy.article(a).domain for a in summary["article"]]
    budgets = [policy.domain(d).claims_budget.value for d in domains]
    table = pd.DataFrame({"article": summary["article"], "domain": domains, "mean": summary["district_mean"],
                          "p5": summary["district_p5"], "p95": summary["district_p95"],
                          "share_of_budget": summary["district_mean"] / np.asarray(budgets, dtype=np.float64)})
    return table[table["mean"] > 0].sort_values("mean", ascending=False, kind="stable", ignore_index=True)


def domain_claims_table(run: Run) -> pd.DataFrame:
    """Per domain: district-paid claims (mean, P5/P50/P95), the claims budget and P(overrun)."""
    summary = run.summary("domain")
    return pd.DataFrame({"domain": summary["domain"], "mean": summary["district_mean"], "p5": summary["district_p5"],
                         "p50": summary["district_p50"], "p95": summary["district_p95"],
                         "claims_budget": summary["claims_budget"], "p_overrun": summary["p_overrun"]})


def cash_fan_table(run: Run) -> pd.DataFrame:
    """Cumulative payments by domain and month (P5/P50/P95) with the claims budget, P(runs out), its median
    month and the mean amount deferred."""
    if "process_cash_fan" not in run:
        return pd.DataFrame()
    answer = answer_table(run).set_index("domain")
    fan = run["process_cash_fan"].copy()
    for column in ("claims_budget", "p_runout", "runout_month", "deferred"):
        fan[column] = fan["domain"].map(answer[column])
    return fan


def waits_table(run: Run) -> pd.DataFrame:
    return run["process_waits_bureau"] if "process_waits_bureau" in run else pd.DataFrame()


def queue_table(run: Run) -> pd.DataFrame:
    """Daily mean queues of the bureaus that queue (at least :data:`QUEUEING` applications waiting on some
    day); the others review applications as they arrive."""
    if "process_queues" not in run:
        return pd.DataFrame()
    queues = run["process_queues"]
    busy = queues.groupby("bureau", sort=False)["waiting_mean"].max()
    return queues[queues["bureau"].isin(busy[busy >= QUEUEING].index)].reset_index(drop=True)


def needed_table(run: Run) -> pd.DataFrame:
    """Per domain: the claims budget, the money that covers district-paid claims in 95% of simulated years
    (P95 of claims), and what would have to be added."""
    d = domain_claims_table(run)
    return pd.DataFrame({"domain": d["domain"], "claims_budget": d["claims_budget"], "needed": d["p95"],
                         "add": np.maximum(d["p95"] - d["claims_budget"], 0.0)})


def verify_first_table(run: Run, lang: str) -> pd.DataFrame:
    """For the domain most at risk, the assumption groups by total Sobol index (largest first), with intervals."""
    stage, head = run.stage("sensitivity"), headline_table(run)
    source = stage if stage is not None else run
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
    labels, texts = group_labels(run, lang), group_texts(run, lang)
    table = run["assumption_numbers"]
    return table.assign(label=[labels.get(g, g) for g in table["group"]],
                        what=[texts.get(g, "") for g in table["group"]])


def calibration_table(run: Run) -> pd.DataFrame:
    return run["calibration"] if "calibration" in run else pd.DataFrame()


# ----------------------------------------------------------------------------- plots (drawing only)
def yi_axis(axis, digits: int = 1) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x / 1e4:,.{digits}f}"))


def wan_axis(axis) -> None:
    from matplotlib.ticker import FuncFormatter

    axis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))


def plot_claims(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """District-paid claims per domain (億元) with P5-P95 lines, the claims budget and P(overrun)."""
    t = language.labels(lang)
    y = np.arange(len(table))
    ax.barh(y, table["mean"], color=[domain_colour(policy, d) for d in table["domain"]], alpha=0.85, label=t["mean"])
    ax.errorbar(table["p50"], y, xerr=[table["p50"] - table["p5"], table["p95"] - table["p50"]], fmt="none",
                ecolor="black", capsize=4, label=t["band"])
    ax.scatter(table["claims_budget"], y, marker="|", s=500, color="#C44E52", linewidths=3, label=t["budget"], zorder=3)
    right = float(np.maximum(table["p95"], table["claims_budget"]).max())
    for yi_, r in enumerate(table.itertuples()):
        ax.annotate(f"{t['p_overrun']} {share(r.p_overrun)}", (max(r.claims_budget, r.p95), yi_), xytext=(8, -4),
                    textcoords="offset points", fontsize=8)
    ax.set_xlim(0, right * 1.3)
    ax.set_yticks(y, [domain_name(policy, d, lang) for d in table["domain"]])
    ax.invert_yaxis()
    ax.set_xlabel(f"{t['claims_wan'].split('(')[0]}({t['claims_yi_axis']})" if language.chinese(lang)
                  else f"Expected claims, district-paid ({t['claims_yi_axis']})")
    yi_axis(ax.xaxis)
    ax.legend(loc="lower right", fontsize=8)


def plot_articles(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """Mean district-paid claims per article (萬元, linear), largest first, coloured by domain, with P5-P95
    lines and each article's share of its domain's claims budget."""
    from matplotlib.patches import Patch

    t = language.labels(lang)
    y = np.arange(len(table))
    ax.barh(y, table["mean"], color=[domain_colour(policy, d) for d in table["domain"]])
    ax.errorbar(table["mean"], y, xerr=[table["mean"] - table["p5"], table["p95"] - table["mean"]], fmt="none",
                ecolor="black", capsize=2, linewidth=0.8)
    for yi_, r in enumerate(table.itertuples()):
        ax.annotate(f"{language.wan(r.mean)} ({t['share_of_budget'].format(share=share(r.share_of_budget))})",
                    (r.p95, yi_), xytext=(4, -3), textcoords="offset points", fontsize=7)
    ax.set_xlim(0, float(table["p95"].max()) * 1.35 if len(table) else 1)
    ax.set_yticks(y, [article_name(policy, a, lang) for a in table["article"]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(t["claims_wan"])
    wan_axis(ax.xaxis)
    present = [key for key in policy.domain_keys if key in set(table["domain"])]
    ax.legend(handles=[Patch(color=domain_colour(policy, k), label=domain_name(policy, k, lang)) for k in present],
              fontsize=8, loc="lower right")


def plot_cash(table: pd.DataFrame, policy: Policy, lang: str, axes) -> None:
    """Small multiples per domain: median cumulative payment, the P5-P95 band, the budget, the median
    run-out month (where it runs out in at least 5% of years) and the mean deferred at year end."""
    t = language.labels(lang)
    for ax, key in zip(axes, policy.domain_keys):
        part = table[table["domain"] == key].sort_values("month")
        colour = domain_colour(policy, key)
        ax.fill_between(part["month"], part["cumulative_p5"], part["cumulative_p95"], color=colour, alpha=0.25,
                        label=t["band"])
        ax.plot(part["month"], part["cumulative_p50"], color=colour, label=t["median"])
        budget = float(part["claims_budget"].iloc[0])
        ax.axhline(budget, color="#C44E52", linestyle="--", linewidth=1.2, label=t["budget"])
        p_runout, month = float(part["p_runout"].iloc[0]), float(part["runout_month"].iloc[0])
        if p_runout >= RUNOUT_SHOWN and np.isfinite(month):
            ax.plot([month], [budget], marker="v", color="#FF7F0E", markersize=9, linestyle="none",
                    label=t["runout_marker"], zorder=4)
        deferred = float(part["deferred"].iloc[0])
        if deferred >= 0.5:
            ax.text(0.02, 0.95, t["deferred_note"].format(amount=language.wan(deferred)), transform=ax.transAxes,
                    fontsize=7,
                    va="top", color="#C44E52")
        ax.set_title(domain_name(policy, key, lang), fontsize=9)
        ax.set_xticks(range(1, 13, 2))
        ax.set_ylim(0, max(budget, float(part["cumulative_p95"].max())) * 1.15)
        wan_axis(ax.yaxis)
        ax.tick_params(labelsize=7)


def plot_waits(table: pd.DataFrame, labels: dict[str, str], lang: str, ax) -> None:
    t = language.labels(lang)
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["days_to_payment_p50"], height=0.4, label=t["p50"], color="#55A868")
    ax.barh(y + 0.2, table["days_to_payment_p95"], height=0.4, label=t["p95"], color="#DD8452")
    ax.set_yticks(y, [labels.get(b, b) for b in table["bureau"]])
    ax.invert_yaxis()
    ax.set_xlabel(t["days"])
    ax.legend(fontsize=8, loc="lower right")


def plot_queues(table: pd.DataFrame, labels: dict[str, str], lang: str, axes) -> None:
    """One small panel per bureau that queues: mean applications waiting each day."""
    t = language.labels(lang)
    for ax, (bureau, part) in zip(axes, table.groupby("bureau", sort=False)):
        ax.fill_between(part["day"], 0, part["waiting_mean"], color="#4C72B0", alpha=0.6)
        ax.set_title(labels.get(bureau, bureau), fontsize=9)
        ax.set_xlabel(t["day"], fontsize=8)
        ax.set_ylabel(t["waiting"], fontsize=8)
        ax.tick_params(labelsize=7)


def plot_needed(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """The claims budget against the money that covers claims in 95% of years, with the amount to add."""
    t = language.labels(lang)
    y = np.arange(len(table))
    ax.barh(y - 0.2, table["claims_budget"], height=0.4, color="#BBBBBB", label=t["budget"])
    ax.barh(y + 0.2, table["needed"], height=0.4, color=[domain_colour(policy, d) for d in table["domain"]],
            label=t["needed"])
    for yi_, r in enumerate(table.itertuples()):
        note = t["add"].format(amount=yi(r.add)) if r.add > 0 else t["enough"]
        ax.annotate(note, (max(r.needed, r.claims_budget), yi_), xytext=(6, -3), textcoords="offset points",
                    fontsize=8, color="#C44E52" if r.add > 0 else "#444444")
    ax.set_xlim(0, float(np.maximum(table["needed"], table["claims_budget"]).max()) * 1.3)
    ax.set_yticks(y, [domain_name(policy, d, lang) for d in table["domain"]])
    ax.invert_yaxis()
    ax.set_xlabel(t["claims_yi_axis"])
    yi_axis(ax.xaxis)
    ax.legend(fontsize=8, loc="lower right")


def plot_verify_first(table: pd.DataFrame, lang: str, ax, top: int = 12) -> None:
    """Total Sobol indices (bars, with 95% intervals) and first-order indices (dots) of the top groups."""
    t = language.labels(lang)
    shown = pd.concat([table[table["group"] != ALEATORY].head(top), table[table["group"] == ALEATORY]])
    y = np.arange(len(shown))
    total = shown["total"].clip(lower=0)
    ax.barh(y, total, color=["#8C8C8C" if g == ALEATORY else "#C44E52" for g in shown["group"]],
            label=t["total_index"])
    below, above = (total - shown["total_low"]).clip(lower=0), (shown["total_high"] - total).clip(lower=0)
    ax.errorbar(total, y, xerr=[below, above], fmt="none", ecolor="black", capsize=2, linewidth=0.8)
    ax.scatter(shown["first"].clip(lower=0), y, color="black", s=12, zorder=3, label=t["first_index"])
    ax.set_yticks(y, shown["label"], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(0, max(1.0, float(shown["total_high"].max())))
    ax.set_xlabel(t["index_axis"])
    ax.legend(fontsize=8, loc="lower right")


# ----------------------------------------------------------------------------- the report
def _grid(count: int, columns: int = 3):
    import matplotlib.pyplot as plt

    columns = max(1, min(columns, count))
    rows = -(-count // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(10, 2.6 * rows + 0.6), squeeze=False)
    for ax in axes.ravel()[count:]:
        ax.set_visible(False)
    return fig, axes.ravel()[:count]


def plot_design_path(table: pd.DataFrame, policy: Policy, lang: str, ax) -> None:
    """Each rule's designed intensity against the budget multiple, tighter to the right."""
    t = language.labels(lang)
    order = table.groupby("rule")["intensity"].mean().sort_values().index
    for rule in order:  # one rule in its domain's colour; several in the colour cycle, to tell them apart
        part = table[table["rule"] == rule].sort_values("factor")
        ax.plot(part["factor"], part["intensity"] * 100, marker=".", lw=1.2, label=rule,
                color=domain_colour(policy, policy.rule(rule).domain) if len(order) == 1 else None)
    ax.invert_xaxis()
    ax.set_xlabel(t["design_factor"])
    ax.set_ylabel(t["design_share"] + " (%)")
    ax.set_ylim(0, 105)
    ax.legend(fontsize=7, ncol=2, frameon=False, loc="lower left")


def _one_axis(size: tuple[float, float], plot: Callable, *args) -> Callable:
    """A function that draws ``plot(*args, ax)`` on a new figure of ``size`` inches and returns the figure."""
    def draw():
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=size)
        plot(*args, ax)
        return fig
    return draw


def _figures(run: Run, policy: Policy, lang: str) -> tuple[dict[str, pd.DataFrame], dict[str, Callable]]:
    """Every table the report shows, and for each figure a function that draws it (called one at a time, so
    the report stage can show progress)."""

    t = language.labels(lang)
    tables = {"answer": answer_table(run), "domain_claims": domain_claims_table(run), "articles": article_table(run),
              "cash_fan": cash_fan_table(run), "waits": waits_table(run), "queues": queue_table(run),
              "needed": needed_table(run), "headline": headline_table(run),
              "verify_first": verify_first_table(run, lang),
              "assumptions": assumptions_table(run, lang), "calibration": calibration_table(run)}
    bureaus = bureau_labels(run, lang)
    draw: dict[str, Callable] = {
        "claims": _one_axis((9, 4.2), plot_claims, tables["domain_claims"], policy, lang),
        "articles": _one_axis((10, 0.32 * len(tables["articles"]) + 1.2), plot_articles, tables["articles"], policy,
                              lang)}
    if len(tables["cash_fan"]):
        def cash():
            fig, axes = _grid(len(policy.domain_keys))
            plot_cash(tables["cash_fan"], policy, lang, axes)
            handles, names = axes[0].get_legend_handles_labels()
            for ax in axes[1:]:  # the run-out marker may appear in another panel only
                for h, n in zip(*ax.get_legend_handles_labels()):
                    if n not in names:
                        handles.append(h)
                        names.append(n)
            fig.legend(handles, names, loc="lower center", ncol=len(names), fontsize=8, frameon=False)
            fig.supxlabel(t["month"], fontsize=9, y=0.06)
            fig.supylabel(t["cumulative_wan"], fontsize=9)
            fig.tight_layout(rect=(0, 0.08, 1, 1))
            return fig
        draw["cash"] = cash
        draw["waits"] = _one_axis((8, 0.45 * len(tables["waits"]) + 1.2), plot_waits, tables["waits"], bureaus, lang)
    if len(tables["queues"]):
        def queues():
            fig, axes = _grid(tables["queues"]["bureau"].nunique())
            plot_queues(tables["queues"], bureaus, lang, axes)
            return fig
        draw["queues"] = queues
    draw["needed"] = _one_axis((9, 4), plot_needed, tables["needed"], policy, lang)
    if len(tables["verify_first"]):
        draw["verify"] = _one_axis((9, 5.5), plot_verify_first, tables["verify_first"], lang)
    tables["years"] = years_table(run)
    if len(tables["years"]):
        draw["years"] = _one_axis((10, 4.2), plot_years, tables["years"], policy, lang)
    tables["design_path"] = design_path_table(run)
    if len(tables["design_path"]):
        draw["design"] = _one_axis((9, 4.8), plot_design_path, tables["design_path"], policy, lang)
    return tables, draw


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    if not fig.get_layout_engine():
        fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def _draw_png(draw: dict[str, Callable], name: str) -> bytes:
    """One figure of the report as PNG bytes (an executor's task: the style is set where it runs)."""
    style()
    return _png(draw[name]())


def draw_figures(run: Run, lang: str, progress: bool | Callable = False,
                 side_by_side: Callable | None = None) -> tuple[dict, dict[str, bytes]]:
    """The report's tables and its figures as PNG bytes, in ``lang`` (a bar, or a callback, per figure).

    ``side_by_side``: an executor's ``map`` (task, shared, items, progress) that draws the figures at once in
    this machine's worker processes (the pipeline passes its own when they are forked from this one); without it,
    here, one by one.  The same bytes either way.
    """
    lang = language.check(lang)
    style()
    tables, draw = _figures(run, run.policy(), lang)
    names = list(draw)
    with progress_bar(progress, len(draw), f"5 report ({lang})") as bar:
        if side_by_side is not None and len(names) > 1:
            pngs = dict(zip(names, side_by_side(_draw_png, draw, names, progress=bar), strict=True))
        else:
            pngs = {}
            for name in names:
                pngs[name] = _draw_png(draw, name)
                bar(1)
    return tables, pngs


def write_report(run: Run | str | Path, lang: str = language.DEFAULT, out: str | Path | None = None,
                 force: bool = True, progress: bool | Callable = False, side_by_side: Callable | None = None
                 ) -> Path:
    """Write ``report.<lang>.html`` (figures and font embedded), the figures as ``<name>.<lang>.png`` and the
    report's tables into ``RUN_DIR/report`` (or ``out``), keeping the files of other languages there.
    Reads the run's tables; computes nothing but the drawing (side by side: :func:`draw_figures`)."""
    lang = language.check(lang)
    run = run if isinstance(run, Run) else load(run)
    tables, pngs = draw_figures(run, lang, progress, side_by_side)
    page = _html(run, run.policy(), lang, tables, pngs)
    out = Path(out) if out is not None else Path(run.path) / "report"
    files = _other_languages(out, lang)
    files.update({f"report.{lang}.html": page, **{f"{name}.{lang}.png": data for name, data in pngs.items()}})
    languages = sorted({name.split(".")[1] for name in files if name.startswith("report.")})
    neutral = {k: v for k, v in tables.items() if len(v) and k not in ("verify_first", "assumptions")}
    written = write_run(out, neutral, {"kind": "fiscalsim report", "run": str(run.path), "languages": languages,
                                       "files": sorted(files)}, force=force, files=files)
    return written / f"report.{lang}.html"


def _other_languages(folder: Path, lang: str) -> dict[str, bytes]:
    """The files of the other languages already in a report folder (kept when one language is redrawn)."""
    if not (folder / MANIFEST).is_file():
        return {}
    keep = {}
    for path in folder.iterdir():
        parts = path.name.split(".")
        if len(parts) == 3 and parts[1] in language.LANGS and parts[1] != lang and parts[2] in ("html", "png"):
            keep[path.name] = path.read_bytes()
    return keep


# ----------------------------------------------------------------------------- HTML
def font_face() -> str:
    """The CSS that embeds the CJK font subset, so the page needs no font of the reader's machine."""
    data = base64.b64encode(FONT_FILE.read_bytes()).decode()
    return (f'@font-face{{font-family:"{FONT_FAMILY}";src:url(data:font/otf;base64,{data}) format("opentype");'
            "font-display:block}")


CSS = (f'body{{font-family:"{FONT_FAMILY}",sans-serif;max-width:1100px;margin:2em auto;color:#222;line-height:1.5}}'
       "table{border-collapse:collapse;margin:0.5em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
       "td:first-child,th:first-child,td.w{text-align:left}th{background:#f4f4f4}figure{margin:1.5em 0}"
       "img{max-width:100%}figcaption{font-size:0.9em;color:#444;max-width:900px}"
       ".definitions{font-size:0.9em;color:#333}.note{font-size:0.9em;color:#555}")


def _cell(value) -> str:
    """A table cell: figures right-aligned, words left-aligned."""
    text = str(value)
    numeric = bool(text) and (text[0].isdigit() or text[0] in "+-—<>.")
    return f'<td>{html.escape(text)}</td>' if numeric else f'<td class="w">{html.escape(text)}</td>'


def table_html(table: pd.DataFrame, css_class: str = "") -> str:
    """A table of strings (already formatted) as HTML."""
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in table.columns)
    body = "".join("<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.itertuples(index=False))
    return f'<table class="{css_class}"><tr>{head}</tr>{body}</table>'


def _rows_html(table: pd.DataFrame, columns: list[tuple[str, str, Callable]]) -> str:
    """An HTML table of selected columns: (heading, column name, formatter)."""
    return table_html(pd.DataFrame({h: [fmt(v) for v in table[c]] for h, c, fmt in columns}))


def _figure_html(name: str, data: bytes, lang: str, caption: str) -> str:
    t = language.labels(lang)
    title = t.get(f"fig_{name}", name)
    return (f'<figure><h3>{html.escape(title)}</h3><img alt="{html.escape(title)}" '
            f'src="data:image/png;base64,{base64.b64encode(data).decode()}" data-file="{name}.{lang}.png">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _verify_html(run: Run, policy: Policy, lang: str, table: pd.DataFrame, image: str) -> str:
    if not len(table):
        return ""
    t = language.labels(lang)
    interval = "[{:.2f}, {:.2f}]".format
    shown = pd.concat([table.head(8), table.tail(1)]).assign(
        interval=lambda v: [interval(a, b) for a, b in zip(v["total_low"], v["total_high"])])
    intro = t["verify_intro"].format(domain=domain_name(policy, shown["domain"].iloc[0], lang),
                                     measure=t[f"measure_{shown['measure'].iloc[0]}"])
    return (f"<h2>{t['fig_verify']}</h2><p>{html.escape(intro)}</p>{image}"
            + _rows_html(shown, [(t["group"], "label", str), (t["total_index"], "total", "{:.2f}".format),
                                 ("95%", "interval", str), (t["first_index"], "first", "{:.2f}".format)]))


def _assumptions_html(table: pd.DataFrame, lang: str) -> str:
    if not len(table):
        return ""
    t = language.labels(lang)
    mode = {m: t[f"mode_{m}"] for m in ("range", "factor", "shift", "tilt")}
    return _rows_html(table, [
        (t["group"], "label", str), (t["where"], "where", str), (t["value"], "point", str),
        (t["mode"], "mode", lambda m: mode.get(m, m)), (t["low"], "low", "{:g}".format),
        (t["high"], "high", "{:g}".format), (t["what"], "what" if language.chinese(lang) else "why", str)])


def _calibration_html(table: pd.DataFrame, lang: str) -> str:
    if not len(table):
        return ""
    t = language.labels(lang)
    return _rows_html(table, [
        (t["target"], "target", str), (t["target_value"], "target_value", lambda x: f"{x:,.6g}"),
        (t["simulated"], "mean", lambda x: f"{x:,.6g}"), (t["role"], "role", lambda x: t[f"role_{x}"]),
        (t["evidence"], "evidence", lambda x: t.get(f"evidence_{x}", x)), (t["source"], "source", str)])


def _targets_html(run: Run, policy: Policy, lang: str) -> str:
    if not policy.targets:
        return ""
    t = language.labels(lang)
    table = targets_table(run, policy)
    note = t["targets_note"].format(n=len(table), m=int(table["simulated"].notna().sum()))
    return (f"<h2>{html.escape(t['targets_title'])}</h2><p class=\"note\">{html.escape(note)}</p>"
            + table_html(targets_display(table, policy, lang)))


def years_intro(run: Run, lang: str) -> str:
    t = language.labels(lang)
    first = run.manifest.get("years", [""])[0]
    renewal = t["years_renewed" if run.manifest.get("renewed", True) else "years_not_renewed"].format(first=first)
    return t["years_intro"].format(first=first, renewal=renewal)


def years_cvar_note(run: Run, lang: str) -> str:
    """What the budget to set aside means, with the run's own CVaR level and tolerance."""
    t = language.labels(lang)
    settings = run.manifest.get("settings", {})
    level, tolerance = settings.get("level", 0.95), settings.get("tolerance")
    unit = language.own_text("万元", lang) if language.chinese(lang) else "萬元"
    limit = t["years_cvar_limit"] if tolerance is None else f"{tolerance:,.0f} {unit}"
    return t["years_cvar_note"].format(tail=f"{1 - level:.0%}", limit=limit)


def _years_html(run: Run, lang: str, image: str = "") -> str:
    shown = years_display(run, lang)
    if not shown:
        return ""
    t = language.labels(lang)
    carry = (f"<h3>{html.escape(t['years_carry'])}</h3>{table_html(shown['carry'])}"
             if "carry" in shown and len(shown["carry"]) else "")
    return (f"<h2>{html.escape(t['years_title'])}</h2><p>{html.escape(years_intro(run, lang))}</p>"
            f"<h3>{html.escape(t['years_summary'])}</h3>{table_html(shown['claims'])}{image}"
            f"<h3>{html.escape(t['years_commitments'])}</h3>{table_html(shown['commitments'])}"
            f"<h3>{html.escape(t['years_budget'])}</h3>{table_html(shown['budget'])}"
            f"<p class=\"note\">{html.escape(years_cvar_note(run, lang))}</p>{carry}"
            + (f"<h3>{html.escape(t['years_numbers'])}</h3>{table_html(shown['numbers'])}" if "numbers" in shown
               else ""))


def _design_html(run: Run, policy: Policy, lang: str, image: str = "") -> str:
    if run.stage("design") is None:
        return ""
    t = language.labels(lang)
    rules, lines = design_display(design_rules_table(run), design_lines_table(run), policy, lang)
    cut = table_html(rules) if len(rules) else f"<p>{html.escape(t['design_none'])}</p>"
    path = f"{run.path}/design/scenario.toml" if run.path is not None else "design/scenario.toml"
    return (f"<h2>{html.escape(t['design_title'])}</h2><p>{html.escape(design_intro(run, lang))}</p>"
            f"<h3>{html.escape(t['design_rules'])}</h3>{cut}"
            f"<h3>{html.escape(t['design_lines'])}</h3>{table_html(lines)}{image}"
            f"<p class=\"note\">{html.escape(t['design_scenario'].format(path=path))}</p>")


def _html(run: Run, policy: Policy, lang: str, tables: dict[str, pd.DataFrame], pngs: dict[str, bytes]) -> str:
    t = language.labels(lang)
    m = run.manifest
    groups = group_labels(run, lang)
    answer = answer_display(tables["answer"], policy, lang, groups)
    sentences = "".join(f"<li>{html.escape(s)}</li>" for s in headline_sentences(tables["answer"], policy, groups,
                                                                                   lang))
    process = "process_runout_summary" in run
    terms = "".join(f"<li>{html.escape(s)}</li>" for s in definitions(lang, process))
    figure_order = [n for n in FIGURES if n in pngs and n not in ("verify", "design", "years")]
    verify_table = tables["verify_first"]
    captions = {name: t[f"cap_{name}"] for name in FIGURES}
    if len(verify_table):
        captions["verify"] = t["cap_verify"].format(domain=domain_name(policy, verify_table["domain"].iloc[0], lang),
                                                    measure=t[f"measure_{verify_table['measure'].iloc[0]}"])
    figures = "\n".join(_figure_html(n, pngs[n], lang, captions[n]) for n in figure_order)
    if process and "queues" not in pngs:
        figures += f'<p class="note">{html.escape(t["no_queues"])}</p>'
    verify = _verify_html(run, policy, lang, verify_table,
                          _figure_html("verify", pngs["verify"], lang, captions["verify"]) if "verify" in pngs else "")
    answer_numbers = tables["answer"]
    totals = t["totals"].format(gross=yi(answer_numbers["gross"].sum()), district=yi(answer_numbers["claims"].sum()))
    title = f"{report_title(policy, lang)}{t['colon']}{t['title']}"
    html_lang = {"zh-Hans": "zh-Hans", "zh-Hant": "zh-Hant", "en": "en"}[lang]
    return f"""<!DOCTYPE html>
<html lang="{html_lang}"><head><meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{font_face()}
{CSS}</style></head>
<body><h1>{html.escape(title)}</h1>
<p>{t['scenario']}{t['colon']}<b>{html.escape(scenario_title(run, lang))}</b>
· {m.get('replications')} {t['replications']} · {t['seed']} {m.get('seed')}
· {m.get('population'):,} {t['claimants']} · {html.escape(t['generated'])}
<code>{html.escape(str(run.path))}</code></p>
<h2>{html.escape(t['answer'])}</h2>
{table_html(answer, "answer")}
<p class="note">{html.escape(totals)}</p>
<h3>{html.escape(t['sentences'])}</h3><ul>{sentences}</ul>
<h3>{html.escape(t['definitions'])}</h3><ul class="definitions">{terms}</ul>
{figures}
{_years_html(run, lang, _figure_html("years", pngs["years"], lang, captions["years"]) if "years" in pngs else "")}
{verify}
{_design_html(run, policy, lang, _figure_html("design", pngs["design"], lang, captions["design"])
               if "design" in pngs else "")}
<h2>{html.escape(t['assumptions'])}</h2><p class="note">{html.escape(t['assumptions_note'])}</p>
{_assumptions_html(tables['assumptions'], lang)}
<h2>{html.escape(t['calibration'])}</h2><p class="note">{html.escape(t['calibration_note'])}</p>
{_calibration_html(tables['calibration'], lang)}
{_targets_html(run, policy, lang)}
</body></html>
"""


# ----------------------------------------------------------------------------- the in-year nowcast
def nowcast_domains_table(nc: Run) -> pd.DataFrame:
    """Per domain: the nowcast's figures beside the run's (read from the nowcast folder)."""
    return nc["domains"]


def interval_yi(low: float, high: float) -> str:
    """An interval of 萬元 written in 億元, as the nowcast's tables show it.

    >>> interval_yi(39452.0, 95769.0)
    '3.95–9.58'
    """
    return f"{yi(low)}–{yi(high)}"


def nowcast_answer_display(nc: Run, policy: Policy, lang: str) -> pd.DataFrame:
    """The nowcast per domain as a reader sees it (the same strings in the terminal, the report and
    ``compare``): year-end claims and payments at the run and now, P(overrun) before and after, the
    chance the budget runs out and the weight the data could be given."""
    t = language.labels(lang)
    rows = list(nowcast_domains_table(nc).itertuples())
    return pd.DataFrame({
        t["nowcast_domain"]: [domain_name(policy, r.domain, lang) for r in rows],
        t["nowcast_budget"]: [yi(r.claims_budget) for r in rows],
        t["nowcast_claims_before"]: [yi(r.prior_claims_mean) for r in rows],
        t["nowcast_claims_now"]: [f"{yi(r.claims_mean)} ({interval_yi(r.claims_p5, r.claims_p95)})" for r in rows],
        t["nowcast_paid_before"]: [interval_yi(r.prior_paid_p5, r.prior_paid_p95) for r in rows],
        t["nowcast_paid_now"]: [interval_yi(r.paid_p5, r.paid_p95) for r in rows],
        t["nowcast_overrun"]: [f"{share(r.prior_p_overrun)} → {share(r.p_overrun)}" for r in rows],
        t["nowcast_runout"]: [share(r.p_runout) + (f" ({r.runout_date_p50})" if r.runout_date_p50 and r.p_runout >=
                                                   RUNOUT_SHOWN else "") for r in rows],
        t["nowcast_from_assumptions"]: [share(r.paid_from_assumptions) for r in rows],
        t["nowcast_weight"]: [f"{r.beta:.2g}" for r in rows],
    })


def nowcast_assumptions_display(nc: Run, lang: str, top: int = 12) -> pd.DataFrame:
    """The assumptions the observations narrowed most (one number per group), prior beside posterior."""
    if "assumptions" not in nc:
        return pd.DataFrame()
    t = language.labels(lang)
    labels = group_labels(nc, lang)
    table = nowcast_assumptions_table(nc, top)
    number = "{:.4g}".format
    return pd.DataFrame({
        t["group"]: [labels.get(g, g) for g in table["group"]], t["nowcast_number"]: table["where"],
        t["nowcast_prior"]: [f"{number(a)}–{number(b)}" for a, b in zip(table["prior_p5"], table["prior_p95"])],
        t["nowcast_posterior"]: [f"{number(a)}–{number(b)}" for a, b in zip(table["p5"], table["p95"])],
        t["nowcast_narrowed"]: [share(max(x, 0.0)) for x in table["narrowed"]],
        t["nowcast_weight"]: [f"{b:.2g}" for b in table["beta"]]})


def nowcast_assumptions_table(nc: Run, top: int = 12) -> pd.DataFrame:
    """The ``top`` groups the observations narrowed most (each group's first number), with the prior and
    posterior P5-P95 on the 0-1 scale of the number's range."""
    table = nc["assumptions"].drop_duplicates("group").sort_values("narrowed", ascending=False, kind="stable")
    table = table.head(top).reset_index(drop=True)
    span = (table["high"] - table["low"]).where(lambda x: x > 0, 1.0)
    return table.assign(**{f"scaled_{c}": (table[c] - table["low"]) / span
                           for c in ("prior_p5", "prior_p95", "p5", "p50", "p95")})


def nowcast_narrowing_table(nc: Run) -> pd.DataFrame:
    """Year-end payments per domain and number of months observed (P5, P50, P95, 萬元)."""
    table = nc["narrowing"]
    return table[table["quantity"] == "paid"].reset_index(drop=True)


def nowcast_fit_table(nc: Run, top: int = 10) -> pd.DataFrame:
    """The observed totals the simulation finds hardest to produce (smallest tail probability first)."""
    return nc["fit"].sort_values("tail_probability", kind="stable").head(top).reset_index(drop=True)


def nowcast_fit_display(nc: Run, policy: Policy, lang: str, top: int = 10) -> pd.DataFrame:
    t = language.labels(lang)
    table = nowcast_fit_table(nc, top)
    level = nc.manifest.get("level", "rule")

    def key(k) -> str:
        return article_name(policy, int(k), lang) if level == "article" else str(k)
    value = "{:,.6g}".format
    return pd.DataFrame({
        t["nowcast_key"]: [key(k) for k in table["key"]],
        t["nowcast_measure"]: [t[f"measure_{m}"] for m in table["measure"]],
        t["nowcast_observed"]: [value(x) for x in table["observed"]],
        t["nowcast_expected_before"]: [value(x) for x in table["prior_mean"]],
        t["nowcast_expected_now"]: [value(x) for x in table["expected"]],
        t["nowcast_tail"]: [f"{x:.2g}" for x in table["tail_probability"]]})


def plot_nowcast_narrowing(table: pd.DataFrame, policy: Policy, lang: str, axes) -> None:
    """Small multiples per domain: the year-end payments' P5-P95 bar and median for 0, 1, ... months observed."""
    t = language.labels(lang)
    for ax, domain in zip(axes, policy.domain_keys):
        part = table[table["domain"] == domain]
        colour = domain_colour(policy, domain)
        ax.vlines(part["months"], part["p5"], part["p95"], color=colour, linewidth=4, alpha=0.6)
        ax.plot(part["months"], part["p50"], "o", color=colour, markersize=4)
        ax.set_title(domain_name(policy, domain, lang), fontsize=9)
        ax.set_xticks(part["months"])
        top = float(part["p95"].max()) if len(part) else 0.0
        yi_axis(ax.yaxis, 1 if top >= 5e4 else 2 if top >= 5e3 else 3)  # enough digits for a small domain
        ax.tick_params(labelsize=7)
    for ax in axes[len(policy.domain_keys):]:
        ax.set_visible(False)
    axes[0].figure.supxlabel(t["nowcast_months"], fontsize=9)
    axes[0].figure.supylabel(t["claims_yi_axis"], fontsize=9)


def plot_nowcast_assumptions(table: pd.DataFrame, labels: dict[str, str], lang: str, ax) -> None:
    """Per group: the prior P5-P95 (grey) and the posterior P5-P95 (colour) on the 0-1 scale of its range."""
    y = np.arange(len(table))
    ax.hlines(y + 0.15, table["scaled_prior_p5"], table["scaled_prior_p95"], color="#bbbbbb", linewidth=6)
    ax.hlines(y - 0.15, table["scaled_p5"], table["scaled_p95"], color="#4C72B0", linewidth=6)
    ax.plot(table["scaled_p50"], y - 0.15, "o", color="#222222", markersize=4)
    ax.set_yticks(y, [labels.get(g, g) for g in table["group"]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlim(-0.02, 1.02)
    ax.set_xlabel("0 – 1" if not language.chinese(lang) else "先验范围内的位置(0–1)")


def _nowcast_figures(nc: Run, policy: Policy, lang: str) -> dict[str, bytes]:
    import matplotlib.pyplot as plt

    style()
    pngs = {}
    fig, axes = _grid(len(policy.domain_keys))
    plot_nowcast_narrowing(nowcast_narrowing_table(nc), policy, lang, axes)
    fig.tight_layout(rect=(0.02, 0.03, 1, 1))
    pngs["nowcast_narrowing"] = _png(fig)
    if "assumptions" in nc:
        table = nowcast_assumptions_table(nc)
        fig, ax = plt.subplots(figsize=(9, 0.4 * len(table) + 1.2))
        plot_nowcast_assumptions(table, group_labels(nc, lang), lang, ax)
        pngs["nowcast_assumptions"] = _png(fig)
    return pngs


def nowcast_header(nc: Run, lang: str) -> str:
    """The nowcast in one line: as of when, how much was observed, which run, how many draws."""
    m = nc.manifest
    return language.labels(lang)["nowcast_header"].format(
        as_of=m["as_of"], months=m["months"], terms=m["observed_terms"], run=m["run"], draws=m["draws"],
        replications=m["replications"])


def nowcast_rounds_text(nc: Run, lang: str) -> str:
    """The rounds of fresh draws, the effective sample size and the weight of the data, in one line."""
    m = nc.manifest
    return language.labels(lang)["nowcast_rounds"].format(rounds=len(nc["rounds"]) - 1, ess=m["ess"],
                                                          beta=m["beta"])


def nowcast_html(nc: Run, policy: Policy, lang: str, pngs: dict[str, bytes]) -> str:
    """The nowcast section: the answer per domain, how each month narrowed it, the assumptions, the fit."""
    t = language.labels(lang)
    m = nc.manifest
    header, rounds = nowcast_header(nc, lang), nowcast_rounds_text(nc, lang)
    warnings = "".join(f"<li>{html.escape(w)}</li>" for w in m.get("warnings", []))
    parts = [f"<h2>{html.escape(t['nowcast_title'])}</h2><p>{html.escape(header)}</p>",
             f"<p>{html.escape(t['nowcast_intro'])}</p>", table_html(nowcast_answer_display(nc, policy, lang)),
             f'<p class="note">{html.escape(rounds)}</p>', f"<ul class=\"note\">{warnings}</ul>" if warnings else "",
             _figure_html("nowcast_narrowing", pngs["nowcast_narrowing"], lang, t["cap_nowcast_narrowing"])]
    if "nowcast_assumptions" in pngs:
        parts += [f"<h3>{html.escape(t['nowcast_assumptions'])}</h3>",
                  f'<p class="note">{html.escape(t["nowcast_assumptions_note"])}</p>',
                  table_html(nowcast_assumptions_display(nc, lang)),
                  _figure_html("nowcast_assumptions", pngs["nowcast_assumptions"], lang, t["cap_nowcast_assumptions"])]
    parts += [f"<h3>{html.escape(t['nowcast_fit'])}</h3>", f'<p class="note">{html.escape(t["nowcast_fit_note"])}</p>',
              table_html(nowcast_fit_display(nc, policy, lang)),
              f'<p class="note">{html.escape(t["nowcast_method"])}</p>']
    return "\n".join(parts)


def write_nowcast_report(nc: Run | str | Path, lang: str = language.DEFAULT, out: str | Path | None = None,
                         force: bool = True) -> Path:
    """``NOWCAST_DIR/report/report.<lang>.html`` (figures and font embedded) and its figures as PNG; reads the
    nowcast folder only."""
    lang = language.check(lang)
    nc = nc if isinstance(nc, Run) else load(nc)
    policy = nc.policy()
    pngs = _nowcast_figures(nc, policy, lang)
    title = f"{report_title(policy, lang)}{language.labels(lang)['colon']}{language.labels(lang)['nowcast_title']}"
    page = (f'<!DOCTYPE html>\n<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{font_face()}\n{CSS}</style></head>\n<body><h1>{html.escape(title)}</h1>\n"
            f"{nowcast_html(nc, policy, lang, pngs)}\n</body></html>\n")
    out = Path(out) if out is not None else Path(nc.path) / "report"
    files = _other_languages(out, lang)
    files.update({f"report.{lang}.html": page, **{f"{name}.{lang}.png": data for name, data in pngs.items()}})
    languages = sorted({name.split(".")[1] for name in files if name.startswith("report.")})
    written = write_run(out, {}, {"kind": "fiscalsim report", "run": str(nc.path), "languages": languages,
                                  "files": sorted(files)}, force=force, files=files)
    return written / f"report.{lang}.html"
