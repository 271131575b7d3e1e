"""The in-year nowcast: observed data checked like a register, the likelihood by hand, no observations = the
run's own forecast, contradictory observations refused, synthetic truths covered at the stated rate, the
article-15 rate learned from its applications."""

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim.pipeline as pipeline
from sim import nowcast, results
from sim.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "binjiang-2024" / "observed-2024-06.csv"
SMALL = pipeline.Settings(replications=120, n=3000, per_draw=2, stages=("claims", "process"))


@pytest.fixture(scope="module")
def prior():
    return pipeline.run(settings=SMALL, progress=False)


@pytest.fixture(scope="module")
def truths():
    settings = pipeline.Settings(replications=30, n=3000, per_draw=1, seed=77, stages=("claims", "process"))
    return pipeline.run(settings=settings, progress=False)


def _observed(run, replication: int, months: int) -> pd.DataFrame:
    monthly = run["process_monthly"]
    return nowcast.observed_table(monthly[monthly["replication"] == replication], months)


def _cast(prior, observed, as_of="2024-06-30", **kw):
    kw.setdefault("settings", pipeline.NowcastSettings(rounds=0))
    return pipeline.nowcast_of(prior, observed, as_of, progress=False, lang=None, **kw)


# ----------------------------------------------------------------------------- observed data in
def test_the_sample_file_is_what_its_tool_makes():
    """The bundled sample is one replication of the baseline, January to June (tools/make_observed_sample.py)."""
    table, truth = pipeline.observed_sample(months=6, seed=20240630)
    shipped = pd.read_csv(SAMPLE)
    assert list(shipped.columns) == ["rule", *["month"], *nowcast.MEASURES]
    assert shipped["month"].max() == "2024-06" and shipped["month"].min() == "2024-01"
    assert (shipped["rule"].to_numpy() == table["rule"].to_numpy()).all()
    for measure in nowcast.MEASURES:
        assert np.allclose(shipped[measure], table[measure], atol=1e-4, rtol=0), measure
    monthly = truth["process_monthly"]
    june = monthly[monthly["month"] <= 6].groupby("rule")["applications"].sum()
    assert shipped.groupby("rule")["applications"].sum().reindex(june.index).tolist() == june.tolist()


def test_the_sample_file_passes_its_own_checks():
    from sim import policy as policy_module

    model = policy_module.load()
    seen = nowcast.read_observed(SAMPLE, list(model.rule_ids), sorted({r.article for r in model.rules}), 2024,
                                 "2024-06-30")
    assert seen.months == 6 and seen.level == "rule" and len(seen.frame) == 45 * 6


@pytest.mark.parametrize(("edit", "words"), [
    (lambda f: f.assign(rule=f["rule"].where(f.index != 3, "a99-nothing")), ["column rule", "row 4", "a99-nothing"]),
    (lambda f: f.assign(month=f["month"].where(f.index != 0, "2024-09")), ["column month", "row 1",
                                                                          "beyond the as-of date 2024-06-30"]),
    (lambda f: f.assign(month=f["month"].where(f.index != 2, "2023-02")), ["column month", "row 3",
                                                                          "not months of 2024"]),
    (lambda f: f.assign(applications=f["applications"].astype(object).where(f.index != 5, "many")),
     ["column applications", "row 6", "not numbers"]),
    (lambda f: f.assign(claimed=f["claimed"].where(f.index != 7, -5.0)), ["column claimed", "row 8", "negative"]),
    (lambda f: f.assign(approvals=f["approvals"].astype(float).where(f.index != 9, 1.5)),
     ["column approvals", "row 10", "whole numbers"]),
    (lambda f: f.drop(columns=["claimed"]), ["missing column claimed"]),
    (lambda f: f.assign(article=5), ["one column", "not both"]),
    (lambda f: f.assign(colour="red"), ["unknown column 'colour'"]),
    (lambda f: pd.concat([f, f.iloc[[0]]], ignore_index=True), ["repeat a rule and month"]),
    (lambda f: f.assign(applications=f["applications"].astype(object).where(f.index != 4, "")),
     ["column applications", "row 5", "empty"]),
])
def test_a_bad_observed_file_names_its_column_and_rows(tmp_path, prior, edit, words):
    frame = edit(pd.read_csv(SAMPLE))
    path = tmp_path / "observed.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "nowcast"
    with pytest.raises(nowcast.NowcastError) as caught:
        pipeline.nowcast_of(prior, path, "2024-06-30", progress=False, out=out, lang=None)
    message = str(caught.value)
    assert str(path) in message
    for word in words:
        assert word in message, (word, message)
    assert not out.exists()


