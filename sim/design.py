"""Policy design: the award levels, within the text's latitude, that keep each budget within budget at a
chosen risk.

Most rules leave their level open (「最高 X」, 「不超過 X%」, 「一定比例」); the model marks them with a
``latitude`` (the wording, and the lowest intensity a design may choose).  A rule's district-paid claim
scales linearly with its award intensity (award = intensity x planned award), so over the S replications of
a run the claims of domain d at intensities x are ``F_d x`` exactly, where ``F`` holds each replication's
claims at full intensity.  Choosing the intensities under a risk limit is therefore a linear program
(Rockafellar-Uryasev), with no heuristic:

    maximise   sum_r w_r m_r x_r                         (priority-weighted expected support)
    subject to eta_l + sum_s u_ls / ((1 - alpha) S) <= tol_l        for every budget line l ("cvar")
               sum_{r in l} F_sr x_r - delta_l - eta_l - u_ls <= B_ls  for every replication s ("tail")
               floor_r <= x_r <= 1 (rules with latitude), x_r = today's intensity (rules without)
               u, eta >= 0

where the budget lines are the domains (each replication's claims budget ``B_sd``, which is itself an
assumption drawn per replication) and the stated sub-lines rules are paid from, ``tol_l`` is a share of
the line's budget, and ``delta`` (with ``reallocate``) moves claims budget between domains, the total
unchanged, each domain's budget kept at least at its spending floor (the text's two-thirds rule for livelihood, as
data in the model).  Pairs (line, replication) whose claims stay within budget at the highest intensities
cannot fall short and get no rows (an exact reduction).  The optional objective ``minimax`` minimises the
largest cut relative to the maximum instead (ties broken by expected support).

:func:`cap_redesign` answers the single-rule question by re-evaluating the rule's awards on the run's own
replications (claims are monotone in a cap or rate): the largest cap that keeps its domain within budget.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import sparse

from sim.budget import (
    BudgetError,
    LinearProgram,
    RowBlock,
    Solution,
    claims_budget_frame,
    constraint_rows,
    domain_loss_matrix,
    paid_sublines,
    solve,
)
from sim.policy import Policy

OBJECTIVES = ("support", "minimax")
EPS = 1e-6  # the tie-break weight of expected support under the minimax objective (relative)


class DesignError(BudgetError):
    """The design cannot be found as posed; the message names the budget line or rule and the fix."""


# ----------------------------------------------------------------------------- inputs
@dataclass(frozen=True)
class Line:
    """A budget the design must keep: a domain's claims budget or a stated sub-line."""

    name: str
    kind: str  # "domain" or "subline"
    domain: int  # index of the domain it belongs to
    members: np.ndarray  # rule indices paid from it
    budget: np.ndarray  # (S,) the line's budget in each replication
    tolerance: float  # 萬元: the CVaR of its shortfall at the level may not exceed this


