"""The Monte Carlo population: reproducibility, marginals, copula, event counts, bad specs and registers."""

import dataclasses
import math
import shutil
import tracemalloc

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import sim.policy
import sim.population as pop
from sim.errors import FirmTableError, SpecError

POLICY = sim.policy.load()
SPEC = pop.load_spec(policy=POLICY)
MODEL = sim.policy.resolve_model()


def collect(spec, seed, chunk_size, **kw):
    chunks = list(pop.generate(spec, seed, chunk_size=chunk_size, **kw))
    return {k: np.concatenate([c.columns[k] for c in chunks]) for k in spec.columns}, chunks


def test_same_seed_same_population_whatever_the_chunk_size():
    scale = 3.5  # the largest segment spans two generation blocks
    assert max(SPEC.counts(scale=scale)) > pop.BLOCK
    reference, _ = collect(SPEC, 11, chunk_size=10**9, scale=scale)
    for chunk_size in (1000, 65536, 99991):
        other, chunks = collect(SPEC, 11, chunk_size=chunk_size, scale=scale)
        assert all(len(c) == chunk_size for c in chunks[:-1])
        assert [c.start for c in chunks] == list(range(0, len(reference["segment"]), chunk_size))
        for name in SPEC.columns:
            assert np.array_equal(other[name], reference[name]), name


def test_replications_are_independent_and_repeatable():
    a, _ = collect(SPEC, 5, 65536, replication=0)
    b, _ = collect(SPEC, 5, 65536, replication=1)
    again, _ = collect(SPEC, 5, 65536, replication=0)
    assert np.array_equal(a["revenue"], again["revenue"])
    assert not np.array_equal(a["revenue"], b["revenue"])
    same_segment = a["segment"] == 0  # revenue differs by segment by design; compare within one
    assert abs(stats.spearmanr(a["revenue"][same_segment], b["revenue"][same_segment])[0]) < 0.05
    c, _ = collect(SPEC, 6, 65536, replication=0)
    assert not np.array_equal(a["revenue"], c["revenue"])


def test_n_and_scale_keep_the_shape():
    counts = SPEC.counts()
    assert counts.sum() == SPEC.total
    for n in (1000, 123457):
        scaled = SPEC.counts(n=n)
        assert scaled.sum() == n
        assert np.allclose(scaled / n, counts / counts.sum(), atol=2 / n + 1e-12)
    doubled = SPEC.counts(scale=2)
    assert np.array_equal(doubled, 2 * counts)
    frame = pop.population_frame(SPEC, 3, n=5000)
    assert len(frame) == 5000 and list(frame.columns) == list(SPEC.columns)


def single_segment(segment_id, count):
    segment = next(s for s in SPEC.segments if s.id == segment_id)
    return dataclasses.replace(SPEC, segments=(dataclasses.replace(segment, count=count),))


def enterprise_step(name):
    return next(s for s in SPEC.programme("enterprise").steps if s.attribute == name)


def test_marginals_match_the_spec():
    spec = single_segment("iot-large", 40000)
    segment = spec.segments[0]
    frame = pop.population_frame(spec, 2)
    revenue = enterprise_step("revenue").lognormal(segment)
    # Revenue: lognormal body with a Pareto tail above the 90th percentile.
    assert revenue.tail_from == 0.9 and revenue.tail_alpha == 2.0
    assert stats.kstest(frame["revenue"], revenue.cdf).pvalue > 1e-3
    assert np.quantile(frame["revenue"], 0.9) == pytest.approx(
        revenue.median * math.exp(revenue.sigma * stats.norm.ppf(0.9)), rel=0.03)
    tail = frame["revenue"][frame["revenue"] > np.quantile(frame["revenue"], 0.99)]
    hill = 1 / np.mean(np.log(tail / tail.min()))  # Hill estimator of the tail exponent
    assert hill == pytest.approx(revenue.tail_alpha, rel=0.2)
    # R&D intensity of performers: lognormal (median x sector multiplier, sigma).
    performers = frame[frame["rd_spending"] > 0]
    intensity = performers["rd_spending"] / performers["revenue"]
    shape = enterprise_step("rd_intensity").lognormal(segment)
    assert shape.median == pytest.approx(0.03 * 1.3)
    assert stats.kstest(np.log(intensity / shape.median) / shape.sigma, "norm").pvalue > 1e-3
    n = len(frame)
    for share, p in ((len(performers) / n, enterprise_step("rd_performer").number("probability", segment)),
                     ((frame["export_credit_premium"] > 0).mean(),
                      enterprise_step("export_insured").number("probability", segment)),
                     (frame["manufacturing"].mean(), enterprise_step("manufacturing").number("probability", segment))):
        assert abs(share - p) < 4 * math.sqrt(p * (1 - p) / n)
    # R&D growth: log(rd / previous rd) is normal(mean, sd).
    growth = enterprise_step("rd_log_growth")
    log_growth = -np.log1p(-performers["rd_increase"] / performers["rd_spending"])
    assert stats.kstest((log_growth - growth.number("mean", segment)) / growth.number("sd", segment),
                        "norm").pvalue > 1e-3
    # Technology-SME scale is revenue within the national limit.
    limit = enterprise_step("tech_sme_scale").number("limit", segment)
    assert np.array_equal(frame["tech_sme_scale"], frame["revenue"] <= limit)