def test_inconsistent_figures_are_refused(tmp_path, prior):
    frame = pd.read_csv(SAMPLE)
    row = frame.index[frame["paid"] > 0][0]
    frame.loc[row, "paid"] = frame.loc[frame["rule"] == frame.loc[row, "rule"], "approved"].sum() + 100
    with pytest.raises(nowcast.NowcastError, match="more paid to date than approved"):
        _cast(prior, frame)
    frame = pd.read_csv(SAMPLE)
    row = frame.index[frame["approved"] > 0][0]
    frame.loc[row, "approved"] = frame.loc[row, "claimed"] + frame.loc[frame["rule"] == frame.loc[row, "rule"],
                                                                       "claimed"].sum()
    with pytest.raises(nowcast.NowcastError, match="column approved: .* report more approved to date than claimed"):
        _cast(prior, frame)
    frame = pd.read_csv(SAMPLE)
    frame.loc[frame["rule"] == "a13-rd-increase-sme", "paid"] = np.nan
    frame.loc[frame.index[frame["rule"] == "a13-rd-increase-sme"][-1], "paid"] = 10.0
    with pytest.raises(nowcast.NowcastError, match="give it for every month of a rule or for none"):
        _cast(prior, frame)


def test_as_of_dates():
    assert nowcast.parse_as_of("2024-09-30", 2024)[1] == 9
    assert nowcast.parse_as_of("2024-12-31", 2024)[1] == 12
    assert nowcast.parse_as_of("2024-02-28", 2024)[1] == 1  # 2024 is a leap year: February ends on the 29th
    with pytest.raises(nowcast.NowcastError, match="YYYY-MM-DD"):
        nowcast.parse_as_of("June", 2024)
    with pytest.raises(nowcast.NowcastError, match="simulates 2024"):
        nowcast.parse_as_of("2025-03-31", 2024)


# ----------------------------------------------------------------------------- no observations, contradictions
def _prior_columns_equal(nc) -> None:
    d = nc["domains"]
    for column in ("claims_mean", "claims_p5", "claims_p95", "p_overrun", "mean_shortfall", "paid_mean", "paid_p5",
                   "paid_p95", "p_runout", "claims_budget"):
        assert np.array_equal(d[column].to_numpy(), d[f"prior_{column}"].to_numpy()), column
    c = nc["claims"]
    assert np.array_equal(c["mean"].to_numpy(), c["prior_mean"].to_numpy())
    assert np.array_equal(c["p95"].to_numpy(), c["prior_p95"].to_numpy())


def test_no_observations_return_the_run_s_forecast(prior):
    empty = _observed(prior, 0, 6).iloc[:0]
    nc = _cast(prior, empty)
    _prior_columns_equal(nc)
    assert len(nc["rounds"]) == 1 and nc.manifest["beta"] == 1.0
    summary = prior.summary("domain").set_index("domain")
    d = nc["domains"].set_index("domain")
    assert np.allclose(d["claims_mean"], summary.loc[d.index, "district_mean"], rtol=1e-12)
    assert np.array_equal(d["p_overrun"], summary.loc[d.index, "p_overrun"])
    # nothing happened yet: zeros for the months before any window opens say nothing either
    quiet = _cast(prior, _observed(prior, 3, 3), as_of="2024-03-31", settings=pipeline.NowcastSettings(rounds=2))
    assert (quiet["observed"][list(nowcast.MEASURES)].to_numpy() == 0).all()
    _prior_columns_equal(quiet)
    assert len(quiet["rounds"]) == 1


