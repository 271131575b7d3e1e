"""The hand-worked cases of every bundled model's examples/, and their coverage of every rule."""

import dataclasses

import numpy as np
import pytest

import sim.policy
from sim import kinds
from sim.awards import evaluate, rule_award

MODELS = sorted(p.name for p in sim.policy.models_root().iterdir() if (p / "policy.toml").is_file())
POLICIES = {m: sim.policy.load(m) for m in MODELS}
CASES = [(m, e) for m in MODELS for e in sim.policy.load_examples(m, policy=POLICIES[m])]
RULES = [(m, r) for m in MODELS for r in POLICIES[m].rules]


def firm_row(policy, facts):
    """One-row table: the case's facts, the model's defaults, 0 for required attributes not given."""
    row = {}
    for attribute in policy.input_attributes():
        value = facts.get(attribute.name, attribute.default if attribute.default is not None else 0.0)
        row[attribute.name] = np.array([value], dtype=np.float64)
    return row


@pytest.mark.parametrize("model, case", CASES, ids=[f"{m}-a{e.article:02d}-{i}" for i, (m, e) in enumerate(CASES)])
def test_worked_example(model, case):
    policy = POLICIES[model]
    awards = evaluate(policy, firm_row(policy, case.firm))
    gross = dict(zip(policy.rule_ids, awards.gross[:, 0]))
    district = dict(zip(policy.rule_ids, awards.district[:, 0]))
    for rule_id, expected in case.expect.items():
        assert gross[rule_id] == pytest.approx(expected, abs=1e-9), f"{case.name}: {rule_id}"
    for rule_id, expected in case.expect_district.items():
        assert district[rule_id] == pytest.approx(expected, abs=1e-9), f"{case.name}: {rule_id} district"


def _cases_for(model, rule):
    return [(e.firm, e.expect[rule.id]) for m, e in CASES if m == model and rule.id in e.expect]


@pytest.mark.parametrize("model, rule", RULES, ids=[f"{m}-{r.id}" for m, r in RULES])
def test_every_rule_is_worked_in_each_regime(model, rule):
    cases = _cases_for(model, rule)
    assert any(v == 0 for _, v in cases), "needs a case with no award (ineligible or zero base)"
    assert any(v > 0 for _, v in cases), "needs a case with an award"
    if rule.number("threshold") is not None:
        t = rule.number("threshold").value
        assert any(f.get(rule.base) == t and v > 0 for f, v in cases), "needs a case at the threshold"
        assert any(0 < f.get(rule.base, 0) < t and v == 0 for f, v in cases), "needs a case just below"
    if rule.number("cap") is not None:
        cap = rule.number("cap").value
        assert any(v == pytest.approx(cap) for _, v in cases), "needs a case at the cap"
        uncapped = dataclasses.replace(rule, numbers={k: p for k, p in rule.numbers.items() if k != "cap"},
                                       tiers=() if rule.tier_base else rule.tiers, tier_base=None)
        assert any(rule_award(uncapped, firm_row(POLICIES[model], f), True)[0] > cap for f, _ in cases), \
            "needs a case above the cap"
    for tier in rule.tiers:
        tb = rule.tier_base or rule.base
        if kinds.KINDS[rule.kind].tier_value == "amount":
            assert any(f.get(tb) == tier.at and v == tier.value.value for f, v in cases), f"tier at {tier.at}"
        elif tier.at > 0:
            assert any(f.get(tb) == tier.at for f, _ in cases), f"needs a case at the band edge {tier.at}"
    if rule.eligibility:
        assert any(v == 0 and f.get(rule.base, 0) > 0 and not _eligible(rule, f) for f, v in cases), \
            "needs an ineligible claimant whose base would otherwise earn an award"
    if rule.kind in ("rate", "external_share", "per_unit") and rule.number("cap") is None:
        assert len({f.get(rule.base) for f, v in cases if v > 0}) >= 2, "needs two mid-range cases"


def _eligible(rule, facts):
    for c in rule.eligibility:
        value = facts.get(c.attribute, 0)
        ok = {"equals": value == c.value, "at_least": value >= c.value, "below": value < c.value}[c.op]
        if not ok:
            return False
    return True


@pytest.mark.parametrize("model", MODELS)
def test_every_article_with_rules_has_an_example_file(model):
    with_rules = {r.article for r in POLICIES[model].rules}
    assert with_rules == {e.article for m, e in CASES if m == model}
