"""Hypothesis strategies for claimant tables that hit every rule's edges."""

import numpy as np
from hypothesis import strategies as st


def interesting_points(policy, name):
    """Values of attribute `name` where some rule changes regime: thresholds, tiers, cap kinks."""
    points = {0.0}
    for rule in policy.rules:
        if rule.base == name:
            if rule.number("threshold") is not None:
                points.add(rule.number("threshold").value)
            if rule.number("cap") is not None and rule.number("rate") is not None and rule.number("rate").value > 0:
                points.add(rule.number("cap").value / rule.number("rate").value)
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


def random_table(policy, n, rng, flag_share=0.2, top_count=6):
    """Columns for every input attribute: flags, counts 0..top_count-1, lognormal money (some negative
    where the attribute may be)."""
    table = {}
    for a in policy.input_attributes():
        if a.type == "bool":
            table[a.name] = (rng.random(n) < flag_share).astype(float)
        elif a.type == "int":
            table[a.name] = rng.integers(0, top_count, n).astype(float)
        else:
            table[a.name] = rng.lognormal(5, 2.5, n) - (rng.lognormal(4, 2, n) if a.min < 0 else 0)
    return table


@st.composite
def claimant_tables(draw, policy, max_rows=25, names=None):
    """Columns for every input attribute of `policy` (or only `names`)."""
    n = draw(st.integers(1, max_rows))
    attributes = [a for a in policy.input_attributes() if names is None or a.name in names]
    return {
        a.name: np.array(draw(st.lists(value_strategy(policy, a), min_size=n, max_size=n)))
        for a in attributes
    }