def test_observations_no_replication_can_produce_get_one_message(tmp_path, prior):
    frame = _observed(prior, 2, 6)
    busy = frame.groupby("rule")["applications"].sum().idxmax()
    frame.loc[(frame["rule"] == busy) & (frame["month"] == 6), "applications"] *= 100
    frame.loc[(frame["rule"] == busy) & (frame["month"] == 6), "claimed"] *= 100
    with pytest.raises(nowcast.NowcastError) as caught:
        _cast(prior, frame)
    assert f"rule {busy}, applications to 2024-06" in str(caught.value)
    assert "nan" not in str(caught.value).lower()
    # applications in a month before any window opens
    frame = _observed(prior, 2, 6)
    frame.loc[(frame["rule"] == busy) & (frame["month"] == 2), ["applications", "claimed"]] = [5, 50.0]
    with pytest.raises(nowcast.NowcastError, match=f"rule {busy}, 2024-02: applications"):
        _cast(prior, frame)
    # amounts in 元 instead of 萬元
    frame = _observed(prior, 2, 6)
    frame["claimed"] *= 10_000
    with pytest.raises(nowcast.NowcastError, match="claimed per application to 2024-06"):
        _cast(prior, frame)
    # the command says it in one line and writes nothing
    path = tmp_path / "obs.csv"
    frame.to_csv(path, index=False)
    out = tmp_path / "nc"
    run_dir = tmp_path / "run"
    pipeline.run(settings=pipeline.Settings(replications=4, n=3000, per_draw=2, stages=("claims", "process")),
                 out=run_dir, progress=False)
    assert main(["nowcast", str(run_dir), str(path), "--as-of", "2024-06-30", "-o", str(out), "--no-progress"]) == 2
    assert not out.exists()


# ----------------------------------------------------------------------------- the likelihood by hand
def _hand_ensemble(apps: list[list[float]], claimed: list[list[float]]) -> nowcast.Ensemble:
    """One rule, replications given per draw: applications and claims in June (month 6)."""
    draw, monthly = [], []
    for d, (a_list, c_list) in enumerate(zip(apps, claimed)):
        for a, c in zip(a_list, c_list):
            m = np.zeros((1, 12, 5))
            m[0, 5, 0], m[0, 5, 1] = a, c
            draw.append(d)
            monthly.append(m)
    n = len(draw)
    return nowcast.Ensemble(np.array(draw), np.array(monthly), np.zeros((n, 1)), np.zeros((n, 1, 12)),
                            np.ones((n, 1)), np.full((n, 1), np.nan), np.zeros((len(apps), 0)),
                            np.zeros(len(apps), dtype=np.int64))


def test_the_likelihood_by_hand():
    ensemble = _hand_ensemble([[10, 14], [30, 34]], [[100.0, 140.0], [600.0, 680.0]])
    frame = pd.DataFrame({"rule": ["r"], "month": [6], "applications": [12], "claimed": [120.0]})
    seen = nowcast.check_observed(frame, ["r"], [1], 2024, "2024-06-30")
    keys = nowcast.keys_of(seen, ["r"], {"r": 1})
    cube = nowcast.observed_cube(seen, keys)
    spread = nowcast.spread_of(ensemble, keys, 6)
    # dispersion: within-draw variances 8 and 8 against means 12 and 32: (8 - 12) + (8 - 32) < 0, so Poisson
    assert spread.dispersion[0] == 0.0
    terms = nowcast.cell_terms(ensemble, keys, cube, 6, spread)
    tau = nowcast.MODEL_ERROR
    for d, (mean, amount) in enumerate([(12.0, 10.0), (32.0, 20.0)]):
        variance = (mean + tau ** 2 * mean ** 2) * 1.5  # R = 2 replications: (1 + 1/R)
        size = mean ** 2 / (variance - mean)
        expected = stats.nbinom.logpmf(12, size, size / (size + mean))
        assert math.isclose(terms.loglik[d, 0], expected, rel_tol=1e-9)
        # the log amount per application: 10 observed, `amount` simulated
        s2 = spread.log_spread[0]
        var_log = s2 / 12 + s2 / (2 * mean) + tau ** 2
        z = (math.log(10.0) - math.log(amount)) / math.sqrt(var_log)
        assert math.isclose(terms.loglik[d, 1], -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi * var_log), rel_tol=1e-9)
    # the spread of single claims: per draw the variance of log(amount per application) times the mean count
    first = np.var(np.log([10.0, 10.0]), ddof=1) * 12
    second = np.var(np.log([20.0, 20.0]), ddof=1) * 32
    assert math.isclose(spread.log_spread[0], (first + second) / 2, abs_tol=1e-12)


