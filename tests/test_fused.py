"""The fused compiled kernel gives the NumPy path's results to the bit."""

import numpy as np
from hypothesis import HealthCheck, given, settings

import sim.fused as fused
import sim.jit as jit
import sim.kinds
import sim.policy
from sim.awards import evaluate
from tests.strategies import claimant_tables, random_table

POLICY = sim.policy.load()
COMPILED = fused.compile_rules(POLICY)


def assert_identical(table):
    (award, district), counts, firms = fused.totals(POLICY, table, COMPILED)
    (award_np, district_np), counts_np, firms_np = fused.totals_numpy(POLICY, table, COMPILED)
    assert np.array_equal(award, award_np) and np.array_equal(district, district_np)
    assert np.array_equal(counts, counts_np) and np.array_equal(firms, firms_np)
    gross = evaluate(POLICY, table, validate=False).gross
    assert np.allclose(award, gross.sum(axis=1), rtol=1e-12, atol=1e-9)
    assert np.array_equal(counts, (gross > 0).sum(axis=1))
    assert firms[0] == (gross > 0).any(axis=0).sum()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=claimant_tables(POLICY, max_rows=40))
def test_fused_equals_numpy_on_edge_values(table):
    assert_identical(table)


def test_fused_equals_numpy_on_large_blocks_serial_and_parallel():
    rng = np.random.default_rng(3)
    sizes = (1, fused.CHUNK - 1, fused.CHUNK + 1, fused.PARALLEL_FROM + 12345)
    for n in sizes if jit.AVAILABLE else sizes[:3]:  # without numba the kernels run as Python: keep it small
        assert_identical(random_table(POLICY, n, rng))


def test_lane_sum_is_the_kernels_reduction():
    values = np.random.default_rng(0).lognormal(0, 3, (3, 1000))
    by_hand = []
    for row in values:
        lanes = [0.0] * fused.LANES
        for i, v in enumerate(row):
            lanes[i % fused.LANES] += v
        total = lanes[0]
        for lane in lanes[1:]:
            total += lane
        by_hand.append(total)
    assert np.array_equal(fused.lane_sum(values), np.array(by_hand))


def test_compiled_per_claimant_awards_equal_evaluate():
    rng = np.random.default_rng(9)
    for n in (1, fused.CHUNK + 3, 70_001):
        table = {a.name: (rng.random(n) < 0.3).astype(float) if a.type == "bool"
                 else rng.integers(0, 6, n).astype(float) if a.type == "int"
                 else rng.lognormal(5, 2.5, n) for a in POLICY.input_attributes()}
        gross = fused.awards_per_claimant(COMPILED, table, n, block=30_000)
        assert np.array_equal(gross, evaluate(POLICY, table, validate=False).gross)


def test_every_module_with_compiled_kernels_is_in_the_cache_key():
    from pathlib import Path

    import sim.jit as jit

    users = {p.name for p in Path(jit.__file__).parent.glob("*.py") if "jit.kernel" in p.read_text(encoding="utf-8")}
    assert users | {"jit.py"} == set(jit.COMPILED_SOURCES)
    assert len(jit.source_stamp()) == 64


def _reductions():
    """The reductions as the kernels call them: compiled (numba's intrinsics) or, without numba, the twins."""
    if jit.numba is None:
        return fused.lanes_into, fused.direct_into
    lanes_into, direct_into = fused.lanes_into, fused.direct_into
    return (jit.numba.njit(lambda out, dom, lanes, n: lanes_into(out, dom, lanes, n)),
            jit.numba.njit(lambda column, how, amount, cap, where, op, value, m, out, keep, dom, lanes, n: direct_into(
                column, how, amount, cap, where, op, value, m, out, keep, dom, lanes, n)))


