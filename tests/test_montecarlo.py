"""Claims engine and Monte Carlo runner: closed forms, conservation, reproducibility, Dask, CRN, run folders."""

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest
from scipy import special

import sim.montecarlo as mc
import sim.population as pop
import sim.results as results
import sim.scenario as scenario
from sim.awards import evaluate
from sim.errors import FiscalsimError
from sim.policy import from_dict

POLICY, SPEC = scenario.apply(scenario.baseline())


def only(segment_id, count, spec=SPEC):
    segment = next(s for s in spec.segments if s.id == segment_id)
    return dataclasses.replace(spec, segments=(dataclasses.replace(segment, count=count),))


def edited_policy(edit):
    data = POLICY.data()
    edit({r["id"]: r for r in data["rules"]})
    return from_dict(data, "edited", POLICY.source_text)


def lognormal_partial_mean(mu, sigma, a, b):
    """E[X; a <= X < b] for X ~ lognormal(mu, sigma)."""
    def cut(x):
        return special.ndtr((math.log(x) - mu - sigma**2) / sigma) if x > 0 else 0.0
    return math.exp(mu + sigma**2 / 2) * (cut(b) - cut(a))


def test_capped_thresholded_rate_on_lognormal_base_matches_closed_form():
    # Banks: credit-loan increase ~ p x lognormal(median, sigma); give article 38 a threshold too.
    threshold = 3000.0
    policy = edited_policy(lambda rules: rules["a38-bank-credit-loans"].update(threshold=threshold))
    banks = only("banks", 3000)
    segment = banks.segments[0]
    g = segment.steps[0]
    rule = policy.rule("a38-bank-credit-loans")
    rate, cap = rule.number("rate").value, rule.number("cap").value
    mu, sigma = math.log(g.number("median", segment)), g.number("sigma", segment)
    knee = max(cap / rate, threshold)  # where the cap starts to bind (above the threshold)
    assert threshold < cap / rate
    per_bank = g.number("probability", segment) * (rate * lognormal_partial_mean(mu, sigma, threshold, knee)
                                + cap * special.ndtr(-(math.log(knee) - mu) / sigma))
    expected = 3000 * per_bank
    result = mc.run(policy, banks, replications=300, seed=3, progress=False)
    totals = result.rules[result.rules["rule"] == "a38-bank-credit-loans"]["award"]
    sem = totals.std(ddof=1) / math.sqrt(len(totals))
    assert abs(totals.mean() - expected) < 3 * sem, (totals.mean(), expected, sem)
    assert 0 < sem < 0.01 * expected  # the test has power


def test_fixed_award_on_bernoulli_event_matches_the_binomial():
    teams = only("research-teams", 40)
    p = teams.segments[0].steps[0].number("probability", teams.segments[0])
    amount = POLICY.rule("a18-leading-team").number("amount").value
    result = mc.run(POLICY, teams, replications=4000, seed=9, progress=False)
    totals = result.rules[result.rules["rule"] == "a18-leading-team"]["award"].to_numpy()
    mean, var = 40 * p * amount, 40 * p * (1 - p) * amount**2
    assert abs(totals.mean() - mean) < 3 * math.sqrt(var / len(totals))
    # Sample variance of a binomial: its standard error from the fourth central moment.
    mu4 = amount**4 * 40 * p * (1 - p) * (1 + 3 * (40 - 2) * p * (1 - p))
    se_var = math.sqrt((mu4 - var**2 * (len(totals) - 3) / (len(totals) - 1)) / len(totals))
    assert abs(totals.var(ddof=1) - var) < 4 * se_var
    claimants = result.rules[result.rules["rule"] == "a18-leading-team"]["claimants"]
    assert np.array_equal(claimants.to_numpy() * amount, totals)


def test_conservation_rules_are_sums_over_firms_and_domains_sums_of_rules():
    result = mc.run(POLICY, SPEC, replications=3, seed=5, n=80_000, progress=False)
    for replication in range(3):
        frame = pop.population_frame(SPEC, 5, n=80_000, replication=replication)
        gross = evaluate(POLICY, frame, validate=False).gross
        rows = result.rules[result.rules["replication"] == replication].set_index("rule")
        for i, rule_id in enumerate(POLICY.rule_ids):
            assert rows.loc[rule_id, "award"] == pytest.approx(math.fsum(gross[i]), rel=1e-12, abs=1e-9)
            assert rows.loc[rule_id, "claimants"] == (gross[i] > 0).sum()
        any_award = (gross > 0).any(axis=0).sum()
        firms = result.firms[(result.firms["replication"] == replication)].set_index("scope")["firms"]
        assert firms["all"] == any_award
    domains = mc.level_totals(result.rules, "domain")
    for (replication, domain), total in domains.set_index(["replication", "key"])["award"].items():
        parts = result.rules[(result.rules["replication"] == replication) & (result.rules["domain"] == domain)]
        assert total == math.fsum(parts["award"])
    summary = result.summary("domain").set_index("domain")
    rule_means = result.summary("rule").assign(domain=lambda f: f["rule"].map(lambda r: POLICY.rule(r).domain))
    for domain, mean in rule_means.groupby("domain")["mean"].sum().items():
        assert summary.loc[domain, "mean"] == pytest.approx(mean, rel=1e-12)