def test_weights_ess_and_tempering():
    assert nowcast.ess(np.log(np.full(10, 0.1))) == pytest.approx(10.0)
    loglik = np.array([0.0, -0.5, -1.0, -40.0, -80.0, -200.0])
    log_q = np.zeros(6)
    beta, log_w = nowcast.tempered(loglik, log_q, 3.0)
    assert 0 < beta < 1 and nowcast.ess(log_w) >= 3.0 - 1e-6
    assert nowcast.ess(nowcast.log_weights(min(1.0, beta * 1.01) * loglik, log_q)) < 3.0
    beta, log_w = nowcast.tempered(loglik[:3], log_q[:3], 2.0)
    assert beta == 1.0 and np.allclose(np.exp(log_w).sum(), 1.0)
    with pytest.raises(nowcast.NowcastError, match="zero likelihood"):
        nowcast.log_weights(np.full(3, -np.inf), np.zeros(3))


def test_the_proposal_is_a_density_on_the_unit_square():
    rng = np.random.default_rng(3)
    centres = rng.random((7, 2))
    weights = rng.random((7, 2))
    proposal = nowcast.Proposal.of(centres, weights)
    grid = (np.arange(400) + 0.5) / 400
    u = np.column_stack([np.repeat(grid, 400), np.tile(grid, 400)])
    assert np.exp(proposal.log_density(u)).mean() == pytest.approx(1.0, abs=2e-3)
    points = proposal.sample(20_000, rng)
    assert points.min() >= 0 and points.max() <= 1
    # the sample follows the density: the share in the lower-left quarter matches its integral
    inside = (u[:, 0] < 0.5) & (u[:, 1] < 0.5)
    expected = np.exp(proposal.log_density(u[inside])).sum() / len(u)
    assert ((points[:, 0] < 0.5) & (points[:, 1] < 0.5)).mean() == pytest.approx(expected, abs=0.015)
    mixture = nowcast.mixture_log_density(u[:5], [10, 30], [proposal])
    assert np.allclose(np.exp(mixture), 0.25 + 0.75 * np.exp(proposal.log_density(u[:5])))


def test_weighted_quantiles_and_the_regression_adjustment():
    values = np.arange(1.0, 11.0)
    assert np.allclose(nowcast.weighted_quantile(values, np.ones(10), [0.05, 0.5, 0.95]),
                       np.quantile(values, [0.05, 0.5, 0.95], method="hazen"))
    rng = np.random.default_rng(0)
    s = rng.normal(size=(500, 2))
    noise = rng.normal(scale=0.1, size=500)
    y = 3.0 + s @ np.array([2.0, -1.0]) + noise
    adjusted = nowcast.regression_adjusted(y, s, np.array([0.5, 0.5]), np.ones(500))
    assert abs(adjusted.mean() - 3.5) < 0.02 and abs(adjusted.std() - 0.1) < 0.01


def test_the_share_from_the_assumptions():
    rng = np.random.default_rng(5)
    draws = np.repeat(np.arange(400), 4)
    values = rng.normal(size=400)[draws] * 2.0 + rng.normal(size=1600)  # between 4, within 1
    found = nowcast._summary(values, np.full(1600, 1 / 1600), draws)
    assert found["from_assumptions"] == pytest.approx(0.8, abs=0.03)


# ----------------------------------------------------------------------------- synthetic truths
def test_synthetic_truths_are_covered_and_the_article_15_rate_is_learned(prior, truths):
    """Thirty truths drawn from the assumption ranges, observed for 3, 6 and 9 months: the 90% interval of
    year-end S&T payments covers the truth within a binomial 3-sigma band of 90%, narrows month by month, and
    the article-15 rate's posterior closes in on the truth once its applications arrive (September)."""
    found = pipeline.nowcast_validation(prior, truths, "science_technology", ("a15-tech-rate",))
    assert len(found) == 30 * 3
    band = 3 * math.sqrt(0.9 * 0.1 / 30)
    by = found.groupby("months")
    coverage = by["covered"].mean()
    assert (coverage >= 0.9 - band).all() and (coverage <= 1.0).all(), coverage
    width = by["width"].mean()
    assert width[3] > width[6] > width[9], width
    prior_width = (found["prior_p95"] - found["prior_p5"]).mean()
    assert width[3] == pytest.approx(prior_width)  # nothing paid by March: the run's own interval
    rate = "a15-tech-rate"
    error = np.abs(np.log(found[f"{rate}:p50"] / found[f"{rate}:truth"]))
    spread = np.log(found[f"{rate}:p95"] / found[f"{rate}:p5"])
    early, late = found["months"] == 3, found["months"] == 9
    assert error[late].median() < 0.6 * error[early].median()
    assert spread[late].mean() < 0.7 * spread[early].mean()
    inside = (found[f"{rate}:p5"] <= found[f"{rate}:truth"]) & (found[f"{rate}:truth"] <= found[f"{rate}:p95"])
    assert inside[late].mean() >= 0.9 - band


