"""Budget coverage and allocation as linear programs (HiGHS by default; CBC or HiGHS through PuLP).

Every LP is first built as arrays (:class:`LinearProgram`: cost vector, bounds, sparse row blocks, one
function per constraint family), then handed to a solver: HiGHS itself on those matrices (``highs``, the
default: nothing is rebuilt row by row), PuLP's modelling layer with CBC or HiGHS (``cbc``,
``pulp-highs``), or ``scipy.optimize.linprog(method="highs")`` on the very same matrices, which the tests
use as a second solver.  Building and solving are timed separately.  All LPs are minimisations; a shadow price is the
value of one more 萬元 of right-hand side (``-dual``).

- :func:`coverage`: fund each rule's expected district-paid claim within the domain claims budgets,
  the stated sub-lines and the net total; shortfalls per rule and domain, binding constraints, shadow
  prices.
- :func:`minimum_top_up`: the smallest extra budget per domain that funds every expected claim, and
  :func:`reallocation`: moving claims budget between domains (total unchanged) to minimise shortfall.
- :func:`cvar_budgets`: over S Monte Carlo replications, the smallest total budget whose CVaR of total
  shortfall at level alpha is at most a tolerance (Rockafellar-Uryasev), the empirical probability of
  any shortfall, and pro-rata payable fractions per domain and replication.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from scipy import sparse

from sim.errors import FiscalsimError
from sim.policy import Policy

SOLVERS = ("highs", "cbc", "pulp-highs", "scipy")  # the first is the default
TOL = 1e-7


class BudgetError(FiscalsimError):
    """An LP cannot be solved as posed; the message names the constraint or input at fault."""


# ----------------------------------------------------------------------------- LP as arrays
@dataclass(frozen=True)
class RowBlock:
    """One constraint family: rows ``matrix @ x <= rhs`` (or ``==``), each with a name."""

    family: str
    names: tuple[str, ...]
    matrix: sparse.csr_matrix
    rhs: np.ndarray


@dataclass
class LinearProgram:
    name: str
    variables: tuple[str, ...]
    cost: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    inequalities: list[RowBlock] = field(default_factory=list)
    equalities: list[RowBlock] = field(default_factory=list)
    build_seconds: float = 0.0

    def stacked(self, blocks: Sequence[RowBlock]):
        if not blocks:
            return None, None
        return (sparse.vstack([b.matrix for b in blocks], format="csr"),
                np.concatenate([b.rhs for b in blocks]))


@dataclass
class Solution:
    lp: LinearProgram
    solver: str
    x: np.ndarray
    objective: float
    duals: dict[str, np.ndarray]  # family -> dual per row (d objective / d rhs)
    slacks: dict[str, np.ndarray]
    solve_seconds: float
    model_seconds: float = 0.0  # building the solver's own model (PuLP objects)


# ----------------------------------------------------------------------------- solving
def solve(lp: LinearProgram, solver: str = "highs") -> Solution:
    """Solve with HiGHS on the LP's own arrays (``highs``, through highspy: nothing built row by row), with
    CBC or HiGHS through PuLP's modelling layer (``cbc``, ``pulp-highs``), or with scipy's HiGHS."""
    if solver not in SOLVERS:
        raise BudgetError(f"unknown solver {solver!r}; choose one of {', '.join(SOLVERS)}")
    if solver == "scipy":
        return _solve_scipy(lp)
    if solver == "highs":
        return _solve_highs(lp)
    return _solve_pulp(lp, solver)


def _solve_highs(lp: LinearProgram) -> Solution:
    """The LP's matrices handed to HiGHS as they are (one compressed-row matrix, row bounds, column bounds)."""
    highspy = _highspy()
    start = time.perf_counter()
    blocks = lp.inequalities + lp.equalities
    model = highspy.HighsLp()
    model.num_col_, model.num_row_ = len(lp.cost), sum(len(b.names) for b in blocks)
    model.col_cost_, model.col_lower_, model.col_upper_ = lp.cost, lp.lower, lp.upper
    if blocks:
        matrix = sparse.vstack([b.matrix for b in blocks], format="csr")
        rhs = np.concatenate([b.rhs for b in blocks])
        equal = np.concatenate([np.full(len(b.names), k >= len(lp.inequalities)) for k, b in enumerate(blocks)])
        model.row_lower_, model.row_upper_ = np.where(equal, rhs, -highspy.kHighsInf), rhs
        model.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
        model.a_matrix_.start_, model.a_matrix_.index_, model.a_matrix_.value_ = (matrix.indptr, matrix.indices,
                                                                                  matrix.data)
    with _quiet():  # HiGHS prints its banner as it starts
        h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.passModel(model)
    model_seconds = time.perf_counter() - start
    start = time.perf_counter()
    h.run()
    seconds = time.perf_counter() - start
    status = h.getModelStatus()
    if status != highspy.HighsModelStatus.kOptimal:
        named = {highspy.HighsModelStatus.kInfeasible: "infeasible", highspy.HighsModelStatus.kUnbounded: "unbounded",
                 highspy.HighsModelStatus.kUnboundedOrInfeasible: "infeasible"}
        raise _status_error(lp, named.get(status, h.modelStatusToString(status)))
    solution = h.getSolution()
    x = np.asarray(solution.col_value)
    duals = _per_family(blocks, np.asarray(solution.row_dual))
    activity = _per_family(lp.inequalities, np.asarray(solution.row_value))
    slacks = {**{b.family: b.rhs - activity[b.family] for b in lp.inequalities},
              **{b.family: np.zeros(len(b.names)) for b in lp.equalities}}
    return Solution(lp, "highs", x, float(lp.cost @ x), duals, slacks, seconds, model_seconds)