def test_copula_rank_correlations_are_recovered():
    frame = pop.population_frame(single_segment("iot-small", 60000), 4)
    performers = frame[frame["rd_spending"] > 0]
    intensity = performers["rd_spending"] / performers["revenue"]
    log_growth = -np.log1p(-performers["rd_increase"] / performers["rd_spending"])
    corr = SPEC.programme("enterprise").correlation
    n = len(performers)
    for x, y, rho in ((performers["revenue"], intensity, corr[0, 1]),
                      (intensity, log_growth, corr[1, 2]),
                      (performers["revenue"], log_growth, corr[0, 2])):
        expected = 6 / math.pi * math.asin(rho / 2)  # Spearman's rho of a Gaussian copula
        assert abs(stats.spearmanr(x, y)[0] - expected) < 4 / math.sqrt(n)


def test_recognition_factor_links_events_to_size_and_rd():
    frame = pop.population_frame(single_segment("iot-small", 60000), 8)
    recognised = frame["new_high_tech"].astype(bool)
    assert frame.loc[recognised, "revenue"].median() > 1.2 * frame.loc[~recognised, "revenue"].median()
    assert (frame.loc[recognised, "rd_spending"] > 0).mean() > (frame.loc[~recognised, "rd_spending"] > 0).mean()


def _count_variance(spec, attribute):
    var = 0.0
    for segment, count in zip(spec.segments, spec.counts()):
        step = spec.step(segment, attribute)
        if step is None:
            continue
        if step.kind == "count":
            mu = step.number("mean", segment) if step.reaches(segment) else 0.0
            var += count * (mu + mu * mu * (math.exp(step.loading**2) - 1))
        else:
            p = spec.share_set(segment, attribute)
            var += count * p * (1 - p)
    return var


EVENT_ATTRIBUTES = sorted({g.attribute for s in SPEC.segments for g in SPEC.steps_of(s)
                           if g.kind in ("event", "amount", "count", "bernoulli", "factor_event")
                           and g.attribute in SPEC.columns})


@pytest.mark.parametrize("attribute", EVENT_ATTRIBUTES)
def test_event_counts_match_their_expectation(attribute):
    total = 0.0
    for chunk in pop.generate(SPEC, 21):
        values = chunk.columns[attribute]
        kind = next(g.kind for s in SPEC.segments for g in SPEC.steps_of(s) if g.attribute == attribute)
        total += values.sum() if kind == "count" else (values > 0).sum()
    expected, sd = SPEC.expected(attribute), math.sqrt(_count_variance(SPEC, attribute))
    assert abs(total - expected) <= 4 * sd + 1e-9, (total, expected, sd)


def test_categorical_and_per_claimant_segments():
    frame = pop.population_frame(single_segment("incubators", 20000), 1)
    segment = SPEC.segments[[s.id for s in SPEC.segments].index("incubators")]
    g = SPEC.step(segment, "incubator_stars")
    observed = frame["incubator_stars"].value_counts(normalize=True).reindex(g.values, fill_value=0)
    for value, p in zip(g.values, g.probabilities):
        assert abs(observed[value] - p) < 4 * math.sqrt(p * (1 - p) / len(frame))
    assert (frame["revenue"] == 0).all() and (frame["rd_spending"] == 0).all()


