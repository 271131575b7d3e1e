"""Variance-based sensitivity: which assumption, if it were known, would most narrow the answer.

First-order and total Sobol indices of each domain's district-paid claims, of its shortfall against the
claims budget, and of its overrun indicator, over the model's assumption groups (:mod:`sim.assumptions`),
estimated from a Saltelli design: two matrices ``A`` and ``B`` of scrambled Sobol points, and for each
group ``i`` the matrix ``AB_i`` (``A`` with column ``i`` from ``B``).  First-order indices by Saltelli's
2010 estimator, total indices by Jansen's (1999), confidence intervals by bootstrap over the design's rows.

The population draw is itself a factor of the design (the *aleatory* column: each row's replication
number), so its total index is the share of the variance left when every assumption is fixed.

The estimators are written here rather than taken from SALib: they take every output (all domains, three
measures) in one pass, treat the random population as a factor of its own, give percentile bootstrap
intervals from the run's seed, and the tests check them against the Ishigami function's analytic indices.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.stats import qmc

from sim import assumptions as assumptions_module
from sim import fused, montecarlo
from sim import policy as policy_module
from sim import population as population_module
from sim.headline import ALEATORY
from sim.progress import progress_bar

SOBOL_STREAM = 0x50B0_0011
MEASURES = ("claims", "shortfall", "overrun")
REPLICATION_SPAN = 1 << 30  # replication numbers of the design rows are drawn from [0, REPLICATION_SPAN)
BLOCK_CACHE = 20_000  # block totals a worker keeps (about 1.5 KB each)


# ----------------------------------------------------------------------------- the estimators
@dataclass(frozen=True)
class Design:
    """A Saltelli design over ``k`` factors: A, B (N x k) and the N x k x k stack of AB_i."""

    a: np.ndarray
    b: np.ndarray

    @property
    def n(self) -> int:
        return len(self.a)

    @property
    def k(self) -> int:
        return self.a.shape[1]

    def rows(self) -> np.ndarray:
        """Every point to evaluate, stacked: A, B, then AB_0 ... AB_{k-1}; N (k + 2) rows."""
        blocks = [self.a, self.b]
        for i in range(self.k):
            ab = self.a.copy()
            ab[:, i] = self.b[:, i]
            blocks.append(ab)
        return np.vstack(blocks)


def saltelli(n: int, k: int, seed: int) -> Design:
    """N base points of a scrambled Sobol sequence in 2k dimensions, split into A and B."""
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(SOBOL_STREAM,))))
    points = qmc.Sobol(d=2 * k, scramble=True, rng=rng).random(n)
    return Design(points[:, :k], points[:, k:])


def indices(f: np.ndarray, n: int, k: int, resamples: int = 500, level: float = 0.95,
            seed: int = 0) -> dict[str, np.ndarray]:
    """First-order (Saltelli 2010) and total (Jansen 1999) indices with bootstrap percentile intervals.

    ``f`` holds the outputs at :meth:`Design.rows` (N (k + 2) rows, any number of output columns).  Returns
    arrays of shape (k, outputs): ``first``, ``total``, and ``first_low`` ... ``total_high``.

    >>> d = saltelli(1024, 2, seed=1)
    >>> x = d.rows()
    >>> out = indices((x[:, 0] + 2 * x[:, 1])[:, None], d.n, d.k)  # variances 1 : 4
    >>> [round(float(v), 1) for v in out["total"][:, 0]]
    [0.2, 0.8]
    """
    f = np.asarray(f, dtype=np.float64)
    f = f.reshape(len(f), -1)
    fa, fb = f[:n], f[n:2 * n]
    fab = f[2 * n:].reshape(k, n, -1)

    def estimate(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        a, b, ab = fa[rows], fb[rows], fab[:, rows]
        variance = np.concatenate([a, b]).var(axis=0, ddof=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            first = np.where(variance > 0, np.mean(b * (ab - a), axis=1) / variance, np.nan)
            total = np.where(variance > 0, 0.5 * np.mean((a - ab) ** 2, axis=1) / variance, np.nan)
        return first, total

    first, total = estimate(np.arange(n))
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(SOBOL_STREAM, 1)))
    boot = [estimate(rng.integers(0, n, n)) for _ in range(resamples)]
    tail = (1 - level) / 2
    firsts, totals = np.array([b[0] for b in boot]), np.array([b[1] for b in boot])
    with warnings.catch_warnings():  # an output that never varies has no index: NaN, quietly
        warnings.simplefilter("ignore", RuntimeWarning)
        return {"first": first, "total": total,
                "first_low": np.nanquantile(firsts, tail, axis=0),
                "first_high": np.nanquantile(firsts, 1 - tail, axis=0),
                "total_low": np.nanquantile(totals, tail, axis=0),
                "total_high": np.nanquantile(totals, 1 - tail, axis=0)}


# ----------------------------------------------------------------------------- the model as a function
@dataclass(frozen=True)
class SobolJob:
    """What a worker needs to evaluate design rows: the scenario's data and assumptions, and the claims job
    settings (seed, population size)."""

    drawn: assumptions_module.Drawn  # its rows are the design's rows (groups only)
    policy: object
    spec: object
    seed: int
    n: int | None
    scale: float
    replications: np.ndarray  # the replication number of each row (the aleatory column)
    claims_groups: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))  # award-rule groups
    rules: dict = field(default_factory=dict, compare=False, repr=False)  # in each worker: policies built, by values
    segment_groups: tuple = ()  # per segment: the population groups that change its claimants' draws
    blocks: dict = field(default_factory=dict, compare=False, repr=False)  # in each worker: block totals, by key


def kinds(assumptions: assumptions_module.Assumptions) -> dict[str, str]:
    """What each assumption group changes: ``population`` (the claimants drawn), ``claims`` (the award
    rules' numbers), ``budget`` (claims budgets only) or ``process`` (the SimPy year only)."""
    out = {}
    for key in assumptions.keys:
        files = {(m.file, _is_budget(m)) for m in assumptions.members(key)}
        out[key] = ("population" if any(f == "population" for f, _ in files) else
                    "claims" if ("policy", False) in files else "budget" if files & {("policy", True)} else "process")
    return out


def of_kind(kind: dict[str, str], keys: tuple[str, ...], what: str) -> np.ndarray:
    """Indices (in ``keys`` order) of the groups of one kind (:func:`kinds`)."""
    return np.array([k for k, key in enumerate(keys) if kind[key] == what], dtype=np.int64)


def _is_budget(number) -> bool:
    return number.path[0] == "domains" and number.path[2:] == ("claims_budget", "value")


def shared_draws(rows: np.ndarray, replications: np.ndarray, kind: dict[str, str], keys: tuple[str, ...]
                 ) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Design rows that draw the same claimants (same replication number and population assumptions) and,
    among them, those with the same claims (same award-rule numbers too).

    Returns one tuple per population to draw: a representative row for each distinct set of claims on it;
    and for every row, the representative whose claims it has.  A row that differs from another only in a
    budget or process assumption (Saltelli's ``AB_i`` for such a group) has that row's claims exactly.
    """
    population, claims = of_kind(kind, keys, "population"), of_kind(kind, keys, "claims")
    by_population: dict[tuple, dict[tuple, int]] = {}
    representative = np.empty(len(rows), dtype=np.int64)
    for r, (row, replication) in enumerate(zip(rows, replications, strict=True)):
        people = (int(replication), *row[population].tolist())
        claims_on = by_population.setdefault(people, {})
        representative[r] = claims_on.setdefault(tuple(row[claims].tolist()), r)
    return [tuple(c.values()) for c in by_population.values()], representative


def evaluate_population(job: SobolJob, rows: tuple[int, ...]) -> list[np.ndarray]:
    """District-paid claims per domain of design rows that share their claimants: the population of the first
    drawn once, block by block, and every row's award rules applied to each block."""
    first = _rules_of(job, rows[0])
    drawn = assumptions_module.apply(job.drawn.data, job.drawn.assumptions, job.drawn.rows[rows[0]], ("population",))
    spec = population_module.spec_from_dict(drawn["population"], first,
                                            origin=f"{job.drawn.origin}, design row {rows[0]} (population)")
    models = [montecarlo.Model(_rules_of(job, row), spec, spec.counts(job.n, job.scale)) for row in rows]
    replication = int(job.replications[rows[0]])
    values = job.drawn.rows[rows[0]]
    rules_keys = [tuple(job.drawn.rows[row][job.claims_groups].tolist()) for row in rows]
    if len(job.blocks) > BLOCK_CACHE:
        job.blocks.clear()
    totals: list[list] = [[] for _ in models]
    buffers = fused.layout_buffers(models[0].compiled, max([m for _, _, m in models[0].plan] + [1]))
    for segment, block_index, m in models[0].plan:
        drawn_here = (replication, segment, block_index, m, *values[job.segment_groups[segment]].tolist())
        keys = [(drawn_here, rules) for rules in rules_keys]
        if any(key not in job.blocks for key in keys):  # draw the block once for the rows that lack it
            block = population_module.draw_block(spec, job.seed, replication, segment, block_index, m)
            laid_out = {}  # the kernel's layout of the block, once for the rows that read the same columns
            for key, model in zip(keys, models, strict=True):
                if key not in job.blocks:
                    columns = model.compiled.columns
                    if fused.jit.AVAILABLE and m and columns not in laid_out:
                        laid_out[columns] = fused.column_matrix(model.compiled, block, buffers if not laid_out else
                                                                None)
                    job.blocks[key] = montecarlo.block_totals(model.policy, block, model.compiled,
                                                              laid_out.get(columns))
        for key, parts in zip(keys, totals, strict=True):
            parts.append(job.blocks[key])
    out = []
    for model, parts in zip(models, totals, strict=True):
        combined = montecarlo.combine(parts or [montecarlo.empty_totals(model.policy)])
        domains = np.array([r.domain for r in model.policy.rules])
        out.append(np.array([math.fsum(combined.district[domains == d]) for d in model.policy.domain_keys]))
    return out


def _rules_of(job: SobolJob, row: int):
    """The policy of a design row as its claims see it (its award-rule numbers; budgets are taken apart by
    :func:`row_budgets`): built once per set of rule values in a worker, whichever rows share it."""
    key = tuple(job.drawn.rows[row][job.claims_groups].tolist())
    if key not in job.rules:
        drawn = assumptions_module.apply(job.drawn.data, job.drawn.assumptions, job.drawn.rows[row], ("policy",))
        job.rules[key] = policy_module.from_dict(drawn["policy"], origin=f"{job.drawn.origin}, design row {row} "
                                              "(policy)", source_text=job.drawn.source_text)
    return job.rules[key]


def segment_groups(assumptions: assumptions_module.Assumptions, spec, keys: tuple[str, ...]) -> tuple:
    """Per segment of the population, the indices of the assumption groups that change how its claimants are
    drawn: its own numbers (``segments``), its claimant kind's (``claimants``), and any other population
    number (which may reach every segment).  A block of a segment is the same draw for two design rows that
    agree on these groups, the replication number and the block's size."""
    kinds_of = [segment.claimant for segment in spec.segments]
    touches: list[set[int]] = [set() for _ in spec.segments]
    for g, key in enumerate(keys):
        for number in assumptions.members(key):
            if number.file != "population":
                continue
            path = number.path
            reached = ([path[1]] if path[0] == "segments" else
                       [s for s, kind in enumerate(kinds_of) if kind == path[1]] if path[0] == "claimants" else
                       range(len(touches)))
            for s in reached:
                touches[s].add(g)
    return tuple(np.array(sorted(t), dtype=np.int64) for t in touches)


def row_budgets(drawn: assumptions_module.Drawn, policy, rows: np.ndarray) -> np.ndarray:
    """Every design row's claims budget per domain (萬元): the scenario's, with the budget assumptions set to
    each row's draw (what building the row's policy would give, without building it)."""
    domains = list(policy.domain_keys)
    budgets = np.tile([d.claims_budget.value for d in policy.domains], (len(rows), 1)).astype(np.float64)
    index = {key: k for k, key in enumerate(drawn.assumptions.keys)}
    for number in drawn.assumptions.numbers:
        if number.file == "policy" and _is_budget(number):
            column = domains.index(number.path[1])
            group = index[number.uncertainty.group]
            for r, row in enumerate(rows):
                budgets[r, column] = float(assumptions_module.value_in(number, float(row[group])))
    return budgets


def analyse(drawn: assumptions_module.Drawn, policy, spec, seed: int, base_samples: int, n: int | None = None,
            scale: float = 1.0, executor=None, progress: bool | Callable = False,
            resamples: int = 500) -> dict[str, pd.DataFrame]:
    """Sobol indices of every domain's claims, shortfall and overrun over the assumption groups and the
    population draw; tables ``sobol_indices`` and ``sobol_outputs`` (the evaluations).

    Rows of the design that share their claimants draw them once (:func:`shared_draws`): a row that changes
    only award-rule numbers applies its rules to the same blocks, one that changes only budgets or the
    process reuses the claims outright; and a row that changes the population of some segments only
    reuses the other segments' blocks of its base row (:func:`segment_groups`; the rows are ordered so that
    a base row and its variants run together).  The evaluations are those of every row on its own, bit for
    bit.
    """
    from sim.executors import Serial

    executor = executor or Serial()
    groups = drawn.assumptions.keys
    k = len(groups)
    design = saltelli(base_samples, k + 1, seed)
    rows = design.rows()
    replications = np.floor(rows[:, k] * REPLICATION_SPAN).astype(np.int64)
    kind = kinds(drawn.assumptions)
    job = SobolJob(assumptions_module.Drawn(drawn.data, drawn.assumptions, rows[:, :k], 1, drawn.source_text,
                                            drawn.origin), policy, spec, seed, n, scale, replications,
                   of_kind(kind, groups, "claims"),
                   segment_groups=segment_groups(drawn.assumptions, spec, groups))
    populations, representative = shared_draws(rows[:, :k], replications, kind, groups)
    populations.sort(key=lambda rows_: int(replications[rows_[0]]))  # a base row beside its variants: blocks reused
    fused.warm(fused.compile_rules(policy))
    with progress_bar(progress, len(populations), "4 sensitivity (Sobol)") as bar:
        results = executor.map(evaluate_population, job, populations, progress=bar)
    found_claims = {row: value for rows_, values in zip(populations, results, strict=True)
                    for row, value in zip(rows_, values, strict=True)}
    claims = np.array([found_claims[r] for r in representative])
    budgets = row_budgets(drawn, policy, rows[:, :k])
    outputs = {"claims": claims, "shortfall": np.maximum(claims - budgets, 0.0),
               "overrun": (claims > budgets).astype(np.float64)}
    domains = list(policy.domain_keys)
    stacked = np.hstack([outputs[m] for m in MEASURES])
    found = indices(stacked, design.n, design.k, resamples=resamples, seed=seed)
    names = [*groups, ALEATORY]
    records = []
    for j, (measure, domain) in enumerate((m, d) for m in MEASURES for d in domains):
        variance = float(stacked[:2 * design.n, j].var(ddof=1))
        for i, group in enumerate(names):
            records.append({"domain": domain, "measure": measure, "group": group, "variance": variance,
                            **{key: float(value[i, j]) for key, value in found.items()}})
    evaluations = pd.DataFrame({"row": np.repeat(np.arange(len(rows)), len(domains)),
                                "replication": np.repeat(replications, len(domains)),
                                "domain": domains * len(rows), "claims": claims.ravel(),
                                "claims_budget": budgets.ravel()})
    return {"sobol_indices": pd.DataFrame(records), "sobol_evaluations": evaluations}