def _per_family(blocks: Sequence[RowBlock], values: np.ndarray) -> dict[str, np.ndarray]:
    """A solver's per-row values (stacked in block order) cut into one array per constraint family."""
    out, offset = {}, 0
    for block in blocks:
        out[block.family] = values[offset:offset + len(block.names)]
        offset += len(block.names)
    return out


def _highspy():
    try:
        import highspy
    except ImportError:
        raise BudgetError("HiGHS is not installed: pip install highspy, or use --solver cbc") from None
    return highspy


def _status_error(lp: LinearProgram, status: str) -> BudgetError:
    hint = {
        "infeasible": "no budget satisfies every constraint",
        "unbounded": "the objective can improve without limit; a bound or a weight is missing",
    }.get(status, "the solver gave up")
    families = ", ".join(b.family for b in lp.inequalities + lp.equalities)
    return BudgetError(f"{lp.name}: {status}: {hint} (constraint families: {families})")


def _solve_scipy(lp: LinearProgram) -> Solution:
    from scipy.optimize import linprog

    a_ub, b_ub = lp.stacked(lp.inequalities)
    a_eq, b_eq = lp.stacked(lp.equalities)
    start = time.perf_counter()
    res = linprog(lp.cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=b_eq,
                  bounds=np.column_stack([lp.lower, lp.upper]), method="highs")
    seconds = time.perf_counter() - start
    if res.status != 0:
        raise _status_error(lp, {2: "infeasible", 3: "unbounded"}.get(res.status, res.message))
    duals = {**_per_family(lp.inequalities, res.ineqlin.marginals), **_per_family(lp.equalities, res.eqlin.marginals)}
    slacks = {**_per_family(lp.inequalities, res.slack), **{b.family: np.zeros(len(b.names)) for b in lp.equalities}}
    return Solution(lp, "scipy", res.x, float(res.fun), duals, slacks, seconds)


@contextlib.contextmanager
def _quiet():
    """Silence a solver's banner written straight to file descriptor 1 (HiGHS prints one)."""
    sys.stdout.flush()
    saved = os.dup(1)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 1)
        try:
            yield
        finally:
            os.dup2(saved, 1)
            os.close(saved)


def _pulp_solver(solver: str):
    import pulp

    if solver == "cbc":
        with warnings.catch_warnings():  # PuLP 3.3 deprecates its bundled-CBC class for 4.0; it is what ships
            warnings.simplefilter("ignore", DeprecationWarning)
            cmd = pulp.PULP_CBC_CMD(msg=False)
        if not cmd.available():
            raise BudgetError("CBC is not available (PuLP's bundled binary is missing); reinstall pulp or use "
                              "--solver highs / scipy")
        return cmd
    _highspy()
    return pulp.HiGHS(msg=False)


def _solve_pulp(lp: LinearProgram, solver: str) -> Solution:
    import pulp

    backend = _pulp_solver(solver)
    start = time.perf_counter()
    model = pulp.LpProblem(lp.name.replace(" ", "_"), pulp.LpMinimize)
    xs = [model.add_variable(f"x{i}", lowBound=float(lo) if np.isfinite(lo) else None,
                             upBound=float(up) if np.isfinite(up) else None)
          for i, (lo, up) in enumerate(zip(lp.lower, lp.upper))]
    nonzero = np.flatnonzero(lp.cost)
    model += pulp.LpAffineExpression([(xs[i], float(lp.cost[i])) for i in nonzero])
    rows: dict[str, list] = {}
    for blocks, sense in ((lp.inequalities, pulp.LpConstraintLE), (lp.equalities, pulp.LpConstraintEQ)):
        for block in blocks:
            matrix = block.matrix
            made = []
            for r in range(matrix.shape[0]):
                lo, hi = matrix.indptr[r], matrix.indptr[r + 1]
                expr = pulp.LpAffineExpression(
                    [(xs[j], float(v)) for j, v in zip(matrix.indices[lo:hi], matrix.data[lo:hi])])
                constraint = pulp.LpConstraint(expr, sense=sense, rhs=float(block.rhs[r]))
                model.addConstraint(constraint, name=f"{block.family}_{r}")
                made.append(constraint)
            rows[block.family] = made
    model_seconds = time.perf_counter() - start
    start = time.perf_counter()
    with _quiet(), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        model.solve(backend)
    seconds = time.perf_counter() - start
    status = pulp.LpStatus[model.status].lower()
    if status != "optimal":
        raise _status_error(lp, status)
    x = np.array([v.varValue if v.varValue is not None else 0.0 for v in xs])
    duals = {family: np.array([c.pi if c.pi is not None else 0.0 for c in made]) for family, made in rows.items()}
    slacks = {family: np.array([-(c.value()) if c.value() is not None else 0.0 for c in made])
              for family, made in rows.items()}
    objective = float(lp.cost @ x)
    return Solution(lp, solver, x, objective, duals, slacks, seconds, model_seconds)


