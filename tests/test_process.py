"""The SimPy process: queueing theory, conservation, exhaustion rules, waits, bad settings."""

import math
import shutil

import numpy as np
import pandas as pd
import pytest

import sim.montecarlo as mc
import sim.process as pr
import sim.scenario as scenario
from sim.errors import SpecError

POLICY, SPEC = scenario.apply(scenario.baseline())
MODEL = pr.load_process(policy=POLICY)
A49 = "a49-assisted-reproduction"


def mmc_model(servers, mean_review, length):
    window = pr.Window("long", ((0.0, length),))
    bureaus = {**MODEL.bureaus, "區衛生健康局": pr.Bureau("區衛生健康局", servers, mean_review, "long")}
    rules = {**MODEL.rules, A49: pr.RuleProcess(A49, "區衛生健康局", "livelihood", "long", 0.0, 0.0, 1.0)}
    return MODEL.with_changes(windows={**MODEL.windows, "long": window}, bureaus=bureaus, rules=rules,
                              horizon=length + 300, budgets={k: 1e12 for k in MODEL.budgets})


def erlang_c_wait(arrival_rate, service_rate, servers):
    a = arrival_rate / service_rate
    rho = a / servers
    head = sum(a**k / math.factorial(k) for k in range(servers))
    tail = a**servers / math.factorial(servers) / (1 - rho)
    return tail / (head + tail) / (servers * service_rate - arrival_rate)


def test_mmc_queue_at_utilisation_09_matches_erlang_c_and_littles_law():
    servers, mu, length = 5, 1.0, 50_000.0
    lam = 0.9 * servers * mu
    model = mmc_model(servers, 1 / mu, length)
    waits, n_total = [], 0
    for seed in range(4):
        n = np.random.default_rng(100 + seed).poisson(lam * length)  # Poisson arrivals: N ~ Poisson, times uniform
        claims = pd.DataFrame({"rule": [A49] * n, "amount": np.full(n, 0.01)})
        apps = pr.simulate(claims, model, seed=seed).applications
        warm = apps["submit_day"] > 0.05 * length
        waits.append((apps["review_start"] - apps["submit_day"])[warm].mean())
        n_total += n
        # Little's law on the trace: time-average number at the bureau = arrival rate x mean time there.
        times = np.concatenate([apps["submit_day"], apps["review_end"]])
        steps = np.concatenate([np.ones(len(apps)), -np.ones(len(apps))])
        order = np.argsort(times, kind="stable")
        in_system = np.cumsum(steps[order])
        end = times.max()
        area = np.sum(in_system[:-1] * np.diff(times[order]))
        sojourn = (apps["review_end"] - apps["submit_day"]).to_numpy()
        rate = len(apps) / end
        assert area / end == pytest.approx(rate * sojourn.mean(), rel=1e-9)
        assert (in_system >= 0).all()
    expected = erlang_c_wait(lam, mu, servers)
    assert np.mean(waits) == pytest.approx(expected, rel=0.05), (waits, expected)


def baseline_claims(replication=0, n=None):
    return mc.replication_claims(POLICY, SPEC, 3, replication, n)


@pytest.mark.parametrize("rule", pr.EXHAUSTION)
def test_conservation_no_negative_budget_nothing_paid_before_approval(rule):
    claims = baseline_claims()
    tight = {d: 0.5 * b for d, b in MODEL.budgets.items()}
    result = pr.simulate(claims, MODEL.with_changes(exhaustion=rule), seed=3, budgets=tight)
    apps = result.applications
    total = apps[list(pr.OUTCOMES)].sum(axis=1)
    assert np.allclose(total, apps["amount"], rtol=1e-12, atol=1e-9)
    outcomes = result.outcomes("domain").set_index("domain")
    claimed = claims.assign(domain=claims["rule"].map(lambda r: POLICY.rule(r).domain)).groupby("domain")["amount"].sum()
    for domain, row in outcomes.iterrows():
        assert row[list(pr.OUTCOMES)].sum() == pytest.approx(claimed[domain], rel=1e-12)
        assert row["paid"] <= tight[domain] * (1 + 1e-12)
    assert (result.runout["left"] >= 0).all()
    paid = apps[apps["paid_day"].notna() & (apps["paid"] > 0)]
    assert (paid["paid_day"] >= paid["decided_day"]).all() and paid["approved"].all()
    assert (apps.loc[~apps["approved"], "paid"] == 0).all()
    assert (apps["submit_day"] >= MODEL.issued_day).all()
    cash = result.cash.groupby("domain")["paid"].sum()
    assert np.allclose(cash.reindex(outcomes.index), outcomes["paid"])


