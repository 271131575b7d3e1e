"""The decision-grade answer per domain: how likely an overrun is once the assumptions are allowed to vary,
how much of that is the assumptions and how much the luck of the year, and what drives it.

The run draws its assumptions ``draws`` times and runs ``per_draw`` replications (different firms) under
each draw.  For each domain:

- ``p_overrun``: the share of all replications whose district-paid claims exceed their claims budget;
- ``p_overrun_p10`` / ``p50`` / ``p90``: the spread, across assumption draws, of the probability of an
  overrun *given* the draw.  Under one draw, claims vary from year to year with a coefficient of variation
  estimated from the replications that share a draw (pooled over draws); the probability given the draw
  is the normal probability that claims exceed the draw's budget;
- ``aleatory_share``: the share of the variance of claims that is the luck of the year (within draws);
- ``expected_shortfall``: the mean of the claims above the budget (0 where within it);
- ``driver``: the assumption group that moves the overrun most: the largest total Sobol index of the
  sensitivity stage where it ran, else the largest squared rank correlation between the draw's uniform
  number for the group and the draw's margin (budget less mean claims), a quick screen;
- ``verdict``: ``overrun likely`` when the overrun is likely under nine in ten plausible draws
  (P10 > 50%), ``overrun unlikely`` when it is unlikely under nine in ten (P90 < 50%), else ``depends on the
  assumptions``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import special, stats

from sim.budget import claims_budget_frame

VERDICTS = ("overrun likely", "depends on the assumptions", "overrun unlikely")
ALEATORY = "aleatory"  # the Sobol design's factor for the population drawn (the luck of the year)


def measure_of(sobol: pd.DataFrame, domain: str) -> str | None:
    """The measure of a domain to rank assumptions by: its overrun where the overrun varied over the Sobol
    design, else its shortfall, else its claims (None when nothing varied)."""
    for measure in ("overrun", "shortfall", "claims"):
        part = sobol[(sobol["domain"] == domain) & (sobol["measure"] == measure)]
        if len(part) and part["variance"].iloc[0] > 0 and part["total"].notna().any():
            return measure
    return None


def ranking(sobol: pd.DataFrame, domain: str, measure: str) -> pd.DataFrame:
    """The groups of one domain and measure, largest total index first, the luck of the year last."""
    part = sobol[(sobol["domain"] == domain) & (sobol["measure"] == measure)]
    named = part[part["group"] != ALEATORY].sort_values("total", ascending=False, kind="stable")
    return pd.concat([named, part[part["group"] == ALEATORY]], ignore_index=True)


def _claims_by_domain(rules: pd.DataFrame) -> pd.DataFrame:
    """Replication x domain district-paid claims."""
    out = rules.groupby(["replication", "domain"], observed=True, sort=True)["district"].sum().unstack("domain")
    return out


def table(rules: pd.DataFrame, budgets: pd.DataFrame, domains: list[str], per_draw: int,
          draws: np.ndarray | None = None, groups: tuple[str, ...] = (),
          sobol: pd.DataFrame | None = None) -> pd.DataFrame:
    """The headline per domain (see the module's description).

    ``draws``: the (draws x groups) uniforms of the run's assumption draws, or None when the assumptions were
    held at their point values; ``sobol``: the sensitivity stage's indices, where it ran.
    """
    claims = _claims_by_domain(rules).reindex(columns=domains)
    budget = claims_budget_frame(budgets, domains, claims.index)
    draw_of = claims.index.to_numpy() // per_draw
    rows = []
    for domain in domains:
        c, b = claims[domain].to_numpy(), budget[domain].to_numpy()
        row = {"domain": domain, "claims_mean": c.mean(), "claims_budget": float(np.median(b)),
               "p_overrun": float((c > b).mean()), "expected_shortfall": float(np.maximum(c - b, 0).mean())}
        row.update(_given_draws(c, b, draw_of))
        row.update(_driver(domain, c, b, draw_of, draws, groups, sobol))
        row["verdict"] = _verdict(row)
        rows.append(row)
    return pd.DataFrame(rows)


def _given_draws(c: np.ndarray, b: np.ndarray, draw_of: np.ndarray) -> dict:
    """Probability of an overrun given each draw (normal, with the pooled within-draw variation), its
    spread across draws, and the share of the variance within draws."""
    frame = pd.DataFrame({"c": c, "b": b, "draw": draw_of})
    grouped = frame.groupby("draw")
    means, budgets, sizes = grouped["c"].mean(), grouped["b"].first(), grouped.size()
    within = grouped["c"].var(ddof=1)
    usable = sizes > 1
    total = c.var(ddof=1) if len(c) > 1 else 0.0
    if not usable.any() or total == 0:
        return {"p_overrun_p10": np.nan, "p_overrun_p50": np.nan, "p_overrun_p90": np.nan,
                "aleatory_share": np.nan, "draws": int(len(means))}
    with np.errstate(divide="ignore", invalid="ignore"):
        cv2 = (within[usable] / means[usable] ** 2).replace([np.inf], np.nan).mean()
    sd = np.sqrt(cv2) * means.abs()
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(sd > 0, (means - budgets) / sd, np.sign(means - budgets) * np.inf)
    given = special.ndtr(z)
    p10, p50, p90 = np.quantile(given, [0.1, 0.5, 0.9])
    return {"p_overrun_p10": float(p10), "p_overrun_p50": float(p50), "p_overrun_p90": float(p90),
            "aleatory_share": float(min(within[usable].mean() / total, 1.0)), "draws": int(len(means))}


def _driver(domain: str, c: np.ndarray, b: np.ndarray, draw_of: np.ndarray, draws: np.ndarray | None,
            groups: tuple[str, ...], sobol: pd.DataFrame | None) -> dict:
    none = {"driver": "", "driver_measure": np.nan, "driver_source": ""}
    measure = measure_of(sobol, domain) if sobol is not None and len(sobol) else None
    if measure is not None:
        top = ranking(sobol, domain, measure).iloc[0]
        return {"driver": top["group"], "driver_measure": float(top["total"]),
                "driver_source": f"total Sobol index of the {measure}"}
    if draws is None or not len(groups):
        return none
    margin = pd.DataFrame({"m": b - c, "draw": draw_of}).groupby("draw")["m"].mean()
    u = draws[margin.index.to_numpy()]
    if len(margin) < 3 or margin.std() == 0:
        return none
    rho = rank_correlations(u, margin.to_numpy())
    top = int(np.argmax(rho ** 2))
    return {"driver": groups[top], "driver_measure": float(rho[top] ** 2),
            "driver_source": "squared rank correlation with the run's draws"}


def rank_correlations(factors: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Spearman's rank correlation of each column of ``factors`` (draws x groups) with ``values`` (one per draw);
    0 for a column that does not vary.

    >>> rank_correlations(np.array([[1.0, 5.0, 2.0], [2.0, 5.0, 1.0], [3.0, 5.0, 0.0]]), np.array([10.0, 20.0, 30.0]))
    array([ 1.,  0., -1.])
    """
    return np.nan_to_num(np.array([stats.spearmanr(factors[:, g], values)[0] if factors[:, g].std() > 0 else 0.0
                                   for g in range(factors.shape[1])]))


def _verdict(row: dict) -> str:
    if np.isnan(row["p_overrun_p10"]):  # no spread of assumptions: the plain probability decides
        p = row["p_overrun"]
        return VERDICTS[0] if p > 0.9 else VERDICTS[2] if p < 0.1 else VERDICTS[1]
    if row["p_overrun_p10"] > 0.5:
        return VERDICTS[0]
    if row["p_overrun_p90"] < 0.5:
        return VERDICTS[2]
    return VERDICTS[1]