def test_same_seed_identical_results_and_replications_differ():
    a = mc.run(POLICY, SPEC, replications=3, seed=42, n=30_000, progress=False)
    b = mc.run(POLICY, SPEC, replications=3, seed=42, n=30_000, progress=False)
    pd.testing.assert_frame_equal(a.rules, b.rules, check_exact=True)
    first = a.rules[a.rules["replication"] == 0]["award"].to_numpy()
    second = a.rules[a.rules["replication"] == 1]["award"].to_numpy()
    assert not np.array_equal(first, second)


def test_results_do_not_depend_on_how_blocks_are_grouped(monkeypatch):
    scaled = dataclasses.replace(SPEC)
    reference = mc.run(POLICY, scaled, replications=2, seed=8, scale=3.5, progress=False)
    # Same blocks combined in another order give the same bits (math.fsum is exact).
    job = mc.ClaimsJob(POLICY, SPEC, 8, scale=3.5)
    parts = [t for k in range(len(job.plan)) for t in mc.replication_task(job, (0, (k,))).totals]
    assert len(parts) > 25  # the largest segments span several blocks
    shuffled = mc.combine(parts[::-1])
    assert np.array_equal(shuffled.award, reference.rules[reference.rules["replication"] == 0]["award"].to_numpy())


def test_dask_local_cluster_gives_bit_identical_results(monkeypatch):
    distributed = pytest.importorskip("dask.distributed")
    from sim.executors import Dask

    reference = mc.run(POLICY, SPEC, replications=3, seed=17, n=150_000, keep_claims=2, progress=False)
    monkeypatch.setattr(mc, "CLAIMANTS_PER_TASK", 1)  # also split each replication into one task per block
    for workers in (1, 2):
        with distributed.LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                                      dashboard_address=None) as cluster, distributed.Client(cluster) as client:
            result = mc.run(POLICY, SPEC, replications=3, seed=17, n=150_000, keep_claims=2,
                            executor=Dask(client), progress=False)
        assert result.settings["workers"] == workers
        pd.testing.assert_frame_equal(result.rules, reference.rules, check_exact=True)
        pd.testing.assert_frame_equal(result.firms, reference.firms, check_exact=True)
        for mine, theirs in zip(result.claims, reference.claims):
            assert np.array_equal(mine.rule, theirs.rule) and np.array_equal(mine.amount, theirs.amount)


def test_common_random_numbers_identical_scenario_and_a_cap_change():
    base = mc.run(POLICY, SPEC, replications=4, seed=23, progress=False)
    same = scenario.from_dict({"name": "same", "policy": {"rules": {"a13-rd-increase-sme": {"cap": 200}}}})
    policy, spec = scenario.apply(same)
    again = mc.run(policy, spec, replications=4, seed=23, progress=False)
    pd.testing.assert_frame_equal(base.rules, again.rules, check_exact=True)

    raised = scenario.from_dict({"name": "cap", "policy": {"rules": {"a13-rd-increase-large": {"cap": 400}}}})
    policy, spec = scenario.apply(raised)
    moved = mc.run(policy, spec, replications=4, seed=23, progress=False)
    changed = base.rules["award"].to_numpy() != moved.rules["award"].to_numpy()
    assert set(base.rules.loc[changed, "rule"]) == {"a13-rd-increase-large"}
    large = base.rules["rule"] == "a13-rd-increase-large"
    assert (moved.rules.loc[large, "award"].to_numpy() > base.rules.loc[large, "award"].to_numpy()).all()


def test_population_change_keeps_other_segments_draws():
    changed = scenario.from_dict({"name": "more banks", "population": {"segments": {"banks": {"count": 90}}}})
    policy, spec = scenario.apply(changed)
    base = mc.run(POLICY, SPEC, replications=2, seed=4, progress=False)
    more = mc.run(policy, spec, replications=2, seed=4, progress=False)
    moved = set(base.rules.loc[base.rules["award"].to_numpy() != more.rules["award"].to_numpy(), "rule"])
    assert moved == {"a38-bank-credit-loans"}


def test_summary_has_the_statistics_and_overrun_probability():
    result = mc.run(POLICY, SPEC, replications=12, seed=1, progress=False)
    summary = result.summary("domain").set_index("domain")
    assert list(summary.index) == list(POLICY.domain_keys)
    for column in ("mean", "sd", "sem", "p5", "p50", "p95", "p99", "claims_budget", "p_overrun"):
        assert column in summary
    assert (summary["p5"] <= summary["p50"]).all() and (summary["p95"] <= summary["p99"]).all()
    assert summary["sem"].to_numpy() == pytest.approx(summary["sd"].to_numpy() / math.sqrt(12))
    district = mc.level_totals(result.rules, "domain").pivot(index="replication", columns="key", values="district")
    for domain in POLICY.domain_keys:
        budget = POLICY.domain(domain).claims_budget.value
        assert summary.loc[domain, "p_overrun"] == (district[domain] > budget).mean()
    articles = result.summary("article")
    assert set(articles["article"]) == {r.article for r in POLICY.rules}