def test_exhaustion_shows_the_runout_date_and_deferred_amount():
    claims = baseline_claims()
    short = dict(MODEL.budgets)
    short["demand_opening"] = 3000.0  # well below this domain's claims
    result = pr.simulate(claims, MODEL, seed=3, budgets=short)
    runout = result.runout.set_index("domain")
    assert not np.isnan(runout.loc["demand_opening", "runout_day"])
    assert runout.loc["demand_opening", "runout_date"].startswith("2024-")
    assert runout.loc["demand_opening", "deferred"] > 0
    assert runout.loc["demand_opening", "left"] == 0.0
    ample = {d: 1e9 for d in MODEL.budgets}
    relaxed = pr.simulate(claims, MODEL, seed=3, budgets=ample).runout
    assert relaxed["runout_day"].isna().all() and (relaxed["cut"] == 0).all()


def test_pro_rata_scales_at_the_cutoff_and_reject_turns_away():
    claims = baseline_claims()
    short = dict(MODEL.budgets)
    short["demand_opening"] = 3000.0
    scaled = pr.simulate(claims, MODEL.with_changes(exhaustion="pro_rata"), seed=3, budgets=short)
    apps = scaled.applications[scaled.applications["domain"] == "demand_opening"]
    paid = apps[apps["paid"] > 0]
    assert (paid["paid_day"] == MODEL.cutoff_day).all()
    fractions = (paid["paid"] / paid["amount"]).to_numpy()
    assert np.allclose(fractions, fractions[0]) and fractions[0] < 1
    assert paid["paid"].sum() == pytest.approx(3000.0)
    rejected = pr.simulate(claims, MODEL.with_changes(exhaustion="reject"), seed=3, budgets=short)
    assert rejected.runout.set_index("domain").loc["demand_opening", "cut"] > 0
    assert rejected.runout.set_index("domain").loc["demand_opening", "deferred"] == 0


def test_staffing_cut_lengthens_waits_and_same_seed_same_trace():
    claims = baseline_claims()
    base = pr.simulate(claims, MODEL, seed=5)
    again = pr.simulate(claims, MODEL, seed=5)
    pd.testing.assert_frame_equal(base.applications, again.applications)
    bureaus = {**MODEL.bureaus, "區科技局": pr.Bureau("區科技局", 3, MODEL.bureaus["區科技局"].review_days, "quarterly")}
    cut = pr.simulate(claims, MODEL.with_changes(bureaus=bureaus), seed=5)
    w0 = base.waits().set_index("bureau").loc["區科技局"]
    w1 = cut.waits().set_index("bureau").loc["區科技局"]
    assert w1["queue_days_mean"] > 2 * w0["queue_days_mean"]
    assert w1["days_to_payment_p95"] >= w0["days_to_payment_p95"]


def test_monitor_samples_match_the_trace():
    result = pr.simulate(baseline_claims(), MODEL, seed=2)
    apps = result.applications
    queues = result.queues.set_index(["day", "bureau"])
    for day in (170, 260, 330):
        for bureau in ("區科技局", "區商務局"):
            at = apps[apps["bureau"] == bureau]
            waiting = ((at["submit_day"] <= day) & (at["review_start"] > day)).sum()
            assert queues.loc[(day, bureau), "waiting"] == waiting


def test_summary_over_replications():
    runs = [pr.simulate(baseline_claims(k, n=20000), MODEL, seed=3, replication=k) for k in range(3)]
    tables = pr.summarise([run.summary() for run in runs], MODEL)
    fan = tables["process_cash_fan"]
    assert set(fan["month"]) == set(range(1, 13))
    assert (fan["cumulative_p5"] <= fan["cumulative_p95"]).all()
    assert set(tables["process_runout_summary"]["domain"]) == set(POLICY.domain_keys)
    assert len(tables["process_events"]) == 3 and (tables["process_events"]["events"] > 0).all()
    assert {"days_to_payment_p50", "days_to_payment_p95"} <= set(tables["process_waits_bureau"].columns)
    # The summary arrays shipped between workers give the same tables as each run's own applications.
    assert list(tables["process_cash"].columns) == ["replication", "domain", "month", "paid", "cumulative"]
    assert list(tables["process_runout_summary"]["domain"]) == list(POLICY.domain_keys)
    outcomes = tables["process_outcomes"]
    assert outcomes["applications"].dtype == outcomes["approved"].dtype == np.int64
    for k, run in enumerate(runs):
        mine = outcomes[outcomes["replication"] == k].set_index("domain")
        theirs = run.outcomes("domain").set_index("domain")
        assert (theirs["approved"] > 0).any() and (theirs["approved"] < theirs["applications"]).any()
        for column in ("applications", "approved", "rejections"):
            assert mine.loc[theirs.index, column].tolist() == theirs[column].tolist(), column
        for column in ("claimed", *pr.OUTCOMES):
            assert np.allclose(mine.loc[theirs.index, column], theirs[column], rtol=1e-12, atol=1e-9), column
        cash = tables["process_cash"][tables["process_cash"]["replication"] == k]
        assert np.allclose(cash.groupby("domain")["paid"].sum().reindex(theirs.index), theirs["paid"], atol=1e-9)


