"""Property tests for every award kernel and for every rule of the model."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import sim.policy
from sim.awards import (
    capped_rate,
    co_funded_share,
    eligible,
    fixed_award,
    per_unit_award,
    rule_award,
    share_of_external_funds,
    tiered_award,
)
from tests.strategies import claimant_tables, value_strategy

POLICY = sim.policy.load()
money = st.floats(-1e6, 1e7, allow_nan=False, allow_infinity=False)
bases = arrays(np.float64, st.integers(1, 60), elements=money)
rates = st.floats(0, 1)
caps = st.one_of(st.just(np.inf), st.floats(0, 1e4))


def nondecreasing(base, award):
    order = np.argsort(base, kind="stable")
    return bool(np.all(np.diff(award[order]) >= -1e-12))


@given(bases, rates, caps, st.one_of(st.none(), st.floats(0, 1e4)), st.booleans())
def test_capped_rate(base, rate, cap, threshold, inclusive):
    award = capped_rate(base, rate, cap, threshold, inclusive)
    assert award.shape == base.shape and award.dtype == np.float64
    assert np.all(award >= 0) and np.all(award <= cap)
    assert nondecreasing(base, award)
    if threshold is not None:
        below = base < threshold if inclusive else base <= threshold
        assert np.all(award[below] == 0)
        assert np.all(award[base == threshold] == (np.minimum(rate * threshold, cap) if inclusive else 0))
    assert np.all(award[base <= 0] == 0)


@given(bases, rates, caps)
def test_share_of_external_funds(funds, share, cap):
    award = share_of_external_funds(funds, share, cap)
    assert np.all(award >= 0) and np.all(award <= cap) and nondecreasing(funds, award)
    assert np.allclose(award, np.clip(share * funds, 0, cap))


@given(arrays(np.int8, st.integers(1, 60), elements=st.integers(0, 1)), st.floats(0, 1e4))
def test_fixed_award(flag, amount):
    award = fixed_award(flag, amount)
    assert np.all(award[flag == 0] == 0) and np.all(award[flag == 1] == amount)
    assert nondecreasing(flag.astype(float), award)


@given(bases, st.lists(st.floats(0, 1e5), min_size=1, max_size=4, unique=True),
       st.lists(st.floats(0, 1e3), min_size=4, max_size=4), st.booleans())
def test_tiered_award(base, at, amounts, inclusive):
    at = sorted(at)
    amounts = sorted(amounts)[: len(at)]
    award = tiered_award(base, at, amounts, inclusive)
    assert np.all(award >= 0) and np.all(award <= max(amounts)) and nondecreasing(base, award)
    assert np.all(award[base < at[0]] == 0)
    for a, amount in zip(at, amounts):
        hit = base == a
        if inclusive and hit.any() and at.count(a) == 1:
            assert np.all(award[hit] >= amount)


@given(arrays(np.int64, st.integers(1, 60), elements=st.integers(0, 50)), st.floats(0, 100), caps)
def test_per_unit_award(count, amount, cap):
    award = per_unit_award(count, amount, cap)
    assert np.all(award >= 0) and np.all(award <= cap) and nondecreasing(count.astype(float), award)
    assert np.all(award[count == 0] == 0)


@given(arrays(np.float64, st.integers(1, 60), elements=st.floats(0, 1e6)), st.floats(0, 1))
def test_co_funded_share(award, share):
    part = co_funded_share(award, share)
    assert np.all(part >= 0) and np.all(part <= award + 1e-9)


def _upper_bound(rule):
    bounds = []
    if rule.number("cap") is not None:
        bounds.append(rule.number("cap").value)
    elif rule.kind == "fixed":
        bounds.append(rule.number("amount").value)
    elif rule.kind == "tiered":
        bounds.append(max(t.value.value for t in rule.tiers))
    else:
        return np.inf
    bounds.extend(t.value.value for t in rule.tiers)
    return max(bounds) * rule.intensity.value


@pytest.mark.parametrize("rule", POLICY.rules, ids=POLICY.rule_ids)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_every_rule_bounded_monotone_and_zero_when_ineligible(rule, data):
    table = data.draw(claimant_tables(POLICY, max_rows=30, names=rule.attributes()))
    award = rule_award(rule, table, True)
    assert np.all(award >= 0) and np.all(award <= _upper_bound(rule) + 1e-9)
    if rule.eligibility:
        assert np.all(award[~eligible(table, rule.eligibility)] == 0)
    if rule.number("threshold") is not None and not rule.tiers:
        assert np.all(award[table[rule.base] < rule.number("threshold").value] == 0)
    # Non-decreasing in the base: raise every base value, nothing falls.
    bump = data.draw(value_strategy(POLICY, POLICY.attribute(rule.base)))
    raised = dict(table)
    raised[rule.base] = table[rule.base] + abs(bump)
    if POLICY.attribute(rule.base).type == "bool":
        raised[rule.base] = np.maximum(table[rule.base], 1.0 if bump else 0.0)
    assert np.all(rule_award(rule, raised, True) >= award - 1e-12)
