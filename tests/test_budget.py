"""Budget LPs: three solvers agree, hand-checkable cases, CVaR monotonicity, clear failures."""

import sys

import numpy as np
import pandas as pd
import pytest
from scipy import sparse

import sim.budget as budget
import sim.scenario as scenario
from sim.budget import BudgetError, ClaimsInput

POLICY, _ = scenario.apply(scenario.baseline())
SOLVERS = ["highs", "cbc", "pulp-highs", "scipy"]


def claims_input(budgets=None, claims=None):
    rng = np.random.default_rng(0)
    expected = dict(zip(POLICY.rule_ids, claims if claims is not None else rng.gamma(2.0, 500.0, len(POLICY.rules))))
    data = ClaimsInput.from_policy(POLICY, expected)
    if budgets is not None:
        data = ClaimsInput(data.rules, data.domains, data.claims, data.rule_domain, np.asarray(budgets, float),
                           data.weights, data.sublines, data.net_total)
    return data


ZERO = 1e-6  # of the claims scale: CBC's primal tolerance leaves about 1e-8 relative


def rel_equal(a, b, tol=1e-6):
    return abs(a - b) <= tol * max(1.0, abs(a), abs(b))


@pytest.mark.parametrize("build", ["coverage", "top_up", "reallocation", "cvar_reduced", "cvar_full"])
def test_every_lp_gives_the_same_optimum_with_cbc_highs_and_scipy(build):
    data = claims_input()
    data = claims_input(budgets=data.domain_claims() * np.array([1.2, 0.7, 1.0, 0.5, 1.5, 0.9]))
    losses = np.random.default_rng(3).lognormal(np.log(data.domain_claims() + 1), 0.1, size=(400, len(data.domains)))
    lp = {
        "coverage": lambda: budget.build_coverage(data),
        "top_up": lambda: budget.build_top_up(data),
        "reallocation": lambda: budget.build_reallocation(data),
        "cvar_reduced": lambda: budget.build_cvar(losses, data.domains, 0.9, 50.0, np.quantile(losses, 0.7, axis=0)),
        "cvar_full": lambda: budget.build_cvar(losses, data.domains, 0.9, 50.0),
    }[build]()
    objectives = [budget.solve(lp, solver).objective for solver in SOLVERS]
    assert all(rel_equal(objectives[0], o) for o in objectives[1:]), objectives


def test_reduced_cvar_model_has_the_full_models_optimum():
    rng = np.random.default_rng(11)
    for level, tol in ((0.95, 0.0), (0.9, 200.0), (0.5, 1000.0), (0.99, 20.0)):
        losses = rng.lognormal(np.log([600, 85000, 6000, 11000, 14000, 1180]), [0.1, 0.04, 0.1, 0.05, 0.08, 0.01],
                               size=(600, 6))
        full = budget.solve(budget.build_cvar(losses, list("abcdef"), level, tol), "scipy")
        reduced = budget.solve_cvar(losses, list("abcdef"), level, tol, "scipy")
        assert rel_equal(full.objective, reduced.objective, 1e-7)
        if level >= 0.9:
            assert len(reduced.lp.variables) < len(full.lp.variables)


def test_budgets_that_exactly_cover_claims_give_no_shortfall():
    exact = claims_input(budgets=claims_input().domain_claims())
    for solver in SOLVERS:
        out = budget.coverage(exact, solver=solver)
        scale = exact.claims.sum()
        assert out["rules"]["shortfall"].max() < ZERO * scale
        assert out["domains"]["shortfall"].max() < ZERO * scale
    assert budget.minimum_top_up(exact)["top_up"].max() < ZERO * scale


@pytest.mark.parametrize("solver", SOLVERS)
def test_cutting_one_domain_by_x_gives_shortfall_x_and_a_shadow_price_only_there(solver):
    data = claims_input()
    budgets = data.domain_claims() * 1.5
    cut, x = 3, 0.2 * data.domain_claims()[3]
    budgets[cut] = data.domain_claims()[cut] - x
    out = budget.coverage(claims_input(budgets=budgets), solver=solver)["domains"]
    assert out["shortfall"].iloc[cut] == pytest.approx(x, rel=1e-7)
    assert out["shortfall"].drop(index=cut).max() < ZERO * data.claims.sum()
    assert out["shadow_price"].iloc[cut] > 0.99
    assert (out["shadow_price"].drop(index=cut).abs() < 1e-9).all()
    assert out["binding"].tolist() == [i == cut for i in range(len(out))]
    top = budget.minimum_top_up(claims_input(budgets=budgets), solver)
    assert top["top_up"].iloc[cut] == pytest.approx(x, rel=1e-7) and top["top_up"].drop(index=cut).max() < 1e-6


def test_priorities_decide_which_rule_is_cut():
    data = claims_input()
    science = [i for i, r in enumerate(POLICY.rules) if r.domain == "science_technology"]
    weights = data.weights.copy()
    weights[science[0]] = 5.0
    budgets = data.domain_claims().copy()
    budgets[data.rule_domain[science[0]]] -= 100.0
    favoured = ClaimsInput(data.rules, data.domains, data.claims, data.rule_domain, budgets, weights,
                           data.sublines, data.net_total)
    rules = budget.coverage(favoured)["rules"]
    assert rules["shortfall"].iloc[science[0]] < 1e-6 and rules["shortfall"].sum() == pytest.approx(100.0, rel=1e-5)


