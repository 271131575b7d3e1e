"""What we don't know, propagated: ranges as data, two-level Monte Carlo, Sobol indices checked against
closed forms, the headline's figures, honest calibration."""

import math
import shutil
import tomllib

import numpy as np
import pandas as pd
import pytest
import tomli_w

import sim.pipeline as pipeline
import sim.policy
import sim.population as pop
from sim import assumptions, headline, sensitivity
from sim.errors import SpecError
from sim.validation import NEUTRAL, Uncertainty

# ----------------------------------------------------------------------------- the estimators
A, B = 7.0, 0.1


def ishigami(x: np.ndarray) -> np.ndarray:
    return np.sin(x[:, 0]) + A * np.sin(x[:, 1]) ** 2 + B * x[:, 2] ** 4 * np.sin(x[:, 0])


def ishigami_indices() -> tuple[np.ndarray, np.ndarray]:
    """The analytic first-order and total indices (Ishigami and Homma 1990; Sobol' and Levitan 1999)."""
    v1 = 0.5 * (1 + B * math.pi**4 / 5) ** 2
    v2 = A**2 / 8
    v13 = 8 * B**2 * math.pi**8 / 225
    variance = v1 + v2 + v13
    return np.array([v1, v2, 0.0]) / variance, np.array([v1 + v13, v2, v13]) / variance


def test_sobol_estimator_recovers_the_ishigami_indices_within_its_intervals():
    design = sensitivity.saltelli(4096, 3, seed=11)
    x = -math.pi + 2 * math.pi * design.rows()
    found = sensitivity.indices(ishigami(x)[:, None], design.n, design.k, resamples=400, seed=11)
    first, total = ishigami_indices()
    for name, truth in (("first", first), ("total", total)):
        low, high = found[f"{name}_low"][:, 0], found[f"{name}_high"][:, 0]
        assert np.all(low <= truth) and np.all(truth <= high), (name, low, truth, high)
        assert np.all(high - low < 0.1)  # intervals narrow enough that containing the truth means something
    assert abs(found["total"][2, 0] - total[2]) < 0.05 and abs(found["first"][2, 0]) < 0.05


def test_sobol_indices_of_an_additive_model_are_its_variance_shares():
    design = sensitivity.saltelli(2048, 3, seed=3)
    x = design.rows()
    f = np.column_stack([1 * x[:, 0] + 2 * x[:, 1] + 3 * x[:, 2], x[:, 1]])  # two outputs at once
    found = sensitivity.indices(f, design.n, design.k, resamples=200, seed=3)
    assert found["total"][:, 0] == pytest.approx(np.array([1, 4, 9]) / 14, abs=0.02)
    assert found["first"][:, 0] == pytest.approx(np.array([1, 4, 9]) / 14, abs=0.03)
    assert found["total"][[0, 2], 1].tolist() == [0.0, 0.0]  # exactly: f(AB_i) equals f(A) where i is idle
    assert found["total"][1, 1] == pytest.approx(1.0, abs=0.01)


def test_an_output_that_never_varies_has_no_index_rather_than_a_warning():
    design = sensitivity.saltelli(16, 2, seed=0)
    found = sensitivity.indices(np.ones((len(design.rows()), 1)), design.n, design.k, resamples=20)
    assert np.isnan(found["total"]).all() and np.isnan(found["total_high"]).all()


