"""Hypothesis strategies for claimant tables that hit every rule's edges."""

import numpy as np
from hypothesis import strategies as st


def interesting_points(policy, name):
    """Values of attribute `name` where some rule changes regime: thresholds, tiers, cap kinks."""
    points = {0.0}
    for rule in policy.rules:
        if rule.base == name:
            if rule.threshold is not None:
                points.add(rule.threshold.value)
            if rule.cap is not None and rule.rate is not None and rule.rate.value > 0:
                points.add(rule.cap.value / rule.rate.value)
            if rule.kind == "tiered":
                points.update(t.at for t in rule.tiers)
        if rule.tier_base == name:
            points.update(t.at for t in rule.tiers)
        for c in rule.eligibility:
            if c.attribute == name:
                points.add(c.value)
    near = {p + d for p in points for d in (-0.01, 0.01)}
    return sorted(p for p in points | near if p >= 0 or name == "rd_increase")


def value_strategy(policy, attribute):
    if attribute.type == "bool":
        return st.sampled_from([0.0, 1.0])
    if attribute.type == "int":
        top = 5 if "stars" in attribute.unit or "grade" in attribute.unit else 12
        return st.integers(0, top).map(float)
    low = -20000.0 if attribute.min < 0 else 0.0
    return st.one_of(
        st.sampled_from(interesting_points(policy, attribute.name)),
        st.floats(low, 100000.0, allow_nan=False, allow_infinity=False),
    )


@st.composite
def claimant_tables(draw, policy, max_rows=25, names=None):
    """Columns for every input attribute of `policy` (or only `names`)."""
    n = draw(st.integers(1, max_rows))
    attributes = [a for a in policy.input_attributes() if names is None or a.name in names]
    return {
        a.name: np.array(draw(st.lists(value_strategy(policy, a), min_size=n, max_size=n)))
        for a in attributes
    }
