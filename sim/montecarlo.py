"""Claims engine and Monte Carlo runner: claim distributions per rule, article and domain.

Each replication draws a whole population (:mod:`sim.population`), applies every award rule
(:mod:`sim.fused`, the compiled twin of :mod:`sim.awards`) block by block, and keeps per-rule totals
(planned award and district-paid part), the number of claimants per rule, and the number of claimant
firms overall and per domain.  Memory does not grow with the population: one generation block
(65,536 claimants) is held at a time.  For the replications the process stage will simulate, the
claims themselves (rule, district-paid amount) are kept too, so nothing is drawn twice.

Bit-identical results whatever the chunking, executor or worker count: sums are taken per generation
block (a partition fixed by the population, not by the user) and combined with ``math.fsum``, which is
exact and so independent of the order in which blocks arrive.  The unit of work is a replication (or,
for very large populations, a group of its blocks), run by an executor (:mod:`sim.executors`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from sim import fused
from sim import population as pop
from sim.executors import Serial
from sim.policy import Policy
from sim.progress import progress_bar

QUANTILES = (0.05, 0.50, 0.95, 0.99)
CLAIMANTS_PER_TASK = 1 << 20  # blocks of one replication are grouped into tasks of about a million claimants


@dataclass(frozen=True)
class BlockTotals:
    """What one generation block contributes: per-rule sums and counts."""

    award: np.ndarray  # (rules,) float64 planned award
    district: np.ndarray  # (rules,) float64 district-paid part
    claimants: np.ndarray  # (rules,) int64 claimants with an award
    firms: np.ndarray  # (1 + domains,) int64 claimants with any award: overall, then per domain


def block_totals(policy: Policy, columns: dict, compiled: fused.CompiledRules | None = None,
                 matrix: tuple[np.ndarray, np.ndarray] | None = None) -> BlockTotals:
    """Evaluate every rule on one block of claimants (attribute name -> column) and reduce it to totals.

    One fused compiled pass (:mod:`sim.fused`) when numba is available, else the NumPy kernels with the
    same reduction; both give the same bits.  ``matrix``: the block already laid out for the kernel.
    """
    n = len(next(iter(columns.values())))
    if n == 0:
        return empty_totals(policy)
    (award, district), claimants, firms = fused.totals(policy, columns, compiled, matrix, n)
    return BlockTotals(award=award, district=district, claimants=claimants, firms=firms)


def empty_totals(policy: Policy) -> BlockTotals:
    r = len(policy.rules)
    return BlockTotals(np.zeros(r), np.zeros(r), np.zeros(r, dtype=np.int64),
                       np.zeros(1 + len(policy.domain_keys), dtype=np.int64))


def combine(parts: Sequence[BlockTotals]) -> BlockTotals:
    """Exact, order-independent combination of block totals (``math.fsum`` per rule)."""
    if not parts:
        raise ValueError("no blocks to combine")
    award = np.array([math.fsum(col) for col in np.array([p.award for p in parts]).T])
    district = np.array([math.fsum(col) for col in np.array([p.district for p in parts]).T])
    return BlockTotals(award, district, np.sum([p.claimants for p in parts], axis=0),
                       np.sum([p.firms for p in parts], axis=0))


# ----------------------------------------------------------------------------- the unit of work
@dataclass(frozen=True)
class Model:
    """The policy and population one replication runs on, compiled and cut into generation blocks."""

    policy: Policy
    spec: pop.PopulationSpec
    counts: np.ndarray
    money: float = 1.0  # every money attribute multiplied (a later year's growth); 1: as drawn
    compiled: fused.CompiledRules = field(init=False)
    plan: tuple = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "compiled", fused.compile_rules(self.policy))
        object.__setattr__(self, "plan", tuple(pop.block_plan(self.counts)))

    @property
    def budgets(self) -> np.ndarray:
        return np.array([d.claims_budget.value for d in self.policy.domains])


@dataclass(frozen=True)
class ClaimsJob:
    """Everything a worker needs to run replications: sent to each worker once.

    Without ``drawn`` every replication runs on ``policy`` and ``spec``; with it, each replication runs on
    the model of its assumption draw (rebuilt from the data and cached by draw in the worker).
    """

    policy: Policy
    spec: pop.PopulationSpec
    seed: int
    n: int | None = None
    scale: float = 1.0
    keep_claims: int = 0  # keep the claims of replications 0 .. keep_claims - 1 (for the process stage)
    drawn: Any = None  # sim.assumptions.Drawn, or None for the point values
    keep_rules: tuple[int, ...] = ()  # rules whose claimants every replication keeps one by one (multi-year runs)
    year: int = 0  # index of the year in a multi-year horizon (0: the model's own year)
    growth: Any = None  # sim.years.YearsValues: the growth of claimants and money in later years
    then: Any = None  # called in the worker on each kept replication: then(replication, claims, built) -> result
    base: Model = field(init=False)
    cache: dict = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        object.__setattr__(self, "base", Model(self.policy, self.spec, self.spec.counts(self.n, self.scale)))
        object.__setattr__(self, "cache", {})

    @property
    def plan(self) -> tuple:
        return self.base.plan

    def model(self, replication: int) -> Model:
        return self.built(replication)[0]

    def built(self, replication: int) -> tuple[Model, Any]:
        """The replication's model, and its draw's process model (None for the point values: the caller's)."""
        if self.drawn is None and self.year == 0:
            return self.base, None
        draw = replication // self.growth.per_draw if self.drawn is None else self.drawn.draw_of(replication)
        if draw not in self.cache:
            self.cache.clear()  # replications come draw by draw: keep one
            policy, spec, process = (self.policy, self.spec, None) if self.drawn is None else self.drawn.build(draw)
            self.cache[draw] = self._grown(policy, spec, replication), process
        return self.cache[draw]

    def _grown(self, policy: Policy, spec: pop.PopulationSpec, replication: int) -> Model:
        """The model of a replication in year ``self.year`` of the horizon: claimant numbers and money grown."""
        if self.year == 0:
            return Model(policy, spec, spec.counts(self.n, self.scale))
        people = (1.0 + self.growth.of("growth.claimants", replication)) ** self.year
        money = (1.0 + self.growth.of("growth.amounts", replication)) ** self.year
        n = None if self.n is None else int(round(self.n * people))
        return Model(policy, spec, spec.counts(n, self.scale * people), money)

    def groups(self) -> list[tuple[int, ...]]:
        """Block indices of each task of one replication, about :data:`CLAIMANTS_PER_TASK` claimants each
        (one task per replication when the population itself is drawn)."""
        if self.drawn is not None or self.year > 0:
            return [()]  # () stands for every block of the replication's own plan
        groups, current, held = [], [], 0
        for k, (_, _, m) in enumerate(self.plan):
            current.append(k)
            held += m
            if held >= CLAIMANTS_PER_TASK:
                groups.append(tuple(current))
                current, held = [], 0
        if current or not groups:
            groups.append(tuple(current))
        return groups


@dataclass(frozen=True)
class Claims:
    """The claims of one replication: rule (index in the policy's rule order) and district-paid amount."""

    rule: np.ndarray
    amount: np.ndarray


@dataclass(frozen=True)
class Kept:
    """The claimants of some rules one by one (rule index, planned award, district-paid part), in block order:
    what a multi-year run carries into later years."""

    rule: np.ndarray
    award: np.ndarray
    district: np.ndarray

    def of(self, rule: int) -> tuple[np.ndarray, np.ndarray]:
        mask = self.rule == rule
        return self.award[mask], self.district[mask]


@dataclass(frozen=True)
class TaskOutput:
    totals: list[BlockTotals]
    claims: Claims | None
    budgets: np.ndarray  # (domains,) the claims budgets of the replication's model
    kept: Kept | None = None
    then: Any = None  # what ClaimsJob.then made of the claims (they are then not sent back)
    then_seconds: float = 0.0


def claims_of_block(model: Model, block: dict, m: int) -> Claims:
    """Every positive award of a block, rule by rule (the NumPy path's order), as district-paid claims (the
    NumPy path's; the compiled path has them from the fused kernel's own pass, see :func:`model_task`)."""
    gross = fused.awards_per_claimant(model.compiled, block, m)
    rows, cols = np.nonzero(gross > 0)
    return Claims(rows.astype(np.int64), gross[rows, cols] * model.compiled.share[rows])


def replication_task(job: ClaimsJob, item: tuple[int, tuple[int, ...]]) -> TaskOutput:
    """Draw and evaluate a group of generation blocks of one replication (the unit of distributed work);
    an empty group means every block."""
    replication, group = item
    model, process = job.built(replication)
    keep = replication < job.keep_claims
    out = model_task(model, job.seed, replication, group, keep, job.keep_rules)
    if keep and job.then is not None:  # the replication's claims go on in this worker (a whole replication)
        start = time.perf_counter()
        then = job.then(replication, out.claims, process)
        out = replace(out, claims=None, then=then, then_seconds=time.perf_counter() - start)
    return out


def kept_of_block(model: Model, block: dict, m: int, rules: tuple[int, ...]) -> Kept:
    """The claimants of ``rules`` in a block with a positive award, rule by rule."""
    rows = np.asarray(rules, dtype=np.int64)
    gross = fused.awards_of_rules(model.compiled, rows, block, m)
    r, c = np.nonzero(gross > 0)
    award = gross[r, c]
    return Kept(rows[r], award, award * model.compiled.share[rows[r]])


def model_task(model: Model, seed: int, replication: int, group: tuple[int, ...] = (),
               keep: bool = False, keep_rules: tuple[int, ...] = ()) -> TaskOutput:
    """Generation blocks of one replication (all of them for an empty group) on one model: totals, with
    ``keep`` the claims, and with ``keep_rules`` those rules' claimants one by one."""
    totals, claims, kept = [], [], []
    blocks = group or range(len(model.plan))
    largest = max([model.plan[k][2] for k in blocks] + [1])
    buffers = fused.layout_buffers(model.compiled, largest)  # one block's layout and awards at a time
    awards = np.empty(model.compiled.n_rules * largest) if keep else None
    for k in blocks:
        segment, block_index, m = model.plan[k]
        block = pop.draw_block(model.spec, seed, replication, segment, block_index, m)
        if model.money != 1.0:
            for name in model.compiled.wide:
                block[name] = block[name] * model.money
        matrix = fused.column_matrix(model.compiled, block, buffers) if fused.jit.AVAILABLE and m else None
        if keep and matrix is not None:  # totals and each claimant's awards in one compiled pass
            (award, district), claimants, firms, gross = fused.totals(model.policy, block, model.compiled, matrix, m,
                                                                      awards=True, awards_into=awards)
            totals.append(BlockTotals(award, district, claimants, firms))
            claims.append(Claims(*fused.positive_awards(gross, model.compiled.share)))
        else:
            totals.append(block_totals(model.policy, block, model.compiled, matrix))
            if keep:
                claims.append(claims_of_block(model, block, m))
        if keep_rules:
            kept.append(kept_of_block(model, block, m, keep_rules))
    out = None
    if keep:
        out = Claims(np.concatenate([c.rule for c in claims] or [np.zeros(0, np.int64)]),
                     np.concatenate([c.amount for c in claims] or [np.zeros(0)]))
    return TaskOutput(totals, out, model.budgets, join_kept(kept) if keep_rules else None)


def join_kept(parts: Sequence[Kept]) -> Kept:
    return Kept(np.concatenate([p.rule for p in parts] or [np.zeros(0, np.int64)]),
                np.concatenate([p.award for p in parts] or [np.zeros(0)]),
                np.concatenate([p.district for p in parts] or [np.zeros(0)]))


def replication_claims(policy: Policy, spec: pop.PopulationSpec, seed: int, replication: int,
                       n: int | None = None, scale: float = 1.0) -> pd.DataFrame:
    """Every claim of one replication: rule id and district-paid amount (萬元), the same draws as the
    replication's totals (for notebooks and tests; the pipeline keeps them from the claims stage)."""
    job = ClaimsJob(policy, spec, seed, n, scale, keep_claims=replication + 1)
    claims = replication_task(job, (replication, ())).claims
    return pd.DataFrame({"rule": np.asarray(policy.rule_ids, dtype=object)[claims.rule], "amount": claims.amount})


# ----------------------------------------------------------------------------- results
@dataclass
class MonteCarloResult:
    """Per-replication totals (tidy tables), the kept claims, and the run's settings."""

    policy: Policy
    spec: pop.PopulationSpec | None
    seed: int
    replications: int
    population: int
    rules: pd.DataFrame  # replication x rule: award, district, claimants
    firms: pd.DataFrame  # replication x scope ("all" or a domain): claimant firms
    claims: list[Claims] = field(default_factory=list, repr=False)  # of the first replications, for the process
    budgets: pd.DataFrame | None = None  # replication x domain claims budget
    settings: dict = field(default_factory=dict)
    kept: list[Kept] = field(default_factory=list, repr=False)  # per replication, with keep_rules
    then: list = field(default_factory=list, repr=False)  # with ``then``: its result per kept replication
    then_seconds: float = 0.0  # the time ``then`` took, summed over the workers

    def summary(self, level: str = "domain") -> pd.DataFrame:
        return summarise(self.rules, self.policy, level, self.budgets)


def totals_frame(policy: Policy, totals: Sequence[BlockTotals], first: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    reps = len(totals)
    rule_ids = list(policy.rule_ids)
    rules = pd.DataFrame({
        "replication": np.repeat(np.arange(first, first + reps), len(rule_ids)),
        "rule": pd.Categorical(rule_ids * reps, categories=rule_ids),
        "article": np.tile([r.article for r in policy.rules], reps),
        "domain": pd.Categorical([r.domain for r in policy.rules] * reps, categories=list(policy.domain_keys)),
        "award": np.concatenate([t.award for t in totals]) if reps else np.zeros(0),
        "district": np.concatenate([t.district for t in totals]) if reps else np.zeros(0),
        "claimants": np.concatenate([t.claimants for t in totals]) if reps else np.zeros(0, dtype=np.int64),
    })
    scopes = ["all", *policy.domain_keys]
    firms = pd.DataFrame({
        "replication": np.repeat(np.arange(first, first + reps), len(scopes)),
        "scope": pd.Categorical(scopes * reps, categories=scopes),
        "firms": np.concatenate([t.firms for t in totals]) if reps else np.zeros(0, dtype=np.int64),
    })
    return rules, firms


def level_totals(rules: pd.DataFrame, level: str) -> pd.DataFrame:
    """Replication x (rule | article | domain) totals; articles and domains are exact sums of rules."""
    if level == "rule":
        return rules[["replication", "rule", "award", "district"]].rename(columns={"rule": "key"})
    key = {"article": "article", "domain": "domain"}[level]
    grouped = rules.groupby(["replication", key], observed=True, sort=True)
    out = grouped.agg(award=("award", math.fsum), district=("district", math.fsum)).reset_index()
    return out.rename(columns={key: "key"})


def _stats(values: np.ndarray, prefix: str = "") -> dict[str, float]:
    n = len(values)
    sd = values.std(ddof=1) if n > 1 else np.nan
    return {f"{prefix}mean": values.mean(), f"{prefix}sd": sd, f"{prefix}sem": sd / math.sqrt(n),
            **{f"{prefix}p{int(q * 100)}": np.quantile(values, q) for q in QUANTILES}}


def summarise(rules: pd.DataFrame, policy: Policy, level: str = "domain",
              budgets: pd.DataFrame | None = None) -> pd.DataFrame:
    """Mean, sd, standard error, P5/P50/P95/P99 of claims per rule, article or domain (萬元), both gross
    (the planned award) and district-paid (``district_*``).

    At the domain level, the claims budget (its point value), the probability that district-paid claims
    exceed the replication's claims budget (``budgets``: replication x domain, when budgets are drawn too),
    and the mean shortfall (district-paid claims above the budget, 0 where within it).
    """
    totals = level_totals(rules, level)
    rows = []
    for key, group in totals.groupby("key", observed=True, sort=False):
        award = group["award"].to_numpy()
        district = group["district"].to_numpy()
        row = {level: key, "replications": len(award), **_stats(award), **_stats(district, "district_")}
        if level == "domain":
            point = policy.domain(key).claims_budget.value
            budget = point if budgets is None else budgets.loc[budgets["domain"] == key].sort_values(
                "replication")["claims_budget"].to_numpy()
            row["claims_budget"] = point
            row["p_overrun"] = float((district > budget).mean())
            row["mean_shortfall"] = float(np.maximum(district - budget, 0.0).mean())
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------- running
def run(policy: Policy, spec: pop.PopulationSpec, replications: int, seed: int, *, n: int | None = None,
        scale: float = 1.0, executor=None, keep_claims: int = 0, progress: bool | Callable = True,
        label: str = "population and awards", drawn=None, keep_rules: tuple[int, ...] = (), year: int = 0,
        growth=None, then=None) -> MonteCarloResult:
    """Run ``replications`` independent draws of the population through every award rule.

    ``executor``: where the replications run (:mod:`sim.executors`; default in this process).  Results
    are bit-identical whatever the executor for the same seed.  ``keep_claims``: keep the claims of the
    first replications (for the process stage).  ``drawn``: the assumption draws (:class:`sim.assumptions.
    Drawn`); each replication then runs on the model of its draw.  ``progress``: True for a bar, False for
    none, or a callable taking the number of tasks done.  ``keep_rules``, ``year``, ``growth``: for
    multi-year runs (:mod:`sim.years`), the rules whose claimants are kept one by one, the year of the
    horizon and the growth numbers; ``seed`` is then that year's population seed.  ``then``: a picklable
    callable ``then(replication, claims, process_model)`` run in the worker on each kept replication's claims
    (the process year, so the claims need not travel back); its results replace the claims (``.then``),
    where a replication is one task (otherwise the claims are kept and ``then`` is not called).
    """
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    executor = executor or Serial()
    job = ClaimsJob(policy, spec, seed, n, scale, keep_claims, drawn, tuple(keep_rules), year, growth, then)
    groups = job.groups()
    if then is not None and len(groups) > 1:  # a replication in several tasks: its claims come back whole
        job = replace(job, then=None)
    items = [(r, group) for r in range(replications) for group in groups]
    fused.warm(job.base.compiled)
    with progress_bar(progress, len(items), label) as bar:
        outputs = executor.map(replication_task, job, items, progress=bar)
    totals, claims, kept, later = [], [], [], []
    for r in range(replications):
        parts = outputs[r * len(groups):(r + 1) * len(groups)]
        totals.append(combine([t for part in parts for t in part.totals] or [empty_totals(policy)]))
        if r < keep_claims and job.then is not None:
            later.append(parts[0].then)
        elif r < keep_claims:
            claims.append(Claims(np.concatenate([p.claims.rule for p in parts]),
                                 np.concatenate([p.claims.amount for p in parts])))
        if keep_rules:
            kept.append(join_kept([p.kept for p in parts]))
    budgets = np.array([outputs[r * len(groups)].budgets for r in range(replications)])
    rules, firms = totals_frame(policy, totals)
    return MonteCarloResult(policy, spec, seed, replications, int(job.base.counts.sum()), rules, firms, claims,
                            budgets_frame(policy, budgets), {"n": n, "scale": scale, "workers": executor.workers},
                            kept, later, sum(o.then_seconds for o in outputs))


def budgets_frame(policy: Policy, budgets: np.ndarray) -> pd.DataFrame:
    """Replication x domain claims budget (萬元): the point values, or each replication's assumption draw."""
    keys = list(policy.domain_keys)
    return pd.DataFrame({"replication": np.repeat(np.arange(len(budgets)), len(keys)),
                         "domain": pd.Categorical(keys * len(budgets), categories=keys),
                         "claims_budget": budgets.ravel()})
