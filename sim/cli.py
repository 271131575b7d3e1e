"""The ``fiscalsim`` command line.

    fiscalsim policy [--model M] [--inputs]
    fiscalsim awards FIRMS.csv [-o AWARDS.csv] [--explain ROW]
    fiscalsim awards --sample [-o AWARDS.csv]
    fiscalsim calibrate [--seed S] [--replications R]
    fiscalsim run [SCENARIO] --replications R --seed S --out DIR [--workers N | --scheduler ADDR]
    fiscalsim budget RUN_DIR [--level 0.95] [--tolerance X] [--solver cbc|highs|scipy]
    fiscalsim design RUN_DIR [--level 0.95] [--tolerance 0.01] [--reallocate] [--cap-rule RULE]
    fiscalsim report RUN_DIR [--lang zh|en]     (draws the tables the run wrote)
    fiscalsim compare RUN_A RUN_B ...

A user's mistake (a malformed model, a bad firm table, an output folder that cannot be written) prints one
clear message and exits with 2; a run stopped because a worker process could not start or died, with 4; a
fault of fiscalsim itself (or a dependency missing from the installation), with 3 and a log file.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pandas as pd

from sim import design as design_module
from sim import executors, language, pipeline, population, report, results
from sim import policy as policy_module
from sim import scenario as scenario_module
from sim import years as years_module
from sim.awards import evaluate, explain
from sim.errors import FirmTableError, FiscalsimError, WorkerError
from sim.firms import ID_COLUMNS, read_table
from sim.headline import measure_of, ranking
from sim.policy import Policy, catalogue_table, format_param, inputs_table
from sim.validation import plain

pd.set_option("display.unicode.east_asian_width", True)
pd.set_option("display.width", 250)
pd.set_option("display.max_colwidth", 60)


def cmd_policy(args: argparse.Namespace) -> int:
    policy = policy_module.load(args.model)
    if args.inputs:
        print(inputs_table(policy).to_string(index=False))
        required = [a.name for a in policy.attributes if a.default is None]
        print(f"\n{len(policy.attributes)} attributes; required (no default): {', '.join(required)}. "
              "Money in 萬元.")
        return 0
    print(f"{policy.meta.get('title_zh', '')} — {policy.path}")
    print("Money in 萬元; * marks an assumed number (the text leaves it open), † a number the scenario sets.\n")
    print(catalogue_table(policy).to_string(index=False))
    print("\nDomains (萬元)")
    domains = pd.DataFrame([{
        "domain": d.key, "name": d.name_zh, "lead": d.lead, "articles": f"{d.first_article}-{d.last_article}",
        "budget": d.budget, "claims budget": format_param(d.claims_budget), "sublines": len(d.sublines),
        "rules": sum(r.domain == d.key for r in policy.rules),
    } for d in policy.domains])
    print(domains.to_string(index=False))
    print(f"Net total after overlap: {policy.net_total:,.0f} 萬元")
    assumptions = policy.assumptions()
    with_rules = len({r.article for r in policy.rules})
    print(f"\n{len(policy.articles)} articles; {len(policy.rules)} award rules in {with_rules} articles; "
          f"{len(assumptions)} assumed numbers:")
    for where, name, param in assumptions:
        print(f"  {where} {name} = {param.value:g}: {param.why}")
    return 0


def _write_atomic(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(handle)
    try:
        frame.to_csv(temp, index=True)
        os.replace(temp, path)
    finally:
        if os.path.exists(temp):
            os.unlink(temp)


def cmd_awards(args: argparse.Namespace) -> int:
    chosen = scenario_module.load(args.scenario) if args.scenario else None
    model = chosen.model if chosen is not None and args.model is None else args.model
    policy = policy_module.load(model)
    if args.sample == (args.firms is not None):
        raise FiscalsimError("fiscalsim awards: give a register (.xlsx, .csv or .parquet) or --sample, not both")
    path = (policy_module.resolve_model(model) / "sample-firms.csv") if args.sample else Path(args.firms)
    frame = read_table(path, policy, ignore_unknown=args.ignore_unknown)
    if args.explain is not None:
        return _explain(policy, frame, args.explain, path)
    awards = evaluate(policy, frame, source=str(path))
    table = awards.frame()
    table["total"] = awards.gross.sum(axis=0)
    table["district_total"] = awards.district.sum(axis=0)
    if awards.firms.defaults_used:
        print(f"defaults used for absent columns: {', '.join(awards.firms.defaults_used)}")
    if chosen is not None:
        return _awards_change(policy, chosen, frame, path, table)
    if args.output:
        _write_atomic(table, Path(args.output))
        print(f"wrote {len(table)} rows x {len(policy.rules)} rules to {args.output}")
    else:
        nonzero = table.loc[:, (table != 0).any(axis=0)]
        print(nonzero.T.to_string())
    rules = awards.rule_table()
    rules = rules[rules.claimants > 0]
    print(f"\n{len(table)} claimants, {int((table['total'] > 0).sum())} with an award; "
          f"total {table['total'].sum():,.2f} 萬元, district-paid {table['district_total'].sum():,.2f} 萬元")
    print(rules.to_string(index=False))
    return 0


def _awards_change(policy: Policy, chosen, frame: pd.DataFrame, path: Path, before: pd.DataFrame) -> int:
    """Each firm's awards before and under the scenario, and the rules whose awards change."""
    changed_policy, _ = scenario_module.apply(chosen)
    for warning in scenario_module.warnings_of(chosen, changed_policy, policy):
        print(f"warning: {warning}")
    after = evaluate(changed_policy, frame, source=str(path)).frame()
    after["total"] = after.sum(axis=1)
    rules = [c for c in after.columns if c != "total" and not np.array_equal(after[c], before[c])]
    shown = pd.DataFrame({"baseline 萬元": before["total"], f"{chosen.name} 萬元": after["total"],
                          "change 萬元": after["total"] - before["total"]}, index=before.index)
    print(f"Awards per firm, baseline and scenario {chosen.name} ({len(rules)} rule(s) change: "
          f"{', '.join(rules) or 'none'})")
    print(shown.to_string(float_format=lambda x: f"{x:,.2f}"))
    for rule in rules:
        moved = (after[rule] - before[rule])[lambda d: d != 0]
        print(f"\n{rule}: {len(moved)} firm(s) change, in all {moved.sum():+,.2f} 萬元")
    return 0