# ----------------------------------------------------------------------------- a linear claims model, end to end
def _linear_model():
    """The template with only article 4's fixed award paying, every enterprise recognised (no luck of the year
    left), its amount uncertain in [10, 30] and the industry claims budget in [500, 1500]: the industry shortfall
    is then N x amount - budget, linear, with Sobol indices in closed form."""
    base = sim.policy.load("template")
    data = base.data()
    for rule in data["rules"]:
        if rule["id"] == "t04-new-high-tech":
            rule["amount"] = {"value": 20, "assumed": True, "why": "test", "uncertainty": {
                "range": [10, 30], "group": "amount", "why": "test"}}
        else:
            rule["intensity"] = {"value": 0.0, "derived": "test: this rule pays nothing"}
    data["domains"]["industry"]["claims_budget"] = {"value": 1000, "assumed": True, "why": "test", "uncertainty": {
        "range": [500, 1500], "group": "budget", "why": "test"}}
    policy = sim.policy.from_dict(data, "linear", base.source_text)
    spec_data = pop.load_spec("template", policy=base).data()
    step = spec_data["claimants"]["enterprise"]["attributes"]["new_high_tech"]
    step["probability"] = {"small": 1.0, "large": 1.0}  # its range is not among the groups analysed below
    spec = pop.spec_from_dict(spec_data, policy, "linear")
    groups = {key: assumptions.Group(key, key, key, "test") for key in ("amount", "budget")}
    numbers = tuple(n for n in policy.uncertain() if n.uncertainty.group in groups)
    found = assumptions.Assumptions(tuple(groups.values()), numbers)
    drawn = assumptions.Drawn({"policy": policy.data(), "population": spec.data()}, found, np.zeros((0, 2)), 1,
                              policy.source_text, "linear")
    return policy, spec, drawn


def test_sobol_indices_of_a_linear_claims_model_match_the_closed_form():
    policy, spec, drawn = _linear_model()
    n = 2_000
    tables = sensitivity.analyse(drawn, policy, spec, seed=4, base_samples=256, n=n, resamples=300)
    sobol = tables["sobol_indices"].set_index(["domain", "measure", "group"])
    claims = tables["sobol_evaluations"].query("domain == 'industry'")
    firms = sum(c for c, s in zip(spec.counts(n), spec.segments) if s.claimant == "enterprise")
    amount = claims["claims"] / firms  # every enterprise paid the drawn amount
    assert amount.between(10, 30).all() and amount.max() - amount.min() > 19
    v_amount, v_budget = (firms * 20) ** 2 / 12, 1000**2 / 12  # uniform variances: (N (30 - 10))^2/12, 1000^2/12
    expected = {"amount": v_amount / (v_amount + v_budget), "budget": v_budget / (v_amount + v_budget),
                sensitivity.ALEATORY: 0.0}
    assert (claims["claims"] > claims["claims_budget"]).all()  # always short: shortfall = claims - budget
    for group, truth in expected.items():
        row = sobol.loc[("industry", "shortfall", group)]
        assert row["total_low"] - 1e-9 <= truth <= row["total_high"] + 1e-9, (group, row.to_dict(), truth)
        assert row["first_low"] - 1e-9 <= truth <= row["first_high"] + 1e-9, (group, row.to_dict(), truth)
    assert sobol.loc[("industry", "claims", "amount"), "total_high"] >= 1.0 >= sobol.loc[("industry", "claims", "amount"), "total_low"]
    assert sobol.loc[("industry", "claims", "budget"), "total"] == 0.0
    assert sobol.loc[("industry", "claims", sensitivity.ALEATORY), "total"] == 0.0


# ----------------------------------------------------------------------------- two-level Monte Carlo
def _collapse(value, point=None):
    """Every uncertainty of a model file's data collapsed to the value as written."""
    if isinstance(value, dict):
        out = {}
        for key, item in value.items():
            if key == "uncertainty" and isinstance(item, dict) and any(m in item for m in NEUTRAL):
                out[key] = _collapsed_entry(item, value["value"])  # a number's own { value, uncertainty }
            elif key == "uncertainty" and isinstance(item, dict):  # a table's { key = { ... } }
                out[key] = {k: _collapsed_entry(v, value.get(k)) for k, v in item.items()}
            else:
                out[key] = _collapse(item)
        return out
    if isinstance(value, list):
        return [_collapse(v) for v in value]
    return value


def _collapsed_entry(entry, point):
    (mode,) = [m for m in NEUTRAL if m in entry]
    centre = point if mode == "range" else NEUTRAL[mode]
    return {**entry, mode: [centre, centre]}


def _collapsed_model(tmp_path):
    folder = tmp_path / "collapsed"
    shutil.copytree(sim.policy.resolve_model("binjiang-2024"), folder)
    for name in ("policy.toml", "population.toml", "process.toml"):
        data = tomllib.loads((folder / name).read_text(encoding="utf-8"))
        blanket = data.get("uncertainty", {})
        collapsed = _collapse(data)
        if blanket:  # the file's [uncertainty]: factors and shifts only
            collapsed["uncertainty"] = {k: _collapsed_entry(v, None) for k, v in blanket.items()}
        (folder / name).write_text(tomli_w.dumps(collapsed), encoding="utf-8")
    return folder