# ----------------------------------------------------------------------------- run folders
def test_run_folder_round_trip(tmp_path):
    result = mc.run(POLICY, SPEC, replications=2, seed=1, n=5000, progress=False)
    out = results.write_run(tmp_path / "run", {"rules": result.rules, "summary_domain": result.summary()},
                            {"kind": "fiscalsim test", "seed": 1})
    loaded = results.load(out)
    assert loaded.manifest["seed"] == 1 and "numpy" in loaded.manifest["versions"]
    pd.testing.assert_frame_equal(loaded.rules, result.rules, check_dtype=False, check_categorical=False)
    with pytest.raises(FiscalsimError, match="already exists"):
        results.write_run(tmp_path / "run", {"rules": result.rules}, {})


def test_interrupted_write_leaves_nothing_that_looks_complete(tmp_path):
    class Broken(pd.DataFrame):
        def to_parquet(self, *args, **kwargs):
            raise KeyboardInterrupt

    good = pd.DataFrame({"a": [1]})
    with pytest.raises(KeyboardInterrupt):
        results.write_run(tmp_path / "run", {"first": good, "second": Broken({"a": [1]})}, {})
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "half").mkdir()
    with pytest.raises(FiscalsimError, match="not a finished run"):
        results.load(tmp_path / "half")


def test_force_replaces_a_run_atomically(tmp_path):
    results.write_run(tmp_path / "run", {"t": pd.DataFrame({"a": [1]})}, {"kind": "fiscalsim test", "v": 1})
    results.write_run(tmp_path / "run", {"t": pd.DataFrame({"a": [2]})}, {"kind": "fiscalsim test", "v": 2},
                      force=True)
    assert results.load(tmp_path / "run").manifest["v"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run"]


def test_claims_are_kept_for_exactly_the_replications_asked_for():
    job = mc.ClaimsJob(POLICY, SPEC, seed=5, n=2_000, keep_claims=2)
    kept = [mc.replication_task(job, (r, ())).claims for r in range(3)]
    assert kept[0] is not None and kept[1] is not None and kept[2] is None
    assert len(kept[0].rule) > 0 and kept[0].rule.dtype == np.int64


def test_a_model_with_no_claimants_keeps_empty_typed_claims_and_totals():
    model = mc.Model(POLICY, SPEC, np.zeros_like(SPEC.counts(2_000, 1.0)))
    output = mc.model_task(model, seed=5, replication=0, keep=True)
    assert output.totals == [] and len(output.claims.rule) == 0
    assert output.claims.rule.dtype == np.int64 and output.claims.amount.dtype == np.float64
    rules, firms = mc.totals_frame(POLICY, [])
    assert len(rules) == len(firms) == 0
    assert rules["claimants"].dtype == np.int64 and firms["firms"].dtype == np.int64
    assert rules["award"].dtype == rules["district"].dtype == np.float64


def test_tasks_partition_a_replications_blocks(monkeypatch):
    monkeypatch.setattr(mc, "CLAIMANTS_PER_TASK", 20_000)
    job = mc.ClaimsJob(POLICY, SPEC, seed=5, n=100_000)
    groups = job.groups()
    assert len(groups) > 2 and all(isinstance(g, tuple) and g for g in groups)
    assert [k for g in groups for k in g] == list(range(len(job.plan)))
    sizes = [sum(job.plan[k][2] for k in g) for g in groups]
    assert all(s >= 20_000 for s in sizes[:-1])
    parts = [mc.replication_task(job, (0, g)) for g in groups]
    whole = mc.replication_task(job, (0, ()))
    assert sum(len(p.totals) for p in parts) == len(whole.totals) == len(job.plan)


def _scaled_square(factor, item):
    return factor * item * item


def _inside_a_pool_worker(_):
    from sim import executors

    return executors.local(2).name


def test_worker_processes_return_results_in_item_order_and_stay_out_of_daemonic_workers():
    import multiprocessing

    from sim import executors
    from sim.errors import FiscalsimError

    done = []
    assert executors.Processes(2).map(_scaled_square, 3, list(range(23)), progress=done.append) == [
        3 * i * i for i in range(23)]
    assert sum(done) == 23
    assert isinstance(executors.local(1), executors.Serial) and executors.local(2).workers == 2
    with pytest.raises(FiscalsimError, match="--threads must be >= 1, got 0"):
        executors.local(0)
    with multiprocessing.get_context("spawn").Pool(1) as pool:  # a daemonic worker may not start processes
        assert pool.map(_inside_a_pool_worker, [0]) == ["in-process"]