def _explain(policy: Policy, frame: pd.DataFrame, row: int, path: Path) -> int:
    if not 1 <= row <= len(frame):
        raise FirmTableError(f"{path}: --explain takes a data row from 1 to {len(frame)}, got {row}")
    awards = evaluate(policy, frame.iloc[[row - 1]], source=str(path), first_row=row)  # validates the row
    record = {name: float(column[0]) for name, column in awards.firms.columns.items()}
    raw = frame.iloc[row - 1].to_dict()
    name = next((str(raw[c]) for c in ID_COLUMNS if c in raw), f"row {row}")
    entries = explain(policy, record)
    print(f"{path}, row {row} ({name})")
    total = district = 0.0
    for entry in entries:
        total += entry["award"]
        district += entry["district"]
        flag = f"  [assumed: {', '.join(entry['assumed'])}]" if entry["assumed"] else ""
        print(f"\n  article {entry['article']}, rule {entry['rule']}: {entry['award']:,.4g} 萬元{flag}")
        print(f"    {entry['name_en']}")
        for step in entry["steps"]:
            print(f"    - {step}")
        print(f"    「{entry['quote']}」")
        if entry["judgement"]:
            print(f"    reading: {entry['judgement']}")
    if not entries:
        print("  no rule reads a non-zero attribute of this row: no award")
    print(f"\n  total {total:,.4g} 萬元, district-paid {district:,.4g} 萬元")
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    spec = population.load_spec(args.model)
    table = population.calibration_table(spec, seed=args.seed, replications=args.replications)
    print(f"Calibration of {spec.path}: {spec.total:,} claimants in {len(spec.segments)} segments; "
          f"{args.replications} replications, seed {args.seed}\n")
    for row in table.itertuples():
        band = f" (band {plain(row.low)}-{plain(row.high)})" if row.low is not None and pd.notna(row.low) else ""
        verdict = "" if row.in_band is None else ("  in band" if row.in_band else "  OUT OF BAND")
        expected = f"expected {figure(row.expected)}, " if pd.notna(row.expected) else ""
        print(f"{row.target}: {row.statistic} [{row.unit}]")
        print(f"  target {plain(row.target_value)}{band}; synthetic {expected}simulated {figure(row.mean)} "
              f"± {figure(row.sd)}{verdict}")
        role = population.ROLES[row.role]
        if row.role == "set":
            role += f": {row.sets}"
        print(f"  {role}; evidence: {population.EVIDENCE[row.evidence]}")
        print(f"  source: {row.source}")
    independent = table[table["role"] == "independent"]
    print(f"\n{len(independent)} of {len(table)} targets are independent evidence; the others were used to set "
          "parameters and are met by construction.")
    quantiles = population.class_quantiles(spec, seed=args.seed)
    if len(quantiles):
        print(f"\n{spec.summary.claimant} by {spec.summary.by} (萬元; shapes are assumed, see population.toml)")
        print(quantiles.round(1).to_string())
    return 0


def _executor(args: argparse.Namespace):
    """This machine's cores (--threads, default all), or a Dask cluster for --workers / --scheduler."""
    if not args.workers and not args.scheduler:
        return executors.local(args.threads)
    return executors.dask(args.workers, args.scheduler)