def test_every_range_collapsed_to_its_point_value_is_the_fixed_assumption_run_bit_for_bit(tmp_path):
    folder = _collapsed_model(tmp_path)
    spec = pop.load_spec(folder)
    assert spec.uncertain and all(n.uncertainty.low == n.uncertainty.high for n in spec.uncertain)
    settings = pipeline.Settings(replications=4, per_draw=2, seed=9, n=20_000, stages=("claims", "process", "budget"),
                                 process_replications=2)
    drawn = pipeline.run(model=str(folder), settings=settings, progress=False)
    fixed = pipeline.run(model=str(folder), settings=pipeline.replace(settings, uncertainty="none"), progress=False)
    assert drawn.manifest["uncertainty"] == "ranges" and fixed.manifest["uncertainty"] == "none"
    assert "assumptions" in drawn.tables and "assumptions" not in fixed.tables
    shared = sorted(set(fixed.tables) - {"headline"})
    assert {"rules", "firms", "budgets", "process_outcomes", "process_cash"} <= set(shared)
    for name in shared:
        pd.testing.assert_frame_equal(drawn[name], fixed[name], check_exact=True, obj=name)
    for name, table in fixed.stage("budget").tables.items():
        pd.testing.assert_frame_equal(drawn.stage("budget")[name], table, check_exact=True, obj=name)
    # and the point values of the published model are the collapsed ones: the fixed runs agree too
    published = pipeline.run(settings=pipeline.replace(settings, uncertainty="none", stages=("claims",)),
                             progress=False)
    pd.testing.assert_frame_equal(published["rules"], fixed["rules"], check_exact=True)


def test_the_draws_are_a_latin_hypercube_per_replication_block_and_saved():
    settings = pipeline.Settings(replications=10, per_draw=5, seed=1, n=5_000, stages=("claims",))
    run = pipeline.run(model="template", settings=settings, progress=False)
    table = run["assumptions"]
    assert set(table["replication"]) == set(range(10)) and set(table["draw"]) == {0, 1}
    per_group = table.groupby(["draw", "group"])["u"].nunique()
    assert (per_group == 1).all()  # one uniform per group and draw
    u = table.drop_duplicates(["draw", "group"]).pivot(index="draw", columns="group", values="u")
    assert ((u >= 0) & (u < 1)).all().all() and (np.floor(u * 2).nunique() == 2).all()  # stratified: one per half
    budgets = run["budgets"].query("domain == 'innovation'").sort_values("replication")["claims_budget"].to_numpy()
    assert (budgets[:5] == budgets[0]).all() and budgets[5] != budgets[0]  # one draw per five replications
    value = table.query("replication == 7 and group == 'claims-budget-innovation'")["value"].iloc[0]
    assert budgets[7] == value


def test_quantiles_stay_in_range_and_the_triangle_peaks_at_the_point():
    u = Uncertainty("range", 10.0, 30.0, "triangular", "g", "w")
    values = [assumptions.quantile(u, 14.0, p) for p in np.linspace(0, 1, 101)]
    assert min(values) == 10.0 and max(values) == 30.0 and np.all(np.diff(values) >= 0)
    assert assumptions.quantile(u, 14.0, (14 - 10) / 20) == pytest.approx(14.0)  # the CDF at the mode
    log = Uncertainty("factor", 0.5, 2.0, "loguniform", "g", "w")
    assert assumptions.quantile(log, None, 0.5) == pytest.approx(1.0)


# ----------------------------------------------------------------------------- the headline
def _synthetic(means, budget, sd, per_draw=400, seed=0):
    rng = np.random.default_rng(seed)
    rows, budgets = [], []
    for draw, mean in enumerate(means):
        for j in range(per_draw):
            r = draw * per_draw + j
            rows.append({"replication": r, "domain": "d", "district": rng.normal(mean, sd * mean)})
            budgets.append({"replication": r, "domain": "d", "claims_budget": budget})
    return pd.DataFrame(rows), pd.DataFrame(budgets)


