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
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import qmc

from sim import assumptions as assumptions_module
from sim import montecarlo
from sim.headline import ALEATORY
from sim.progress import progress_bar

SOBOL_STREAM = 0x50B0_0011
MEASURES = ("claims", "shortfall", "overrun")
REPLICATION_SPAN = 1 << 30  # replication numbers of the design rows are drawn from [0, REPLICATION_SPAN)


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


def evaluate_row(job: SobolJob, row: int) -> tuple[np.ndarray, np.ndarray]:
    """District-paid claims and claims budgets per domain for one design row (its assumptions, its population)."""
    policy, spec, _ = job.drawn.build(row)
    model = montecarlo.Model(policy, spec, spec.counts(job.n, job.scale))
    output = montecarlo.model_task(model, job.seed, int(job.replications[row]))
    totals = montecarlo.combine(output.totals or [montecarlo.empty_totals(policy)])
    domains = np.array([r.domain for r in policy.rules])
    per_domain = np.array([math.fsum(totals.district[domains == d]) for d in policy.domain_keys])
    return per_domain, output.budgets


def analyse(drawn: assumptions_module.Drawn, policy, spec, seed: int, base_samples: int, n: int | None = None,
            scale: float = 1.0, executor=None, progress: bool | Callable = False,
            resamples: int = 500) -> dict[str, pd.DataFrame]:
    """Sobol indices of every domain's claims, shortfall and overrun over the assumption groups and the
    population draw; tables ``sobol_indices`` and ``sobol_outputs`` (the evaluations)."""
    from sim.executors import Serial

    executor = executor or Serial()
    groups = drawn.assumptions.keys
    k = len(groups)
    design = saltelli(base_samples, k + 1, seed)
    rows = design.rows()
    replications = np.floor(rows[:, k] * REPLICATION_SPAN).astype(np.int64)
    job = SobolJob(assumptions_module.Drawn(drawn.data, drawn.assumptions, rows[:, :k], 1, drawn.source_text,
                                            drawn.origin), policy, spec, seed, n, scale, replications)
    bar = progress_bar(progress, len(rows), "4 sensitivity (Sobol)")
    results = executor.map(evaluate_row, job, list(range(len(rows))), progress=bar)
    bar(None)
    claims = np.array([r[0] for r in results])
    budgets = np.array([r[1] for r in results])
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

