"""evaluate() agrees with a plain one-claimant-at-a-time implementation written from the text."""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import sim.policy
from sim.awards import evaluate
from sim.errors import FirmTableError
from tests.reference import awards_for
from tests.strategies import claimant_tables

POLICY = sim.policy.load()


def test_reference_covers_every_rule():
    facts = {a.name: 0.0 for a in POLICY.input_attributes()}
    assert set(awards_for(facts)) == set(POLICY.rule_ids)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(table=claimant_tables(POLICY))
def test_evaluate_matches_plain_reference(table):
    awards = evaluate(POLICY, table, chunk_size=7)  # small chunks: chunk edges are exercised too
    gross, district = awards.gross, awards.district
    n = len(next(iter(table.values())))
    for i in range(n):
        expected = awards_for({name: float(col[i]) for name, col in table.items()})
        for row, rule_id in enumerate(POLICY.rule_ids):
            award, part = expected[rule_id]
            assert abs(gross[row, i] - award) <= 1e-9, (rule_id, i)
            assert abs(district[row, i] - part) <= 1e-9, (rule_id, i)


def test_chunk_size_does_not_change_results():
    rng = np.random.default_rng(7)
    n = 5000
    table = {a.name: (rng.random(n) < 0.3).astype(float) if a.type == "bool"
             else rng.integers(0, 6, n).astype(float) if a.type == "int"
             else rng.lognormal(5, 2, n) for a in POLICY.input_attributes()}
    whole = evaluate(POLICY, table, chunk_size=n).gross
    for chunk in (1, 999, 4096):
        assert np.array_equal(evaluate(POLICY, table, chunk_size=chunk).gross, whole)
    for bad in (0, -3, 2.5, True):
        with pytest.raises(FirmTableError, match="chunk_size must be a whole number >= 1"):
            evaluate(POLICY, table, chunk_size=bad)