def test_the_headline_probability_given_each_draw_is_the_normal_tail():
    from scipy.stats import norm
    means = np.linspace(80, 120, 21)
    rules, budgets = _synthetic(means, 100.0, 0.05)
    row = headline.table(rules, budgets, ["d"], per_draw=400).iloc[0]
    given = norm.sf(100, loc=means, scale=0.05 * means)
    assert row["p_overrun_p10"] == pytest.approx(np.quantile(given, 0.1), abs=0.03)
    assert row["p_overrun_p90"] == pytest.approx(np.quantile(given, 0.9), abs=0.03)
    assert row["p_overrun"] == pytest.approx(given.mean(), abs=0.02)
    assert row["verdict"] == "depends on the assumptions"
    within = np.mean((0.05 * means) ** 2)
    assert row["aleatory_share"] == pytest.approx(within / (within + means.var()), abs=0.05)
    sure, _ = _synthetic([130, 140, 150], 100.0, 0.05, per_draw=50)
    assert headline.table(sure, _[:len(sure)], ["d"], per_draw=50).iloc[0]["verdict"] == "overrun likely"
    safe, b = _synthetic([60, 70, 80], 100.0, 0.05, per_draw=50)
    assert headline.table(safe, b, ["d"], per_draw=50).iloc[0]["verdict"] == "overrun unlikely"


def test_a_97_percent_overrun_that_is_noise_around_an_assumed_budget_is_not_called_likely():
    # the audit's case: spread between replications 3.8% of the mean, mean 8.6% above the budget; the
    # budget itself uncertain by +-15%: the plain probability is high, the verdict is not "likely"
    rng = np.random.default_rng(5)
    budgets_per_draw = 100 * rng.uniform(0.9, 1.25, 40)
    rules, budgets = [], []
    for draw, budget in enumerate(budgets_per_draw):
        for j in range(5):
            r = draw * 5 + j
            rules.append({"replication": r, "domain": "d", "district": rng.normal(108.6, 0.038 * 108.6)})
            budgets.append({"replication": r, "domain": "d", "claims_budget": budget})
    row = headline.table(pd.DataFrame(rules), pd.DataFrame(budgets), ["d"], per_draw=5).iloc[0]
    assert row["verdict"] == "depends on the assumptions" and row["p_overrun_p10"] < 0.1 < 0.9 < row["p_overrun_p90"]


# ----------------------------------------------------------------------------- ranges as data
def test_every_assumed_number_of_the_bundled_models_has_a_range_and_a_named_group():
    for model in ("binjiang-2024", "template"):
        policy = sim.policy.load(model)
        spec = pop.load_spec(model, policy=policy)
        process = sim.process.load_process(model, policy=policy)
        found = assumptions.collect(policy, spec, process, assumptions.load_groups(model))
        uncertain_params = {(n.where.split(", ")[0], n.path[-2]) for n in policy.uncertain()}
        for where, name, param in policy.assumptions():
            assert param.uncertainty is not None, (model, where, name)
        assert len(found.groups) >= (20 if model == "binjiang-2024" else 10) and uncertain_params
        assert all(g.label_zh and g.label_en and g.what for g in found.groups)


def test_an_assumed_population_table_without_a_range_is_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sim.policy.resolve_model("template"), folder)
    path = folder / "population.toml"
    text = path.read_text(encoding="utf-8")
    line = ('uncertainty.probability = { factor = [0.75, 1.25], group = "recognitions", '
            'why = "Yearly recognitions within a quarter." }\n')
    assert line in text
    path.write_text(text.replace(line, "", 1), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        pop.load_spec(folder)
    message = str(info.value)
    assert "population.toml" in message and "new_high_tech" in message
    assert "probability is assumed, so it needs a plausible range" in message


def test_a_group_no_number_uses_and_a_number_of_an_undeclared_group_are_refused(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sim.policy.resolve_model("template"), folder)
    path = folder / "assumptions.toml"
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace("[groups.recognitions]", "[groups.recognition]", 1)
                    + '\n[groups.spare]\nlabel_zh = "備用"\nlabel_en = "Spare"\nwhat = "nothing"\nwhat_zh = "無"\n', encoding="utf-8")
    with pytest.raises(SpecError) as info:
        pipeline.prepare(model=str(folder), progress=False)
    message = str(info.value)
    assert "group 'recognitions' is not declared in assumptions.toml" in message
    assert "group spare: no number of the model names this group" in message


