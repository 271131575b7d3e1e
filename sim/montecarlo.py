"""Claims engine and Monte Carlo runner: claim distributions per rule, article and domain.

Each replication draws a whole population (:mod:`sim.population`), applies every award rule
(:mod:`sim.awards`) block by block, and keeps per-rule totals (planned award and district-paid part),
the number of claimants per rule, and the number of claimant firms overall and per domain.  Memory
does not grow with the population: one generation block (65,536 claimants) is held at a time.

Bit-identical results whatever the chunking or worker count: sums are taken per generation block (a
partition fixed by the population, not by the user) and combined with ``math.fsum``, which is exact
and so independent of the order in which blocks arrive.  Replications (and, for very large
populations, groups of blocks) can run on a Dask cluster (:func:`run` with ``client=``).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sim import fused
from sim import population as pop
from sim.awards import evaluate
from sim.firms import FirmTable
from sim.policy import Policy

QUANTILES = (0.05, 0.50, 0.95, 0.99)
BLOCKS_PER_TASK = 16  # about a million claimants per Dask task


@dataclass(frozen=True)
class BlockTotals:
    """What one generation block contributes: per-rule sums and counts."""

    award: np.ndarray  # (rules,) float64 planned award
    district: np.ndarray  # (rules,) float64 district-paid part
    claimants: np.ndarray  # (rules,) int64 claimants with an award
    firms: np.ndarray  # (1 + domains,) int64 claimants with any award: overall, then per domain


def block_totals(policy: Policy, columns, compiled: fused.CompiledRules | None = None) -> BlockTotals:
    """Evaluate every rule on one block of claimants and reduce it to totals.

    One fused compiled pass (:mod:`sim.fused`) when numba is available, else the NumPy kernels with the
    same reduction; both give the same bits.
    """
    n = len(next(iter(columns.values()))) if not isinstance(columns, FirmTable) else columns.n
    table = columns.columns if isinstance(columns, FirmTable) else columns
    if n == 0:
        r = len(policy.rules)
        return BlockTotals(np.zeros(r), np.zeros(r), np.zeros(r, dtype=np.int64),
                           np.zeros(1 + len(policy.domain_keys), dtype=np.int64))
    (award, district), claimants, firms = fused.totals(policy, table, compiled)
    return BlockTotals(award=award, district=district, claimants=claimants, firms=firms)


def task_totals(policy: Policy, spec: pop.PopulationSpec, seed: int, replication: int,
                plan: Sequence[tuple[int, int, int]]) -> list[BlockTotals]:
    """Draw and evaluate a list of generation blocks of one replication (the unit of distributed work)."""
    compiled = fused.compile_rules(policy)
    return [block_totals(policy, pop.draw_block(spec, seed, replication, *item), compiled=compiled) for item in plan]


def combine(parts: Sequence[BlockTotals]) -> BlockTotals:
    """Exact, order-independent combination of block totals (``math.fsum`` per rule)."""
    if not parts:
        raise ValueError("no blocks to combine")
    award = np.array([math.fsum(col) for col in np.array([p.award for p in parts]).T])
    district = np.array([math.fsum(col) for col in np.array([p.district for p in parts]).T])
    return BlockTotals(award, district, np.sum([p.claimants for p in parts], axis=0),
                       np.sum([p.firms for p in parts], axis=0))


# ----------------------------------------------------------------------------- results
@dataclass
class MonteCarloResult:
    """Per-replication totals (tidy tables) and the run's settings."""

    policy: Policy
    spec: pop.PopulationSpec | None
    seed: int
    replications: int
    population: int
    rules: pd.DataFrame  # replication x rule: award, district, claimants
    firms: pd.DataFrame  # replication x scope ("all" or a domain): claimant firms
    wall_seconds: float = 0.0
    settings: dict = field(default_factory=dict)

    def summary(self, level: str = "domain") -> pd.DataFrame:
        return summarise(self.rules, self.policy, level)