# ----------------------------------------------------------------------------- inputs
def paid_sublines(policy: Policy) -> list[tuple[str, str, np.ndarray, float]]:
    """The stated sub-lines that rules are paid from: (``domain/line`` name, domain key, rule indices, amount)."""
    out = []
    for domain in policy.domains:
        for line in domain.sublines:
            members = np.array([i for i, r in enumerate(policy.rules)
                                if r.domain == domain.key and r.subline == line.id], dtype=int)
            if len(members):
                out.append((f"{domain.key}/{line.id}", domain.key, members, float(line.amount)))
    return out


@dataclass(frozen=True)
class ClaimsInput:
    """Expected district-paid claims per rule and the budgets they draw on, as arrays."""

    rules: tuple[str, ...]
    domains: tuple[str, ...]
    claims: np.ndarray  # (rules,) expected district-paid claim, 萬元
    rule_domain: np.ndarray  # (rules,) domain index
    budgets: np.ndarray  # (domains,) claims budget
    weights: np.ndarray  # (rules,) priority weights
    sublines: tuple[tuple[str, np.ndarray, float], ...]  # (name, rule indices, amount)
    net_total: float
    spending_floors: tuple[tuple[str, int, float, float], ...] = ()  # (name, domain index, share, margin)

    @classmethod
    def from_policy(cls, policy: Policy, expected_claims: pd.Series | dict) -> ClaimsInput:
        claims = pd.Series(expected_claims, dtype=float).reindex(list(policy.rule_ids))
        missing = claims.index[claims.isna()].tolist()
        if missing:
            raise BudgetError(f"expected claims are missing for rules {', '.join(missing)}")
        if (claims < 0).any():
            raise BudgetError(f"expected claims must be >= 0; negative for {', '.join(claims.index[claims < 0])}")
        domains = policy.domain_keys
        index = {d: i for i, d in enumerate(domains)}
        sublines = [(name, members, amount) for name, _, members, amount in paid_sublines(policy)]
        return cls(
            rules=policy.rule_ids, domains=domains, claims=claims.to_numpy(),
            rule_domain=np.array([index[r.domain] for r in policy.rules]),
            budgets=np.array([d.claims_budget.value for d in policy.domains]),
            weights=np.array([r.priority.value for r in policy.rules]),
            sublines=tuple(sublines), net_total=policy.net_total,
            spending_floors=tuple((f.id, index[f.domain], f.share, f.margin.value) for f in policy.spending_floors),
        )

    def domain_claims(self) -> np.ndarray:
        return np.bincount(self.rule_domain, weights=self.claims, minlength=len(self.domains))

    def membership(self) -> sparse.csr_matrix:
        """(domains x rules) 0/1 matrix: which domain pays each rule."""
        n = len(self.rules)
        return sparse.csr_matrix((np.ones(n), (self.rule_domain, np.arange(n))), shape=(len(self.domains), n))


# ----------------------------------------------------------------------------- constraint families
def domain_budget_rows(data: ClaimsInput, budgets: np.ndarray, offset: int, width: int) -> RowBlock:
    """Sum of funded amounts of a domain's rules <= its claims budget."""
    member = data.membership()
    matrix = sparse.hstack([sparse.csr_matrix((len(data.domains), offset)), member,
                            sparse.csr_matrix((len(data.domains), width - offset - len(data.rules)))], format="csr")
    return RowBlock("domain_budget", data.domains, matrix, np.asarray(budgets, dtype=float))


def subline_rows(data: ClaimsInput, width: int) -> RowBlock | None:
    """Rules paid from a stated sub-line (articles 2 and 47) stay within that line."""
    if not data.sublines:
        return None
    rows, cols = [], []
    for r, (_, members, _) in enumerate(data.sublines):
        rows.extend([r] * len(members))
        cols.extend(members)
    matrix = sparse.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(data.sublines), width))
    return RowBlock("subline", tuple(s[0] for s in data.sublines), matrix, np.array([s[2] for s in data.sublines]))


