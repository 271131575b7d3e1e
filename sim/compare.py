"""Scenarios side by side: the plain answer of each run, the difference from the first, per domain and per
article, largest differences first; nowcasts (``fiscalsim nowcast`` folders) beside the forecasts they
update; and an HTML comparison page with figures.

Reads run folders only.  The figures of each scenario are those of its own answer table
(:func:`sim.report.answer_table`), so a number is the same here as in that run's report and terminal.
"""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import pandas as pd

from sim import language
from sim import report as report_module
from sim.errors import FiscalsimError
from sim.language import share, yi
from sim.results import load, write_run

DIFFERENCES = ("claims", "gap", "p_overrun", "deferred")


def compare(*run_dirs: str | Path) -> dict[str, pd.DataFrame]:
    """``domains``: the answer table of every run (scenario, run, domain, claims, budget, gap, P(overrun) ...)
    with ``d_<column>``, the difference from the first run, for claims, gap, P(overrun) and deferred;
    ``articles``: district-paid claims per article and run with its difference, largest first;
    ``scenarios``: each run's scenario name and its title in every language (``title_<lang>``)."""
    if len(run_dirs) < 1:
        raise FiscalsimError("compare needs at least one run folder")
    loaded = [(path, load(path)) for path in run_dirs]
    nowcasts = [(p, r) for p, r in loaded if r.manifest.get("kind") == NOWCAST]
    run_dirs = [p for p, r in loaded if r.manifest.get("kind") != NOWCAST]
    runs = [r for _, r in loaded if r.manifest.get("kind") != NOWCAST]
    if not runs:  # nowcasts only: their runs are the scenarios compared
        run_dirs = list(dict.fromkeys(r.manifest.get("run") for _, r in nowcasts))
        if any(p in (None, "None") or not Path(p).is_dir() for p in run_dirs):
            raise FiscalsimError("the nowcasts' run folders cannot be found; give the run folders too")
        runs = [load(path) for path in run_dirs]
    names = _names(runs, run_dirs)
    domain_rows, article_rows = [], []
    for name, path, run in zip(names, run_dirs, runs):
        domain_rows.append(report_module.answer_table(run).assign(scenario=name, run=str(path)))
        summary = run.summary("article")
        article_rows.append(pd.DataFrame({"scenario": name, "run": str(path), "article": summary["article"],
                                          "claims": summary["district_mean"], "gross": summary["mean"]}))
    domains = pd.concat(domain_rows, ignore_index=True)
    first = domains[domains["scenario"] == names[0]].set_index("domain")
    for column in DIFFERENCES:
        domains[f"d_{column}"] = domains[column] - domains["domain"].map(first[column])
    articles = pd.concat(article_rows, ignore_index=True)
    base = articles[articles["scenario"] == names[0]].set_index("article")["claims"]
    articles["d_claims"] = articles["claims"] - articles["article"].map(base).fillna(0.0)
    policy = runs[0].policy()
    articles.insert(3, "domain", [policy.article(a).domain for a in articles["article"]])
    order = articles["d_claims"].abs().sort_values(ascending=False, kind="stable").index
    scenarios = pd.DataFrame({"scenario": names, "run": [str(p) for p in run_dirs],
                              **{f"title_{lang}": [_title(run, name, lang) for run, name in zip(runs, names)]
                                 for lang in language.LANGS}})
    out = {"domains": domains, "articles": articles.loc[order].reset_index(drop=True), "scenarios": scenarios}
    out.update(_years(runs, names))
    if nowcasts:
        out["nowcasts"] = nowcasts_table(nowcasts)
    return out


NOWCAST = "fiscalsim nowcast"
NOWCAST_COLUMNS = ("claims_mean", "p_overrun", "paid_p5", "paid_p50", "paid_p95", "p_runout")


