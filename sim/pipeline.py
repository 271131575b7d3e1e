"""The pipeline: one entry point that runs a scenario through the stages and writes the run folder.

Stages, in the order data flows:

1. ``claims``: population and awards, replication by replication (:mod:`sim.montecarlo`);
2. ``process``: the SimPy year of application, review and payment, for the claims the first stage kept
   (:mod:`sim.process`);
3. ``budget``: the budget LPs on the replications' claims (:mod:`sim.budget`);
4. ``sensitivity``: Sobol indices of the assumption groups (:mod:`sim.sensitivity`);
5. ``report``: the HTML report, drawn from the tables the stages wrote (:mod:`sim.report`).

Every stage that has replications runs them on the one executor of the run (in this process or on a
Dask cluster, :mod:`sim.executors`); the same seed gives byte-identical tables whatever the executor.
The run folder's tables and manifest are defined here, once.  Everything a user can get wrong (the
scenario, the model files, the settings, the output folder) is checked before the first replication.

From Python (a notebook)::

    import sim.pipeline as pipeline
    run = pipeline.run("baseline", settings=pipeline.Settings(replications=50), out="runs/base")
    run.summary("domain")
"""

from __future__ import annotations

import calendar
import contextlib
import datetime as dt
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim import assumptions as assumptions_module
from sim import budget, executors, headline, language, montecarlo, population, queues, results, sensitivity, sizing
from sim import policy as policy_module
from sim import process as process_module
from sim import scenario as scenario_module
from sim import years as years_module
from sim.errors import FiscalsimError
from sim.progress import progress_bar

STAGES = ("claims", "process", "budget", "sensitivity", "report")
UNCERTAINTY = ("ranges", "none")
SOLVERS = budget.SOLVERS
LEVELS = ("rule", "article", "domain")


@dataclass(frozen=True)
class Settings:
    """How a run is done.  ``stages`` is a subset of :data:`STAGES` (``claims`` always runs)."""

    replications: int = 100
    seed: int = 2024
    n: int | None = None  # population size (segment shares kept), or
    scale: float = 1.0  # every segment count multiplied
    stages: tuple[str, ...] = STAGES
    process_replications: int | None = None  # None: every replication
    uncertainty: str = "ranges"  # "ranges": draw the assumptions; "none": hold them at their point values
    per_draw: int = 5  # replications (different firms) under each assumption draw
    sensitivity_samples: int = 8  # base samples N of the Sobol design: N (groups + 3) evaluations
    level: float = 0.95  # CVaR level of the budget LPs
    tolerance: float | None = None  # CVaR of total shortfall allowed (萬元); default 1% of mean claims
    solver: str = "highs"
    process_engine: str = "auto"  # "auto": the queue recursion, SimPy where it cannot be sure; "simpy": SimPy always
    lang: str = language.DEFAULT
    years: tuple[int, ...] = ()  # a multi-year horizon (consecutive years, the model's first); () or one: one year

    @property
    def multi_year(self) -> bool:
        return len(self.years) > 1

    def check(self) -> None:
        """One clear message for a setting that cannot work."""
        problems = []
        if self.replications < 1:
            problems.append(f"replications must be >= 1, got {self.replications}")
        if self.n is not None and self.n < 0:
            problems.append(f"n must be >= 0, got {self.n}")
        if not self.scale >= 0 or self.scale == float("inf"):
            problems.append(f"scale must be a non-negative number, got {self.scale}")
        unknown = set(self.stages) - set(STAGES)
        if unknown:
            problems.append(f"unknown stage {sorted(unknown)[0]!r} (stages: {', '.join(STAGES)})")
        if self.process_replications is not None and self.process_replications < 1:
            problems.append(f"process replications must be >= 1, got {self.process_replications}")
        if self.uncertainty not in UNCERTAINTY:
            problems.append(f"uncertainty must be one of {', '.join(UNCERTAINTY)}, got {self.uncertainty!r}")
        if self.per_draw < 1:
            problems.append(f"replications per assumption draw must be >= 1, got {self.per_draw}")
        if self.sensitivity_samples < 2:
            problems.append(f"sensitivity samples must be >= 2, got {self.sensitivity_samples}")
        if not 0 <= self.level < 1:
            problems.append(f"level must lie in [0, 1), got {self.level}")
        if self.tolerance is not None and not self.tolerance >= 0:
            problems.append(f"tolerance must be >= 0 萬元, got {self.tolerance}")
        if self.process_engine not in process_module.ENGINES:
            problems.append(f"process engine must be one of {', '.join(process_module.ENGINES)}, "
                            f"got {self.process_engine!r}")
        if self.solver not in budget.SOLVERS:
            problems.append(f"solver must be one of {', '.join(budget.SOLVERS)}, got {self.solver!r}")
        if "report" in self.stages and not {"process", "budget"} <= set(self.stages):
            problems.append("the report needs the process and budget stages")
        if self.years and list(self.years) != list(range(self.years[0], self.years[0] + len(self.years))):
            problems.append(f"years must be consecutive, got {list(self.years)}")
        if len(self.years) > years_module.MAX_YEARS:
            problems.append(f"at most {years_module.MAX_YEARS} years, got {len(self.years)}")
        if language.ALIASES.get(self.lang, self.lang) not in language.LANGS:
            problems.append(f"lang must be one of {', '.join(language.LANGS)}, got {self.lang!r}")
        if problems:
            raise FiscalsimError("; ".join(problems))

    @property
    def process_count(self) -> int:
        if "process" not in self.stages:
            return 0
        return self.replications if self.process_replications is None else min(self.process_replications,
                                                                                 self.replications)


@dataclass
class Context:
    """A run in progress: the validated inputs, the executor, the tables so far, the stage timings."""

    scenario: scenario_module.Scenario
    policy: Any
    spec: Any
    process_model: Any
    settings: Settings
    executor: Any
    progress: bool | Callable
    drawn: Any = None  # sim.assumptions.Drawn: the assumption draws, or None (point values)
    assumptions: Any = None  # sim.assumptions.Assumptions of the scenario (None if the model has none)
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    stage_tables: dict[str, dict[str, pd.DataFrame]] = field(default_factory=dict)  # sub-folder -> tables
    timings: dict[str, Any] = field(default_factory=dict)
    population: int = 0
    warnings: list[str] = field(default_factory=list)  # what the scenario does that its author may not mean
    years: Any = None  # sim.years.YearsModel of a multi-year run
    year_values: Any = None  # sim.years.YearsValues: its numbers per assumption draw
    year_claims: list = field(default_factory=list)  # per replication of the process stage: per year (rules, amounts)
    process_engines: dict = field(default_factory=dict)  # replications of the process stage per engine that ran them

    @contextlib.contextmanager
    def timed(self, stage: str):
        start = time.perf_counter()
        yield
        self.timings[stage] = round(time.perf_counter() - start, 3)


