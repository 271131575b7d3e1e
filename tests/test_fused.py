"""The fused compiled kernel gives the NumPy path's results to the bit."""

import numpy as np
from hypothesis import HealthCheck, given, settings

import sim.fused as fused
import sim.jit as jit
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