def test_calibration_targets_from_the_text_are_met_in_expectation():
    table = pop.calibration_table(SPEC, seed=0, replications=3).set_index("target")
    hte = table.loc["new-high-tech"]
    assert 329 <= hte["expected"] <= 362
    assert abs(hte["mean"] - hte["expected"]) < 4 * math.sqrt(hte["expected"] / 3)
    assert table.loc["enterprise-rd", "in_band"]


def test_every_rule_has_someone_who_can_claim_it():
    counts = SPEC.counts()
    for rule in POLICY.rules:
        assert any(s.claimant == rule.claimant for s in SPEC.segments)
        if SPEC.has_expectation(rule.base):
            assert SPEC.expected(rule.base, counts) > 0, rule.id


def test_generated_population_earns_awards_under_every_frequent_rule():
    from sim.awards import evaluate
    frame = pop.population_frame(SPEC, 0, scale=4)
    totals = evaluate(POLICY, frame, validate=True).rule_table().set_index("rule")["award"]
    for rule in POLICY.rules:
        claims = SPEC.expected(rule.base) if SPEC.has_expectation(rule.base) else 100
        if claims * 4 >= 5:
            assert totals[rule.id] > 0, rule.id


def test_memory_is_bounded_by_the_chunk_not_the_population():
    def peak(n):
        tracemalloc.start()
        for _ in pop.generate(SPEC, 1, n=n, chunk_size=16384):
            pass
        _, top = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return top
    small, large = peak(400_000), peak(1_200_000)  # both have full generation blocks
    assert large < 1.1 * small


# ----------------------------------------------------------------------------- malformed specs
TEXT = (MODEL / "population.toml").read_text(encoding="utf-8")


def load_edited(tmp_path, text):
    folder = tmp_path / "m"
    folder.mkdir()
    for name in ("policy.toml", "source.txt"):
        shutil.copy(MODEL / name, folder / name)
    (folder / "population.toml").write_text(text, encoding="utf-8")
    return pop.load_spec(folder)