def test_scenario_sets_the_exhaustion_rule_and_staffing():
    changed = scenario.from_dict({"name": "x", "process": {"payment": {"exhaustion": "pro_rata"},
                                                           "bureaus": {"區科技局": {"reviewers": 4}}}})
    policy, _ = scenario.apply(changed)
    model = scenario.apply_process(changed, policy)
    assert model.exhaustion == "pro_rata" and model.bureaus["區科技局"].reviewers == 4


TEXT = (pr.resolve_model() / "process.toml").read_text(encoding="utf-8")


@pytest.mark.parametrize("edit, message", [
    (("reviewers = 12", "reviewers = 0"), "bureau 區科技局: reviewers must lie in 1-10,000, got 0"),
    (('exhaustion = "fcfs_defer"', 'exhaustion = "lottery"'), "exhaustion must be one of fcfs_defer, pro_rata, reject"),
    (('open = "2024-05-20"\nclose = "2024-11-30"', 'open = "2024-03-01"\nclose = "2024-11-30"'),
     "window continuous: opens on day 60, before the policy was issued"),
    (("[rules.a49-assisted-reproduction]\napproval = 0.98", "[rules.a49-assisted-reproduction]\napproval = 1.98"),
     "rules.a49-assisted-reproduction: approval must lie in [0, 1], got 1.98"),
    (('[bureaus."區衛生健康局"]', '[bureaus."區衛健局"]'), "its lead bureau 區衛生健康局 (article 49) has no"),
    (("[rules.a36-cultural-venue]", "[rules.a36-cultural-venues]"), "rules.a36-cultural-venues: no such rule"),
])
def test_bad_process_settings_are_rejected(tmp_path, edit, message):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("policy.toml", "source.txt"):
        shutil.copy(pr.resolve_model() / name, folder / name)
    assert edit[0] in TEXT
    (folder / "process.toml").write_text(TEXT.replace(edit[0], edit[1], 1), encoding="utf-8")
    with pytest.raises(SpecError) as info:
        pr.load_process(folder)
    assert message in str(info.value)


def test_pro_rata_with_an_empty_budget_pays_nothing_and_cuts_everything():
    claims = baseline_claims(n=20000)
    empty = {d: 0.0 for d in MODEL.budgets}
    result = pr.simulate(claims, MODEL.with_changes(exhaustion="pro_rata"), seed=3, budgets=empty)
    outcomes = result.outcomes("domain")
    approved = result.applications[result.applications["approved"]]
    assert (outcomes["paid"] == 0).all() and len(approved) > 0
    assert (approved["paid"] == 0).all() and (approved["cut"] > 0).sum() > 0.5 * len(approved)
    assert np.allclose(approved["cut"] + approved["unpaid"] + approved["deferred"], approved["amount"], rtol=1e-12)


def test_claimant_counts_are_whole_numbers_in_the_run_tables():
    result = mc.run(POLICY, SPEC, replications=1, seed=2, n=5000, progress=False)
    assert result.rules["claimants"].dtype == np.int64 and result.firms["firms"].dtype == np.int64


# ----------------------------------------------------------------------------- the queue recursion (sim.queues)
def assert_same_year(simpy_year: pr.ProcessResult, computed: pr.ProcessResult) -> None:
    """Every number of the year the same, bit for bit (NaN where NaN), dtypes included."""
    pd.testing.assert_frame_equal(simpy_year.applications, computed.applications, check_exact=True)
    for name in ("waiting", "busy", "runout_day", "left"):
        a, b = getattr(simpy_year, name), getattr(computed, name)
        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), name
    assert simpy_year.events == computed.events


def _one_reviewer(model):
    return {name: pr.Bureau(b.name, 1, b.review_days, b.window, b.name_en) for name, b in model.bureaus.items()}