def nowcasts_table(nowcasts) -> pd.DataFrame:
    """Per nowcast (``(folder, loaded nowcast)`` pairs) and domain: the forecast at the run and now (year-end
    claims, P(overrun), year-end payments P5-P95, P(the budget runs out)), the change, the date of the data
    and its weight (beta)."""
    rows = []
    for path, nc in nowcasts:
        m = nc.manifest
        for r in nc["domains"].itertuples():
            rows.append({"nowcast": f"{m.get('scenario')} @ {m['as_of']}", "folder": str(path), "as_of": m["as_of"],
                         "run": m.get("run"), "domain": r.domain, "beta": r.beta,
                         **{f"prior_{c}": getattr(r, f"prior_{c}") for c in NOWCAST_COLUMNS},
                         **{c: getattr(r, c) for c in NOWCAST_COLUMNS},
                         "d_claims": r.claims_mean - r.prior_claims_mean,
                         "d_p_overrun": r.p_overrun - r.prior_p_overrun})
    return pd.DataFrame(rows)


def nowcasts_display(tables: dict[str, pd.DataFrame], policy, lang: str) -> pd.DataFrame:
    """The nowcasts side by side as a reader sees them: per domain and nowcast the forecast at the run and
    now (the strings of each nowcast's own report)."""
    t = language.labels(lang)
    n = tables["nowcasts"]
    points = "百分点" if language.chinese(lang) else "points"
    order = np.lexsort((n["as_of"].to_numpy(), n["domain"].map({k: i for i, k in enumerate(policy.domain_keys)})))
    n = n.iloc[order]
    return pd.DataFrame({
        t["domain"]: [report_module.domain_name(policy, k, lang) for k in n["domain"]],
        t["nowcast_as_of"]: n["nowcast"].to_numpy(),
        t["nowcast_claims_before"]: [yi(x) for x in n["prior_claims_mean"]],
        t["nowcast_claims_now"]: [yi(x) for x in n["claims_mean"]],
        t["nowcast_paid_before"]: [report_module.interval_yi(a, b) for a, b in zip(n["prior_paid_p5"],
                                                                                 n["prior_paid_p95"])],
        t["nowcast_paid_now"]: [report_module.interval_yi(a, b) for a, b in zip(n["paid_p5"], n["paid_p95"])],
        t["nowcast_overrun"]: [f"{share(a)} → {share(b)}" for a, b in zip(n["prior_p_overrun"], n["p_overrun"])],
        f"{t['difference']}({points})" if language.chinese(lang) else f"{t['difference']} ({points})":
            [_points(x) for x in n["d_p_overrun"]],
        t["nowcast_weight"]: [f"{x:.2g}" for x in n["beta"]],
    })


def _years(runs, names: list[str]) -> dict[str, pd.DataFrame]:
    """For the multi-year runs among them: ``years`` (scenario x year x origin: mean district-paid claims with
    the difference from the first multi-year run) and ``commitments`` (each run's commitments table)."""
    multi = [(name, run) for name, run in zip(names, runs) if "years_summary" in run]
    if not multi:
        return {}
    years = pd.concat([run["years_summary"].groupby(["year", "origin"], observed=True)["mean"].sum().reset_index()
                       .assign(scenario=name) for name, run in multi], ignore_index=True)
    first = years[years["scenario"] == multi[0][0]].set_index(["year", "origin"])["mean"]
    keys = pd.MultiIndex.from_frame(years[["year", "origin"]])
    years["d_mean"] = years["mean"].to_numpy() - first.reindex(keys).fillna(0.0).to_numpy()
    commitments = pd.concat([run["commitments"].assign(scenario=name) for name, run in multi], ignore_index=True)
    return {"years": years[["scenario", "year", "origin", "mean", "d_mean"]], "commitments": commitments}