# ----------------------------------------------------------------------------- fresh draws, articles, output
def test_fresh_draws_are_reproducible_and_weighed(prior):
    observed = _observed(prior, 5, 6)
    settings = pipeline.NowcastSettings(rounds=1, fresh=6)
    first = _cast(prior, observed, settings=settings)
    second = _cast(prior, observed, settings=settings)
    assert len(first["rounds"]) == 2 and first.manifest["draws"] == prior.manifest["replications"] // 2 + 6
    for name in ("domains", "claims", "assumptions", "weights"):
        pd.testing.assert_frame_equal(first[name], second[name])
    w = first["weights"]
    assert (w["round"] == 1).sum() == 6 and np.isfinite(w["weight"]).all()
    assert w["weight"].sum() == pytest.approx(1.0)


def test_article_level_observations(prior):
    from sim import policy as policy_module

    model = policy_module.load()
    articles = {r.id: r.article for r in model.rules}
    monthly = prior["process_monthly"]
    by_article = nowcast.observed_table(monthly[monthly["replication"] == 7], 9, "article", articles)
    by_rule = _observed(prior, 7, 9)
    a = _cast(prior, by_article, as_of="2024-09-30")
    r = _cast(prior, by_rule, as_of="2024-09-30")
    assert a.manifest["level"] == "article"
    claimed = by_rule.assign(article=by_rule["rule"].map(articles)).groupby("article")["claimed"].sum()
    table = a["claims"][a["claims"]["level"] == "article"].set_index("key")
    assert np.allclose(table.loc[[str(k) for k in claimed.index], "claimed_to_date"], claimed.to_numpy())
    # observed rule by rule, an article's and a domain's claimed to date are their rules' sums
    domain_of = {r.id: r.domain for r in model.rules}
    by_domain = by_rule.assign(domain=by_rule["rule"].map(domain_of)).groupby("domain")["claimed"].sum()
    rows = r["claims"].set_index(["level", "key"])
    for domain, claimed_sum in by_domain.items():
        assert rows.loc[("domain", domain), "claimed_to_date"] == pytest.approx(claimed_sum)
    for article, claimed_sum in claimed.items():
        assert rows.loc[("article", str(article)), "claimed_to_date"] == pytest.approx(claimed_sum)
    # both see the same money to date: the domains' year-end claims agree within their intervals
    da, dr = a["domains"].set_index("domain"), r["domains"].set_index("domain")
    assert ((da["claims_mean"] >= dr["claims_p5"] * 0.9) & (da["claims_mean"] <= dr["claims_p95"] * 1.1)).all()


def test_the_command_writes_the_folder_and_the_report(tmp_path, prior, capsys):
    run_dir = tmp_path / "run"
    pipeline.run(settings=pipeline.Settings(replications=20, n=3000, per_draw=2, stages=("claims", "process")),
                 out=run_dir, progress=False)
    path = tmp_path / "obs.csv"
    _observed(prior, 1, 6).to_csv(path, index=False)
    out = tmp_path / "nc"
    assert main(["nowcast", str(run_dir), str(path), "--as-of", "2024-06-30", "-o", str(out), "--no-progress",
                 "--rounds", "1", "--fresh", "4"]) == 0
    printed = capsys.readouterr().out
    assert "截至2024-06-30" in printed and "科技创新政策" in printed and str(out) in printed
    nc = results.load(out)
    assert nc.manifest["kind"] == "fiscalsim nowcast" and nc.manifest["money_unit"] == "萬元"
    assert {"claims", "domains", "assumptions", "narrowing", "fit", "weights", "rounds", "observed"} <= set(nc.tables)
    page = (out / "report" / "report.zh-Hans.html").read_text(encoding="utf-8")
    assert "年内滚动预测" in page and page.count("<figcaption>") == 2
    narrowing = nc["narrowing"]
    assert sorted(narrowing["months"].unique()) == list(range(7))
    first = narrowing[narrowing["months"] == 0].set_index(["domain", "quantity"])
    d = nc["domains"].set_index("domain")
    assert np.allclose(first.xs("paid", level="quantity").loc[d.index, "p95"], d["prior_paid_p95"])
    last = narrowing[narrowing["months"] == 6].set_index(["domain", "quantity"]).xs("paid", level="quantity")
    assert np.allclose(last.loc[d.index, "p95"], d["paid_p95"])
    assert main(["report", str(out), "--lang", "en"]) == 0
    assert "In-year nowcast" in (out / "report" / "report.en.html").read_text(encoding="utf-8")