@dataclass(frozen=True)
class DesignInput:
    """A run's replications as arrays, ready for the design LP."""

    rules: tuple[str, ...]
    articles: np.ndarray  # (R,) article of each rule
    domains: tuple[str, ...]
    rule_domain: np.ndarray  # (R,) domain index
    full: np.ndarray  # (S, R) district-paid claims at intensity 1 (the planned maximum), 萬元
    current: np.ndarray  # (R,) the run's intensity of each rule
    lower: np.ndarray  # (R,) lowest intensity allowed (the floor; today's intensity without latitude)
    upper: np.ndarray  # (R,) highest (1 with latitude; today's intensity without)
    weights: np.ndarray  # (R,) priority weights
    lines: tuple[Line, ...]
    spending_floor: np.ndarray  # (D,) most claims budget each domain may give up in a reallocation (inf: no limit)

    @property
    def latitude(self) -> np.ndarray:
        return self.upper > self.lower

    @property
    def expected_full(self) -> np.ndarray:
        """(R,) expected district-paid support at intensity 1."""
        return self.full.mean(axis=0)

    @classmethod
    def from_run(cls, policy: Policy, rules: pd.DataFrame, budgets: pd.DataFrame, tolerance: float = 0.01,
                 floor: float | None = None, sublines: bool = True) -> DesignInput:
        """From a run's ``rules`` (replication x rule district-paid claims) and ``budgets`` (replication x
        domain claims budgets) tables.  ``tolerance`` is a share of each line's (mean) budget; ``floor``
        replaces every rule's own floor."""
        if not 0 <= tolerance < 1:
            raise DesignError(f"tolerance must be a share of each budget in [0, 1), got {tolerance}")
        if floor is not None and not 0 <= floor <= 1:
            raise DesignError(f"floor must be a share of the maximum in [0, 1], got {floor}")
        ids = list(policy.rule_ids)
        claims = rules.pivot_table(index="replication", columns="rule", values="district", aggfunc="sum",
                                   observed=False, fill_value=0.0).reindex(columns=ids, fill_value=0.0)
        domain_keys = list(policy.domain_keys)
        budget = claims_budget_frame(budgets, domain_keys, claims.index)
        if claims.empty or budget.isna().any().any():
            raise DesignError("the run has no replications with claims and claims budgets for every domain; "
                              "run `fiscalsim run` with its claims stage first")
        current = np.array([r.intensity.value for r in policy.rules], dtype=float)
        for rule, g in zip(policy.rules, current):
            if rule.intensity.uncertainty is not None:
                raise DesignError(f"rule {rule.id}: its intensity is an assumption with a range (group "
                                  f"{rule.intensity.uncertainty.group}); the design chooses intensities, so hold it "
                                  "at a value in the scenario first")
            if rule.latitude is not None and g == 0:
                raise DesignError(f"rule {rule.id}: the run's intensity is 0, so its claims at full intensity are "
                                  "unknown; run with an intensity above 0 before designing")
        c = claims.to_numpy(dtype=float)
        full = np.divide(c, current[None, :], out=np.zeros_like(c), where=current[None, :] > 0)
        has = np.array([r.latitude is not None for r in policy.rules])
        floors = np.array([(floor if floor is not None else r.latitude.floor) if r.latitude else g
                           for r, g in zip(policy.rules, current)])
        lower = np.where(has, floors, current)
        upper = np.where(has, 1.0, current)
        index = {d: i for i, d in enumerate(domain_keys)}
        rule_domain = np.array([index[r.domain] for r in policy.rules])
        b = budget.to_numpy(dtype=float)
        lines = [Line(d, "domain", i, np.flatnonzero(rule_domain == i), b[:, i], tolerance * float(b[:, i].mean()))
                 for i, d in enumerate(domain_keys)]
        if sublines:
            lines += [Line(name, "subline", index[domain], members, np.full(len(b), amount), tolerance * amount)
                      for name, domain, members, amount in paid_sublines(policy)]
        give = np.full(len(domain_keys), np.inf)
        for spending in policy.spending_floors:
            give[index[spending.domain]] = spending.margin.value
        return cls(tuple(ids), np.array([r.article for r in policy.rules]), tuple(domain_keys), rule_domain, full,
                   current, lower, upper, np.array([r.priority.value for r in policy.rules], dtype=float),
                   tuple(lines), give)


# ----------------------------------------------------------------------------- the LP
@dataclass(frozen=True)
class Layout:
    """Where each variable group sits in the LP's column vector."""

    rules: int
    deltas: int  # 0 without reallocation
    lines: int
    pairs: np.ndarray  # (P, 2) (line, replication) pairs with an excess variable
    objective: str

    @property
    def delta0(self) -> int:
        return self.rules

    @property
    def eta0(self) -> int:
        return self.rules + self.deltas

    @property
    def u0(self) -> int:
        return self.eta0 + self.lines

    @property
    def t(self) -> int | None:
        return self.u0 + len(self.pairs) if self.objective == "minimax" else None

    @property
    def width(self) -> int:
        return self.u0 + len(self.pairs) + (1 if self.objective == "minimax" else 0)


def line_claims(data: DesignInput, line: Line, x: np.ndarray) -> np.ndarray:
    """(S,) the line's claims in each replication at intensities x."""
    return data.full[:, line.members] @ x[line.members]


def active(data: DesignInput, reallocate: bool) -> np.ndarray:
    """(lines,) which lines the design can act on: a rule with latitude pays from it, or (with a reallocation)
    it is a domain whose budget can move.  A line whose rules are all fixed by the text keeps its risk, which
    the tables report; a limit on it could only make the design infeasible."""
    return np.array([bool(data.latitude[line.members].any()) or (reallocate and line.kind == "domain")
                     for line in data.lines], dtype=bool)


def shortfall_pairs(data: DesignInput, reallocate: bool) -> np.ndarray:
    """The (line, replication) pairs that can fall short: claims at the highest intensities above the budget
    (every replication of a domain whose budget a reallocation can lower)."""
    out = []
    kept = active(data, reallocate)
    for k, line in enumerate(data.lines):
        if not kept[k]:
            reps = np.zeros(0, dtype=int)
        elif reallocate and line.kind == "domain":
            reps = np.arange(len(line.budget))
        else:
            reps = np.flatnonzero(line_claims(data, line, data.upper) > line.budget)
        out.append(np.column_stack([np.full(len(reps), k), reps]))
    return np.concatenate(out)  # every model has a domain, so there is a line


def tail_rows(data: DesignInput, layout: Layout) -> RowBlock:
    """sum_{r in l} F_sr x_r - delta_l - eta_l - u_ls <= B_ls: the excess over the line's VaR threshold."""
    rows, cols, vals, rhs, names = [], [], [], [], []
    for p, (k, s) in enumerate(layout.pairs):
        line = data.lines[k]
        coef = data.full[s, line.members]
        nz = coef != 0
        extra = [layout.eta0 + k, layout.u0 + p] + ([layout.delta0 + line.domain]
                                                    if layout.deltas and line.kind == "domain" else [])
        cols.append(np.concatenate([line.members[nz], extra]))
        vals.append(np.concatenate([coef[nz], np.full(len(extra), -1.0)]))
        rows.append(np.full(len(cols[-1]), p))
        rhs.append(line.budget[s])
        names.append(f"{line.name}:{s}")
    n = len(layout.pairs)
    if n == 0:
        return RowBlock("tail", (), sparse.csr_matrix((0, layout.width)), np.zeros(0))
    matrix = sparse.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                               shape=(n, layout.width))
    return RowBlock("tail", tuple(names), matrix, np.array(rhs, dtype=float))