def spending_floor_rows(data: ClaimsInput, offset: int, width: int) -> RowBlock | None:
    """A field's share of all spending (two thirds for livelihood in section 六's preamble) kept when budgets b (at
    ``offset``) replace the plan B: share x sum(b - B) - (b_f - B_f) <= margin, i.e. the domain gives up at
    most its margin, and every extra 萬元 elsewhere needs ``share`` of it in the domain."""
    if not data.spending_floors:
        return None
    k = len(data.domains)
    matrix = np.zeros((len(data.spending_floors), width))
    rhs = np.zeros(len(data.spending_floors))
    for i, (_, domain, share, margin) in enumerate(data.spending_floors):
        matrix[i, offset:offset + k] = share
        matrix[i, offset + domain] -= 1.0
        rhs[i] = margin + share * data.budgets.sum() - data.budgets[domain]
    return RowBlock("spending_floor", tuple(f[0] for f in data.spending_floors), sparse.csr_matrix(matrix), rhs)


def check_spending_floors(data: ClaimsInput, budgets: np.ndarray, what: str) -> None:
    """Budgets other than the plan must keep every spending floor; else one message naming it."""
    block = spending_floor_rows(data, 0, len(data.domains))
    if block is None:
        return
    lhs = block.matrix @ budgets
    for name, value, rhs, (_, domain, share, margin) in zip(block.names, lhs, block.rhs, data.spending_floors):
        if value > rhs + 1e-6 * max(1.0, abs(rhs)):
            raise BudgetError(
                f"{what}: the budgets break spending floor {name}: domain {data.domains[domain]} would need "
                f"{value - rhs:,.1f} 萬元 more to keep its share of {share:.2%} of all spending (margin "
                f"{margin:,.1f} 萬元); give it that much, or change the floor's margin in policy.toml")


def total_rows(data: ClaimsInput, width: int, total: float) -> RowBlock:
    """All funded claims together stay within the net total (108.9億 after overlap)."""
    matrix = sparse.csr_matrix(np.concatenate([np.ones(len(data.rules)), np.zeros(width - len(data.rules))])[None, :])
    return RowBlock("net_total", ("net_total",), matrix, np.array([total]))


# ----------------------------------------------------------------------------- coverage
def build_coverage(data: ClaimsInput, budgets: np.ndarray | None = None,
                   committed: np.ndarray | float = 0.0) -> LinearProgram:
    """Variables: funded amount of each rule, between ``committed`` x claim and the claim.
    Maximise the priority-weighted funded claims within the domain, sub-line and net-total limits."""
    start = time.perf_counter()
    budgets = data.budgets if budgets is None else np.asarray(budgets, dtype=float)
    if (budgets < 0).any():
        bad = [d for d, b in zip(data.domains, budgets) if b < 0]
        raise BudgetError(f"coverage LP: claims budget of {', '.join(bad)} is negative; budgets must be >= 0")
    floors = np.broadcast_to(np.asarray(committed, dtype=float), data.claims.shape) * data.claims
    needed = np.bincount(data.rule_domain, weights=floors, minlength=len(data.domains))
    for d, (need, budget) in enumerate(zip(needed, budgets)):
        if need > budget * (1 + 1e-12) + 1e-9:
            rules = [r for r, i, f in zip(data.rules, data.rule_domain, floors) if i == d and f > 0]
            raise BudgetError(
                f"coverage LP infeasible: constraint domain_budget[{data.domains[d]}]: committed claims of "
                f"{need:,.1f} 萬元 (rules {', '.join(rules)}) exceed the claims budget of {budget:,.1f} 萬元; "
                "lower the commitment or raise the budget")
    if (data.weights < 0).any():
        raise BudgetError("coverage LP: priority weights must be >= 0")
    check_spending_floors(data, budgets, "coverage LP")
    n = len(data.rules)
    lp = LinearProgram("coverage LP", tuple(f"fund:{r}" for r in data.rules),
                       cost=-(data.weights + 1e-9),  # a tiny weight keeps zero-priority claims funded when free
                       lower=floors.copy(), upper=data.claims.copy())
    lp.inequalities.append(domain_budget_rows(data, budgets, 0, n))
    sub = subline_rows(data, n)
    if sub is not None:
        lp.inequalities.append(sub)
    lp.inequalities.append(total_rows(data, n, data.net_total))
    lp.build_seconds = time.perf_counter() - start
    return lp