def test_compare_sets_nowcasts_beside_their_runs(tmp_path, prior, capsys):
    run_dir = tmp_path / "run"
    pipeline.run(settings=pipeline.Settings(replications=20, n=3000, per_draw=2, stages=("claims", "process")),
                 out=run_dir, progress=False)
    folders = []
    for months, as_of in ((6, "2024-06-30"), (9, "2024-09-30")):
        out = tmp_path / f"nc{months}"
        pipeline.nowcast_of(results.load(run_dir), _observed(prior, 4, months), as_of, progress=False, lang=None,
                            out=out, settings=pipeline.NowcastSettings(rounds=0))
        folders.append(str(out))
    assert main(["compare", str(run_dir), *folders, "--out", str(tmp_path / "cmp"), "--lang", "en"]) == 0
    printed = capsys.readouterr().out
    assert "In-year nowcasts: at the run and now" in printed
    assert "baseline @ 2024-06-30" in printed and "baseline @ 2024-09-30" in printed
    table = results.load(tmp_path / "cmp")["nowcasts"]
    assert len(table) == 2 * 6
    nc = results.load(folders[1])["domains"].set_index("domain")
    row = table[(table["as_of"] == "2024-09-30") & (table["domain"] == "science_technology")].iloc[0]
    assert row["paid_p95"] == nc.loc["science_technology", "paid_p95"]
    assert row["d_claims"] == pytest.approx(nc.loc["science_technology", "claims_mean"]
                                            - nc.loc["science_technology", "prior_claims_mean"])
    page = (tmp_path / "cmp" / "compare.en.html").read_text(encoding="utf-8")
    assert "In-year nowcasts" in page
    # nowcasts alone: their run is the scenario compared
    assert main(["compare", *folders]) == 0


def test_a_run_without_assumption_draws_is_substituted_and_adjusted_only():
    point = pipeline.run(settings=pipeline.Settings(replications=8, n=3000, uncertainty="none",
                                                    stages=("claims", "process")), progress=False)
    nc = _cast(point, _observed(point, 2, 6))
    assert "learns nothing about the assumptions" in nc.manifest["warnings"][0]
    assert "assumptions" not in nc.tables and nc.manifest["draws"] == 1 and nc.manifest["beta"] == 1.0
    observed = _observed(point, 2, 6)
    d = nc["claims"].set_index(["level", "key"])
    for rule, claimed in observed.groupby("rule")["claimed"].sum().items():
        assert d.loc[("rule", rule), "claimed_to_date"] == pytest.approx(claimed)
        assert d.loc[("rule", rule), "p5"] >= claimed - 1e-6  # the year's claims are at least those to date


def test_fresh_draws_are_the_same_bytes_on_two_dask_workers(tmp_path, prior):
    distributed = pytest.importorskip("dask.distributed")
    from sim.executors import Dask, local_cluster

    observed = _observed(prior, 6, 6)
    settings = pipeline.NowcastSettings(rounds=1, fresh=4)
    serial = pipeline.nowcast_of(prior, observed, "2024-06-30", settings=settings, progress=False, lang=None,
                                 out=tmp_path / "serial")
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        dask = pipeline.nowcast_of(prior, observed, "2024-06-30", settings=settings, progress=False, lang=None,
                                   executor=Dask(client), out=tmp_path / "dask")
    assert len(serial["rounds"]) == 2
    for name in serial.manifest["tables"]:
        assert (tmp_path / "serial" / f"{name}.parquet").read_bytes() == (tmp_path / "dask" / f"{name}.parquet"
                                                                          ).read_bytes(), name
    assert dask.manifest["draws"] == serial.manifest["draws"]


