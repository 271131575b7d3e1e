"""A rule kind added through the registry alone: rates by band ("x% up to A, y% above").

The kind lives in sim/kinds.py only; these tests build a policy that uses it from the template model's
data, and check the loader's validation, the NumPy kernel against a closed form, the compiled twin
against the NumPy kernel to the bit, the explanation, and scenario overrides of its numbers.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import sim.fused as fused
import sim.policy
import sim.scenario as scenario
from sim import kinds
from sim.awards import evaluate, explain
from sim.errors import PolicyError
from tests.strategies import random_table

TEMPLATE = sim.policy.load("template")
BANDS_RULE = {
    "id": "t06-exports", "article": 6, "name_en": "Exports: 1% up to 1000萬, 0.5% above, at most 30萬",
    "kind": "tiered_rate", "claimant": "enterprise", "domain": "industry", "recurrence": "annual",
    "base": "export_value", "tiers": [{"at": 0, "rate": 0.01}, {"at": 1000, "rate": 0.005}], "cap": 30,
    "quote": "1000萬元以內部分按1%、超過1000萬元部分按0.5%給予獎勵,單個企業最高30萬元",
}


def with_rule(rule):
    data = TEMPLATE.data()
    data["rules"] = [r for r in data["rules"] if r["id"] != rule["id"]] + [rule]
    return sim.policy.from_dict(data, "template+bands", TEMPLATE.source_text)


@given(arrays(np.float64, st.integers(1, 50), elements=st.floats(-1e4, 1e6)), st.floats(0, 1), st.floats(0, 1),
       st.floats(1, 1e5), st.one_of(st.just(np.inf), st.floats(0, 1e4)))
def test_marginal_rate_is_the_banded_closed_form(base, low_rate, high_rate, knee, cap):
    award = kinds.marginal_rate(base, [0.0, knee], [low_rate, high_rate], cap)
    closed = np.where(base <= knee, low_rate * np.maximum(base, 0), low_rate * knee + high_rate * (base - knee))
    assert np.allclose(award, np.minimum(closed, cap), rtol=1e-12, atol=1e-9)
    assert np.all(award >= 0) and np.all(award <= cap)
    order = np.argsort(base, kind="stable")
    assert np.all(np.diff(award[order]) >= -1e-9)


def test_a_policy_with_the_kind_loads_and_evaluates_the_texts_examples():
    policy = with_rule(BANDS_RULE)
    rule = policy.rule("t06-exports")
    assert rule.kind == "tiered_rate" and [t.value.value for t in rule.tiers] == [0.01, 0.005]
    table = {"export_value": np.array([0.0, 500.0, 1000.0, 3000.0, 5000.0, 9000.0]),
             "rd_spending": np.zeros(6), "rd_increase": np.zeros(6)}
    award = evaluate(policy, table, validate=False).frame()["t06-exports"].tolist()
    assert award == pytest.approx([0.0, 5.0, 10.0, 20.0, 30.0, 30.0])  # 10 + 0.5% x 4000 = 30: the cap


@pytest.mark.parametrize("edit, message", [
    ({"tiers": [{"at": 0, "rate": 1.5}]}, "tier 1: rate must be <= 1, got 1.5"),
    ({"tiers": [{"at": 0, "amount": 0.01}]}, "unknown key 'amount'"),
    ({"tiers": [{"at": 1000, "rate": 0.01}, {"at": 0, "rate": 0.005}]}, "`at` strictly increasing"),
    ({"tiers": None}, "a tiered_rate rule needs tiers"),
    ({"threshold": 5}, "threshold does not apply to a tiered_rate rule"),
])
def test_the_loader_checks_the_kinds_fields(edit, message):
    rule = {**BANDS_RULE, **edit}
    rule = {k: v for k, v in rule.items() if v is not None}
    with pytest.raises(PolicyError) as info:
        with_rule(rule)
    assert message in str(info.value) and "rule t06-exports" in str(info.value)


def test_compiled_twin_equals_the_numpy_kernel_to_the_bit():
    policy = with_rule(BANDS_RULE)
    compiled = fused.compile_rules(policy)
    n = fused.CHUNK * 2 + 5
    table = random_table(policy, n, np.random.default_rng(4))
    gross = fused.awards_per_claimant(compiled, table, n)
    assert np.array_equal(gross, evaluate(policy, table, validate=False).gross)
    assert gross[policy.rule_ids.index("t06-exports")].max() == 30.0
    (award, _), counts, _ = fused.totals(policy, table, compiled)
    (award_np, _), counts_np, _ = fused.totals_numpy(policy, table, compiled)
    assert np.array_equal(award, award_np) and np.array_equal(counts, counts_np)


def test_explanation_shows_each_band():
    entry = next(e for e in explain(with_rule(BANDS_RULE), {"export_value": 3000}) if e["rule"] == "t06-exports")
    assert entry["award"] == pytest.approx(20.0)
    assert "1% x 1,000 (the part from 0 to 1,000)" in entry["steps"][0]
    assert "0.5% x 2,000 (the part from 1,000 up)" in entry["steps"][0]


def test_a_scenario_overrides_its_numbers():
    policy = with_rule(BANDS_RULE)
    data = policy.data()
    changed = scenario._apply_policy(data, {"rules": {"t06-exports": {"cap": 40}}},
                                     scenario.from_dict({"name": "cap40", "model": "template"}), "test")
    assert sim.policy.from_dict(changed, "x", policy.source_text).rule("t06-exports").number("cap").value == 40