def coverage(data: ClaimsInput, budgets: np.ndarray | None = None, solver: str = "highs",
             committed: np.ndarray | float = 0.0) -> dict[str, pd.DataFrame]:
    """Fund expected claims within the budgets: per-rule and per-domain tables, and the binding constraints."""
    lp = build_coverage(data, budgets, committed)
    sol = solve(lp, solver)
    budgets = data.budgets if budgets is None else np.asarray(budgets, dtype=float)
    funded = sol.x
    rules = pd.DataFrame({"rule": data.rules, "domain": [data.domains[i] for i in data.rule_domain],
                          "claim": data.claims, "funded": funded, "shortfall": np.maximum(data.claims - funded, 0.0)})
    domain_funded = np.bincount(data.rule_domain, weights=funded, minlength=len(data.domains))
    domain_claims = data.domain_claims()
    domains = pd.DataFrame({
        "domain": data.domains, "claims_budget": budgets, "claims": domain_claims, "funded": domain_funded,
        "shortfall": np.maximum(domain_claims - domain_funded, 0.0),
        "shadow_price": -sol.duals["domain_budget"] + 0.0,
        "binding": np.abs(sol.slacks["domain_budget"]) <= TOL * np.maximum(1.0, budgets),
    })
    constraints = pd.DataFrame(constraint_rows(sol, lp.inequalities, TOL),
                               columns=["family", "constraint", "slack", "shadow_price", "binding"])
    return {"rules": rules, "domains": domains, "constraints": constraints, "timing": timing(sol)}


def constraint_rows(sol: Solution, blocks: Sequence[RowBlock], tol: float) -> list[dict]:
    """One record per row of ``blocks``: its right-hand side, slack, shadow price (the value of one more unit of
    right-hand side) and whether it binds (slack within ``tol`` of the right-hand side's size)."""
    return [{"family": block.family, "constraint": name, "rhs": float(rhs), "slack": float(slack),
             "shadow_price": float(-dual) + 0.0, "binding": abs(slack) <= tol * max(1.0, abs(rhs))}
            for block in blocks
            for name, dual, slack, rhs in zip(block.names, sol.duals[block.family], sol.slacks[block.family],
                                              block.rhs)]


# ----------------------------------------------------------------------------- top-up and reallocation
def build_top_up(data: ClaimsInput) -> LinearProgram:
    """Minimise total extra budget u >= 0 such that every expected claim is funded: claims_d <= B_d + u_d."""
    start = time.perf_counter()
    k = len(data.domains)
    lp = LinearProgram("minimum top-up LP", tuple(f"topup:{d}" for d in data.domains), cost=np.ones(k),
                       lower=np.zeros(k), upper=np.full(k, np.inf))
    # claims_d - B_d <= u_d  <=>  -u_d <= B_d - claims_d
    lp.inequalities.append(RowBlock("claims_funded", data.domains, sparse.csr_matrix(-np.eye(k)),
                                    data.budgets - data.domain_claims()))
    lp.build_seconds = time.perf_counter() - start
    return lp


def minimum_top_up(data: ClaimsInput, solver: str = "highs") -> pd.DataFrame:
    sol = solve(build_top_up(data), solver)
    return pd.DataFrame({"domain": data.domains, "claims_budget": data.budgets, "claims": data.domain_claims(),
                         "top_up": sol.x, "shadow_price": -sol.duals["claims_funded"] + 0.0})


def build_reallocation(data: ClaimsInput, envelope: float | None = None) -> LinearProgram:
    """Move claims budget between domains, the total fixed at the envelope (default: today's total claims
    budget, at most the net total), to minimise total shortfall; among equally good answers, the one that
    moves the least money.

    Variables: budgets b, shortfalls s, increases p and decreases m (b = B + p - m).
    Minimise sum(s) + 1e-6 sum(p + m) subject to claims_d - b_d <= s_d and sum(b) = envelope, and the
    spending floors (section 六's two thirds for livelihood, :func:`spending_floor_rows`).
    """
    start = time.perf_counter()
    k = len(data.domains)
    envelope = float(data.budgets.sum() if envelope is None else envelope)
    if envelope > data.net_total:
        raise BudgetError(f"reallocation LP: envelope {envelope:,.0f} exceeds the net total {data.net_total:,.0f} 萬元")
    if envelope < 0:
        raise BudgetError(f"reallocation LP: envelope must be >= 0, got {envelope:,.0f}")
    names = tuple(f"{part}:{d}" for part in ("budget", "short", "up", "down") for d in data.domains)
    cost = np.concatenate([np.zeros(k), np.ones(k), np.full(2 * k, 1e-6)])
    lp = LinearProgram("reallocation LP", names, cost, lower=np.zeros(4 * k), upper=np.full(4 * k, np.inf))
    eye, zero = sparse.eye(k, format="csr"), sparse.csr_matrix((k, k))
    # claims_d - b_d <= s_d  <=>  -b_d - s_d <= -claims_d
    lp.inequalities.append(RowBlock("shortfall", data.domains, sparse.hstack([-eye, -eye, zero, zero], format="csr"),
                                    -data.domain_claims()))
    # b_d - p_d + m_d = B_d
    lp.equalities.append(RowBlock("movement", data.domains, sparse.hstack([eye, zero, -eye, eye], format="csr"),
                                  data.budgets.astype(float)))
    lp.equalities.append(RowBlock("envelope", ("envelope",), sparse.csr_matrix(
        np.concatenate([np.ones(k), np.zeros(3 * k)])[None, :]), np.array([envelope])))
    floors = spending_floor_rows(data, 0, 4 * k)
    if floors is not None:
        lp.inequalities.append(floors)
    lp.build_seconds = time.perf_counter() - start
    return lp