# ----------------------------------------------------------------------------- pieces (mutation sample, seed 29)
def test_the_proposal_density_with_the_widest_kernel():
    """Centres at both ends: the kernel is as wide as it gets (sd 0.707), and the reflected images at 0 and 1
    and their periodic copies carry much of the mass; the density still integrates to one."""
    proposal = nowcast.Proposal.of(np.array([[0.0], [1.0]]), np.ones((2, 1)))
    assert proposal.bandwidth[0] == pytest.approx(math.sqrt(0.5))
    grid = ((np.arange(20_000) + 0.5) / 20_000)[:, None]
    assert np.exp(proposal.log_density(grid)).mean() == pytest.approx(1.0, abs=1e-6)


def test_an_observed_key_s_money_is_shared_over_its_rules_by_their_simulated_amounts():
    """An article of two rules, the simulated claims to date below 1 萬元: the observed difference goes to the
    rules in proportion to their own simulated amounts to date."""
    monthly = np.zeros((1, 2, 12, 5))
    monthly[0, 0, 5, 1], monthly[0, 1, 5, 1] = 0.2, 0.3  # June claims of the two rules
    ensemble = nowcast.Ensemble(np.array([0]), monthly, np.array([[0.2, 0.3]]), np.zeros((1, 1, 12)), np.ones((1, 1)),
                                np.full((1, 1), np.nan), np.zeros((1, 0)), np.zeros(1, dtype=np.int64))
    frame = pd.DataFrame({"article": [9], "month": [6], "applications": [2], "claimed": [1.0]})
    seen = nowcast.check_observed(frame, ["r1", "r2"], [9], 2024, "2024-06-30")
    keys = nowcast.keys_of(seen, ["r1", "r2"], {"r1": 9, "r2": 9})
    claims, _ = nowcast.year_end(ensemble, keys, nowcast.observed_cube(seen, keys), 6, np.array([0, 0]))
    assert np.allclose(claims, [[0.4, 0.6]])  # 0.2 + 0.5 x 0.4 and 0.3 + 0.5 x 0.6


def test_regression_summaries_per_key_up_to_three_keys_then_their_sum(prior):
    observed = _observed(prior, 0, 6)
    from sim import policy as policy_module

    model = policy_module.load()
    rules = list(model.rule_ids)
    seen = nowcast.check_observed(observed, rules, sorted({r.article for r in model.rules}), 2024, "2024-06-30")
    keys = nowcast.keys_of(seen, rules, {r.id: r.article for r in model.rules})
    ensemble = pipeline.nowcast_ensemble(prior, model)
    cube = nowcast.observed_cube(seen, keys)
    busy = np.argsort(-np.nan_to_num(cube[:, :6, 0]).sum(axis=1))[:4]  # four keys with applications
    for count, columns in ((3, 6), (4, 2)):
        chosen = np.zeros(len(keys.names), bool)
        chosen[busy[:count]] = True
        s_sim, s_obs = nowcast._key_summaries(ensemble, keys, cube, 6, chosen)
        assert s_sim.shape == (len(ensemble.draw), columns) and s_obs.shape == (columns,)


def test_the_terms_are_numbered_from_zero(prior):
    nc = _cast(prior, _observed(prior, 8, 6), settings=pipeline.NowcastSettings(rounds=0))
    assert list(nc["fit"].index) == list(range(len(nc["fit"])))
    assert nc["fit"]["measure"].tolist()[:len(set(nc["fit"]["key"]))] == ["applications"] * len(set(nc["fit"]["key"]))


def test_a_long_list_of_contradictions_says_how_many_more(prior):
    frame = _observed(prior, 2, 6)
    frame["claimed"] *= 10_000
    with pytest.raises(nowcast.NowcastError) as caught:
        _cast(prior, frame)
    message = str(caught.value)
    listed = message.count("claimed per application to 2024-06")
    more = int(message.split("; and ")[1].split(" more")[0])
    assert listed == 5
    keys = frame.groupby("rule")["applications"].sum()
    assert 5 + more <= (keys > 0).sum()