def _settings(args: argparse.Namespace) -> pipeline.Settings:
    skipped = {"process": args.no_process, "budget": args.no_budget, "sensitivity": args.no_sensitivity,
               "report": args.no_report or args.no_budget or args.no_process}
    return pipeline.Settings(
        replications=args.replications, seed=args.seed, n=args.n, scale=args.scale,
        stages=tuple(stage for stage in pipeline.STAGES if not skipped.get(stage)),
        process_replications=args.process_replications, uncertainty=args.uncertainty, per_draw=args.per_draw,
        sensitivity_samples=args.sensitivity_samples, lang=args.lang, process_engine=args.process_engine,
        years=years_module.parse_years(args.years) if args.years else ())


def cmd_run(args: argparse.Namespace) -> int:
    settings = _settings(args)
    results.check_target(args.out, args.force)  # before anything is computed
    executor = _executor(args)
    try:
        run = pipeline.run(args.scenario, model=args.model, settings=settings, out=args.out, force=args.force,
                           executor=executor, progress=not args.no_progress, allow_outside=args.allow_outside)
    finally:
        executor.close()
    print(answer_text(run, args.lang))
    lp = run.stage("budget")
    if lp is not None and args.detail:
        print(budget_text(lp))
    t = language.labels(args.lang)
    print(f"\n{t['results_in']}{t['colon']}{run.path}")
    page = run.path / "report" / f"report.{language.check(args.lang)}.html"
    if page.is_file():
        print(f"{t['report_at']}{t['colon']}{page}")
    return 0


def figure(value: float) -> str:
    """A simulated statistic to four significant figures, with thousands separators.

    >>> figure(3897706.67371), figure(0.011428), figure(10.8), figure(2747.2)
    ('3,898,000', '0.01143', '10.8', '2,747')
    """
    if not np.isfinite(value) or value == 0:
        return f"{value:g}"
    digits = 3 - int(np.floor(np.log10(abs(value))))
    text = f"{round(float(value), digits):,.{max(digits, 0)}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def answer_text(run, lang: str) -> str:
    """What the terminal ends with: the run in one line, the plain answer per domain (the report's first
    table, the same strings), the totals, a sentence per domain at risk and what the terms mean."""
    lang = language.check(lang)
    t = language.labels(lang)
    m = run.manifest
    policy = run.policy()
    groups = report.group_labels(run, lang)
    answer = report.answer_table(run)
    seconds = sum(v for v in m["timings"].values() if isinstance(v, float))
    header = t["run_header"].format(scenario=report.scenario_title(run, lang), replications=m["replications"],
                                    population=m["population"], seed=m["seed"], seconds=seconds)
    lines = ["", header, *[f"warning: {w}" for w in m.get("warnings", [])], "", t["answer"],
             report.answer_display(answer, policy, lang, groups).to_string(index=False),
             "", t["totals"].format(gross=language.yi(answer["gross"].sum()),
                                    district=language.yi(answer["claims"].sum()))]
    at_risk = answer[answer["verdict"].isin(["overrun likely", "depends on the assumptions"])
                     | (answer["verdict"].eq("") & (answer["p_overrun"] > 0.1))]
    lines += [f"- {sentence}" for sentence in report.headline_sentences(at_risk, policy, groups, lang)]
    lines += ["", t["definitions"]] + [f"  {d}" for d in report.definitions(lang, "process_runout_summary" in run)]
    shown = report.years_display(run, lang)
    if shown:
        lines += ["", t["years_title"], report.years_intro(run, lang), "", t["years_summary"],
                  shown["claims"].to_string(index=False), "", t["years_commitments"],
                  shown["commitments"].to_string(index=False)]
    return "\n".join(lines)


def budget_text(lp) -> str:
    """The budget LPs in brief (萬元): the shortfall of expected claims and the CVaR-sized budget per domain."""
    return "\n".join(["", "Budget LPs: shortfall of expected claims, shadow prices, CVaR(95%)-sized budgets (萬元)",
                      pd.DataFrame({"domain": lp["cvar_budgets"]["domain"],
                                    "shortfall": lp["coverage_domains"]["shortfall"].map("{:,.0f}".format),
                                    "shadow price": lp["coverage_domains"]["shadow_price"].round(2),
                                    "CVaR budget": lp["cvar_budgets"]["cvar_budget"].map("{:,.0f}".format)}
                                   ).to_string(index=False)])