def years_display(tables: dict[str, pd.DataFrame], policy, lang: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The multi-year comparison as a reader sees it: claims by year (new, commitments, total, difference of
    the total from the first run) and the commitments of every run (億元)."""
    t = language.labels(lang)
    names = titles(tables, lang)
    y = tables["years"]
    wide = y.pivot_table(index=["scenario", "year"], columns="origin", values="mean", aggfunc="sum",
                         observed=False, fill_value=0.0, sort=False)
    total = wide.sum(axis=1)
    base = total.xs(y["scenario"].iloc[0], level="scenario")
    claims = pd.DataFrame({
        t["scenario"]: [names.get(s, s) for s, _ in wide.index], t["year"]: [int(v) for _, v in wide.index],
        t["origin_new"]: [yi(v) for v in wide.get("new", pd.Series(0.0, wide.index))],
        t["origin_commitment"]: [yi(v) for v in wide.get("commitment", pd.Series(0.0, wide.index))],
        t["years_total"]: [yi(v) for v in total],
        t["compare_difference"]: [yi(v - base.get(year, 0.0)) for (_, year), v in total.items()]})
    c = tables["commitments"]
    commitments = pd.DataFrame({
        t["scenario"]: [names.get(s, s) for s in c["scenario"]],
        t["domain"]: [report_module.domain_name(policy, d, lang) for d in c["domain"]],
        t["granted"]: c["granted"].astype(int), t["due"]: c["year"].astype(int),
        t["mean_yi"]: [yi(v) for v in c["mean"]], "P5": [yi(v) for v in c["p5"]], "P95": [yi(v) for v in c["p95"]]})
    return claims, commitments


def plot_years(table: pd.DataFrame, lang: str, ax, names: dict[str, str] | None = None) -> None:
    """Per year, one bar per scenario: new awards solid, commitments hatched on top (億元)."""
    t = language.labels(lang)
    names = names or {}
    scenarios = list(dict.fromkeys(table["scenario"]))
    years = sorted(table["year"].unique())
    width = 0.8 / len(scenarios)
    for i, scenario in enumerate(scenarios):
        part = table[table["scenario"] == scenario]
        x = np.arange(len(years)) + (i - (len(scenarios) - 1) / 2) * width
        new = part[part["origin"] == "new"].set_index("year")["mean"].reindex(years, fill_value=0.0) / 1e4
        owed = part[part["origin"] == "commitment"].set_index("year")["mean"].reindex(years, fill_value=0.0) / 1e4
        ax.bar(x, new, width, color=f"C{i}", label=f"{names.get(scenario, scenario)} · {t['origin_new']}")
        ax.bar(x, owed, width, bottom=new, color=f"C{i}", hatch="//", edgecolor="white", linewidth=0.5,
               label=f"{names.get(scenario, scenario)} · {t['origin_commitment']}")
    ax.set_xticks(np.arange(len(years)), [str(y) for y in years])
    ax.set_xlabel(t["year"])
    ax.set_ylabel(t["mean_yi"])
    ax.legend(fontsize=7, frameon=False)


def _title(run, name: str, lang: str) -> str:
    """The scenario's title in ``lang``, with the same suffix as its unique name when a name repeats."""
    title = report_module.scenario_title(run, lang)
    return title + name[len(str(run.manifest.get("scenario", ""))):] if name != run.manifest.get("scenario") else title


def titles(tables: dict[str, pd.DataFrame], lang: str) -> dict[str, str]:
    """Scenario name -> its title in ``lang`` (what a reader sees in tables and legends)."""
    s = tables["scenarios"]
    return dict(zip(s["scenario"], s[f"title_{language.check(lang)}"]))


def _names(runs, run_dirs) -> list[str]:
    """Each run's scenario name, made unique (a folder compared with itself, two runs of one scenario)."""
    names, seen = [], {}
    for run, path in zip(runs, run_dirs):
        name = str(run.manifest.get("scenario", path))
        seen[name] = seen.get(name, 0) + 1
        names.append(name if seen[name] == 1 else f"{name} ({Path(path).name})")
    return names


def _points(x: float) -> str:
    """A change of a probability in percentage points, signed."""
    if not np.isfinite(x):
        return "—"
    return f"{x * 100:+.0f}"


def domains_display(tables: dict[str, pd.DataFrame], policy, lang: str) -> pd.DataFrame:
    """The domain comparison as a reader sees it: per domain and scenario the answer's figures (the same
    strings as in each run's answer table) and the differences from the first scenario."""
    t = language.labels(lang)
    d = tables["domains"]
    points = "百分点" if language.chinese(lang) else "points"
    return pd.DataFrame({
        t["domain"]: [report_module.domain_name(policy, k, lang) for k in d["domain"]],
        t["scenario"]: d["scenario"].map(titles(tables, lang)),
        t["claims_yi"]: [yi(x) for x in d["claims"]],
        f"{t['difference']}(亿元)" if language.chinese(lang) else f"{t['difference']} (億元)":
            [f"{x / 1e4:+,.2f}" for x in d["d_claims"]],
        t["budget_yi"]: [yi(x) for x in d["claims_budget"]],
        t["gap_yi"]: [yi(x) for x in d["gap"]],
        t["p_overrun"]: [share(x) for x in d["p_overrun"]],
        f"{t['difference']}({points})" if language.chinese(lang) else f"{t['difference']} ({points})":
            [_points(x) for x in d["d_p_overrun"]],
        t["deferred_yi"]: [yi(x) for x in d["deferred"]],
    }).iloc[_by_difference(d, policy)]


def _by_difference(d: pd.DataFrame, policy) -> np.ndarray:
    """Row order: domains by their largest change of claims (largest first), each domain's scenarios in the
    order given."""
    size = d.groupby("domain")["d_claims"].apply(lambda x: x.abs().max())
    scenario_order = {s: i for i, s in enumerate(dict.fromkeys(d["scenario"]))}
    domain_order = {k: i for i, k in enumerate(policy.domain_keys)}
    return np.lexsort((d["scenario"].map(scenario_order), d["domain"].map(domain_order), -d["domain"].map(size)))


def articles_display(tables: dict[str, pd.DataFrame], policy, lang: str, top: int = 15) -> pd.DataFrame:
    """The articles whose claims change most between the scenarios (萬元), largest change first."""
    t = language.labels(lang)
    a = tables["articles"]
    first = tables["domains"]["scenario"].iloc[0]
    changed = a[(a["scenario"] != first) & (a["d_claims"] != 0)].head(top)
    unit = "(万元)" if language.chinese(lang) else " (萬元)"
    return pd.DataFrame({
        t["article"]: [report_module.article_name(policy, n, lang) for n in changed["article"]],
        t["scenario"]: changed["scenario"].map(titles(tables, lang)),
        t["claims_wan"]: [language.wan(x) for x in changed["claims"]],
        f"{t['difference']}{unit}": [f"{x:+,.0f}" for x in changed["d_claims"]],
    })


def write_comparison(run_dirs: list[str | Path], out: str | Path, lang: str = language.DEFAULT,
                     force: bool = False) -> Path:
    """The comparison tables (Parquet) and ``compare.<lang>.html`` with a figure of claims per domain and
    scenario against the budget, and of the articles that change most."""
    import base64
    import io

    import matplotlib.pyplot as plt

    lang = language.check(lang)
    tables = compare(*run_dirs)
    policy = load(run_dirs[0]).policy()  # a nowcast folder keeps its run's policy too
    t = language.labels(lang)
    report_module.style()
    figures = {}
    fig, ax = plt.subplots(figsize=(9, 4.5))
    plot_domains(tables["domains"], policy, lang, ax, titles(tables, lang))
    figures["domains"] = fig
    changed = articles_display(tables, policy, lang)
    if len(changed):
        fig, ax = plt.subplots(figsize=(9, 0.35 * len(changed) + 1.2))
        plot_articles(tables["articles"], tables["domains"]["scenario"].iloc[0], policy, lang, ax,
                      titles(tables, lang))
        figures["articles"] = fig
    years_html = ""
    if "years" in tables:
        fig, ax = plt.subplots(figsize=(9, 4.2))
        plot_years(tables["years"], lang, ax, titles(tables, lang))
        figures["years"] = fig
        claims, owed = years_display(tables, policy, lang)
        years_html = (f"<h2>{html.escape(t['years_summary'])}</h2>{report_module.table_html(claims)}"
                      f"{{years_figure}}<h2>{html.escape(t['years_commitments'])}</h2>"
                      f"{report_module.table_html(owed)}")
    nowcast_html = ""
    if "nowcasts" in tables:
        nowcast_html = (f"<h2>{html.escape(t['nowcast_compare'])}</h2><p class=\"note\">"
                        f"{html.escape(t['nowcast_compare_note'])}</p>"
                        f"{report_module.table_html(nowcasts_display(tables, policy, lang))}")
    pngs = {}
    for name, fig in figures.items():
        buffer = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buffer, format="png")
        plt.close(fig)
        pngs[name] = buffer.getvalue()
    captions = {
        "domains": ("每个领域各情景的预计兑现额(区级,亿元);红色竖线为可兑现预算。" if language.chinese(lang) else
                    "District-paid expected claims per domain and scenario (億元); red ticks: the claims budget."),
        "articles": ("与第一个情景相比预计兑现额变化最大的条款(万元),按变化大小排列。" if language.chinese(lang) else
                     "The articles whose expected claims change most from the first scenario (萬元), largest first."),
        "years": t["cap_years_compare"],
    }

    def image(name: str) -> str:
        data = pngs[name]
        return (f'<figure><img alt="{name}" src="data:image/png;base64,{base64.b64encode(data).decode()}" '
                f'data-file="compare-{name}.{lang}.png"><figcaption>'
                f"{html.escape(language.own_text(captions[name], lang))}</figcaption></figure>")
    images = "".join(image(name) for name in pngs if name != "years")
    if years_html:
        years_html = years_html.replace("{years_figure}", image("years"))
    page = f"""<!DOCTYPE html>
<html lang="{lang}"><head><meta charset="utf-8"><title>{html.escape(t['compare_title'])}</title>
<style>{report_module.font_face()}
{report_module.CSS}</style></head><body>
<h1>{html.escape(report_module.report_title(policy, lang))}{t['colon']}{html.escape(t['compare_title'])}</h1>
<p class="note">{html.escape(t['compare_note'])}</p>
{report_module.table_html(domains_display(tables, policy, lang))}
{images}
{report_module.table_html(changed)}
{years_html}
{nowcast_html}
</body></html>
"""
    files = {f"compare.{lang}.html": page, **{f"compare-{n}.{lang}.png": d for n, d in pngs.items()}}
    written = write_run(out, tables, {"kind": "fiscalsim comparison", "runs": [str(r) for r in run_dirs],
                                      "lang": lang}, force=force, files=files)  # run_dirs: runs and nowcasts
    return written / f"compare.{lang}.html"