# ----------------------------------------------------------------------------- pieces (mutation sample, seed 31)
def test_what_each_assumption_moves():
    import sim.pipeline as p

    ctx = p.prepare(None, settings=p.Settings(replications=5), progress=False)
    policy, spec, model = ctx.policy, ctx.spec, ctx.process_model
    by_where = {n.where: n for n in ctx.assumptions.numbers}
    st_bureau = {rule for rule, s in model.rules.items() if s.bureau == "區科技局"}
    assert nowcast.reach(by_where["bureau 區科技局, reviewers"], policy, spec, model) == st_bureau
    assert 0 < len(st_bureau) < len(model.rules)
    assert nowcast.reach(by_where["rule a15-tech-transactions, rate"], policy, spec, model) == {"a15-tech-transactions"}
    assert nowcast.reach(by_where["domain science_technology, claims_budget"], policy, spec, model) == {
        r.id for r in policy.rules if r.domain == "science_technology"}
    turnover = "claimants.enterprise.attributes.tech_transaction_value, median"
    assert nowcast.reach(by_where[turnover], policy, spec, model) == {"a15-tech-transactions"}
    window = {rule for rule, s in model.rules.items() if s.window == "quarterly"}
    assert nowcast.reach(by_where["window quarterly, length_days"], policy, spec, model) == window
    assert nowcast.reach(by_where["[payment], day_of_month"], policy, spec, model) == set(model.rules)
    reaches = nowcast.group_reach(ctx.assumptions, policy, spec, model)
    assert reaches["a15-tech-rate"] == {"a15-tech-transactions"} and len(reaches["payment-day"]) == 45


def test_no_observations_leave_every_rule_as_the_run_had_it(prior):
    nc = _cast(prior, _observed(prior, 0, 6).iloc[:0])
    rules = nc["claims"][nc["claims"]["level"] == "rule"].set_index("key")
    summary = prior.summary("rule").set_index("rule")
    assert np.allclose(rules.loc[summary.index, "mean"], summary["district_mean"], rtol=1e-12)
    assert list(rules.index) == list(prior.policy().rule_ids)


def test_the_approvals_and_payments_terms_by_hand():
    """One rule, two draws of two replications: June applications, approvals, approved and paid."""
    draw, monthly = [], []
    for d, rows in enumerate([[(10, 100.0, 6, 60.0, 30.0), (14, 140.0, 8, 80.0, 50.0)],
                              [(10, 100.0, 9, 90.0, 80.0), (14, 140.0, 11, 110.0, 90.0)]]):
        for row in rows:
            m = np.zeros((1, 12, 5))
            m[0, 5] = row
            draw.append(d)
            monthly.append(m)
    ensemble = nowcast.Ensemble(np.array(draw), np.array(monthly), np.zeros((4, 1)), np.zeros((4, 1, 12)),
                                np.ones((4, 1)), np.full((4, 1), np.nan), np.zeros((2, 0)), np.zeros(2, dtype=np.int64))
    frame = pd.DataFrame({"rule": ["r"], "month": [6], "applications": [12], "claimed": [120.0], "approvals": [9],
                          "approved": [90.0], "paid": [60.0]})
    seen = nowcast.check_observed(frame, ["r"], [1], 2024, "2024-06-30")
    keys = nowcast.keys_of(seen, ["r"], {"r": 1})
    spread = nowcast.spread_of(ensemble, keys, 6)
    terms = nowcast.cell_terms(ensemble, keys, nowcast.observed_cube(seen, keys), 6, spread)
    assert terms.cells["measure"].tolist() == ["applications", "claimed", "approvals", "paid"]
    tau = nowcast.MODEL_ERROR
    for d, (approvals, approved, paid) in enumerate([(14, 140.0, 80.0), (20, 200.0, 170.0)]):
        mean = 12 * approvals / 24  # the observed applications at the draw's approvals per application
        variance = mean * 1.5 * (1 + 1e-6) + (tau * mean) ** 2 + 1e-12
        size = mean ** 2 / (variance - mean)
        assert math.isclose(terms.loglik[d, 2], stats.nbinom.logpmf(9, size, size / (size + mean)), rel_tol=1e-9)
        mu = 90.0 * paid / approved  # the observed approved amount at the draw's payments per approved 萬元
        var = mu * 10.0 * math.exp(spread.log_spread[0]) * 1.5 + (tau * mu) ** 2 + nowcast.PAID_FLOOR
        z = (60.0 - mu) / math.sqrt(var)
        assert math.isclose(terms.loglik[d, 3], -0.5 * z ** 2 - 0.5 * math.log(2 * math.pi * var), rel_tol=1e-9)