def cmd_budget(args: argparse.Namespace) -> int:
    run = results.load(args.run_dir)
    tables, timings = pipeline.budget_of(run, level=args.level, tolerance=args.tolerance, solver=args.solver,
                                         save=not args.no_save)
    money = "{:,.0f}".format
    cover = tables["coverage_domains"]
    print(f"Budget LPs for {run.path} ({run.manifest.get('scenario')}, {run.manifest.get('replications')} "
          f"replications; district-paid claims, 萬元; solver {args.solver})\n")
    print("Coverage of expected claims")
    print(cover.assign(**{c: cover[c].map(money) for c in ("claims_budget", "claims", "funded", "shortfall")},
                       shadow_price=cover["shadow_price"].round(3)).to_string(index=False))
    short = tables["coverage_rules"][tables["coverage_rules"]["shortfall"] > 0.01]
    if len(short):
        print("\nShortfall by rule (with equal priorities any split of a domain's shortfall between its rules is "
              "optimal; this is one; set rule priorities to choose)")
        print(short.assign(**{c: short[c].map(money) for c in ("claim", "funded", "shortfall")}).to_string(index=False))
    binding = tables["coverage_constraints"][tables["coverage_constraints"]["binding"]]
    print("\nBinding constraints: " + (", ".join(f"{r.family}[{r.constraint}] (shadow price {r.shadow_price:.3g})"
                                              for r in binding.itertuples()) or "none"))
    top = tables["top_up"]
    print("\nMinimum top-up to fund every expected claim")
    print(top.assign(**{c: top[c].map(money) for c in ("claims_budget", "claims", "top_up")}).to_string(index=False))
    moved = tables["reallocation"]
    print("\nReallocation of the claims budget between domains (total unchanged)")
    print(moved.assign(**{c: moved[c].map(money) for c in ("claims_budget", "claims", "reallocated_budget",
                                                           "shortfall", "change")}).to_string(index=False))
    change = moved.set_index("domain")["change"]
    for floor in run.policy().spending_floors:
        given = -float(change.get(floor.domain, 0.0))
        state = "at its limit" if given >= floor.margin.value - 1e-6 * max(1.0, floor.margin.value) else "within it"
        print(f"spending floor {floor.id} ({floor.share:.0%} of {floor.expenditure:,.0f} 萬元 for {floor.domain}; "
              f"margin {floor.margin.value:,.0f} 萬元{'*' if floor.margin.assumed else ''}): {floor.domain} gives up "
              f"{max(given, 0.0) + 0.0:,.0f} 萬元, {state}")
    overall = tables["cvar_overall"].iloc[0]
    sized = tables["cvar_budgets"]
    print(f"\nCVaR-sized budgets: CVaR at {overall['level']:.0%} of total shortfall <= "
          f"{overall['tolerance']:,.0f} 萬元 over {overall['replications']} replications; "
          f"total {overall['total_budget']:,.0f} 萬元; "
          f"P(any shortfall) {overall['p_any_shortfall']:.1%}")
    print(sized.assign(**{c: sized[c].map(money) for c in ("cvar_budget", "current_claims_budget", "mean_claims",
                                                           "p95_claims")}).round(3).to_string(index=False))
    cvar = timings[-1]
    print(f"(CVaR LP: {int(overall['variables'])} variables, build {cvar['build_s'] + cvar['model_s']:.2f} s, "
          f"solve {cvar['solve_s']:.2f} s)")
    if "years_coverage" in tables:
        years = tables["years_coverage"]
        print("\nCoverage of each year's expected claims on that year's budgets, commitments funded first "
              "(commitments_fit false: the commitments alone exceed the budget)")
        print(years.assign(**{c: years[c].map(money) for c in ("claims_budget", "claims", "commitments", "funded",
                                                               "shortfall")},
                           shadow_price=years["shadow_price"].round(3)).to_string(index=False))
    if not args.no_save:
        print(f"\ntables in {run.path / 'budget'}")
    return 0


def cmd_design(args: argparse.Namespace) -> int:
    run = results.load(args.run_dir)
    lang = language.check(args.lang)
    t = language.labels(lang)
    policy = run.policy()
    if args.verify:
        print(design_module.verify_text(pipeline.verify_design(run, results.load(args.verify)), lang))
        return 0
    if args.cap_rule:
        out = pipeline.cap_redesign_of(run, args.cap_rule, number=args.number, level=args.level,
                                       tolerance=args.tolerance, save=not args.no_save, progress=not args.no_progress)
        print(design_module.cap_text(out, policy, lang))
        return 0
    out = pipeline.design_of(run, level=args.level, tolerance=args.tolerance, objective=args.objective,
                             reallocate=args.reallocate, floor=args.floor, solver=args.solver, save=not args.no_save)
    tables = out["tables"]
    shown_run = results.Run(run.path, run.manifest, {}, {}, {"design": results.Run(
        None, {"settings": out["settings"]}, tables)})
    rules, lines = report.design_display(report.design_rules_table(shown_run), report.design_lines_table(shown_run),
                                         policy, lang)
    print(t["design_title"])
    print(report.design_intro(shown_run, lang) + "\n")
    print(t["design_rules"])
    print(rules.to_string(index=False) if len(rules) else t["design_none"])
    print("\n" + t["design_lines"])
    print(lines.to_string(index=False))
    overall = tables["overall"].iloc[0]
    binding = tables["constraints"][tables["constraints"]["binding"] & (tables["constraints"]["family"] != "floor")]
    named = ", ".join(f"{r.family}[{r.constraint}] ({r.shadow_price:.3g})" for r in binding.itertuples()) or "none"
    print(f"\nbinding: {named}; LP {int(overall['variables'])} variables x {int(overall['rows'])} rows, build "
          f"{overall['build_s']:.3f} s, solve {overall['solve_s']:.3f} s ({overall['solver']})")
    if not args.no_save:
        if (run.path / "report").is_dir():
            for name in sorted((run.path / "report").glob("report.*.html")):
                report.write_report(results.load(run.path), lang=name.name.split(".")[1])
        print(f"\ntables in {run.path / 'design'}; " + t["design_scenario"].format(
            path=run.path / "design" / "scenario.toml"))
    return 0