def reallocation(data: ClaimsInput, envelope: float | None = None, solver: str = "highs") -> pd.DataFrame:
    sol = solve(build_reallocation(data, envelope), solver)
    k = len(data.domains)
    return pd.DataFrame({"domain": data.domains, "claims_budget": data.budgets, "claims": data.domain_claims(),
                         "reallocated_budget": sol.x[:k], "shortfall": sol.x[k:2 * k],
                         "change": sol.x[:k] - data.budgets})


# ----------------------------------------------------------------------------- CVaR sizing
def build_cvar(losses: np.ndarray, domains: Sequence[str], level: float, tolerance: float,
               floors: np.ndarray | None = None) -> LinearProgram:
    """Smallest total budget with CVaR_level(total shortfall) <= tolerance (Rockafellar-Uryasev).

    Variables: budgets b (D), shortfalls z_sd, excesses u_s, VaR threshold eta >= 0.
    z_sd >= L_sd - b_d;  u_s >= sum_d z_sd - eta;  eta + sum_s u_s / ((1 - level) S) <= tolerance.

    ``floors`` (per domain) restricts the search to b >= floors; then a shortfall variable is needed
    only where a replication's claim exceeds the floor, and an excess variable only for replications
    with a shortfall variable (total shortfall is 0 elsewhere, and eta >= 0 since shortfalls are >= 0).
    With zero floors this is the textbook formulation with every variable.
    """
    start = time.perf_counter()
    losses = np.asarray(losses, dtype=float)
    if losses.ndim != 2 or losses.shape[1] != len(domains):
        raise BudgetError(f"CVaR LP: claims must be a (replications x {len(domains)}) matrix, got {losses.shape}")
    if not np.isfinite(losses).all() or (losses < 0).any():
        raise BudgetError("CVaR LP: claims must be finite and >= 0")
    if not 0 <= level < 1:
        raise BudgetError(f"CVaR LP: level must lie in [0, 1), got {level}")
    if tolerance < 0:
        raise BudgetError(f"CVaR LP: tolerance must be >= 0 萬元, got {tolerance}; a shortfall cannot be negative")
    s_all, d = losses.shape
    floors = np.zeros(d) if floors is None else np.asarray(floors, dtype=float)
    rows_s, cols_d = np.nonzero(losses > floors[None, :])  # the (replication, domain) pairs that can fall short
    nz = len(rows_s)
    scen = np.unique(rows_s)  # replications with a shortfall variable
    ns = len(scen)
    names = (tuple(f"budget:{x}" for x in domains) + tuple(f"short:{i}:{domains[j]}" for i, j in zip(rows_s, cols_d))
             + tuple(f"excess:{i}" for i in scen) + ("eta",))
    width = d + nz + ns + 1
    cost = np.zeros(width)
    cost[:d] = 1.0
    lower = np.zeros(width)
    lower[:d] = floors
    upper = np.full(width, np.inf)
    lp = LinearProgram("CVaR budget LP", names, cost, lower, upper)
    # -b_d - z_sd <= -L_sd
    k = np.arange(nz)
    matrix = sparse.csr_matrix((np.full(2 * nz, -1.0), (np.concatenate([k, k]), np.concatenate([cols_d, d + k]))),
                               shape=(nz, width))
    lp.inequalities.append(RowBlock("shortfall", tuple(f"{i}:{domains[j]}" for i, j in zip(rows_s, cols_d)), matrix,
                                    -losses[rows_s, cols_d]))
    # sum_d z_sd - u_s - eta <= 0, for replications with a shortfall variable
    position = np.searchsorted(scen, rows_s)
    data = np.concatenate([np.ones(nz), -np.ones(ns), -np.ones(ns)])
    r = np.concatenate([position, np.arange(ns), np.arange(ns)])
    c = np.concatenate([d + k, d + nz + np.arange(ns), np.full(ns, width - 1)])
    lp.inequalities.append(RowBlock("excess", tuple(str(i) for i in scen),
                                    sparse.csr_matrix((data, (r, c)), shape=(ns, width)), np.zeros(ns)))
    # eta + sum_s u_s / ((1 - level) S) <= tolerance
    row = np.zeros(width)
    row[d + nz:d + nz + ns] = 1.0 / ((1.0 - level) * s_all)
    row[-1] = 1.0
    lp.inequalities.append(RowBlock("cvar", ("cvar",), sparse.csr_matrix(row[None, :]), np.array([tolerance])))
    lp.build_seconds = time.perf_counter() - start
    return lp