SPEC_CASES = {
    "negative sigma": (TEXT.replace("sigma = { small = 1.3, medium = 0.8, large = 1.0 }",
                                    "sigma = { small = -1.3, medium = 0.8, large = 1.0 }"),
                       "claimants.enterprise.attributes.revenue: sigma.small must lie in [0, 5], got -1.3"),
    "correlation not PSD": (TEXT.replace("[1.00, 0.10, 0.05, 0.30, 0.35],\n  [0.10, 1.00,", "[1.00, 0.99, 0.05, 0.30, 0.35],\n  [0.99, 1.00,", 1)
                            .replace("[0.35, 0.45, 0.15, 0.15, 1.00]", "[0.35, -0.95, 0.15, 0.15, 1.00]")
                            .replace("[0.10, 1.00, 0.20, 0.10, 0.45]", "[0.99, 1.00, 0.20, 0.10, -0.95]"),
                            "correlation matrix is not positive semi-definite"),
    "correlation not symmetric": (TEXT.replace("[0.05, 0.20, 1.00, 0.05, 0.15]", "[0.05, 0.25, 1.00, 0.05, 0.15]"),
                                  "[claimants.enterprise] copula: correlation must be symmetric"),
    "probability above 1": (TEXT.replace("probability = { small = 0.014, medium = 0.01, large = 0.0 }",
                                         "probability = { small = 1.4, medium = 0.01, large = 0.0 }"),
                            "enterprise.attributes.new_prov_tech_sme: probability.small must lie in [0, 1], got 1.4"),
    "per-class table naming no dimension": (TEXT.replace("probability = { small = 0.014, medium = 0.01, large = 0.0 }",
                                                         "probability = { small = 0.014, medium = 0.01, huge = 0.0 }"),
                                            "probability names ['huge', 'medium', 'small'], not the classes of one dimension"),
    "per-class table missing a class": (TEXT.replace("probability = { small = 0.014, medium = 0.01, large = 0.0 }",
                                                     "probability = { small = 0.014, medium = 0.01 }"),
                                        "probability lacks size class ['large']"),
    "unknown attribute": (TEXT.replace("[claimants.enterprise.attributes.new_chuying]", "[claimants.enterprise.attributes.new_chuyin]"),
                          "enterprise.attributes.new_chuyin: unknown attribute 'new_chuyin'"),
    "rule attribute left ungenerated": (TEXT.replace("[claimants.enterprise.attributes.new_chuying]", "[claimants.enterprise.attributes.new_chuyin]"),
                                        "attribute new_chuying (read by the policy's rules) is generated for no enterprise segment"),
    "unknown key": (TEXT.replace("loading = 0.6\nassumed = true\nwhy = \"No count of municipal", "loadings = 0.6\nassumed = true\nwhy = \"No count of municipal"),
                    "enterprise.attributes.new_chuying: unknown key 'loadings'"),
    "unknown sector": (TEXT.replace('sector = "biomed"\nsize = "medium"', 'sector = "biomedicine"\nsize = "medium"'),
                       "segment biomed-medium: unknown sector 'biomedicine'"),
    "negative count": (TEXT.replace("count = 45\n", "count = -45\n"), "segment banks: count must lie in 0-10,000,000, got -45"),
    "no provenance": (TEXT.replace('id = "exhibitions"\nclaimant = "exhibition"\ncount = 20\nassumed = true\nwhy = "Qualifying international exhibitions held in the district a year; planning value."\n',
                                   'id = "exhibitions"\nclaimant = "exhibition"\ncount = 20\n'),
                      "segment exhibitions: give a `source` or `assumed = true` with `why`"),
    "categorical probabilities do not add to 1": (TEXT.replace("probabilities = [0.5, 0.3, 0.2]", "probabilities = [0.5, 0.3, 0.3]"),
                                                  "probabilities must lie in [0, 1] and add to 1"),
    "claimant mismatch": (TEXT.replace("[segments.attributes.new_leading_team]", "[segments.attributes.new_chuying]"),
                          "attribute 'new_chuying' belongs to claimant 'enterprise', not 'research_team'"),
    "step reads an attribute drawn later": (TEXT.replace('of = ["revenue", "rd_intensity"]', 'of = ["revenue", "rd_intensitty"]'),
                                            "of names 'rd_intensitty', which is not drawn before this step"),
    "unknown copula factor": (TEXT.replace('factor = "rd_growth"', 'factor = "rd_grow"'),
                              "factor 'rd_grow' is not a factor of the enterprise copula"),
    "unknown step kind": (TEXT.replace('kind = "increase"', 'kind = "increment"'), "kind must be one of lognormal"),
}


@pytest.mark.parametrize("name", list(SPEC_CASES))
def test_malformed_spec_is_rejected_with_a_clear_message(tmp_path, name):
    text, expected = SPEC_CASES[name]
    assert text != TEXT
    with pytest.raises(SpecError) as info:
        load_edited(tmp_path, text)
    assert expected in str(info.value)


def test_unedited_spec_loads(tmp_path):
    assert load_edited(tmp_path, TEXT).total == SPEC.total


# ----------------------------------------------------------------------------- registers
def _register(tmp_path, edit=None, suffix=".csv"):
    frame = pop.population_frame(SPEC, 0, n=50)
    frame = frame[[a.name for a in POLICY.attributes if a.name in frame]]  # a register holds the model's inputs
    if edit:
        edit(frame)
    path = tmp_path / f"register{suffix}"
    frame.to_parquet(path) if suffix == ".parquet" else frame.to_csv(path, index=False)
    return path


def test_register_round_trip(tmp_path):
    for suffix in (".csv", ".parquet"):
        table = pop.load_register(_register(tmp_path, suffix=suffix), POLICY)
        assert table.n == 50 and not table.defaults_used