def plot_domains(table: pd.DataFrame, policy, lang: str, ax, names: dict[str, str] | None = None) -> None:
    """Grouped bars: claims per domain (rows) and scenario (bars), with each domain's claims budget;
    ``names`` maps a scenario to its legend label (its title)."""
    t = language.labels(lang)
    scenarios = list(dict.fromkeys(table["scenario"]))
    keys = list(policy.domain_keys)
    height = 0.8 / len(scenarios)
    for j, scenario in enumerate(scenarios):
        part = table[table["scenario"] == scenario].set_index("domain").reindex(keys)
        y = np.arange(len(keys)) + (j - (len(scenarios) - 1) / 2) * height
        ax.barh(y, part["claims"], height=height, label=(names or {}).get(scenario, scenario), alpha=0.9)
        ax.scatter(part["claims_budget"], y, marker="|", s=120, color="#C44E52", zorder=3)
    ax.set_yticks(np.arange(len(keys)), [report_module.domain_name(policy, k, lang) for k in keys])
    ax.invert_yaxis()
    ax.set_xlabel(t["claims_yi_axis"])
    report_module.yi_axis(ax.xaxis)
    ax.legend(fontsize=8, loc="lower right")


def plot_articles(table: pd.DataFrame, first: str, policy, lang: str, ax, names: dict[str, str] | None = None,
                  top: int = 15) -> None:
    """The largest changes of claims per article from the ``first`` scenario (萬元), coloured by domain;
    ``names`` maps a scenario to its label (its title)."""
    t = language.labels(lang)
    changed = table[(table["scenario"] != first) & (table["d_claims"] != 0)].head(top)
    y = np.arange(len(changed))
    ax.barh(y, changed["d_claims"], color=[report_module.domain_colour(policy, d) for d in changed["domain"]])
    ax.axvline(0, color="black", linewidth=0.8)
    labels = [f"{report_module.article_name(policy, a, lang)} · {(names or {}).get(s, s)}"
              for a, s in zip(changed["article"], changed["scenario"])]
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{t['difference']} ({t['claims_wan']})")
    report_module.wan_axis(ax.xaxis)