def prepare(scenario: str | Path | scenario_module.Scenario | None = None, *, model: str | None = None,
            settings: Settings | None = None, executor=None, progress: bool | Callable = True,
            allow_outside: bool = False, target: results.Target | None = None) -> Context:
    """Everything checked before any computation: scenario, model files, process settings, settings, and
    (with the reserved output folder ``target``) that the run fits this machine's memory and that disk."""
    settings = settings or Settings()
    settings.check()
    if scenario is None:
        chosen = scenario_module.baseline(model)
    elif isinstance(scenario, scenario_module.Scenario):
        chosen = scenario
    else:
        chosen = scenario_module.load(scenario, allow_outside=allow_outside)
    policy, spec = scenario_module.apply(chosen)
    process_model = scenario_module.apply_process(chosen, policy)
    ctx = Context(chosen, policy, spec, process_model, settings, executor or executors.local(), progress)
    if not chosen.is_baseline:
        ctx.warnings = scenario_module.warnings_of(chosen, policy, policy_module.load(chosen.model))
    groups = assumptions_module.load_groups(chosen.model)
    if target is not None:
        ctx.warnings += target.notes
    _check_size(ctx, len(groups), target)
    if groups or policy.uncertain() or spec.uncertain or process_model.uncertain:
        ctx.assumptions = assumptions_module.collect(policy, spec, process_model, groups,
                                                     f"{chosen.model}/assumptions.toml", chosen.is_baseline)
    if settings.uncertainty == "ranges" and ctx.assumptions is not None:
        data = {"policy": policy.data(), "population": spec.data(), "process": process_module.process_data(
            process_model)}
        assumptions_module.check_extremes(data, ctx.assumptions, policy.source_text, chosen.name)
        draws = -(-settings.replications // settings.per_draw)
        rows = assumptions_module.design(draws, len(ctx.assumptions.groups), settings.seed)
        ctx.drawn = assumptions_module.Drawn(data, ctx.assumptions, rows, settings.per_draw, policy.source_text,
                                             chosen.name)
    if chosen.section("years") and not settings.multi_year:
        scenario_module.apply_years(chosen, policy)  # checked all the same, so a mistake shows now
        ctx.warnings.append(f"scenario {chosen.name}: its [years] overrides act only in a multi-year run "
                            "(--years 2024-2026)")
    if settings.multi_year:
        first = policy.meta.get("year")
        if first is not None and settings.years[0] != first:
            raise years_module.YearsError(f"years {settings.years[0]}-{settings.years[-1]}: the model's policy is "
                                          f"for {first}; start the span there")
        ctx.years = scenario_module.apply_years(chosen, policy)
        ctx.year_values = years_module.draw_values(ctx.years, -(-settings.replications // settings.per_draw),
                                                   settings.per_draw, settings.seed, ctx.drawn is not None)
    return ctx


def _check_size(ctx: Context, groups: int, target: results.Target | None) -> None:
    """Refuse, before anything is allocated, a run that cannot fit this machine's memory or the output's disk;
    say how long a long run will take (:mod:`sim.sizing`)."""
    s = ctx.settings
    found = sizing.estimate(replications=s.replications, claimants=int(ctx.spec.counts(s.n, s.scale).sum()),
                            rules=len(ctx.policy.rules), groups=groups, per_draw=s.per_draw,
                            workers=ctx.executor.workers, years=max(len(s.years), 1))
    sizing.check_memory(found, s.replications, sizing.available_memory())
    if target is not None:
        target.need(int(found.disk))
    if ctx.progress is True and found.seconds > sizing.SAY_TIME_ABOVE_S:
        t = language.labels(s.lang)
        print(t["estimate"].format(time=sizing.duration(found.seconds), workers=ctx.executor.workers,
                                   memory=sizing.size(found.memory), disk=sizing.size(found.disk)),
              file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- stages
@dataclass(frozen=True)
class ProcessYear:
    """The process stage's work on one replication's claims, done in the worker that drew them (so the
    claims need not travel): the year by :func:`sim.process.simulate`, on the draw's process model."""

    model: Any  # the scenario's process model (the point values)
    seed: int
    rule_map: np.ndarray  # the policy's rule index -> the process model's
    engine: str

    @classmethod
    def of(cls, model, policy, seed: int, engine: str) -> ProcessYear:
        """The year for ``policy``'s claims on the process ``model`` (its kernels compiled here, before any
        worker forks)."""
        queues.warm()
        return cls(model, seed, pd.Index(list(model.rules)).get_indexer(list(policy.rule_ids)), engine)

    def __call__(self, replication: int, claims: montecarlo.Claims, process=None) -> process_module.ProcessSummary:
        model = self.model if process is None else process
        return process_module.simulate((self.rule_map[claims.rule], claims.amount), model, self.seed, replication,
                                       engine=self.engine).summary()


def _process_year(ctx: Context) -> ProcessYear | None:
    """The process year to run inside the claims stage's tasks (one-year runs; None otherwise)."""
    if "process" not in ctx.settings.stages or ctx.years is not None:
        return None
    return ProcessYear.of(ctx.process_model, ctx.policy, ctx.settings.seed, ctx.settings.process_engine)


def claims_stage(ctx: Context) -> montecarlo.MonteCarloResult:
    s = ctx.settings
    with ctx.timed("claims"):
        then = _process_year(ctx)
        result = montecarlo.run(ctx.policy, ctx.spec, s.replications, s.seed, n=s.n, scale=s.scale,
                                executor=ctx.executor, keep_claims=s.process_count, progress=ctx.progress,
                                label="1 population and awards" + (", process year" if then else ""),
                                drawn=ctx.drawn, keep_rules=_kept_rules(ctx), then=then)
        if result.then:
            ctx.timings["process_years_in_claims_tasks_s"] = round(result.then_seconds, 3)
        ctx.population = result.population
        _check_finite(result.rules)
        ctx.tables.update(rules=result.rules, firms=result.firms, budgets=result.budgets)
        for level in LEVELS:
            ctx.tables[f"summary_{level}"] = montecarlo.summarise(result.rules, ctx.policy, level, result.budgets)
        if ctx.assumptions is not None:
            ctx.tables["assumption_numbers"] = ctx.assumptions.table()
        if ctx.drawn is not None:
            ctx.tables["assumptions"] = assumptions_module.draws_table(ctx.assumptions, ctx.drawn.rows, s.per_draw,
                                                                       s.replications)
    return result


def _kept_rules(ctx: Context) -> tuple[int, ...]:
    """Indices of the rules a multi-year run follows claimant by claimant (none in a one-year run)."""
    if ctx.years is None:
        return ()
    return tuple(ctx.policy.rule_ids.index(r) for r in years_module.sources(ctx.years))


def years_stage(ctx: Context, result: montecarlo.MonteCarloResult) -> None:
    """The later years of a multi-year run: each later year's fresh population (if the package is renewed),
    the commitments carried from earlier years, the liabilities table and its summaries."""
    s, model, values = ctx.settings, ctx.years, ctx.year_values
    horizon = len(s.years)
    kept_rules = _kept_rules(ctx)
    with ctx.timed("years"):
        later, later_claims, later_kept = [], [], []
        for k in range(1, horizon):
            if not model.renewed:
                later.append(None)
                continue
            fresh = montecarlo.run(ctx.policy, ctx.spec, s.replications, years_module.year_seed(s.seed, k), n=s.n,
                                   scale=s.scale, executor=ctx.executor, keep_claims=s.process_count,
                                   progress=ctx.progress, label=f"1 population and awards {s.years[k]}",
                                   drawn=ctx.drawn, keep_rules=kept_rules, year=k, growth=values)
            _check_finite(fresh.rules)
            gone = years_module.ended(ctx.policy, s.years[k])
            later.append(_without_rules(fresh.rules, [ctx.policy.rule_ids[i] for i in gone]))
            later_claims.append([_without_claims(c, gone) for c in fresh.claims])
            later_kept.append(fresh.kept)
        share = {r.id: float(r.district_share.value) for r in ctx.policy.rules}
        sources = dict(zip(years_module.sources(model), kept_rules))  # rule id -> its index
        carried = []
        for r in range(s.replications):
            kept_by_year = [result.kept[r]] + [k[r] for k in later_kept]
            kept_by_year += [montecarlo.join_kept([])] * (horizon - len(kept_by_year))
            cohorts = [{rule: years_module.Cohort(*kept.of(index)) for rule, index in sources.items()}
                       for kept in kept_by_year]
            carried.append(years_module.carry(model, ctx.policy, cohorts, values, s.seed, r, share))
        liabilities = years_module.liabilities_frame(ctx.policy, model, s.years, result.rules, later, carried)
        budgets = years_module.year_budgets(model, values, result.budgets, s.years)
        ctx.tables.update(
            liabilities=liabilities, year_budgets=budgets,
            years_summary=years_module.summary_table(liabilities, s.per_draw),
            commitments=years_module.commitments_table(liabilities, s.per_draw, _factors(ctx)),
            years_budget=years_module.budget_table(liabilities, budgets),
            years_numbers=model.table())
        ctx.year_claims = [_year_claims(ctx, r, result.claims[r], [c[r] for c in later_claims], carried[r])
                           for r in range(s.process_count)]


def _without_rules(rules: pd.DataFrame, gone: list[str]) -> pd.DataFrame:
    """A year's rules table with the money and claimants of the rules ``gone`` (their period over) set to 0."""
    if not gone:
        return rules
    out = rules.copy()
    over = out["rule"].isin(gone).to_numpy()
    for column in ("award", "district", "claimants"):
        out.loc[over, column] = 0
    return out


def _without_claims(claims: montecarlo.Claims, gone: tuple[int, ...]) -> montecarlo.Claims:
    """A replication's claims less those of the rules (indices) ``gone``."""
    keep = ~np.isin(claims.rule, gone)
    return claims if keep.all() else montecarlo.Claims(claims.rule[keep], claims.amount[keep])


def _factors(ctx: Context) -> dict[str, np.ndarray]:
    """Each assumption group's draws (uniforms, one per draw): the one-year groups and the multi-year ones."""
    out = {}
    if ctx.drawn is not None:
        out.update({key: ctx.drawn.rows[:, i] for i, key in enumerate(ctx.assumptions.keys)})
    out.update(ctx.year_values.groups)
    return out


def _year_claims(ctx: Context, replication: int, first: montecarlo.Claims, later: list, carried) -> list:
    """One replication's claims of each year for the process (rule index in policy order, district amount):
    the first year's as kept; a later year's fresh claims without the rules :func:`sim.years.carry` replaces,
    then the term rules' entrants and commitments."""
    out = [(first.rule, first.amount)]
    for k in range(1, len(ctx.settings.years)):
        rules, amounts = [], []
        if k - 1 < len(later):
            gone = [ctx.policy.rule_ids.index(r) for r in years_module.replaced(ctx.years, k)]
            keep = ~np.isin(later[k - 1].rule, gone)
            rules.append(later[k - 1].rule[keep])
            amounts.append(later[k - 1].amount[keep])
        for rule, amount in zip(*carried.claims[k]):
            rules.append(np.full(len(amount), rule, dtype=np.int64))
            amounts.append(amount)
        out.append((np.concatenate(rules or [np.zeros(0, np.int64)]), np.concatenate(amounts or [np.zeros(0)])))
    return out


def _check_finite(rules: pd.DataFrame) -> None:
    """Every claim total is a finite number; a rule whose totals are not gets one clear message."""
    bad = rules.loc[~np.isfinite(rules["award"].to_numpy()) | ~np.isfinite(rules["district"].to_numpy()), "rule"]
    if len(bad):
        names = ", ".join(sorted(set(map(str, bad))))
        raise FiscalsimError(f"claims of rule {names} are not finite numbers: check the rule's numbers and the "
                             "population attributes it reads (money in 萬元)")


def process_task(shared: tuple, item: tuple[int, montecarlo.Claims]) -> process_module.ProcessSummary:
    """One replication's claims through the year (run on the executor) where the claims stage could not run it
    in its own tasks (a replication cut into several), on the process model of the replication's draw."""
    year, drawn = shared
    replication, claims = item
    return year(replication, claims, None if drawn is None else _drawn_process(drawn, drawn.draw_of(replication)))


_PROCESS_CACHE: dict = {}


def _drawn_process(drawn, draw: int):
    """The process model of one draw, built once per worker and draw (replications come draw by draw)."""
    key = (id(drawn), draw)
    if key not in _PROCESS_CACHE:
        _PROCESS_CACHE.clear()
        _PROCESS_CACHE[key] = drawn.build(draw)[2]
    return _PROCESS_CACHE[key]


def years_process_task(shared: tuple, item: tuple[int, list]) -> list[tuple]:
    """One replication's years through the SimPy process, one after the other: each year's claims, with what
    the year before left unpaid (approved but not paid, or deferred when the budget ran out) paid first.
    Per year: the summary, and the carried amounts in and out per domain.  The first year is the one-year
    run's process year, bit for bit."""
    year, drawn, years, values, calendar = shared
    model, seed, rule_map, engine = year.model, year.seed, year.rule_map, year.engine
    replication, per_year = item
    if drawn is not None:
        model = _drawn_process(drawn, drawn.draw_of(replication))
    domains = len(model.policy.domain_keys)
    domain_of = process_module.rule_indices(model)[1]
    out, carried, carried_in = [], None, np.zeros(domains)
    for k, (rules, amounts) in enumerate(per_year):
        budgets = None if k == 0 else {
            d: b * years_module.budget_factor(years, values, calendar[k], calendar[0], d, replication)
            for d, b in model.budgets.items()}
        result = process_module.simulate((rule_map[rules], amounts), model, years_module.year_seed(seed, k),
                                         replication, budgets=budgets, carried=carried, engine=engine)
        a = result.apps
        left = a.parts["unpaid"] + a.parts["deferred"]
        mask = left > 0
        carried = (a.rule[mask], left[mask])
        carried_out = np.bincount(domain_of[carried[0]], weights=carried[1], minlength=domains)
        out.append((result.summary(), carried_in, carried_out))
        carried_in = carried_out  # what one year leaves is what the next takes in
    return out


def process_stage(ctx: Context, result: montecarlo.MonteCarloResult) -> None:
    model = ctx.process_model
    s = ctx.settings
    with ctx.timed("process"):
        with progress_bar(ctx.progress, s.process_count, "2 process (SimPy)") as bar:
            if result.then:  # the years ran in the claims stage's tasks
                summaries = result.then
                bar(len(summaries))
            elif ctx.years is None:
                year = ProcessYear.of(model, ctx.policy, s.seed, s.process_engine)
                summaries = ctx.executor.map(process_task, (year, ctx.drawn), list(enumerate(result.claims)),
                                             progress=bar)
            else:
                shared = (ProcessYear.of(model, ctx.policy, s.seed, s.process_engine), ctx.drawn, ctx.years,
                          ctx.year_values, s.years)
                per_year = ctx.executor.map(years_process_task, shared, list(enumerate(ctx.year_claims)),
                                            progress=bar)
                summaries = [years[0][0] for years in per_year]
                ctx.tables["years_process"] = _years_process_table(per_year, list(ctx.policy.domain_keys), s.years)
        ctx.tables.update(process_module.summarise(summaries, model))
        ctx.process_engines = dict(Counter(summary.engine for summary in summaries))
        ctx.tables["process_bureaus"] = pd.DataFrame([
            {"bureau": b.name, "name_en": b.name_en, "reviewers": b.reviewers, "review_days": b.review_days}
            for b in model.bureaus.values()])


def _years_process_table(per_year: list, domains: list[str], calendar: tuple[int, ...]) -> pd.DataFrame:
    """Replication x year x domain: claimed (carried-in claims included), the outcomes, what came in from
    the year before and what goes on to the next (萬元), and the day the budget ran out."""
    rows = []
    for replication, years in enumerate(per_year):
        for k, (summary, carried_in, carried_out) in enumerate(years):
            for d, domain in enumerate(domains):
                parts = summary.domain_parts[d]
                rows.append({"replication": replication, "year": calendar[k], "domain": domain, "claimed": parts[0],
                             **{name: parts[1 + i] for i, name in enumerate(process_module.OUTCOMES)},
                             "carried_in": carried_in[d], "carried_out": carried_out[d],
                             "runout_day": summary.runout_day[d]})
    out = pd.DataFrame(rows)
    out["domain"] = pd.Categorical(out["domain"], categories=domains)
    return out


def budget_stage(ctx: Context) -> None:
    s = ctx.settings
    with progress_bar(ctx.progress, 1, "3 budget (LPs)") as bar, ctx.timed("budget"):  # one step, named
        tables, lp_timings = budget.analyse(ctx.policy, ctx.tables["rules"], level=s.level, tolerance=s.tolerance,
                                            solver=s.solver)
        if ctx.years is not None:
            ctx.tables["years_coverage"] = budget.years_coverage(ctx.policy, ctx.tables["liabilities"],
                                                                 ctx.tables["year_budgets"], s.solver, s.level,
                                                                 s.tolerance)
        bar(1)
    ctx.stage_tables["budget"] = tables
    ctx.timings["budget_lps"] = lp_timings


def sensitivity_stage(ctx: Context) -> None:
    """Sobol indices over the assumption groups (nothing to do when the assumptions are held fixed)."""
    s = ctx.settings
    if ctx.drawn is None:
        return
    with ctx.timed("sensitivity"):
        tables = sensitivity.analyse(ctx.drawn, ctx.policy, ctx.spec, s.seed, s.sensitivity_samples, n=s.n,
                                     scale=s.scale, executor=ctx.executor, progress=ctx.progress)
    ctx.tables.update(tables)


def calibration_stage(ctx: Context) -> None:
    """The population beside its calibration targets, each marked as evidence or as used to set a parameter."""
    with ctx.timed("calibration"):
        ctx.tables["calibration"] = population.calibration_table(ctx.spec, seed=ctx.settings.seed, replications=2)


def headline_stage(ctx: Context) -> None:
    """The decision-grade table per domain (:mod:`sim.headline`), from the tables the stages wrote."""
    s = ctx.settings
    ctx.tables["headline"] = headline.table(
        ctx.tables["rules"], ctx.tables["budgets"], list(ctx.policy.domain_keys), s.per_draw,
        None if ctx.drawn is None else ctx.drawn.rows, () if ctx.drawn is None else ctx.drawn.assumptions.keys,
        ctx.tables.get("sobol_indices"))


def budget_of(run: results.Run, *, level: float = 0.95, tolerance: float | None = None, solver: str = "highs",
              save: bool = True) -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """The budget stage again for a finished run (another level, tolerance or solver); with ``save`` its
    tables replace ``RUN_DIR/budget``."""
    replace(Settings(), level=level, tolerance=tolerance, solver=solver, stages=("claims",)).check()
    tables, timings = budget.analyse(run.policy(), run.rules, level=level, tolerance=tolerance, solver=solver)
    if "liabilities" in run:  # a multi-year run: the coverage LP of every year, on that year's budgets
        tables["years_coverage"] = budget.years_coverage(run.policy(), run["liabilities"], run["year_budgets"], solver,
                                                         level, tolerance)
    if save:
        results.write_run(run.path / "budget", tables,
                          {"kind": "fiscalsim budget", "run": str(run.path), "level": level, "tolerance": tolerance,
                           "solver": solver, "timings": timings}, force=True)
    return tables, timings


def run_scenario(run: results.Run) -> scenario_module.Scenario:
    """The scenario a finished run used, read again from its file (which must not have changed since)."""
    m = run.manifest
    if not m.get("scenario_file"):
        return scenario_module.baseline(m["model"])
    try:
        chosen = scenario_module.load(m["scenario_file"], allow_outside=True)
    except FiscalsimError as exc:
        raise FiscalsimError(f"{run.path}: the run's scenario file cannot be read again: {exc}") from None
    if chosen.content_hash != m["scenario_hash"]:
        raise FiscalsimError(f"{run.path}: the scenario file {m['scenario_file']} changed since the run; run it "
                             "again, or restore the file")
    return chosen


def design_of(run: results.Run, *, level: float = 0.95, tolerance: float = 0.01, objective: str = "support",
              reallocate: bool = False, floor: float | None = None, solver: str = "highs", sweep: bool = True,
              save: bool = True) -> dict[str, Any]:
    """The design LP for a finished run (:mod:`sim.design`): tables, and with ``save`` the folder
    ``RUN_DIR/design`` with them and ``scenario.toml``, which applies the designed intensities (rerun it
    with another seed to check the promise on fresh replications)."""
    import tomli_w

    from sim import design as design_module

    policy = run.policy()
    data = design_module.DesignInput.from_run(policy, run.rules, run["budgets"], tolerance, floor)
    result = design_module.design(data, level, objective, reallocate, solver)
    tables = design_module.tables(result)
    if sweep:
        path = design_module.path_table(data, level, objective=objective, solver=solver)
        tables["path"] = path
        first = design_module.first_cut(path)
        tables["rules"]["first_cut_at"] = tables["rules"]["rule"].map(first).astype(float)
    chosen = run_scenario(run)
    name = f"{chosen.name}-design"
    body = {"name": name, "model": chosen.model,
            "description": (f"The award intensities fiscalsim design chose for run {run.path.name if run.path else ''}"
                            f" (CVaR at {level:.0%} of each budget's shortfall within {tolerance:.1%} of the budget"
                            f"{', after the reallocation in design/reallocation' if reallocate else ''})."),
            "title_zh": f"{chosen.title_zh or chosen.name}:按优化后的奖补力度",
            "title_en": f"{chosen.title_en or chosen.name}: designed award intensities",
            **design_module.scenario_data(result, json.loads(chosen.overrides), name)}
    text = tomli_w.dumps(body)
    settings = design_module.settings_of(level, tolerance, objective, reallocate, floor, solver)
    if save:
        if run.path is None:
            raise FiscalsimError("the run has no folder to save the design in; run with --out first")
        results.write_run(run.path / "design", tables,
                          {"kind": "fiscalsim design", "run": str(run.path), "settings": settings,
                           "timings": {"build_s": result.solution.lp.build_seconds,
                                       "solve_s": result.solution.solve_seconds + result.solution.model_seconds}},
                          force=True, files={"scenario.toml": text})
    return {"tables": tables, "scenario": text, "settings": settings}


def rebuilt(run: results.Run):
    """(policy, population spec, drawn) of a finished run from its folder: the model data it used and, where
    its assumptions varied, the run's own draws of them (None where they were held at their values)."""
    m = run.manifest
    policy = run.policy()
    spec = population.spec_from_dict(json.loads(run.text("population.json")), policy, f"{run.path}/population.json")
    if m.get("uncertainty") != "ranges":
        return policy, spec, None
    process_model = process_module.process_from_dict(json.loads(run.text("process.json")), policy,
                                                     f"{run.path}/process.json")
    groups = {key: assumptions_module.Group(key, g["label_zh"], g["label_en"], g["what"], g.get("what_zh", ""))
              for key, g in json.loads(run.text("assumptions.json"))["groups"].items()}
    found = assumptions_module.collect(policy, spec, process_model, groups, f"{run.path}/assumptions.json",
                                      all_used=False)
    data = {"policy": policy.data(), "population": spec.data(), "process": process_module.process_data(process_model)}
    design = assumptions_module.design(-(-m["replications"] // m["per_draw"]), len(found.groups), m["seed"])
    return policy, spec, assumptions_module.Drawn(data, found, design, m["per_draw"], policy.source_text,
                                                  m["scenario"])


def cap_redesign_of(run: results.Run, rule_id: str, *, number: str = "cap", level: float = 0.95,
                    tolerance: float = 0.01, high: float | None = None, save: bool = True,
                    progress: bool | Callable = True) -> dict[str, pd.DataFrame]:
    """The largest cap (or rate) of one rule that keeps its domain within budget at ``level`` (CVaR of the
    shortfall within ``tolerance`` x the budget), re-evaluating the rule on the run's own replications;
    with ``save`` the tables go to ``RUN_DIR/design_cap/<rule>-<number>``."""
    from sim import design as design_module

    policy, spec, drawn = rebuilt(run)
    if rule_id not in policy.rule_ids:
        raise FiscalsimError(f"{run.path}: no rule {rule_id!r}; rules: {', '.join(policy.rule_ids)}")
    rule = policy.rule(rule_id)
    if rule.number(number) is None:
        have = ", ".join(sorted(rule.numbers)) or "none"
        raise FiscalsimError(f"rule {rule_id} ({rule.kind}) has no {number}; its numbers: {have}")
    if not 0 <= level < 1 or not 0 <= tolerance < 1:
        raise FiscalsimError(f"level and tolerance must lie in [0, 1), got {level} and {tolerance}")
    m = run.manifest
    settings = m["settings"]
    job = montecarlo.ClaimsJob(policy, spec, m["seed"], settings["n"], settings["scale"], drawn=drawn)
    replications = int(m["replications"])
    top = high if high is not None else (min(1.0, 4 * rule.number(number).value) if number == "rate"
                                         else 4 * rule.number(number).value)
    with progress_bar(progress, replications, f"design: re-evaluating {rule_id}") as bar:
        kept = design_module.keep_claimants(job, rule_id, number, top, replications, bar)
    rules = run.rules
    rule_claims = (rules[rules["rule"] == rule_id].set_index("replication")["district"]
                   .reindex(range(replications), fill_value=0.0).to_numpy(dtype=float))
    domain_claims = (rules[rules["domain"] == rule.domain].groupby("replication")["district"].sum()
                     .reindex(range(replications), fill_value=0.0).to_numpy(dtype=float))
    b = budget.claims_budget_frame(run["budgets"], [rule.domain], range(replications))[rule.domain].to_numpy(float)
    out = design_module.cap_redesign(kept, number, rule_claims, domain_claims, b, level, tolerance, top)
    if save and run.path is not None:
        results.write_run(run.path / "design_cap" / f"{rule_id}-{number}", out,
                          {"kind": "fiscalsim design --cap-rule", "run": str(run.path), "rule": rule_id,
                           "number": number, "level": level, "tolerance": tolerance}, force=True)
    return out


def verify_design(run: results.Run, fresh: results.Run) -> pd.DataFrame:
    """A saved design's promised CVaR and P(overrun) per domain beside a fresh run of its scenario."""
    from sim import design as design_module

    stage = run.stage("design")
    if stage is None:
        raise FiscalsimError(f"{run.path}: no design yet; run `fiscalsim design {run.path}` first")
    name = f"{run.manifest['scenario']}-design"
    if fresh.manifest.get("scenario") != name:
        raise FiscalsimError(f"{fresh.path}: a run of scenario {fresh.manifest.get('scenario')!r}, not of the design "
                             f"({name!r}); run `fiscalsim run {run.path}/design/scenario.toml -s ANOTHER_SEED`")
    if fresh.manifest.get("seed") == run.manifest.get("seed"):
        raise FiscalsimError(f"{fresh.path}: the same seed as {run.path}: the same replications prove nothing; "
                             "run it with another seed")
    settings = stage.manifest.get("settings", {})
    change = stage["reallocation"] if "reallocation" in stage else None
    return design_module.verify(stage["rules"], stage["lines"], (run.rules, run["budgets"], run.manifest["per_draw"]),
                                (fresh.rules, fresh["budgets"], fresh.manifest["per_draw"]),
                                settings.get("level", 0.95), change)


def sensitivity_of(run: results.Run, *, samples: int = 64, executor=None, progress: bool | Callable = True,
                   save: bool = True) -> dict[str, pd.DataFrame]:
    """The Sobol stage again for a finished run, with more base samples; with ``save`` its tables (and the
    headline with its driver from these indices) go to ``RUN_DIR/sensitivity``."""
    m = run.manifest
    if m.get("uncertainty") != "ranges":
        raise FiscalsimError(f"{run.path}: the run held its assumptions at their point values "
                             "(--uncertainty none); there is nothing to analyse")
    replace(Settings(), sensitivity_samples=samples).check()
    policy, spec, drawn = rebuilt(run)
    settings = m["settings"]
    tables = sensitivity.analyse(drawn, policy, spec, m["seed"], samples, n=settings["n"], scale=settings["scale"],
                                 executor=executor, progress=progress)
    tables["headline"] = headline.table(run["rules"], run["budgets"], list(policy.domain_keys), m["per_draw"],
                                        drawn.rows, drawn.assumptions.keys, tables["sobol_indices"])
    if save:
        results.write_run(run.path / "sensitivity", tables, {"kind": "fiscalsim sensitivity", "run": str(run.path),
                                                             "samples": samples}, force=True)
    return tables


def manifest(ctx: Context) -> dict[str, Any]:
    s, chosen = ctx.settings, ctx.scenario
    out = {
        "kind": "fiscalsim run", "scenario": chosen.name, "scenario_file": chosen.path,
        "scenario_description": chosen.description, "scenario_title_zh": chosen.title_zh,
        "scenario_title_en": chosen.title_en, "scenario_hash": chosen.content_hash, "model": chosen.model,
        "policy_hash": ctx.policy.content_hash, "population_hash": ctx.spec.content_hash, "seed": s.seed,
        "replications": s.replications, "population": ctx.population, "n": s.n, "scale": s.scale,
        "stages": [stage for stage in STAGES if stage in s.stages], "executor": ctx.executor.name,
        "uncertainty": s.uncertainty if ctx.drawn is not None else "none", "per_draw": s.per_draw,
        "assumption_groups": [] if ctx.assumptions is None else list(ctx.assumptions.keys),
        "workers": ctx.executor.workers, "money_unit": "萬元", "settings": asdict(s), "timings": ctx.timings,
        "warnings": ctx.warnings,
    }
    if "process" in s.stages:
        out.update(process_replications=s.process_count, exhaustion=ctx.process_model.exhaustion,
                   process_engines=ctx.process_engines)
    if ctx.years is not None:
        out.update(years=list(s.years), renewed=ctx.years.renewed)
    return out


def _files(ctx: Context) -> dict[str, str]:
    """The model data the run used (scenario applied), and its assumption groups, as files of the run folder."""
    import json

    files = {"policy.json": ctx.policy.raw, "population.json": ctx.spec.raw,
             "process.json": ctx.process_model.raw}
    groups = {"groups": {g.key: {"label_zh": g.label_zh, "label_en": g.label_en, "what": g.what, "what_zh": g.what_zh}
                         for g in (ctx.assumptions.groups if ctx.assumptions is not None else ())}}
    files["assumptions.json"] = json.dumps(groups, ensure_ascii=False, indent=1)
    if ctx.years is not None:
        files["years.json"] = ctx.years.raw
    return files


def _write(ctx: Context, target: results.Target) -> Path:
    """The run folder: tables, the model data used, the budget sub-folder, the report, the manifest last."""
    files, out = _files(ctx), target.out
    with results.RunWriter(target) as writer:
        for name, table in ctx.tables.items():
            writer.table(name, table)
        for name, text in files.items():
            writer.file(name, text)
        for stage, tables in ctx.stage_tables.items():
            results.write_run(writer.staging / stage, tables, {"kind": f"fiscalsim {stage}", "run": str(out),
                                                               "settings": asdict(ctx.settings),
                                                               "timings": ctx.timings.get(f"{stage}_lps")})
        if "report" in ctx.settings.stages:
            from sim import report

            with ctx.timed("report"):
                draft = results.Run(out, manifest(ctx), dict(ctx.tables), files,
                                    {k: results.Run(out / k, {}, v) for k, v in ctx.stage_tables.items()})
                forked = isinstance(ctx.executor, executors.Processes) and ctx.executor.workers > 1
                report.write_report(draft, lang=ctx.settings.lang, out=writer.staging / "report",
                                    progress=ctx.progress, side_by_side=ctx.executor.map if forked else None)
        return writer.finish(manifest(ctx))


def run(scenario: str | Path | scenario_module.Scenario | None = None, *, model: str | None = None,
        settings: Settings | None = None, out: str | Path | None = None, force: bool = False, executor=None,
        progress: bool | Callable = True, allow_outside: bool = False) -> results.Run:
    """Run a scenario (a file, a bundled scenario's name, a :class:`~sim.scenario.Scenario`, or None for the
    model's baseline) through the chosen stages and return the run.  With ``out`` the run folder is written
    (atomically: complete or not at all) and read back; without it the tables stay in memory and the
    report stage is skipped.
    """
    settings = settings or Settings()
    if out is None and "report" in settings.stages:
        settings = replace(settings, stages=tuple(s for s in settings.stages if s != "report"))
    with contextlib.ExitStack() as stack:
        target = None if out is None else stack.enter_context(results.reserve(out, force))
        ctx = prepare(scenario, model=model, settings=settings, executor=executor, progress=progress,
                      allow_outside=allow_outside, target=target)
        _compute(ctx)
        if target is None:
            return results.Run(None, manifest(ctx), ctx.tables, _files(ctx),
                               {k: results.Run(None, {}, v) for k, v in ctx.stage_tables.items()})
        return results.load(_write(ctx, target))


def _compute(ctx: Context) -> None:
    """Every stage of a prepared run, in order, into ``ctx``."""
    settings = ctx.settings
    result = claims_stage(ctx)
    if ctx.years is not None:
        years_stage(ctx, result)
    if "process" in settings.stages:
        process_stage(ctx, result)
    if "budget" in settings.stages:
        budget_stage(ctx)
    if "sensitivity" in settings.stages:
        sensitivity_stage(ctx)
    calibration_stage(ctx)
    headline_stage(ctx)


# ----------------------------------------------------------------------------- the in-year nowcast
@dataclass(frozen=True)
class NowcastSettings:
    """How a nowcast is done: the effective sample size (in assumption draws) to reach, the most rounds of
    fresh draws, the draws per round and the replications per fresh draw."""

    min_ess: float = 30.0
    rounds: int = 4
    fresh: int = 60
    fresh_per_draw: int = 1

    def check(self) -> None:
        problems = []
        if not self.min_ess >= 1:
            problems.append(f"--min-ess must be >= 1 draw, got {self.min_ess}")
        if self.rounds < 0:
            problems.append(f"--rounds must be >= 0, got {self.rounds}")
        if self.fresh < 2:
            problems.append(f"--fresh must be >= 2 draws, got {self.fresh}")
        if self.fresh_per_draw < 1:
            problems.append(f"replications per fresh draw must be >= 1, got {self.fresh_per_draw}")
        if problems:
            raise FiscalsimError("; ".join(problems))


def _nowcast_frame(policy) -> Any:
    from sim import nowcast as nowcast_module

    domains = list(policy.domain_keys)
    return nowcast_module.Frame(list(policy.rule_ids), {r.id: r.article for r in policy.rules}, domains,
                                np.array([domains.index(r.domain) for r in policy.rules]), int(policy.meta["year"]))


def nowcast_ensemble(run: results.Run, policy) -> Any:
    """The run's replications as the nowcast's prior ensemble (those the process stage ran)."""
    from sim import nowcast as nowcast_module

    if "process_monthly" not in run:
        raise FiscalsimError(f"{run.path}: the run has no process stage (months of applications and payments); run "
                             "it again without --no-process, then nowcast")
    if "liabilities" in run:
        raise FiscalsimError(f"{run.path}: a multi-year run; nowcast a one-year run of the year observed")
    m = run.manifest
    reps = int(m.get("process_replications", m["replications"]))
    if "assumptions" in run and m.get("uncertainty") == "ranges":
        draws = run["assumptions"].drop_duplicates(["draw", "group"])
        u = draws.pivot(index="draw", columns="group", values="u").reindex(columns=m["assumption_groups"])
        draw_of = np.arange(reps) // int(m["per_draw"])
        u = u.to_numpy(dtype=float)
    else:
        draw_of, u = np.zeros(reps, dtype=np.int64), np.zeros((1, 0))
    return nowcast_module.ensemble_of(run.tables, list(policy.rule_ids), list(policy.domain_keys), draw_of, u)


def _run_models(run: results.Run) -> tuple:
    """(policy, population spec, drawn, process model) of a finished run, built once for a nowcast."""
    policy, spec, drawn = rebuilt(run)
    process_model = process_module.process_from_dict(json.loads(run.text("process.json")), policy,
                                                     f"{run.path}/process.json")
    return policy, spec, drawn, process_model


def _fresh_draws(run: results.Run, models: tuple, rows: np.ndarray, round_: int, per_draw: int, executor, progress):
    """Fresh replications of the run's model (``models``: :func:`_run_models`) at the assumption draws ``rows``
    (uniforms per group): claims and the SimPy year, on the run's executor, from the round's own seed stream."""
    from sim import nowcast as nowcast_module

    policy, spec, drawn, process_model = models
    fresh = assumptions_module.Drawn(drawn.data, drawn.assumptions, rows, per_draw, drawn.source_text, drawn.origin)
    seed, _ = nowcast_module.round_seed(int(run.manifest["seed"]), round_)
    settings = run.manifest["settings"]
    count = len(rows) * per_draw
    engine = settings.get("process_engine", "auto")  # runs written before the engine was a setting: "auto"
    result = montecarlo.run(policy, spec, count, seed, n=settings["n"], scale=settings["scale"], executor=executor,
                            keep_claims=count, progress=progress, drawn=fresh,
                            label=f"nowcast: fresh draws and their process year, round {round_}",
                            then=ProcessYear.of(process_model, policy, seed, engine))
    tables = {**process_module.summarise(result.then, process_model), "rules": result.rules,
              "budgets": result.budgets}
    return nowcast_module.ensemble_of(tables, list(policy.rule_ids), list(policy.domain_keys),
                                      np.arange(count) // per_draw, rows, source=round_)


def nowcast_of(run: results.Run, observed: str | Path | pd.DataFrame, as_of: str, *,
               settings: NowcastSettings | None = None, executor=None, progress: bool | Callable = True,
               out: str | Path | None = None, force: bool = False, lang: str | None = language.DEFAULT,
               detail: bool = True) -> results.Run:
    """The run's forecast updated with what was observed to ``as_of`` (:mod:`sim.nowcast`): the run's draws
    weighed by the likelihood of the observations, fresh draws near the weighted ones while the weight the
    observations can be given (beta) is below 1; with ``out`` the nowcast folder is written (atomically), with
    its report in ``lang`` (None: no report).  ``detail=False`` leaves out the month-by-month narrowing and the
    fit tables (the synthetic-truth validation does not need them)."""
    settings = settings or NowcastSettings()
    settings.check()
    with contextlib.nullcontext() if out is None else results.reserve(out, force) as target:
        tables, manifest_, files = _nowcast(run, observed, as_of, settings, executor or executors.local(), progress,
                                            detail)
        if target is None:
            return results.Run(None, manifest_, tables, files)
        path = results.write_into(target, tables, manifest_, files)
    if lang is not None:
        from sim import report

        report.write_nowcast_report(results.load(path), lang)
    return results.load(path)


def _nowcast(run: results.Run, observed, as_of: str, settings: NowcastSettings, executor, progress,
             detail: bool) -> tuple[dict, dict, dict]:
    """The nowcast's tables, manifest and files (see :func:`nowcast_of`)."""
    from sim import nowcast as nowcast_module

    models = _run_models(run)
    policy = models[0]
    frame = _nowcast_frame(policy)
    articles = sorted(set(frame.article_of.values()))
    if isinstance(observed, pd.DataFrame):
        seen = nowcast_module.check_observed(observed, frame.rule_ids, articles, frame.year, as_of)
    else:
        seen = nowcast_module.read_observed(observed, frame.rule_ids, articles, frame.year, as_of)
    ensemble = nowcast_ensemble(run, policy)
    keys = nowcast_module.keys_of(seen, frame.rule_ids, frame.article_of)
    cube = nowcast_module.observed_cube(seen, keys)
    spread = nowcast_module.spread_of(ensemble, keys, seen.months)
    nowcast_module.check_possible(ensemble, cube, keys, spread, seen, frame.year)
    reaches, group_keys = _reaches(models, frame) if ensemble.u.shape[1] else ([], ())
    state = _nowcast_rounds(run, models, ensemble, keys, cube, seen, spread, reaches, settings, executor, progress)
    ensemble, terms, log_q, target, beta, log_w, values, weights, facts, rounds = state
    warnings = []
    if beta < 1.0:
        warnings.append(f"the observations are weighed at {beta:.3g} of their full weight (beta) so that the answer "
                        f"rests on at least {target:g} assumption draws (effective sample size {rounds[-1]['ess']:.1f})"
                        f" after {len(rounds) - 1} rounds of fresh draws; each domain and each assumption is then "
                        "weighed on its own observations and adjusted to them by regression (see the domains and "
                        "assumptions tables)")
    if not reaches:
        warnings.append("the run held its assumptions at their values (--uncertainty none): the nowcast puts the "
                        "observations in place of the run's months and adjusts to them, but learns nothing about "
                        "the assumptions; nowcast a run with --uncertainty ranges for that")
    elif target < settings.min_ess:
        warnings.append(f"only {ensemble.draws} assumption draws: the effective sample size asked for "
                        f"({settings.min_ess:g}) is more than half of them; run with more replications")
    tables = nowcast_tables(frame, seen, ensemble, keys, cube, terms, log_w, log_q, target, detail)
    if reaches:
        found = nowcast_module.assumptions_table(models[2].assumptions.numbers, group_keys, values, weights)
        tables["assumptions"] = found.merge(facts.assign(group=list(group_keys)), on="group", how="left")
        tables["weights"] = pd.concat([tables["weights"], pd.DataFrame(ensemble.u, columns=[
            f"u:{k}" for k in group_keys])], axis=1)
    tables["rounds"] = pd.DataFrame(rounds).drop(columns="seconds")
    manifest_ = {"kind": "fiscalsim nowcast", "run": str(run.path), "scenario": run.manifest.get("scenario"),
                 "model": run.manifest.get("model"), "seed": run.manifest.get("seed"),
                 "as_of": seen.as_of.isoformat(), "months": seen.months, "level": seen.level,
                 "observed_file": seen.path, "observed_terms": int(len(terms.cells)), "ess": rounds[-1]["ess"],
                 "beta": beta, "draws": ensemble.draws, "replications": int(len(ensemble.draw)),
                 "settings": asdict(settings),
                 "likelihood": {"model_error": nowcast_module.MODEL_ERROR,
                                "contradiction_tail": nowcast_module.CONTRADICTION,
                                "contradiction_sd": nowcast_module.CONTRADICTION_Z,
                                "contradiction_ratio": nowcast_module.CONTRADICTION_RATIO},
                 "warnings": warnings, "money_unit": "萬元", "year": frame.year,
                 "timings": {"rounds_s": [r["seconds"] for r in rounds]}}
    files = {"policy.json": run.text("policy.json")}
    if "assumptions.json" in run.texts or (run.path is not None and (run.path / "assumptions.json").is_file()):
        files["assumptions.json"] = run.text("assumptions.json")
    return tables, manifest_, files


def _nowcast_rounds(run, models, ensemble, keys, cube, seen, spread, reaches, settings, executor, progress
                    ) -> tuple:
    """Weigh the draws; while the data cannot be given their full weight (beta < 1), add a round of fresh
    draws near each group's posterior and weigh again (population Monte Carlo, balance-heuristic weights).
    Returns the final (ensemble, terms, log q, target ESS, beta, log weights, group values, group weights,
    group facts, rounds table rows)."""
    from sim import nowcast as nowcast_module

    sizes, proposals, rounds = [ensemble.draws], [], []
    values = weights = facts = None  # each group's posterior values and weights, from the round before
    for g in range(settings.rounds + 1):
        start = time.perf_counter()
        if g:
            proposal = nowcast_module.Proposal.of(values, weights)
            _, rng = nowcast_module.round_seed(int(run.manifest["seed"]), g)
            ensemble = ensemble.joined(_fresh_draws(run, models, proposal.sample(settings.fresh, rng), g,
                                                    settings.fresh_per_draw, executor, progress))
            sizes.append(settings.fresh)
            proposals.append(proposal)
        terms = nowcast_module.cell_terms(ensemble, keys, cube, seen.months, spread)
        log_q = nowcast_module.mixture_log_density(ensemble.u, sizes, proposals)
        target = min(settings.min_ess, ensemble.draws / 2)
        beta, log_w = nowcast_module.tempered(terms.loglik.sum(axis=1), log_q, target)
        if reaches:
            values, weights, facts = nowcast_module.group_posteriors(ensemble, terms, keys, cube, seen.months,
                                                                     reaches, log_q, target)
        rounds.append({"round": g, "draws": ensemble.draws, "replications": len(ensemble.draw), "beta": beta,
                       "ess": nowcast_module.ess(log_w), "seconds": round(time.perf_counter() - start, 3)})
        # (the seconds go to the manifest's timings, not to the rounds table: same seed, same bytes)
        if beta >= 1.0 or not reaches or seen.empty:
            break
    return ensemble, terms, log_q, target, beta, log_w, values, weights, facts, rounds


def _reaches(models: tuple, frame) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Per assumption group of the run (``models``: :func:`_run_models`), the mask of the rules its numbers
    move."""
    from sim import nowcast as nowcast_module

    policy, spec, drawn, process_model = models
    touched = nowcast_module.group_reach(drawn.assumptions, policy, spec, process_model)
    keys = drawn.assumptions.keys
    return [np.isin(frame.rule_ids, sorted(touched[k])) for k in keys], keys


def nowcast_tables(frame, seen, ensemble, keys, cube, terms, log_w, log_q, target, detail: bool = True
                   ) -> dict[str, pd.DataFrame]:
    """The nowcast's tables (:mod:`sim.nowcast`): claims, domains, narrowing, fit, weights, observed."""
    from sim import nowcast as nowcast_module

    prior = nowcast_module.prior_of(ensemble, frame.domain_of)
    posts, local = nowcast_module.domain_posteriors(ensemble, terms, keys, cube, seen.months, frame, log_q, target)
    draw_weights = np.exp(log_w)
    tables = {
        "claims": nowcast_module.claims_table(prior, posts, frame, nowcast_module.claimed_to_date(seen, frame)),
        "domains": nowcast_module.domains_table(prior, posts, frame, frame.year).merge(local, on="domain"),
        "observed": seen.frame.assign(key=seen.frame["key"].astype(str)),
        "weights": pd.DataFrame({"draw": np.arange(ensemble.draws), "round": ensemble.source,
                                 "replications": ensemble.per_draw, "loglik": terms.loglik.sum(axis=1),
                                 "log_proposal": log_q, "weight": draw_weights}),
    }
    if detail:
        tables["narrowing"] = nowcast_module.narrowing_table(ensemble, log_q, keys, cube, seen.months, frame, target,
                                                             (posts, local))
        tables["fit"] = nowcast_module.fit_table(ensemble, terms, keys, seen.months, draw_weights)
    return tables


def observed_sample(model: str | None = None, *, months: int = 6, seed: int = 20240630, level: str = "rule",
                    executor=None, progress: bool | Callable = False) -> tuple[pd.DataFrame, results.Run]:
    """What a bureau would report after ``months`` months of one simulated year of the model's baseline (its
    assumptions drawn from their ranges on ``seed``, one replication): the table a nowcast reads, and the
    one-replication run it comes from (its year-end figures are the truth a nowcast should find)."""
    from sim import nowcast as nowcast_module

    settings = Settings(replications=1, seed=seed, per_draw=1, stages=("claims", "process"))
    truth = run(model=model, settings=settings, executor=executor, progress=progress)
    policy = truth.policy()
    table = nowcast_module.observed_table(truth["process_monthly"], months, level,
                                          {r.id: r.article for r in policy.rules})
    year = int(policy.meta["year"])
    return table.assign(month=[f"{year}-{m:02d}" for m in table["month"]]), truth


def nowcast_validation(prior: results.Run, truths: results.Run, domain: str, groups: tuple[str, ...] = (),
                       months: tuple[int, ...] = (3, 6, 9), settings: NowcastSettings | None = None,
                       progress: bool | Callable = False) -> pd.DataFrame:
    """The synthetic-truth check of the nowcast: each replication of ``truths`` (a run of the same model with its
    own seed, one replication per assumption draw: truths drawn from the assumption ranges) is observed for its
    first ``months`` months and nowcast from ``prior``; one row per truth and horizon with the truth's
    year-end payments of ``domain``, the nowcast's P5-P95 of them and whether it covers the truth, and for each
    of ``groups`` the truth's value of the group's first number beside its posterior P5, P50, P95."""
    from sim import nowcast as nowcast_module

    settings = settings or NowcastSettings(rounds=0)
    policy = truths.policy()
    year = int(policy.meta["year"])
    monthly, cash, drawn = truths["process_monthly"], truths["process_cash"], truths["assumptions"]
    paid = cash[cash["domain"] == domain].groupby("replication")["paid"].sum()
    reps = sorted(monthly["replication"].unique())
    rows = []
    with progress_bar(progress, len(reps) * len(months), "nowcast: synthetic truths") as bar:
        for r in reps:
            for m in months:
                observed = nowcast_module.observed_table(monthly[monthly["replication"] == r], m)
                as_of = dt.date(year, m, calendar.monthrange(year, m)[1]).isoformat()
                nc = nowcast_of(prior, observed, as_of, settings=settings, progress=False, lang=None, detail=False)
                d = nc["domains"].set_index("domain").loc[domain]
                truth = float(paid.get(r, 0.0))
                tolerance = 1e-9 * max(abs(truth), 1.0)  # a truth at an interval's end (payments stopped) is inside
                inside = d["paid_p5"] - tolerance <= truth <= d["paid_p95"] + tolerance
                row = {"truth_replication": int(r), "months": m, "truth": truth, "p5": d["paid_p5"],
                       "p50": d["paid_p50"], "p95": d["paid_p95"], "covered": bool(inside),
                       "width": d["paid_p95"] - d["paid_p5"], "prior_p5": d["prior_paid_p5"],
                       "prior_p95": d["prior_paid_p95"], "beta": d["beta"], "ess": d["ess"]}
                found = nc["assumptions"].drop_duplicates("group").set_index("group")
                for group in groups:
                    value = drawn[(drawn["replication"] == r) & (drawn["group"] == group)]["value"].iloc[0]
                    columns = ("prior_p5", "prior_p95", "p5", "p50", "p95")
                    row.update({f"{group}:truth": float(value),
                                **{f"{group}:{c}": float(found.loc[group, c]) for c in columns}})
                rows.append(row)
                bar(1)
    return pd.DataFrame(rows)