def cmd_sensitivity(args: argparse.Namespace) -> int:
    run = results.load(args.run_dir)
    executor = _executor(args)
    try:
        tables = pipeline.sensitivity_of(run, samples=args.samples, executor=executor, progress=not args.no_progress)
    finally:
        executor.close()
    print(sensitivity_text(tables["sobol_indices"], tables["headline"], run))
    print(f"\ntables in {run.path / 'sensitivity'}")
    return 0


def sensitivity_text(indices: pd.DataFrame, table: pd.DataFrame, run) -> str:
    """Per domain at risk: the five assumption groups with the largest total Sobol index of its overrun (else
    shortfall, else claims, whichever varied), with 95% intervals, and the luck of the year."""
    labels = report.group_labels(run, "en")
    rows = len(indices.drop_duplicates(["group"]))
    lines = [f"Sobol indices over {rows - 1} assumption groups and the luck of the year (95% bootstrap intervals)"]
    for row in table.sort_values(["p_overrun", "expected_shortfall"], ascending=False).itertuples():
        measure = measure_of(indices, row.domain)
        if measure is None:
            continue
        lines.append(f"\n{row.domain}: P(overrun) {row.p_overrun:.0%}; total (first-order) indices of its {measure}:")
        ranked = ranking(indices, row.domain, measure)
        for r in pd.concat([ranked.head(5), ranked.tail(1)]).itertuples():
            lines.append(f"  {labels.get(r.group, r.group):<58} {r.total:5.2f} [{r.total_low:.2f}, "
                         f"{r.total_high:.2f}]  ({r.first:5.2f} [{r.first_low:.2f}, {r.first_high:.2f}])")
        if row.p_overrun == 0.0:
            break
    return "\n".join(lines)


def cmd_report(args: argparse.Namespace) -> int:
    run = results.load(args.run_dir)
    if run.manifest.get("kind") == "fiscalsim nowcast":
        page = report.write_nowcast_report(run, lang=args.lang, out=args.out)
    else:
        page = report.write_report(run, lang=args.lang, out=args.out, progress=not args.no_progress)
    t = language.labels(args.lang)
    print(f"{t['report_at']}{t['colon']}{page}")
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    from sim import compare

    lang = language.check(args.lang)
    t = language.labels(lang)
    tables = compare.compare(*args.runs)
    policy = results.load(args.runs[0]).policy()
    print(t["compare_title"])
    print(compare.domains_display(tables, policy, lang).to_string(index=False))
    changed = compare.articles_display(tables, policy, lang)
    if len(changed):
        print()
        print(changed.to_string(index=False))
    if "years" in tables:
        claims, owed = compare.years_display(tables, policy, lang)
        print(f"\n{t['years_summary']}\n{claims.to_string(index=False)}")
        print(f"\n{t['years_commitments']}\n{owed.to_string(index=False)}")
    if "nowcasts" in tables:
        print(f"\n{t['nowcast_compare']}\n{compare.nowcasts_display(tables, policy, lang).to_string(index=False)}")
    print(f"\n{t['compare_note']}")
    if args.out:
        page = compare.write_comparison(args.runs, args.out, lang=lang, force=args.force)
        print(f"{t['report_at']}{t['colon']}{page}")
    return 0


def cmd_nowcast(args: argparse.Namespace) -> int:
    lang = language.check(args.lang)
    run = results.load(args.run_dir)
    out = args.out or f"{str(args.run_dir).rstrip('/')}-nowcast-{args.as_of}"
    results.check_target(out, args.force)
    settings = pipeline.NowcastSettings(min_ess=args.min_ess, rounds=args.rounds, fresh=args.fresh)
    executor = _executor(args)
    try:
        nc = pipeline.nowcast_of(run, args.observed, args.as_of, settings=settings, executor=executor,
                                 progress=not args.no_progress, out=out, force=args.force, lang=lang)
    finally:
        executor.close()
    print(nowcast_text(nc, lang))
    t = language.labels(lang)
    print(f"\n{t['nowcast_at']}{t['colon']}{nc.path}")
    print(f"{t['report_at']}{t['colon']}{nc.path / 'report' / f'report.{lang}.html'}")
    return 0