def test_sublines_bind_the_rules_paid_from_them():
    data = claims_input()
    assert "livelihood/health" in [s[0] for s in data.sublines]
    tight = tuple((name, members, 0.5 * data.claims[members].sum()) if name == "livelihood/health"
                  else (name, members, amount) for name, members, amount in data.sublines)
    roomy = ClaimsInput(data.rules, data.domains, data.claims, data.rule_domain, data.domain_claims() * 2,
                        data.weights, tight, data.net_total)
    out = budget.coverage(roomy)
    art = list(POLICY.rule_ids).index("a49-assisted-reproduction")
    assert out["rules"]["shortfall"].iloc[art] == pytest.approx(0.5 * data.claims[art])
    binding = out["constraints"][out["constraints"]["binding"]]
    assert binding["constraint"].tolist() == ["livelihood/health"]


def test_reallocation_moves_money_to_where_it_is_short_and_keeps_the_total():
    data = claims_input()
    budgets = data.domain_claims() * np.array([1.5, 0.8, 1.5, 1.5, 1.5, 1.5])
    moved = budget.reallocation(claims_input(budgets=budgets))
    assert moved["reallocated_budget"].sum() == pytest.approx(budgets.sum())
    assert moved["shortfall"].max() < 1e-6
    assert moved["change"].iloc[1] == pytest.approx(0.2 * data.domain_claims()[1], rel=1e-6)
    assert moved["change"].abs().sum() == pytest.approx(2 * 0.2 * data.domain_claims()[1], rel=1e-6)


def test_cvar_budget_rises_with_the_level_and_as_the_tolerance_falls():
    rng = np.random.default_rng(5)
    losses = rng.lognormal(np.log([600, 85000, 6000, 11000]), [0.3, 0.05, 0.2, 0.1], size=(800, 4))
    domains = list("abcd")
    totals = [budget.cvar_budgets(losses, domains, level, 300.0)["overall"]["total_budget"].iloc[0]
              for level in (0.5, 0.8, 0.9, 0.95, 0.99)]
    assert all(b >= a - 1e-6 for a, b in zip(totals, totals[1:])) and totals[-1] > totals[0]
    totals = [budget.cvar_budgets(losses, domains, 0.95, tol)["overall"]["total_budget"].iloc[0]
              for tol in (3000.0, 1000.0, 300.0, 100.0, 0.0)]
    assert all(b >= a - 1e-6 for a, b in zip(totals, totals[1:])) and totals[-1] > totals[0]
    zero = budget.cvar_budgets(losses, domains, 0.95, 0.0)
    assert np.allclose(zero["budgets"]["cvar_budget"], losses.max(axis=0))  # no shortfall anywhere in the tail
    assert zero["overall"]["p_any_shortfall"].iloc[0] == 0.0


def test_cvar_outputs_are_consistent():
    rng = np.random.default_rng(2)
    losses = rng.lognormal(np.log([1000, 5000]), [0.3, 0.2], size=(1000, 2))
    out = budget.cvar_budgets(losses, ["a", "b"], 0.9, 200.0)
    b = out["budgets"]["cvar_budget"].to_numpy()
    # The budgets are the smallest that meet the tolerance, so the CVaR constraint binds: the empirical CVaR of the
    # total shortfall (the same Rockafellar-Uryasev function, minimised over the threshold) equals the tolerance.
    assert out["overall"]["empirical_cvar"].iloc[0] == pytest.approx(200.0, rel=1e-5)
    short = losses > b * (1 + 1e-6) + 1e-6
    assert out["overall"]["p_any_shortfall"].iloc[0] == pytest.approx(short.any(axis=1).mean())
    assert np.allclose(out["budgets"]["p_shortfall"], short.mean(axis=0))
    assert np.allclose(out["scaling"][["a", "b"]].to_numpy(), np.minimum(1, b / losses))


def test_infeasible_commitment_names_the_domain_constraint():
    data = claims_input()
    budgets = data.domain_claims() * 2
    budgets[1] = 0.5 * data.domain_claims()[1]
    with pytest.raises(BudgetError) as info:
        budget.coverage(claims_input(budgets=budgets), committed=1.0)
    message = str(info.value)
    assert "coverage LP infeasible: constraint domain_budget[science_technology]" in message
    assert "a13-rd-increase-sme" in message and "lower the commitment or raise the budget" in message