def _totals_frame(policy: Policy, totals: Sequence[BlockTotals], first: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
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


def summarise(rules: pd.DataFrame, policy: Policy, level: str = "domain") -> pd.DataFrame:
    """Mean, sd, standard error, P5/P50/P95/P99 of claims per rule, article or domain (萬元).

    At the domain level, the claims budget and the probability that district-paid claims exceed it.
    """
    totals = level_totals(rules, level)
    rows = []
    for key, group in totals.groupby("key", observed=True, sort=False):
        award = group["award"].to_numpy()
        district = group["district"].to_numpy()
        n = len(award)
        sd = award.std(ddof=1) if n > 1 else np.nan
        row = {level: key, "replications": n, "mean": award.mean(), "sd": sd, "sem": sd / math.sqrt(n),
               **{f"p{int(q * 100)}": np.quantile(award, q) for q in QUANTILES},
               "district_mean": district.mean(),
               "district_p95": np.quantile(district, 0.95)}
        if level == "domain":
            budget = policy.domain(key).claims_budget.value
            row["claims_budget"] = budget
            row["p_overrun"] = float((district > budget).mean())
        rows.append(row)
    return pd.DataFrame(rows)


def replication_claims(policy: Policy, spec: pop.PopulationSpec, seed: int, replication: int,
                       counts: np.ndarray) -> pd.DataFrame:
    """Every claim of one replication: rule, claimant row, planned award and district-paid amount (萬元).

    The same draws as :func:`replication_totals` (same seed and replication), kept claim by claim for
    the process stage.
    """
    shares = np.array([r.district_share.value for r in policy.rules])
    rule_ids = np.array(policy.rule_ids, dtype=object)
    parts, offset = [], 0
    for item in pop.block_plan(counts):
        block = pop.draw_block(spec, seed, replication, *item)
        gross = evaluate(policy, FirmTable(block, item[2])).gross
        rows, cols = np.nonzero(gross > 0)
        parts.append(pd.DataFrame({"rule": rule_ids[rows], "claimant": cols + offset, "award": gross[rows, cols],
                                   "amount": gross[rows, cols] * shares[rows]}))
        offset += item[2]
    if not parts:
        return pd.DataFrame(columns=["rule", "claimant", "award", "amount"])
    return pd.concat(parts, ignore_index=True)


# ----------------------------------------------------------------------------- running
def replication_totals(policy: Policy, spec: pop.PopulationSpec, seed: int, replication: int,
                       counts: np.ndarray) -> BlockTotals:
    plan = pop.block_plan(counts)
    return combine(task_totals(policy, spec, seed, replication, plan))


def run(policy: Policy, spec: pop.PopulationSpec, replications: int, seed: int, *, n: int | None = None,
        scale: float = 1.0, client=None, progress: bool | Callable = True) -> MonteCarloResult:
    """Run ``replications`` independent draws of the population through every award rule.

    ``client``: a ``dask.distributed.Client``; replications (and groups of blocks of large
    populations) become tasks.  Results are bit-identical to the in-process run for the same seed.
    ``progress``: True for a tqdm bar, False for none, or a callable taking the number done.
    """
    if replications < 1:
        raise ValueError(f"replications must be >= 1, got {replications}")
    start = time.perf_counter()
    counts = spec.counts(n, scale)
    bar = _progress(progress, replications)
    if client is None:
        totals = []
        for replication in range(replications):
            totals.append(replication_totals(policy, spec, seed, replication, counts))
            bar(1)
    else:
        totals = _run_dask(client, policy, spec, seed, replications, counts, bar)
    bar(None)
    rules, firms = _totals_frame(policy, totals)
    return MonteCarloResult(policy, spec, seed, replications, int(counts.sum()), rules, firms,
                            time.perf_counter() - start,
                            {"n": n, "scale": scale, "workers": _workers(client)})


def _workers(client) -> int:
    if client is None:
        return 0
    return len(client.scheduler_info().get("workers", {}))


def _run_dask(client, policy, spec, seed, replications, counts, bar) -> list[BlockTotals]:
    from dask.distributed import as_completed

    plan = pop.block_plan(counts)
    groups = [plan[i:i + BLOCKS_PER_TASK] for i in range(0, len(plan), BLOCKS_PER_TASK)]
    policy_f, spec_f = client.scatter([policy, spec], broadcast=True)
    futures = {}
    for replication in range(replications):
        for group in groups:
            future = client.submit(task_totals, policy_f, spec_f, seed, replication, group, pure=False)
            futures[future] = replication
    parts: dict[int, list[BlockTotals]] = {r: [] for r in range(replications)}
    remaining = {r: len(groups) for r in range(replications)}
    for future in as_completed(futures):
        replication = futures[future]
        parts[replication].extend(future.result())
        remaining[replication] -= 1
        if remaining[replication] == 0:
            bar(1)
    return [combine(parts[r]) for r in range(replications)]


def _progress(progress, total: int) -> Callable:
    if callable(progress):
        return lambda step: progress(step) if step is not None else None
    if not progress:
        return lambda step: None
    from tqdm.auto import tqdm

    bar = tqdm(total=total, unit="rep", desc="replications", dynamic_ncols=True)

    def update(step):
        if step is None:
            bar.close()
        else:
            bar.update(step)
    return update