def cvar_rows(data: DesignInput, layout: Layout, level: float) -> RowBlock:
    """eta_l + sum_s u_ls / ((1 - level) S) <= tol_l: each line's CVaR of shortfall within its tolerance."""
    s_all = data.full.shape[0]
    n_lines = len(data.lines)
    r = np.concatenate([np.arange(n_lines), layout.pairs[:, 0]])
    c = np.concatenate([layout.eta0 + np.arange(n_lines), layout.u0 + np.arange(len(layout.pairs))])
    v = np.concatenate([np.ones(n_lines), np.full(len(layout.pairs), 1.0 / ((1.0 - level) * s_all))])
    matrix = sparse.csr_matrix((v, (r, c)), shape=(n_lines, layout.width))
    return RowBlock("cvar", tuple(line.name for line in data.lines), matrix,
                    np.array([line.tolerance for line in data.lines]))


def reallocation_rows(data: DesignInput, layout: Layout) -> tuple[RowBlock, RowBlock | None]:
    """sum_d delta_d = 0 (the total claims budget unchanged), and -delta_d <= the most domain d may give up
    under a spending floor (the text's two-thirds rule for livelihood)."""
    k = len(data.domains)
    row = np.zeros(layout.width)
    row[layout.delta0:layout.delta0 + k] = 1.0
    envelope = RowBlock("envelope", ("envelope",), sparse.csr_matrix(row[None, :]), np.zeros(1))
    floored = np.flatnonzero(np.isfinite(data.spending_floor))
    if not len(floored):
        return envelope, None
    matrix = sparse.csr_matrix((-np.ones(len(floored)), (np.arange(len(floored)), layout.delta0 + floored)),
                               shape=(len(floored), layout.width))
    return envelope, RowBlock("spending_floor", tuple(data.domains[i] for i in floored), matrix,
                              data.spending_floor[floored])


def minimax_rows(data: DesignInput, layout: Layout) -> RowBlock:
    """1 - x_r <= t for every rule with latitude: t is the largest cut relative to the maximum."""
    free = np.flatnonzero(data.latitude)
    n = len(free)
    rows = np.concatenate([np.arange(n), np.arange(n)])
    cols = np.concatenate([free, np.full(n, layout.t)])
    matrix = sparse.csr_matrix((-np.ones(2 * n), (rows, cols)), shape=(n, layout.width))
    return RowBlock("largest_cut", tuple(data.rules[i] for i in free), matrix, -np.ones(n))