def _no_delay(model):
    return {name: pr.RuleProcess(r.rule, r.bureau, r.domain, r.window, 0.0, 0.0, r.approval)
            for name, r in model.rules.items()}


VARIANTS = {
    "baseline": {},
    "horizon at day 200 (arrivals, reviews and decisions cut off)": {"horizon": 200.0},
    "one reviewer per bureau (reviews still waiting at year end)": {"bureaus": _one_reviewer(MODEL)},
    "no expert review or notice (decided as the review ends)": {"rules": _no_delay(MODEL)},
    "payment runs on day 0, twice on one day, and after the horizon": {"payment_days": (0.0, 40.0, 40.0, 200.0,
                                                                                        400.0)},
    "fractional payment days": {"payment_days": (30.5, 91.25, 180.125, 364.75)},
}


@pytest.mark.parametrize("exhaustion", pr.EXHAUSTION)
@pytest.mark.parametrize("tightness", [0.2, 1.0])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_the_queue_recursion_gives_the_simpy_models_bits(exhaustion, tightness, variant):
    """sim.queues computes what the SimPy model steps through: applications, queues, run-out, budget left and
    the number of SimPy events, for each exhaustion rule, budgets that run out early or not at all, and
    calendars that cut the year short, queue up or decide at once."""
    model = MODEL.with_changes(exhaustion=exhaustion, **VARIANTS[variant])
    budgets = {d: tightness * b for d, b in MODEL.budgets.items()}
    for replication in range(2):
        claims = baseline_claims(replication, n=20000)
        stepped = pr.simulate(claims, model, seed=11, replication=replication, budgets=budgets, engine="simpy")
        computed = pr.simulate(claims, model, seed=11, replication=replication, budgets=budgets)
        assert (stepped.engine, computed.engine) == ("simpy", "recursion")
        assert_same_year(stepped, computed)


def test_the_pro_rata_cutoff_after_the_horizon_pays_nothing_both_ways():
    model = MODEL.with_changes(exhaustion="pro_rata", cutoff_day=MODEL.horizon + 10)
    claims = baseline_claims(0, n=20000)
    computed = pr.simulate(claims, model, seed=2)
    assert computed.engine == "recursion" and computed.runout["left"].equals(pd.Series(list(MODEL.budgets.values())))
    assert_same_year(pr.simulate(claims, model, seed=2, engine="simpy"), computed)


def test_same_instant_events_go_to_simpy_itself():
    """Applications submitted on the stroke of a day (a window one instant long) are sampled by the daily
    queue count in an order only SimPy knows: the recursion declines and the SimPy model runs."""
    window = pr.Window("instant", ((100.0, 100.0),))
    rules = {**MODEL.rules, A49: pr.RuleProcess(A49, "區衛生健康局", "livelihood", "instant", 0.0, 0.0, 1.0)}
    model = MODEL.with_changes(windows={**MODEL.windows, "instant": window}, rules=rules)
    claims = pd.DataFrame({"rule": [A49] * 30, "amount": np.full(30, 2.0)})
    assert pr.simulate(claims, model, seed=1).engine == "simpy"
    with pytest.raises(ValueError, match="engine must be one of"):
        pr.simulate(claims, model, seed=1, engine="fast")


def test_two_approvals_of_one_domain_decided_at_one_instant_go_to_simpy_itself():
    """Reviews of no length on applications submitted at one instant (not on the stroke of a day): both are
    decided at that instant, so their order in the payment run is SimPy's to say; the recursion declines."""
    from sim import queues

    assert queues._repeats(np.array([5.0, 3.0, 3.0]), np.array([0, 1, 1]))
    assert not queues._repeats(np.array([5.0, 3.0, 3.0]), np.array([1, 0, 1]))  # one instant, two domains
    assert not queues._repeats(np.array([5.0, 3.0, 4.0]), np.array([1, 1, 1]))
    window = pr.Window("instant", ((100.5, 100.5),))
    bureaus = {**MODEL.bureaus, "區衛生健康局": pr.Bureau("區衛生健康局", 5, 0.0, "instant")}
    rules = {**MODEL.rules, A49: pr.RuleProcess(A49, "區衛生健康局", "livelihood", "instant", 0.0, 0.0, 1.0)}
    model = MODEL.with_changes(windows={**MODEL.windows, "instant": window}, bureaus=bureaus, rules=rules)
    claims = pd.DataFrame({"rule": [A49] * 3, "amount": [2.0, 3.0, 4.0]})
    result = pr.simulate(claims, model, seed=1)
    assert result.engine == "simpy" and (result.applications["decided_day"] == 100.5).all()