@pytest.mark.parametrize("edit, message", [
    (lambda f: f.pop("rd_spending"), "missing column rd_spending"),
    (lambda f: f.__setitem__("export_credit_premium", f["export_credit_premium"].where(f.index != 3, np.nan)),
     "column export_credit_premium (萬元): empty or NaN in row 4"),
    (lambda f: f.__setitem__("rd_spending", f["rd_spending"].where(f.index != 0, np.inf)),
     "column rd_spending (萬元): infinite in row 1"),
    (lambda f: f.__setitem__("tech_transaction_value", f["tech_transaction_value"].where(f.index > 1, -5.0)),
     "column tech_transaction_value (萬元): negative in rows 1, 2"),
    (lambda f: f.__setitem__("new_chuying", f["new_chuying"].astype(object).where(f.index != 9, "maybe")),
     "column new_chuying (flag): not a number in row 10 (values 'maybe')"),
    (lambda f: f.__setitem__("fv_software_national", f["fv_software_national"].where(f.index != 4, 0.5)),
     "column fv_software_national (products): a count must be a whole number: row 5"),
])
def test_malformed_register_is_reported(tmp_path, edit, message):
    path = _register(tmp_path, edit)
    with pytest.raises(FirmTableError) as info:
        pop.load_register(path, POLICY)
    assert message in str(info.value) and str(path) in str(info.value)


def test_register_of_unknown_format_or_damaged_workbook(tmp_path):
    path = tmp_path / "register.ods"
    path.write_text("x")
    with pytest.raises(FirmTableError, match=r"must be \.xlsx, \.csv or \.parquet"):
        pop.load_register(path, POLICY)
    path = tmp_path / "register.xlsx"
    path.write_text("x")
    with pytest.raises(FirmTableError, match="cannot read it as an Excel workbook"):
        pop.load_register(path, POLICY)


def test_chunk_frame_is_a_tidy_table():
    chunk = next(pop.generate(SPEC, 0, n=100, chunk_size=40))
    frame = chunk.frame()
    assert isinstance(frame, pd.DataFrame) and len(frame) == 40 and frame.index[0] == 0


def test_poisson_inversion_matches_scipy():
    u = np.random.default_rng(0).random(20000)
    mean = np.random.default_rng(1).gamma(1.0, 2.0, 20000)
    assert np.array_equal(pop.poisson_from_uniform(u, mean), stats.poisson.ppf(u, mean))


def test_compiled_draws_equal_the_numpy_formulas():
    """The copula comparison and the Poisson inversion, compiled (or as plain Python), against the NumPy formulas
    they replace, to the bit: flags on the threshold's edge, counts up to the cap on u close to 1."""
    rng = np.random.default_rng(5)
    m = 3000
    factor = rng.standard_normal(m)
    for p, loading in ((0.05, 0.6), (0.5, 0.3), (0.999, 0.9), (1e-6, 0.99)):
        flags = pop.occurs(np.random.default_rng(9), m, p, factor, loading)
        noise = np.random.default_rng(9).standard_normal(m)
        noise *= np.sqrt(1.0 - loading * loading)
        noise += loading * factor
        assert np.array_equal(flags, noise > pop._threshold(p))
        assert flags.dtype == bool
    threshold = 0.25  # a flag exactly on the threshold is not set
    on_edge = np.zeros(4, dtype=bool)
    pop.copula_exceeds(np.array([0.5, 0.5, 0.6, -1.0]), 0.5, 0.5, np.array([0.0, 0.0001, 0.0, 3.0]), threshold,
                       on_edge)
    assert on_edge.tolist() == [False, True, True, True]
    u = np.concatenate([rng.random(m), [0.0, 1.0 - 1e-16, np.nextafter(1.0, 0.0)]])
    mean = np.concatenate([rng.choice([0.0, 0.05, 1.0, 7.5, 40.0], m), [2.0, 3.0, 900.0]])
    term = np.exp(-mean)
    count = np.zeros_like(u)
    cdf, active, k = term.copy(), u > term, 0
    while active.any():  # the vectorised inversion, by hand
        k += 1
        term = term * mean / k
        cdf = cdf + term
        count[active] = k
        active &= u > cdf
        if k > pop.POISSON_MAX:
            break
    assert np.array_equal(pop.poisson_from_uniform(u, mean), count)
    assert count.max() > 900  # the large mean reaches far