@pytest.mark.parametrize("call, message", [
    (lambda: budget.cvar_budgets(np.ones((10, 2)), ["a", "b"], 0.95, -1.0), "tolerance must be >= 0"),
    (lambda: budget.cvar_budgets(np.ones((10, 2)), ["a", "b"], 1.0, 0.0), "level must lie in [0, 1)"),
    (lambda: budget.cvar_budgets(np.ones((10, 3)), ["a", "b"], 0.9, 0.0), "must be a (replications x 2) matrix"),
    (lambda: budget.cvar_budgets(-np.ones((10, 2)), ["a", "b"], 0.9, 0.0), "finite and >= 0"),
    (lambda: budget.reallocation(claims_input(), envelope=2e7), "exceeds the net total"),
    (lambda: budget.coverage(claims_input(budgets=-np.ones(6))), "claims budget of investment"),
    (lambda: ClaimsInput.from_policy(POLICY, {"a13-rd-increase-sme": 1.0}), "expected claims are missing"),
    (lambda: budget.solve(budget.build_top_up(claims_input()), "gurobi"), "unknown solver 'gurobi'"),
])
def test_bad_inputs_get_a_clear_message(call, message):
    with pytest.raises(BudgetError) as info:
        call()
    assert message in str(info.value)


@pytest.mark.parametrize("solver", SOLVERS)
def test_unbounded_and_infeasible_lps_are_explained(solver):
    lp = budget.LinearProgram("toy LP", ("a", "b"), np.array([-1.0, 0.0]), np.zeros(2), np.full(2, np.inf))
    lp.inequalities.append(budget.RowBlock("cap_b", ("b",), sparse.csr_matrix([[0.0, 1.0]]), np.array([1.0])))
    with pytest.raises(BudgetError, match="toy LP: unbounded.*constraint families: cap_b"):
        budget.solve(lp, solver)
    lp = budget.LinearProgram("toy LP", ("a",), np.array([1.0]), np.array([2.0]), np.array([np.inf]))
    lp.inequalities.append(budget.RowBlock("cap_a", ("a",), sparse.csr_matrix([[1.0]]), np.array([1.0])))
    with pytest.raises(BudgetError, match="toy LP: infeasible: no budget satisfies every constraint"):
        budget.solve(lp, solver)


def test_missing_highs_is_explained(monkeypatch):
    monkeypatch.setitem(sys.modules, "highspy", None)
    with pytest.raises(BudgetError, match="HiGHS is not installed: pip install highspy"):
        budget.solve(budget.build_top_up(claims_input()), "highs")


def test_analyse_a_run_and_the_budget_command(tmp_path, capsys):
    from sim.cli import main
    out = tmp_path / "run"
    assert main(["run", "-r", "30", "--n", "20000", "-o", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["budget", str(out), "--level", "0.9"]) == 0
    printed = capsys.readouterr().out
    for text in ("Coverage of expected claims", "shadow_price", "Minimum top-up", "Reallocation",
                 "CVaR-sized budgets: CVaR at 90% of total shortfall", "P(any shortfall)",
                 "spending floor livelihood-two-thirds (67% of 1,918,800 萬元 for livelihood; margin 0 萬元*): "
                 "livelihood gives up 0 萬元, at its limit"):
        assert text in printed
    import sim.results
    saved = sim.results.load(out / "budget")
    assert {"coverage_domains", "cvar_budgets", "pro_rata", "top_up"} <= set(saved.tables)
    assert isinstance(saved["cvar_budgets"], pd.DataFrame)


@pytest.mark.parametrize("solver", ["highs", "scipy"])
def test_every_constraint_familys_shadow_prices_match_cbcs(solver):
    """Duals per row, block by block (coverage: domain budgets, sub-lines, net total), the same whichever
    solver: a block's duals must not be shifted onto another's rows."""
    data = claims_input()
    tight = data.domain_claims() * np.array([1.2, 0.7, 1.0, 0.5, 1.5, 0.9])
    data = claims_input(budgets=tight)
    sub = list(data.sublines)
    name, members, _ = sub[0]
    sub[0] = (name, members, float(data.claims[members].sum()) * 0.5)  # a binding sub-line
    data = ClaimsInput(data.rules, data.domains, data.claims, data.rule_domain, data.budgets, data.weights,
                       tuple(sub), float(data.claims.sum()) * 0.6)  # and a binding net total
    reference = budget.coverage(data, solver="cbc")["constraints"]
    other = budget.coverage(data, solver=solver)["constraints"]
    assert list(other.columns) == ["family", "constraint", "slack", "shadow_price", "binding"]
    assert set(reference["family"]) == {"domain_budget", "subline", "net_total"}
    assert reference["binding"].sum() >= 2
    assert np.allclose(other["shadow_price"], reference["shadow_price"], atol=1e-6)
    rules = budget.coverage(data, solver=solver)["rules"]
    assert list(rules["rule"]) == list(data.rules)


def test_the_budget_stage_reports_todays_claims_budgets_beside_the_cvar_ones():
    rng = np.random.default_rng(1)
    rows = [{"replication": s, "rule": r, "domain": POLICY.rule(r).domain, "district": float(rng.gamma(2.0, 300.0))}
            for s in range(50) for r in POLICY.rule_ids]
    tables, _ = budget.analyse(POLICY, pd.DataFrame(rows), solver="highs")
    today = [d.claims_budget.value for d in POLICY.domains]
    assert tables["cvar_budgets"]["current_claims_budget"].tolist() == today