def solve_cvar(losses: np.ndarray, domains: Sequence[str], level: float, tolerance: float,
               solver: str = "highs", reduce: bool = True) -> Solution:
    """Solve the CVaR LP exactly, on a reduced model where possible.

    With ``reduce``, the search starts above a low quantile of each domain's claims; if the optimum
    sits above every such floor, the floors are not binding and (the LP being convex) it is the optimum
    of the full model; where a budget lands on its floor the floor is lowered and the LP solved again,
    down to the full model.
    """
    losses = np.asarray(losses, dtype=float)
    q = max(0.0, 1.0 - 3.0 * (1.0 - level)) if reduce else 0.0
    quantiles = np.full(losses.shape[1] if losses.ndim == 2 else 0, q)
    total_build = 0.0
    while True:
        floors = np.where(quantiles > 0, np.quantile(losses, quantiles, axis=0).diagonal() if losses.size else 0, 0.0)
        lp = build_cvar(losses, domains, level, tolerance, floors)
        total_build += lp.build_seconds
        sol = solve(lp, solver)
        budgets = sol.x[:len(domains)]
        at_floor = (quantiles > 0) & (budgets <= floors + 1e-7 * np.maximum(1.0, floors))
        if not at_floor.any():
            lp.build_seconds = total_build
            return sol
        quantiles = np.where(at_floor, np.floor(quantiles * 0.5 * 100) / 100, quantiles)