def build_design(data: DesignInput, level: float = 0.95, objective: str = "support",
                 reallocate: bool = False) -> tuple[LinearProgram, Layout]:
    """The design LP (see the module's description) and where its variables sit."""
    start = time.perf_counter()
    if not 0 <= level < 1:
        raise DesignError(f"design LP: level must lie in [0, 1), got {level}")
    if objective not in OBJECTIVES:
        raise DesignError(f"design LP: objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
    if not np.isfinite(data.full).all() or (data.full < 0).any():
        raise DesignError("design LP: claims must be finite and >= 0")
    if (data.weights < 0).any():
        raise DesignError("design LP: priority weights must be >= 0")
    pairs = shortfall_pairs(data, reallocate)
    n_rules, n_dom, n_lines = len(data.rules), len(data.domains), len(data.lines)
    layout = Layout(n_rules, n_dom if reallocate else 0, n_lines, pairs, objective)
    width = layout.width
    support = data.weights * data.expected_full
    cost = np.zeros(width)
    lower = np.zeros(width)
    upper = np.full(width, np.inf)
    lower[:n_rules], upper[:n_rules] = data.lower, data.upper
    if reallocate:
        # a domain's budget stays >= 0 in every replication
        lower[layout.delta0:layout.delta0 + n_dom] = [-float(line.budget.min()) for line in data.lines[:n_dom]]
        upper[layout.delta0:layout.delta0 + n_dom] = np.inf
    if objective == "support":
        cost[:n_rules] = -support
    else:
        scale = max(float(support.sum()), 1.0)
        cost[:n_rules] = -EPS * support / scale
        cost[layout.t] = 1.0
        lower[layout.t], upper[layout.t] = 0.0, 1.0
    names = (tuple(f"intensity:{r}" for r in data.rules) + tuple(f"change:{d}" for d in data.domains[:layout.deltas])
             + tuple(f"var:{line.name}" for line in data.lines)
             + tuple(f"excess:{data.lines[k].name}:{s}" for k, s in pairs) + (("largest_cut",) if layout.t else ()))
    idle = ~active(data, reallocate)  # a line the design cannot act on: no excess, a VaR threshold of 0
    upper[layout.eta0:layout.eta0 + n_lines][idle] = 0.0
    lp = LinearProgram("design LP", names, cost, lower, upper)
    lp.inequalities.append(tail_rows(data, layout))
    lp.inequalities.append(cvar_rows(data, layout, level))
    if reallocate:
        envelope, floors = reallocation_rows(data, layout)
        lp.equalities.append(envelope)
        if floors is not None:
            lp.inequalities.append(floors)
    if objective == "minimax" and data.latitude.any():
        lp.inequalities.append(minimax_rows(data, layout))
    lp.build_seconds = time.perf_counter() - start
    return lp, layout


# ----------------------------------------------------------------------------- measures
def cvar(values: np.ndarray, level: float) -> float:
    """Empirical CVaR at ``level`` (Rockafellar-Uryasev at the empirical VaR): what the LP's rows measure.

    >>> cvar(np.array([0.0, 0.0, 0.0, 10.0]), 0.5)
    5.0
    >>> cvar(np.array([4.0, 1.0, 3.0, 2.0]), 0.5)  # the mean of the worst half
    3.5
    """
    values = np.asarray(values, dtype=float)
    eta = float(np.quantile(values, level, method="inverted_cdf"))
    return eta + float(np.maximum(values - eta, 0.0).mean()) / (1.0 - level)


def line_measures(data: DesignInput, x: np.ndarray, delta: np.ndarray | None, level: float) -> pd.DataFrame:
    """Each budget line at intensities x (and changes delta): expected claims, budget, CVaR of the shortfall,
    probability of an overrun (claims above the budget, as in the headline), expected shortfall."""
    rows = []
    for line in data.lines:
        claims = line_claims(data, line, x)
        budget = line.budget + (delta[line.domain] if delta is not None and line.kind == "domain" else 0.0)
        short = np.maximum(claims - budget, 0.0)
        rows.append({"line": line.name, "kind": line.kind, "domain": data.domains[line.domain],
                     "budget": float(budget.mean()), "claims": float(claims.mean()), "tolerance": line.tolerance,
                     "cvar": cvar(short, level), "p_overrun": float((claims > budget).mean()),
                     "expected_shortfall": float(short.mean())})
    return pd.DataFrame(rows)


def _infeasible(data: DesignInput, level: float, reallocate: bool) -> DesignError:
    """Name the lines that cannot be kept even at the floors, and the least each can reach."""
    at_floor = line_measures(data, data.lower, None, level)
    at_floor = at_floor[active(data, reallocate)]
    over = at_floor[at_floor["cvar"] > at_floor["tolerance"] * (1 + 1e-9) + 1e-9]
    parts = [f"{r.line}: CVaR {r.cvar:,.1f} 萬元 > tolerance {r.tolerance:,.1f} 萬元 (at the floors the least "
             f"reachable is {r.cvar:,.1f} 萬元, {r.cvar / r.budget:.1%} of its budget, with P(overrun) "
             f"{r.p_overrun:.1%})" for r in over.itertuples()]
    # (with every rule at its floor and nothing moved, each line within its limit is a feasible design, so an
    # infeasible LP always has a line that is over it here)
    fix = "" if reallocate else ", reallocate between domains (--reallocate)"
    return DesignError(f"design LP infeasible: even with every rule with latitude at its floor, {'; '.join(parts)}; "
                       f"raise the budget{fix}, raise the tolerance, or lower the floors (--floor)")


# ----------------------------------------------------------------------------- solving and tables
@dataclass
class Design:
    """A solved design: intensities, changes, and the solution with its layout."""

    data: DesignInput
    level: float
    objective: str
    reallocate: bool
    solution: Solution
    layout: Layout

    @property
    def intensity(self) -> np.ndarray:
        return np.clip(self.solution.x[:len(self.data.rules)], self.data.lower, self.data.upper)

    @property
    def change(self) -> np.ndarray | None:
        if not self.reallocate:
            return None
        return self.solution.x[self.layout.delta0:self.layout.delta0 + len(self.data.domains)].copy()


def design(data: DesignInput, level: float = 0.95, objective: str = "support", reallocate: bool = False,
           solver: str = "highs") -> Design:
    """Solve the design LP; an infeasible one gets a message naming the lines that cannot be kept."""
    lp, layout = build_design(data, level, objective, reallocate)
    try:
        sol = solve(lp, solver)
    except BudgetError as exc:
        if "infeasible" in str(exc):
            raise _infeasible(data, level, reallocate) from None
        raise
    return Design(data, level, objective, reallocate, sol, layout)


def tables(result: Design) -> dict[str, pd.DataFrame]:
    """The design as tidy tables: per rule, per article, per budget line (before and after), the
    constraints with their shadow prices, and one row of settings and timings."""
    data, x = result.data, result.intensity
    m = data.expected_full
    domain = [data.domains[i] for i in data.rule_domain]
    at_floor = data.latitude & (x <= data.lower + 1e-7)
    rules = pd.DataFrame({
        "rule": data.rules, "article": data.articles, "domain": domain, "latitude": data.latitude,
        "floor": np.where(data.latitude, data.lower, np.nan), "current_intensity": data.current, "intensity": x,
        "cut": np.where(data.latitude, 1.0 - x, 0.0), "at_floor": at_floor,
        "support_at_maximum": m, "support_before": m * data.current, "support_after": m * x,
        "given_up": m * (data.current - x), "priority": data.weights,
    })
    articles = (rules.groupby(["article", "domain"], sort=True)[["support_before", "support_after", "given_up"]]
                .sum().reset_index())
    before = line_measures(data, data.current, None, result.level)
    after = line_measures(data, x, result.change, result.level)
    lines = before[["line", "kind", "domain", "tolerance"]].copy()
    lines["budget_before"] = before["budget"]
    lines["budget_after"] = after["budget"]
    for col in ("claims", "cvar", "p_overrun", "expected_shortfall"):
        lines[f"{col}_before"] = before[col]
        lines[f"{col}_after"] = after[col]
    sol, layout = result.solution, result.layout
    # value of one more 萬元 of a line's budget: the duals of its tail rows, summed over replications
    lines["shadow_price_budget"] = np.bincount(layout.pairs[:, 0], weights=-sol.duals["tail"],
                                               minlength=len(data.lines)) + 0.0
    lines["shadow_price_tolerance"] = -sol.duals["cvar"] + 0.0
    lines["binding"] = np.abs(sol.slacks["cvar"]) <= 1e-6 * np.maximum(1.0, lines["tolerance"].to_numpy())
    lines["designed"] = active(data, result.reallocate)  # False: no rule with latitude; its risk is the text's
    lines.loc[~lines["designed"], "binding"] = False
    constraints = constraint_rows(sol, [b for b in sol.lp.inequalities + sol.lp.equalities if b.family != "tail"],
                                  1e-6)
    for i in np.flatnonzero(at_floor):
        constraints.append({"family": "floor", "constraint": data.rules[i], "rhs": float(data.lower[i]),
                            "slack": 0.0, "shadow_price": np.nan, "binding": True})
    overall = pd.DataFrame([{
        "level": result.level, "objective": result.objective, "reallocate": result.reallocate,
        "replications": data.full.shape[0], "support_before": float((m * data.current).sum()),
        "support_after": float((m * x).sum()), "given_up": float((m * (data.current - x)).sum()),
        "largest_cut": float(np.max(np.where(data.latitude, 1.0 - x, 0.0))) if len(x) else 0.0,
        "variables": len(sol.lp.variables), "rows": sum(len(b.names) for b in sol.lp.inequalities + sol.lp.equalities),
        "solver": sol.solver, "build_s": sol.lp.build_seconds, "solve_s": sol.solve_seconds + sol.model_seconds,
    }])
    out = {"rules": rules, "articles": articles, "lines": lines, "constraints": pd.DataFrame(constraints),
           "overall": overall}
    if result.reallocate:
        out["reallocation"] = pd.DataFrame({"domain": data.domains, "change": result.change})
    return out


# ----------------------------------------------------------------------------- tightening the budgets
def scaled(data: DesignInput, factor: float) -> DesignInput:
    """The same replications with every domain's claims budget times ``factor`` (sub-lines unchanged)."""
    from dataclasses import replace

    lines = tuple(replace(line, budget=line.budget * factor, tolerance=line.tolerance * factor)
                  if line.kind == "domain" else line for line in data.lines)
    return replace(data, lines=lines)


def path_table(data: DesignInput, level: float = 0.95, factors: Sequence[float] | None = None,
               objective: str = "support", solver: str = "highs") -> pd.DataFrame:
    """The designed intensities as every domain's budget shrinks (budget x factor, from ample to tight):
    which rules are turned down first, and how far.

    The path is nested: at each tighter budget no intensity may rise above its value at the budget before,
    so a cut once made stays (a bureau does not raise an award because money got scarcer).  The optimal
    design at each budget alone need not be nested (an LP's best vertex can switch between rules as the
    tail of the replications changes); ``regret`` is the expected support the nesting costs against it.
    Factors at which no design exists are left out."""
    from dataclasses import replace

    factors = np.round(np.arange(4.0, 0.45, -0.1), 2) if factors is None else factors
    rows = []
    cap = data.upper.copy()
    for factor in sorted(factors, reverse=True):
        step = scaled(data, float(factor))
        try:
            free = design(step, level, objective, solver=solver)
            nested = design(replace(step, upper=np.maximum(np.minimum(cap, step.upper), step.lower)), level,
                            objective, solver=solver)
        except DesignError:
            continue
        cap = nested.intensity
        regret = float(nested.solution.objective - free.solution.objective)
        for rule, free_rule, x in zip(data.rules, data.latitude, nested.intensity):
            if free_rule:
                rows.append({"factor": float(factor), "rule": rule, "intensity": float(x), "regret": regret})
    return pd.DataFrame(rows, columns=["factor", "rule", "intensity", "regret"])


def first_cut(path: pd.DataFrame) -> pd.Series:
    """Per rule, the largest budget factor at which the design cuts it (NaN: never cut on the path)."""
    cut = path[path["intensity"] < 1.0 - 1e-6]
    return cut.groupby("rule")["factor"].max()


# ----------------------------------------------------------------------------- the scenario that applies it
def scenario_data(result: Design, run_scenario: dict, name: str) -> dict:
    """A scenario (as a dict for TOML) with the run's own overrides and the designed intensities of the
    rules with latitude (rounded down to 1e-6, so a rerun never exceeds the promised risk by rounding)."""
    data = json.loads(json.dumps(run_scenario))  # a deep copy
    rules = data.setdefault("policy", {}).setdefault("rules", {})
    for rule, free, x in zip(result.data.rules, result.data.latitude, result.intensity):
        if free:
            rules.setdefault(rule, {})["intensity"] = math.floor(float(x) * 1e6) / 1e6
    return data


# ----------------------------------------------------------------------------- checking on fresh replications
def _losses(rules: pd.DataFrame, budgets: pd.DataFrame, domains: list[str], scale: pd.Series | None,
            change: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
    """(S, D) district-paid claims (each rule's scaled by ``scale``, its designed over its run intensity) and
    claims budgets (plus a reallocation's change)."""
    if scale is not None:
        rules = rules.assign(district=rules["district"].to_numpy() * rules["rule"].astype(str).map(scale).to_numpy())
    losses = domain_loss_matrix(rules, domains)
    b = claims_budget_frame(budgets, domains).to_numpy(dtype=float)
    if change is not None:
        b = b + change.set_index("domain").reindex(domains)["change"].to_numpy()[None, :]
    return losses, b


def domain_risk(losses: np.ndarray, budgets: np.ndarray, level: float, per_draw: int, resamples: int,
                rng: np.random.Generator) -> pd.DataFrame:
    """Per domain: CVaR of the shortfall and P(overrun) with standard errors from a bootstrap over the
    assumption draws (replications sharing a draw are resampled together: they are not independent)."""
    s = losses.shape[0]
    cluster = np.arange(s) // max(per_draw, 1)
    members = [np.flatnonzero(cluster == c) for c in range(cluster.max() + 1)]
    short = np.maximum(losses - budgets, 0.0)
    over = losses > budgets
    boot_c = np.empty((resamples, losses.shape[1]))
    boot_p = np.empty((resamples, losses.shape[1]))
    for b in range(resamples):
        pick = np.concatenate([members[c] for c in rng.integers(0, len(members), len(members))])
        boot_c[b] = [cvar(short[pick, j], level) for j in range(losses.shape[1])]
        boot_p[b] = over[pick].mean(axis=0)
    return pd.DataFrame({"cvar": [cvar(short[:, j], level) for j in range(losses.shape[1])],
                         "cvar_se": boot_c.std(axis=0, ddof=1), "p_overrun": over.mean(axis=0),
                         "p_overrun_se": boot_p.std(axis=0, ddof=1)})


def verify(design_rules: pd.DataFrame, lines: pd.DataFrame, original: tuple[pd.DataFrame, pd.DataFrame, int],
           fresh: tuple[pd.DataFrame, pd.DataFrame, int], level: float, change: pd.DataFrame | None = None,
           resamples: int = 400, seed: int = 0) -> pd.DataFrame:
    """The promise of a design (each domain's CVaR of the shortfall and P(overrun) on the run's own
    replications at the designed intensities) beside a fresh run of its scenario with another seed, each with
    its bootstrap standard error over assumption draws, and the difference in combined standard errors.
    ``original`` and ``fresh`` are (rules, budgets, replications per draw) of the two runs."""
    domains = list(lines.loc[lines["kind"] == "domain", "line"])
    ratio = design_rules.set_index("rule")
    scale = (ratio["intensity"] / ratio["current_intensity"].where(ratio["current_intensity"] > 0)).fillna(0.0)
    rng = np.random.default_rng(seed)
    before = domain_risk(*_losses(original[0], original[1], domains, scale, change), level, original[2], resamples, rng)
    after = domain_risk(*_losses(fresh[0], fresh[1], domains, None, change), level, fresh[2], resamples, rng)
    out = pd.DataFrame({"domain": domains, "tolerance": lines.set_index("line").loc[domains, "tolerance"].to_numpy(),
                        "cvar_promised": before["cvar"], "cvar_promised_se": before["cvar_se"],
                        "cvar_fresh": after["cvar"], "cvar_fresh_se": after["cvar_se"],
                        "p_overrun_promised": before["p_overrun"], "p_overrun_promised_se": before["p_overrun_se"],
                        "p_overrun_fresh": after["p_overrun"], "p_overrun_fresh_se": after["p_overrun_se"]})
    for m in ("cvar", "p_overrun"):
        se = np.sqrt(out[f"{m}_promised_se"] ** 2 + out[f"{m}_fresh_se"] ** 2)
        diff = out[f"{m}_fresh"] - out[f"{m}_promised"]
        out[f"{m}_z"] = np.where(se > 0, diff / se.where(se > 0, 1.0), np.where(diff == 0, 0.0, np.inf))
    return out


def verify_text(table: pd.DataFrame, lang: str) -> str:
    """The check on fresh replications as a small table (standard errors beside each difference)."""
    zh = lang != "en"
    shown = pd.DataFrame({
        "领域" if zh else "domain": table["domain"],
        "承诺尾部缺口" if zh else "CVaR promised": table["cvar_promised"].map("{:,.0f}".format),
        "新模拟尾部缺口" if zh else "CVaR fresh": table["cvar_fresh"].map("{:,.0f}".format),
        "标准误" if zh else "SE": np.hypot(table["cvar_promised_se"], table["cvar_fresh_se"]).map("{:,.0f}".format),
        "承诺超支概率" if zh else "P promised": table["p_overrun_promised"].map("{:.1%}".format),
        "新模拟超支概率" if zh else "P fresh": table["p_overrun_fresh"].map("{:.1%}".format),
        "z(尾部缺口)" if zh else "z CVaR": table["cvar_z"].map("{:+.2f}".format),
        "z(超支概率)" if zh else "z P": table["p_overrun_z"].map("{:+.2f}".format),
    })
    note = ("差值以两次模拟合并的标准误计(按假设抽样分组自助法;|z| ≤ 3 即在抽样误差之内);金额单位:万元。"
            "承诺值是在优化所用的同一批模拟上算出的,略偏乐观。" if zh else
            "Differences in combined standard errors (bootstrap over assumption draws; |z| <= 3: within sampling "
            "error); money in 萬元. The promise is measured on the replications the design was fitted to, so it "
            "leans optimistic.")
    return shown.to_string(index=False) + "\n" + note


def settings_of(level: float, tolerance: float, objective: str, reallocate: bool, floor: float | None,
                solver: str) -> dict:
    return {"level": level, "tolerance": tolerance, "objective": objective, "reallocate": reallocate,
            "floor": floor, "solver": solver}


# ----------------------------------------------------------------------------- one rule's cap
@dataclass(frozen=True)
class Kept:
    """One replication's claimants of a rule with a positive award at the highest number searched: the
    columns the rule reads, and the rule as that replication's assumption draw has it."""

    rule: object  # sim.policy.Rule
    columns: dict
    inclusive: bool


def _with_number(rule, number: str, value: float):
    from dataclasses import replace

    from sim.policy import Param
    from sim.validation import FrozenMap

    return replace(rule, numbers=FrozenMap({**rule.numbers, number: Param(float(value))}))


def district_claims(kept: Kept, number: str, value: float | None) -> np.ndarray:
    """(claimants,) district-paid awards of the kept claimants with the rule's ``number`` set to ``value``
    (None: the rule's own)."""
    from sim.awards import rule_award

    rule = kept.rule if value is None else _with_number(kept.rule, number, value)
    return rule_award(rule, kept.columns, kept.inclusive) * rule.district_share.value


def keep_claimants(job, rule_id: str, number: str, high: float, replications: int, progress=None) -> list[Kept]:
    """Per replication of a run (rebuilt from its seed: the same claimants), the claimants of ``rule_id``
    with a positive award when its ``number`` is ``high``: claims are monotone in a cap or a rate, so no
    other claimant can claim at any lower value."""
    from sim import population as pop
    from sim.awards import rule_award

    out = []
    for s in range(replications):
        model = job.model(s)
        rule = model.policy.rule(rule_id)
        top = _with_number(rule, number, high)
        names = rule.attributes()
        parts = []
        for segment, block_index, m in model.plan:
            if model.spec.segments[segment].claimant != rule.claimant or m == 0:
                continue
            block = pop.draw_block(model.spec, job.seed, s, segment, block_index, m)
            positive = rule_award(top, block, model.policy.reading.threshold_inclusive) > 0
            parts.append({name: block[name][positive] for name in names})
        columns = {name: np.concatenate([p[name] for p in parts]) if parts else np.zeros(0) for name in names}
        out.append(Kept(rule, columns, model.policy.reading.threshold_inclusive))
        if progress is not None:
            progress(1)
    return out


def cap_redesign(kept: Sequence[Kept], number: str, rule_claims: np.ndarray, domain_claims: np.ndarray,
                 budgets: np.ndarray, level: float = 0.95, tolerance: float = 0.01, high: float | None = None,
                 precision: float = 1e-3) -> dict[str, pd.DataFrame]:
    """The largest value of a rule's cap (or rate) with CVaR_level of its domain's shortfall within
    ``tolerance`` x the mean budget, by bisection on the re-evaluated awards of each replication.

    ``rule_claims``, ``domain_claims`` and ``budgets`` are the run's (S,) district-paid claims of the rule,
    of its whole domain, and the domain's claims budgets; re-evaluating at the rule's own numbers must give
    ``rule_claims`` again, which is checked.
    """
    s_all = len(kept)
    own = np.array([math.fsum(district_claims(k, number, None)) for k in kept])
    if not np.allclose(own, rule_claims, rtol=1e-9, atol=1e-6):
        worst = int(np.argmax(np.abs(own - rule_claims)))
        raise DesignError(f"re-evaluating rule {kept[0].rule.id} does not reproduce the run's claims (replication "
                          f"{worst}: {own[worst]:,.4f} against {rule_claims[worst]:,.4f} 萬元); the run folder "
                          "does not match this fiscalsim or model: run it again")
    other = domain_claims - rule_claims
    tol = tolerance * float(np.mean(budgets))
    current = np.array([k.rule.number(number).value for k in kept])

    def claims_at(value: float) -> np.ndarray:
        return np.array([math.fsum(district_claims(k, number, value)) for k in kept])

    def risk(value: float) -> tuple[float, float, np.ndarray]:
        total = other + claims_at(value)
        return cvar(np.maximum(total - budgets, 0.0), level), float((total > budgets).mean()), total

    low, top = 0.0, float(high if high is not None else current.max())
    feasible_low = risk(low)[0] <= tol
    feasible_top = risk(top)[0] <= tol
    if not feasible_low:
        best = float("nan")
    elif feasible_top:
        best = top
    else:
        while top - low > precision * max(1.0, float(current.max())):
            mid = 0.5 * (low + top)
            if risk(mid)[0] <= tol:
                low = mid
            else:
                top = mid
        best = low
    rows = []
    for label, value in (("current", None), ("designed", best)):
        if value is None:
            total = domain_claims
            c, p = cvar(np.maximum(total - budgets, 0.0), level), float((total > budgets).mean())
            claims = rule_claims
        elif np.isfinite(value):
            c, p, total = risk(value)
            claims = total - other
        else:
            continue
        rows.append({"setting": label, "value": float(np.mean(current)) if value is None else value,
                     "rule_claims": float(np.mean(claims)), "domain_claims": float(np.mean(total)),
                     "cvar": c, "p_overrun": p, "tolerance": tol})
    table = pd.DataFrame(rows)
    affected = np.nan
    if np.isfinite(best):
        counts = [int(((district_claims(k, number, best) < district_claims(k, number, None) - 1e-9)).sum())
                  for k in kept]
        affected = float(np.mean(counts))
    grid = np.linspace(0.0, float(high if high is not None else current.max()) * 1.0, 21)
    curve = pd.DataFrame([{"value": v, **dict(zip(("cvar", "p_overrun"), risk(v)[:2]))} for v in grid])
    summary = pd.DataFrame([{
        "rule": kept[0].rule.id, "number": number, "current": float(np.mean(current)), "designed": best,
        "searched_up_to": float(high if high is not None else current.max()), "level": level,
        "tolerance": tol, "claimants_affected": affected, "replications": s_all,
        "finding": "none" if not feasible_low else "all" if feasible_top else "found",
    }])
    return {"summary": summary, "before_after": table, "curve": curve}


FINDINGS = {
    "none": ("即使该条款不兑现,本领域其他条款已超出限额:调整此上限无济于事",
             "no value keeps the domain within the limit: its other rules alone exceed it"),
    "all": ("搜索范围内任何取值都在限额之内", "every value searched keeps the domain within the limit"),
    "found": ("在限额之内的最大取值", "the largest value that keeps the domain within the limit"),
}


def cap_text(out: dict[str, pd.DataFrame], policy: Policy, lang: str) -> str:
    """The cap search in a few lines (money in 萬元)."""
    s = out["summary"].iloc[0]
    rows = out["before_after"]
    zh = lang != "en"
    what = ("上限" if s["number"] == "cap" else "比例") if zh else s["number"]
    if zh:
        head = (f"{s['rule']} 的{what}:现行 {s['current']:,.4g};最坏{1 - s['level']:.0%}年份平均缺口不超过 "
                f"{s['tolerance']:,.0f} 万元时的最大值:{s['designed']:,.4g}")
        tail = f"({FINDINGS[s['finding']][0]};每年约 {s['claimants_affected']:,.1f} 家申报主体少得)"
    else:
        head = (f"{s['rule']} {what}: today {s['current']:,.4g}; the largest value with the mean shortfall of the "
                f"worst {1 - s['level']:.0%} of years within {s['tolerance']:,.0f} 萬元: {s['designed']:,.4g}")
        tail = f"({FINDINGS[s['finding']][1]}; {s['claimants_affected']:,.1f} claimants a year get less)"
    if not np.isfinite(s["claimants_affected"]):
        tail = f"({FINDINGS[s['finding']][0 if zh else 1]})"
    return "\n".join([head, tail, rows.round(4).to_string(index=False)])