def test_vector_reductions_equal_their_plain_python_twins_to_the_bit():
    """Lane sums, counts, domain flags and kept awards of the 8-wide vector code against the Python twins, on
    columns with zeros, -0.0, negatives and values over the cap, with each kind of condition (none, equals, at
    least, below: on its edge too), for every remainder of m modulo 8 (the masked last group) and both column
    widths of the base and of the condition."""
    lanes_into, direct_into = _reductions()
    rng = np.random.default_rng(11)
    n = 64
    base = rng.choice([0.0, -0.0, 1.0, 3.5, -2.0, 250.0, 1e6], size=n) * rng.choice([1.0, 0.5], size=n)
    where = rng.choice([0.0, 1.0, 2.0, 3.0], size=n)
    conditions = [(-1, 0.0)] + [(fused.OPS[name], value) for name in ("equals", "at_least", "below")
                                for value in (0.0, 2.0)]
    formulas = ((fused.DIRECT_FIXED, 30.0, 0.0), (fused.DIRECT_CAPPED, 0.05, 200.0),
                (fused.DIRECT_CAPPED, 0.0, np.inf), (fused.DIRECT_CAPPED, 2.0, np.inf))
    for dtype, where_dtype in ((np.float64, np.float64), (np.float32, np.float32), (np.float64, np.float32),
                               (np.float32, np.float64)):
        column, flags = base.astype(dtype), where.astype(where_dtype)
        for (how, amount, cap), (op, value) in ((f, c) for f in formulas for c in conditions):
            for m in (0, 1, 7, 8, 9, 40, 63, 64):
                for keep in (False, True):
                    got = [np.full(n, 9.0), np.zeros(n, np.uint8), np.zeros(fused.LANES)]
                    want = [np.full(n, 9.0), np.zeros(n, np.uint8), np.zeros(fused.LANES)]
                    hits = direct_into(column, how, amount, cap, flags, op, value, m, got[0], keep, got[1], got[2], n)
                    expected = fused.direct_python(column, how, amount, cap, flags, op, value, m, want[0], keep,
                                                   want[1], want[2], n)
                    assert hits == expected
                    for a, b in zip(got, want):  # to the bit: -0.0 and +0.0 told apart
                        assert a.tobytes() == b.tobytes(), (dtype, how, amount, op, value, m, keep)
    out = np.where(rng.random(n) < 0.5, rng.lognormal(2, 2, n), 0.0)
    out[3] = -0.0
    got, want = (np.zeros(n, np.uint8), np.zeros(fused.LANES)), (np.zeros(n, np.uint8), np.zeros(fused.LANES))
    assert lanes_into(out, *got, n) == fused.lanes_python(out, *want, n)
    assert all(a.tobytes() == b.tobytes() for a, b in zip(got, want))


def test_direct_python_is_the_kind_kernels_the_condition_and_the_lane_sum():
    """The twin against the kind kernels of sim.kinds, the condition loop and the reference lane sum: an
    independent reading."""
    rng = np.random.default_rng(12)
    column = rng.choice([0.0, 1.0, 40.0, 5000.0, -3.0], size=24)
    where = rng.choice([0.0, 1.0, 3.0], size=24)
    p = np.zeros(sim.kinds.NPARAM)
    for how, kernel, p[:2], op in ((fused.DIRECT_FIXED, sim.kinds.fixed_kernel, (30.0, 0.0), -1),
                                   (fused.DIRECT_CAPPED, sim.kinds.unit_kernel, (0.1, 200.0), -1),
                                   (fused.DIRECT_CAPPED, sim.kinds.share_kernel, (0.5, 900.0), fused.OPS["at_least"]),
                                   (fused.DIRECT_FIXED, sim.kinds.fixed_kernel, (7.0, 0.0), fused.OPS["equals"])):
        awards = np.zeros(24)
        kernel(column, column, 21, p, np.zeros((1, 2)), 0, True, awards)
        if op >= 0:
            fused.condition_loop(where, 21, op, 1.0, awards)
        out, dom, lanes = np.zeros(24), np.zeros(24, np.uint8), np.zeros(fused.LANES)
        hits = fused.direct_python(column, how, p[0], p[1], where, op, 1.0, 21, out, True, dom, lanes, 24)
        assert np.array_equal(out, awards) and hits == (awards > 0).sum()
        assert np.array_equal(dom, (awards > 0).astype(np.uint8))
        total = lanes[0]
        for lane in lanes[1:]:
            total += lane
        assert total == fused.lane_sum(awards)


def test_rules_take_the_one_pass_path_only_when_their_award_is_one_formula_of_one_column():
    by_name = {rule.id: rule for rule in POLICY.rules}
    paths = dict(zip(by_name, COMPILED.ints[:, fused.DIRECT]))
    for rule_id, rule in by_name.items():
        numbers = sim.kinds.packed(rule)
        if len(rule.eligibility) > 1 or rule.intensity.value != 1.0:
            assert paths[rule_id] == fused.DIRECT_NONE, rule_id
        elif rule.kind == "fixed":
            assert paths[rule_id] == fused.DIRECT_FIXED, rule_id
        elif rule.kind in ("tiered", "tiered_rate") or rule.tiers or (rule.kind == "rate" and numbers[3]):
            assert paths[rule_id] == fused.DIRECT_NONE, rule_id
    assert set(paths.values()) == {fused.DIRECT_NONE, fused.DIRECT_FIXED, fused.DIRECT_CAPPED}
    order = COMPILED.order
    assert sorted(order) == list(range(len(order)))
    keys = [(1 - COMPILED.ints[r, fused.BASE_WIDE], COMPILED.ints[r, fused.BASE]) for r in order]
    assert keys == sorted(keys)