def cvar_budgets(losses: np.ndarray, domains: Sequence[str], level: float = 0.95, tolerance: float = 0.0,
                 current: np.ndarray | None = None, solver: str = "highs",
                 reduce: bool = True) -> dict[str, pd.DataFrame]:
    """CVaR-sized domain budgets over S replications of domain claims (district-paid, 萬元)."""
    sol = solve_cvar(losses, domains, level, tolerance, solver, reduce)
    lp = sol.lp
    d = len(domains)
    budgets = sol.x[:d]
    losses = np.asarray(losses, dtype=float)
    short = np.maximum(losses - budgets[None, :] - 1e-6 * np.maximum(1.0, budgets[None, :]), 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        payable = np.where(losses > 0, np.minimum(1.0, budgets[None, :] / losses), 1.0)
    total_short = np.maximum(losses - budgets[None, :], 0.0).sum(axis=1)
    cvar = _cvar(total_short, level)
    table = pd.DataFrame({
        "domain": list(domains), "cvar_budget": budgets,
        "current_claims_budget": current if current is not None else np.nan,
        "mean_claims": losses.mean(axis=0), "p95_claims": np.quantile(losses, 0.95, axis=0),
        "p_shortfall": (short > 0).mean(axis=0), "mean_payable_fraction": payable.mean(axis=0),
    })
    scaling = pd.DataFrame(payable, columns=list(domains)).rename_axis("replication").reset_index()
    overall = pd.DataFrame([{
        "level": level, "tolerance": tolerance, "replications": losses.shape[0], "total_budget": budgets.sum(),
        "p_any_shortfall": float((short > 0).any(axis=1).mean()), "empirical_cvar": cvar,
        "variables": len(lp.variables), "solver": sol.solver,
    }])
    return {"budgets": table, "scaling": scaling, "overall": overall, "timing": timing(sol)}


def timing(sol: Solution) -> dict[str, float | str]:
    """How long an LP took to build, to hand to the solver, and to solve (seconds; for manifests only)."""
    return {"lp": sol.lp.name, "solver": sol.solver, "build_s": sol.lp.build_seconds,
            "model_s": sol.model_seconds, "solve_s": sol.solve_seconds}


def _cvar(values: np.ndarray, level: float) -> float:
    """Empirical CVaR (Rockafellar-Uryasev, at the empirical VaR)."""
    eta = np.quantile(values, level, method="inverted_cdf")
    return float(eta + np.maximum(values - eta, 0.0).mean() / (1.0 - level))


def claims_budget_frame(budgets: pd.DataFrame, domains: Sequence[str], index=None) -> pd.DataFrame:
    """Replication x domain claims budgets from a run's ``budgets`` table (reindexed to ``index`` if given;
    a replication without a budget there is NaN)."""
    frame = budgets.pivot(index="replication", columns="domain", values="claims_budget")
    return frame.reindex(index=index, columns=list(domains))


def domain_loss_matrix(rules: pd.DataFrame, domains: Sequence[str]) -> np.ndarray:
    """(replications x domains) district-paid claims from a run's ``rules`` table."""
    pivot = rules.pivot_table(index="replication", columns="domain", values="district", aggfunc="sum", observed=False,
                              fill_value=0.0)  # a replication without claims in a domain lost nothing there
    return pivot.reindex(columns=list(domains), fill_value=0.0).to_numpy(dtype=float)


def default_tolerance(losses: np.ndarray) -> float:
    """The CVaR tolerance when none is given: 1% of the mean total district-paid claims (萬元) over the
    replications (rows of ``losses``)."""
    return 0.01 * float(losses.sum(axis=1).mean())


def analyse(policy: Policy, rules: pd.DataFrame, level: float = 0.95, tolerance: float | None = None,
            solver: str = "highs") -> tuple[dict[str, pd.DataFrame], list[dict]]:
    """Every budget LP for a finished Monte Carlo run (its ``rules`` table): tables by name, and the LPs'
    timings (kept apart: they belong in a manifest, not in result tables).

    ``tolerance`` defaults to 1% of the mean total district-paid claims.
    """
    expected = rules.groupby("rule", observed=True)["district"].mean()
    data = ClaimsInput.from_policy(policy, expected)
    cover = coverage(data, solver=solver)
    losses = domain_loss_matrix(rules, policy.domain_keys)
    if tolerance is None:
        tolerance = default_tolerance(losses)
    sized = cvar_budgets(losses, policy.domain_keys, level, tolerance, data.budgets, solver=solver)
    tables = {
        "coverage_domains": cover["domains"], "coverage_rules": cover["rules"],
        "coverage_constraints": cover["constraints"], "top_up": minimum_top_up(data, solver),
        "reallocation": reallocation(data, solver=solver), "cvar_budgets": sized["budgets"],
        "cvar_overall": sized["overall"], "pro_rata": sized["scaling"],
    }
    return tables, [cover["timing"], sized["timing"]]


def years_coverage(policy: Policy, liabilities: pd.DataFrame, year_budgets: pd.DataFrame,
                   solver: str = "highs", level: float = 0.95, tolerance: float | None = None) -> pd.DataFrame:
    """The coverage LP once per year of a multi-year run, on that year's budgets (the mean over replications
    of each domain's claims budget) and expected claims (new awards and commitments), with every rule's
    commitments funded in full (they are owed).  Where a domain's commitments alone exceed its budget
    (``commitments_fit`` false) the year is solved without that floor.  The net total scales with the year's
    budgets; spending floors (a share of one year's whole spending) are the budget allocation's business,
    not the claims', and are left out.  ``cvar_budget``: the year's CVaR-sized budgets (the least total whose
    CVaR at ``level`` of total shortfall over the replications is within ``tolerance``, by default 1% of the
    year's mean claims), what to set aside for that year."""
    rows = []
    reps = liabilities["replication"].nunique()
    for year, part in liabilities.groupby("year", sort=True):
        expected = part.groupby("rule", observed=False)["district"].sum() / reps
        owed = part[part["origin"] == "commitment"].groupby("rule", observed=False)["district"].sum() / reps
        data = ClaimsInput.from_policy(policy, expected.reindex(list(policy.rule_ids), fill_value=0.0))
        b = (year_budgets[year_budgets["year"] == year].groupby("domain", observed=True)["claims_budget"].mean()
             .reindex(list(policy.domain_keys)).to_numpy(float))
        data = replace(data, net_total=data.net_total * b.sum() / max(data.budgets.sum(), 1e-9), spending_floors=())
        share = np.divide(owed.reindex(list(policy.rule_ids), fill_value=0.0).to_numpy(float), data.claims,
                          out=np.zeros(len(data.claims)), where=data.claims > 0)
        try:
            cover = coverage(data, b, solver, committed=np.minimum(share, 1.0))
        except BudgetError:  # some domain owes more than its budget: fund what fits, and say so below
            cover = coverage(data, b, solver)
        domains = cover["domains"]
        owed_domain = np.bincount(data.rule_domain, weights=share * data.claims, minlength=len(data.domains))
        losses = domain_loss_matrix(part, policy.domain_keys)
        allowed = default_tolerance(losses) if tolerance is None else tolerance
        sized = cvar_budgets(losses, policy.domain_keys, level, allowed, b, solver=solver)["budgets"]
        sized = sized["cvar_budget"].to_numpy()
        for i, row in domains.iterrows():
            rows.append({"year": year, "domain": row["domain"], "claims_budget": row["claims_budget"],
                         "claims": row["claims"], "commitments": owed_domain[i], "funded": row["funded"],
                         "shortfall": row["shortfall"], "shadow_price": row["shadow_price"],
                         "cvar_budget": float(sized[i]),
                         "commitments_fit": bool(owed_domain[i] <= row["claims_budget"] * (1 + 1e-9))})
    return pd.DataFrame(rows)
