"""Scenarios are partial overrides of an immutable baseline, validated in full before anything changes."""

import pytest

import sim.scenario as scenario
from sim.errors import PolicyError, ScenarioError, SpecError

BASE_POLICY, BASE_SPEC = scenario.apply(scenario.baseline())


def apply(data):
    return scenario.apply(scenario.from_dict({"name": "t", **data}))


def test_override_changes_a_copy_and_marks_the_number_as_the_scenarios():
    policy, spec = apply({"policy": {"rules": {"a38-bank-credit-loans": {"cap": 250}},
                                     "domains": {"services": {"claims_budget": 30000}}},
                          "population": {"segments": {"banks": {"count": 60}},
                                         "claimants": {"enterprise": {"attributes": {
                                             "rd_log_growth": {"mean": 0.09},
                                             "new_high_tech": {"probability": {"small": 0.006}}}}},
                                         "shocks": {"export_credit_premium": 0.8}}})
    cap = policy.rule("a38-bank-credit-loans").number("cap")
    assert cap.value == 250 and cap.scenario == "t" and not cap.assumed and cap.uncertainty is None
    held = policy.domain("services").claims_budget
    assert held.value == 30000 and held.scenario == "t" and held.uncertainty is None  # a decision: no range
    assert BASE_POLICY.domain("services").claims_budget.uncertainty is not None
    assert "services" not in {n.path[1] for n in policy.uncertain() if n.path[0] == "domains"}
    assert BASE_POLICY.rule("a38-bank-credit-loans").number("cap").value == 200  # the baseline is untouched
    assert next(s for s in spec.segments if s.id == "banks").count == 60
    segment = spec.segments[0]

    def step(s, name):
        return next(g for g in s.programme("enterprise").steps if g.attribute == name)
    assert step(spec, "rd_log_growth").number("mean", segment) == 0.09
    assert step(BASE_SPEC, "rd_log_growth").number("mean", segment) == 0.06
    g = step(spec, "new_high_tech")
    assert g.numbers["probability"].values["small"] == 0.006 and g.numbers["probability"].values["medium"] == 0.025
    assert spec.shocks["export_credit_premium"] == 0.8
    assert policy.content_hash != BASE_POLICY.content_hash


@pytest.mark.parametrize("data, error, message", [
    ({"policy": {"rules": {"a99-nothing": {"cap": 1}}}}, ScenarioError, "policy.rules.a99-nothing: no such rule"),
    ({"policy": {"rules": {"a38-bank-credit-loans": {"quote": "x"}}}}, ScenarioError, "only numbers can be overridden"),
    ({"policy": {"rules": {"a38-bank-credit-loans": {"rate": 3}}}}, PolicyError, "rule a38-bank-credit-loans: rate must be <= 1, got 3"),
    ({"policy": {"domains": {"sci": {"claims_budget": 1}}}}, ScenarioError, "policy.domains.sci: no such domain"),
    ({"policy": {"budgets": {}}}, ScenarioError, "policy.budgets cannot be overridden"),
    ({"population": {"segments": {"whales": {"count": 3}}}}, ScenarioError, "population.segments.whales: no such segment"),
    ({"population": {"claimants": {"enterprise": {"attributes": {"new_chuyin": {"loading": 0.1}}}}}}, ScenarioError,
     "population.claimants.enterprise.attributes.new_chuyin: no such entry"),
    ({"population": {"claimants": {"enterprise": {"attributes": {"new_chuying": {"probability": {"small": 2}}}}}}},
     SpecError, "probability.small must lie in [0, 1]"),
    ({"population": {"enterprise": {"new_chuying": {"loading": 0.1}}}}, ScenarioError, "population.enterprise cannot be overridden"),
    ({"population": {"shocks": {"new_chuying": 0.5}}}, SpecError, "a shock multiplies a money attribute"),
    ({"colour": "red"}, ScenarioError, "unknown key 'colour'"),
])
def test_bad_overrides_are_rejected_naming_the_field(data, error, message):
    with pytest.raises(error) as info:
        apply(data)
    assert message in str(info.value)


def test_scenario_files_are_found_by_name_and_checked_on_load(tmp_path):
    assert scenario.load("baseline").is_baseline
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "bad"\n[population.segments.banks]\ncount = -1\n', encoding="utf-8")
    with pytest.raises(SpecError, match="segment banks: count must lie in 0-10,000,000"):
        scenario.load(bad)
    with pytest.raises(ScenarioError, match="bundled: article-13-caps-up, baseline, export-slump"):
        scenario.load("no-such-scenario")