def test_ranges_whose_ends_break_the_model_are_refused_before_any_computation(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sim.policy.resolve_model("template"), folder)
    path = folder / "population.toml"
    text = path.read_text(encoding="utf-8")
    old = 'uncertainty.probability = { factor = [0.75, 1.25], group = "recognitions"'
    assert old in text
    path.write_text(text.replace(old, 'uncertainty.probability = { factor = [0.75, 40], group = "recognitions"', 1),
                    encoding="utf-8")
    with pytest.raises(SpecError, match="all at their high ends, make the model invalid"):
        pipeline.prepare(model=str(folder), progress=False)


# ----------------------------------------------------------------------------- honest calibration
def test_calibration_targets_say_whether_they_set_a_parameter_and_what_evidence_they_are():
    spec = pop.load_spec("binjiang-2024")
    targets = {t.id: t for t in spec.calibration}
    assert {t.role for t in targets.values()} == {"set", "independent"}
    assert all(t.evidence in pop.EVIDENCE for t in targets.values())
    assert targets["enterprise-revenue"].role == "independent"
    assert any(t.evidence == "policy goal" for t in targets.values())
    assert any(t.evidence == "neighbour" for t in targets.values())
    assert all(t.sets for t in targets.values() if t.role == "set")


def test_a_tilt_beyond_its_limit_is_refused_with_the_limit(tmp_path):
    folder = tmp_path / "m"
    shutil.copytree(sim.policy.resolve_model("template"), folder)
    path = folder / "population.toml"
    text = path.read_text(encoding="utf-8")
    assert "tilt = [-0.4, 0.4]" in text
    path.write_text(text.replace("tilt = [-0.4, 0.4]", "tilt = [-1e12, 1e12]", 1), encoding="utf-8")
    with pytest.raises(SpecError, match=r"uncertainty of probabilities: a tilt must lie within \[-5, 5\]"):
        pop.load_spec(folder)


def test_sobol_rows_that_share_claimants_draw_them_once_and_give_each_rows_own_claims():
    """The Sobol stage draws a population once for every design row with the same claimants and applies each
    row's award rules to it; each row's claims and budgets are what evaluating the row on its own gives."""
    from sim import montecarlo

    ctx = pipeline.prepare(settings=pipeline.Settings(replications=2, n=3000, per_draw=1), progress=False)
    kind = sensitivity.kinds(ctx.assumptions)
    assert kind["claims-budget-industry"] == "budget" and kind["a15-tech-rate"] == "claims"
    assert kind["firm-revenue"] == "population" and kind["review-capacity"] == "process"
    tables = sensitivity.analyse(ctx.drawn, ctx.policy, ctx.spec, seed=9, base_samples=2, n=3000, resamples=10)
    found = tables["sobol_evaluations"]
    k = len(ctx.assumptions.keys)
    design = sensitivity.saltelli(2, k + 1, 9)
    rows = design.rows()
    replications = np.floor(rows[:, k] * sensitivity.REPLICATION_SPAN).astype(np.int64)
    populations, representative = sensitivity.shared_draws(rows[:, :k], replications, kind, ctx.assumptions.keys)
    assert len(populations) < len(rows) and sum(map(len, populations)) < len(rows)  # drawn and evaluated fewer
    drawn = assumptions.Drawn(ctx.drawn.data, ctx.assumptions, rows[:, :k], 1, ctx.drawn.source_text, "test")
    for r in range(len(rows)):
        policy, spec, _ = drawn.build(r)
        model = montecarlo.Model(policy, spec, spec.counts(3000, 1.0))
        output = montecarlo.model_task(model, 9, int(replications[r]))
        totals = montecarlo.combine(output.totals)
        domains = np.array([rule.domain for rule in policy.rules])
        own = [math.fsum(totals.district[domains == d]) for d in policy.domain_keys]
        mine = found[found["row"] == r]
        assert mine["claims"].tolist() == own and mine["claims_budget"].tolist() == list(output.budgets), r