def nowcast_text(nc, lang: str) -> str:
    """What the terminal shows of a nowcast: the header, the answer per domain and the assumptions narrowed
    most (the report's tables, the same strings), the weight of the data and any warning."""
    t = language.labels(lang)
    m = nc.manifest
    policy = nc.policy()
    lines = ["", t["nowcast_title"], report.nowcast_header(nc, lang),
             *[f"warning: {w}" for w in m.get("warnings", [])], "",
             report.nowcast_answer_display(nc, policy, lang).to_string(index=False), "",
             report.nowcast_rounds_text(nc, lang)]
    shown = report.nowcast_assumptions_display(nc, lang, top=8)
    if len(shown):
        lines += ["", t["nowcast_assumptions"], shown.to_string(index=False)]
    return "\n".join(lines)


def cmd_export(args: argparse.Namespace) -> int:
    from sim import export

    written = export.export(args.run_dir, args.output, lang=args.lang)
    t = language.labels(args.lang)
    print(f"{t['exported']}{t['colon']}{written}")
    return 0


def _add_executor(p: argparse.ArgumentParser) -> None:
    """Where the work runs (in-process, a local Dask cluster, a scheduler) and whether a bar shows it."""
    where = p.add_mutually_exclusive_group()
    where.add_argument("--workers", type=int, default=0, help="start a local Dask cluster of N workers (0: none)")
    where.add_argument("--scheduler", default=None, help="use an existing Dask scheduler at ADDRESS")
    where.add_argument("--threads", type=int, default=None,
                       help="worker processes on this machine, each on one thread (default: one per core; 1: all "
                            "in this process)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _add_nowcast(sub) -> None:
    p = sub.add_parser("nowcast", help="update a finished run's forecast with the applications, approvals and "
                       "payments observed so far in the year", formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run (with its process stage)")
    p.add_argument("observed", help="observations per rule (or article) and month: CSV, .xlsx or Parquet with columns "
                   "rule|article, month, applications, claimed [, approvals, approved, paid]")
    p.add_argument("--as-of", required=True, help="the date the observations run to (YYYY-MM-DD)")
    p.add_argument("-o", "--out", default=None, help="nowcast folder to write (default: RUN_DIR-nowcast-AS_OF)")
    p.add_argument("--force", action="store_true", help="replace an existing nowcast folder")
    p.add_argument("--min-ess", type=float, default=pipeline.NowcastSettings.min_ess,
                   help="effective sample size (assumption draws) the weights must keep")
    p.add_argument("--rounds", type=int, default=pipeline.NowcastSettings.rounds,
                   help="most rounds of fresh draws near the weighted ones")
    p.add_argument("--fresh", type=int, default=pipeline.NowcastSettings.fresh, help="fresh draws per round")
    _add_lang(p, "the terminal and the report")
    _add_executor(p)
    p.set_defaults(func=cmd_nowcast)


def _add_design(sub) -> None:
    p = sub.add_parser("design", help="award intensities within the text's latitude that keep each budget at a risk "
                       "level; or the largest cap of one rule (--cap-rule)", formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run")
    p.add_argument("--level", type=float, default=0.95, help="CVaR level: the worst 1 - level of years are the tail")
    p.add_argument("--tolerance", type=float, default=0.01,
                   help="the mean shortfall in the tail allowed, as a share of each budget")
    p.add_argument("--objective", choices=("support", "minimax"), default="support",
                   help="support: most priority-weighted expected support; minimax: smallest largest cut")
    p.add_argument("--reallocate", action="store_true",
                   help="also move claims budget between domains (total unchanged, spending floors kept)")
    p.add_argument("--floor", type=float, default=None,
                   help="lowest intensity of every rule with latitude (None: each rule's floor in policy.toml)")
    p.add_argument("--solver", choices=pipeline.SOLVERS, default="highs")
    p.add_argument("--cap-rule", default=None, metavar="RULE",
                   help="instead: the largest cap (or --number rate) of RULE that keeps its domain within budget")
    p.add_argument("--number", choices=("cap", "rate"), default="cap", help="the number --cap-rule searches")
    p.add_argument("--verify", default=None, metavar="FRESH_RUN",
                   help="instead: compare RUN_DIR/design's promise with FRESH_RUN, a run of design/scenario.toml "
                        "with another seed")
    p.add_argument("--no-save", action="store_true", help="do not write RUN_DIR/design")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _add_lang(p, "the tables")
    p.set_defaults(func=cmd_design)


def _add_lang(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--lang", type=language.check, default=language.DEFAULT, metavar="|".join(language.LANGS),
                   help=f"language of {what}: Simplified Chinese, Traditional Chinese or English (zh = zh-Hans)")


class _Help(argparse.HelpFormatter):
    """Help that shows each option's default (where it has one worth saying)."""

    def _get_help_string(self, action):
        text = action.help or ""
        shown = action.default not in (None, False, argparse.SUPPRESS) and action.option_strings
        if shown and "%(default)" not in text:
            text += " (default: %(default)s)"
        return text


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="the main job: claims, process, budget LPs, sensitivity and report for a scenario",
                       formatter_class=_Help)
    p.add_argument("scenario", nargs="?", help="scenario file or bundled scenario name (none: the baseline)")
    p.add_argument("--model", default=None, help="model for the baseline when no scenario is given")
    p.add_argument("--replications", "-r", type=int, default=100, help="simulated years")
    p.add_argument("--seed", "-s", type=int, default=2024, help="random seed: the same seed gives the same numbers")
    p.add_argument("--out", "-o", default="runs/latest", help="run folder to write")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--allow-outside", action="store_true",
                   help="let a scenario name a model folder outside the bundled models folder")
    size = p.add_mutually_exclusive_group()
    size.add_argument("--n", type=int, default=None, help="population size (segment shares kept)")
    size.add_argument("--scale", type=float, default=1.0, help="multiply every segment count")
    _add_executor(p)
    p.add_argument("--no-process", action="store_true", help="skip the SimPy process stage (faster)")
    p.add_argument("--process-replications", type=int, default=None,
                   help="replications run through the process stage (None: all)")
    p.add_argument("--process-engine", choices=("auto", "simpy"), default="auto",
                   help="auto: compute the SimPy model's year by queue recursion (same results, ~20x faster; "
                        "SimPy itself where same-instant events make its order matter); simpy: always step SimPy")
    p.add_argument("--no-budget", action="store_true", help="skip the budget LPs")
    p.add_argument("--no-report", action="store_true", help="skip the HTML report")
    _add_lang(p, "the report and the terminal")
    p.add_argument("--uncertainty", choices=pipeline.UNCERTAINTY, default="ranges",
                   help="ranges: draw every assumption from its plausible range; none: hold each at its value")
    p.add_argument("--per-draw", type=int, default=5,
                   help="replications (different firms) under each draw of the assumptions")
    p.add_argument("--no-sensitivity", action="store_true", help="skip the Sobol sensitivity stage")
    p.add_argument("--sensitivity-samples", type=int, default=8,
                   help="base samples N of the Sobol design, N x (groups + 3) evaluations "
                        "(fiscalsim sensitivity RUN_DIR for more)")
    p.add_argument("--detail", action="store_true", help="also print the budget LPs' shortfalls and CVaR budgets")
    p.add_argument("--years", default=None, metavar="FIRST-LAST",
                   help="simulate several years (e.g. 2024-2026): commitments carried into later years, the "
                        "process carrying unpaid claims across the year end, a budget per year (the model's "
                        "years.toml)")
    p.set_defaults(func=cmd_run)


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("fiscalsim")
    except metadata.PackageNotFoundError:
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fiscalsim", formatter_class=_Help,
        description="fiscalsim: what enterprises will claim under a policy's award rules, whether each domain's "
                    "budget covers it and with what probability, when the cash goes out, and which changes keep "
                    "it within budget. Money in 萬元. Run 'fiscalsim COMMAND --help' for a command's options.")
    parser.add_argument("--version", action="version", version=f"fiscalsim {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("policy", help="print the article catalogue of a policy model", formatter_class=_Help)
    p.add_argument("--model", default=None, help="bundled model name or model folder (None: the default model)")
    p.add_argument("--inputs", action="store_true", help="list the claimant attributes with units")
    p.set_defaults(func=cmd_policy)

    p = sub.add_parser("awards", help="per-firm, per-rule awards for a register of firms", formatter_class=_Help)
    p.add_argument("firms", nargs="?", help="a register: .xlsx, .csv (UTF-8 or GBK) or .parquet, one column per "
                                            "attribute (English names or the model's Chinese headers)")
    p.add_argument("--sample", action="store_true", help="use the model's bundled sample-firms.csv")
    p.add_argument("-o", "--output", help="write the awards as CSV here (nothing is written on error)")
    p.add_argument("--explain", type=int, metavar="ROW", help="explain the awards of one data row (1 = the first)")
    p.add_argument("--scenario", default=None, help="also the awards under this scenario, and the change")
    p.add_argument("--ignore-unknown", action="store_true", help="ignore columns the model does not declare")
    p.add_argument("--model", default=None, help="bundled model name or model folder")
    p.set_defaults(func=cmd_awards)

    p = sub.add_parser("calibrate", help="compare the synthetic population with its calibration targets",
                       formatter_class=_Help)
    p.add_argument("--model", default=None, help="bundled model name or model folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--replications", type=int, default=5)
    p.set_defaults(func=cmd_calibrate)

    _add_run(sub)

    p = sub.add_parser("budget", help="coverage, shortfalls, shadow prices and CVaR budgets for a finished run",
                       formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run")
    p.add_argument("--level", type=float, default=0.95, help="CVaR level")
    p.add_argument("--tolerance", type=float, default=None,
                   help="CVaR of total shortfall allowed, 萬元 (None: 1%% of mean total claims)")
    p.add_argument("--solver", choices=pipeline.SOLVERS, default="highs")
    p.add_argument("--no-save", action="store_true", help="do not write the tables to RUN_DIR/budget")
    p.set_defaults(func=cmd_budget)

    _add_design(sub)
    p = sub.add_parser("sensitivity", help="Sobol indices of a finished run's assumption groups, with more samples",
                       formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run (with --uncertainty ranges)")
    p.add_argument("--samples", "-N", type=int, default=64,
                   help="base samples N of the Saltelli design: N x (groups + 3) evaluations")
    _add_executor(p)
    p.set_defaults(func=cmd_sensitivity)

    _add_nowcast(sub)

    p = sub.add_parser("report", help="draw the HTML report (and PNG figures) of a finished run", formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run, or a nowcast folder (fiscalsim nowcast)")
    _add_lang(p, "the report (each language is its own file)")
    p.add_argument("--out", default=None, help="report folder (None: RUN_DIR/report)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("compare", help="scenarios side by side per domain and article, with differences",
                       formatter_class=_Help)
    p.add_argument("runs", nargs="+", help="run folders (differences are from the first) and nowcast folders "
                   "(each beside the forecast it updates)")
    _add_lang(p, "the comparison")
    p.add_argument("--out", default=None, help="also write the comparison tables and an HTML page here")
    p.add_argument("--force", action="store_true", help="replace an existing comparison folder")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("export", help="a finished run's tables as one Excel workbook for a colleague",
                       formatter_class=_Help)
    p.add_argument("run_dir", help="a run folder written by fiscalsim run")
    p.add_argument("-o", "--output", default="results.xlsx", help="the workbook to write (.xlsx)")
    _add_lang(p, "the sheet and column headings")
    p.set_defaults(func=cmd_export)
    return parser


INPUT_ERROR = 2  # exit status of a mistake in the user's input (a model file, a register, a scenario, --out)
INTERNAL_ERROR = 3  # exit status of a fault in fiscalsim itself, or of an incomplete installation
WORKER_FAILED = 4  # exit status of a run stopped because a worker process could not start or died


def _log_internal_error(argv: list[str] | None) -> Path:
    """Write the traceback of an unexpected exception to a log file and return its path."""
    import datetime as dt
    import traceback

    folder = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "fiscalsim"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        folder = Path(tempfile.gettempdir())
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    handle, name = tempfile.mkstemp(prefix=f"fiscalsim-error-{stamp}-", suffix=".log", dir=folder)
    with os.fdopen(handle, "w", encoding="utf-8") as log:
        log.write(f"fiscalsim {sys.argv[0]} {' '.join(argv if argv is not None else sys.argv[1:])}\n")
        traceback.print_exc(file=log)
    return Path(name)


def _internal_error(exc: BaseException, argv: list[str] | None) -> int:
    """One line for a fault of fiscalsim itself, its traceback in a log file."""
    log = _log_internal_error(argv)
    print(f"internal error, please report it: {type(exc).__name__}: {exc}\nthe details are in {log}", file=sys.stderr)
    return INTERNAL_ERROR


def _stdout_open() -> bool:
    """Whether standard output still has a reader (a pipe whose reader has gone polls as an error)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
    except (AttributeError, OSError, ValueError):  # not a file (a test's capture) or no poll: it has a reader
        return True
    return not any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))


class Terminated(BaseException):
    """SIGTERM arrived (a BaseException, so that no ``except Exception`` on the way holds it up)."""


def _terminate(signum, frame):
    raise Terminated


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if main_thread else None
    try:
        return args.func(args)
    except Terminated:  # `kill PID`: like Ctrl-C, the workers are ended and the staging folder removed
        print("terminated: nothing was written", file=sys.stderr)
        return 143
    except WorkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return WORKER_FAILED
    except FiscalsimError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return INPUT_ERROR
    except ModuleNotFoundError as exc:  # an installation without one of the declared dependencies
        print(f"error: fiscalsim needs the module {exc.name!r}, which is not installed here: reinstall fiscalsim "
              "with `python3 -m pip install .` (or the extra that names it)", file=sys.stderr)
        return INTERNAL_ERROR
    except BrokenPipeError as exc:  # output piped into `head` (any other broken pipe is a fault)
        if _stdout_open():
            return _internal_error(exc, argv)
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a fault of fiscalsim itself: one line and a log, not a traceback
        return _internal_error(exc, argv)
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
