"""Vectorised award kernels, one small pure function per award pattern, and :func:`evaluate`.

Money is in 萬元 and float64 throughout.  The kernels take NumPy arrays of claimant attributes and
return award arrays; none loops over firms in Python.  :func:`evaluate` applies every rule of a policy
to a columnar firm table in cache-sized chunks (the per-rule Python overhead is paid once per chunk,
not once per firm) and returns an :class:`Awards` table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim.firms import FirmTable, firm_table
from sim.policy import Condition, Policy, Rule

DEFAULT_CHUNK = 1 << 15


# ----------------------------------------------------------------------------- kernels
def capped_rate(base, rate, cap=np.inf, threshold=None, inclusive=True):
    """``rate`` x ``base``, at most ``cap``, nothing below ``threshold`` (never negative).

    ``inclusive`` reads the text's 「以上」: a base equal to the threshold qualifies.

    >>> capped_rate(np.array([199.0, 200.0, 3000.0, 5000.0]), rate=0.05, cap=200, threshold=200)
    array([  0.,  10., 150., 200.])
    """
    award = np.clip(rate * np.asarray(base, dtype=np.float64), 0.0, cap)
    if threshold is None:
        return award
    met = np.asarray(base) >= threshold if inclusive else np.asarray(base) > threshold
    return np.where(met, award, 0.0)


def share_of_external_funds(funds_received, share, cap=np.inf):
    """``share`` of the external (national, provincial, municipal) funds actually received, at most ``cap``.

    >>> share_of_external_funds(np.array([0.0, 400.0, 4000.0]), share=0.25, cap=500)
    array([  0., 100., 500.])
    """
    return np.clip(share * np.asarray(funds_received, dtype=np.float64), 0.0, cap)


def fixed_award(flag, amount):
    """``amount`` for every claimant whose ``flag`` (a recognition, a listing) is set.

    >>> fixed_award(np.array([0, 1, 1]), amount=50.0)
    array([ 0., 50., 50.])
    """
    return np.where(np.asarray(flag) != 0, float(amount), 0.0)


def tiered_award(base, tier_at, tier_amounts, inclusive=True):
    """The amount of the highest tier whose lower bound ``tier_at`` the base reaches; 0 below all.

    ``tier_at`` must be increasing.  Article 16's star ratings: four stars 20萬, five stars 30萬.

    >>> tiered_award(np.array([3, 4, 5]), tier_at=[4, 5], tier_amounts=[20.0, 30.0])
    array([ 0., 20., 30.])
    """
    steps = np.concatenate(([0.0], np.asarray(tier_amounts, dtype=np.float64)))
    reached = np.searchsorted(np.asarray(tier_at, dtype=np.float64), np.asarray(base),
                              side="right" if inclusive else "left")
    return steps[reached]


def per_unit_award(count, amount_per_unit, cap=np.inf):
    """``count`` x ``amount_per_unit`` (per product, per award, per incubatee), at most ``cap``.

    >>> per_unit_award(np.array([0, 1, 3]), amount_per_unit=15.0)
    array([ 0., 15., 45.])
    """
    return np.clip(np.asarray(count, dtype=np.float64) * amount_per_unit, 0.0, cap)


def co_funded_share(award, district_share):
    """The district-paid part of an award co-funded with the city (article 11: 市區1:1 gives 0.5).

    >>> co_funded_share(np.array([300.0, 1000.0]), district_share=0.5)
    array([150., 500.])
    """
    return np.asarray(award, dtype=np.float64) * district_share


def eligible(columns: Mapping[str, np.ndarray], conditions: tuple[Condition, ...]) -> np.ndarray:
    """True where every eligibility condition holds.

    >>> from sim.policy import Condition
    >>> eligible({"stars": np.array([2, 3, 5])}, (Condition("stars", "at_least", 3),))
    array([False,  True,  True])
    """
    mask = None
    for condition in conditions:
        values = np.asarray(columns[condition.attribute])
        if condition.op == "equals":
            ok = values == condition.value
        elif condition.op == "at_least":
            ok = values >= condition.value
        else:
            ok = values < condition.value
        mask = ok if mask is None else mask & ok
    return mask


# ----------------------------------------------------------------------------- one rule
def _value(param, default=None):
    return default if param is None else param.value


def rule_award(rule: Rule, columns: Mapping[str, np.ndarray], inclusive: bool = True) -> np.ndarray:
    """The planned award of one rule for every claimant in ``columns`` (before the district split)."""
    base = columns[rule.base]
    cap = _value(rule.cap, np.inf)
    if rule.kind == "rate":
        award = capped_rate(base, rule.rate.value, cap, _value(rule.threshold), inclusive)
        if rule.tiers:
            direct = tiered_award(columns[rule.tier_base], [t.at for t in rule.tiers],
                                  [t.amount.value for t in rule.tiers], inclusive)
            award = np.maximum(award, direct)
    elif rule.kind == "external_share":
        award = share_of_external_funds(base, rule.rate.value, cap)
    elif rule.kind == "fixed":
        award = fixed_award(base, rule.amount.value)
    elif rule.kind == "tiered":
        award = tiered_award(base, [t.at for t in rule.tiers], [t.amount.value for t in rule.tiers],
                             inclusive)
    elif rule.kind == "per_unit":
        award = per_unit_award(base, rule.amount.value, cap)
    else:  # the loader admits only the kinds above
        raise ValueError(f"rule {rule.id}: unknown kind {rule.kind!r}")
    if rule.eligibility:
        award = np.where(eligible(columns, rule.eligibility), award, 0.0)
    if rule.intensity.value != 1.0:
        award = award * rule.intensity.value
    return award


# ----------------------------------------------------------------------------- evaluate
@dataclass(frozen=True)
class Awards:
    """Awards per rule (rows, in the policy's rule order) and claimant (columns), in 萬元."""

    policy: Policy
    gross: np.ndarray  # (n_rules, n) float64: the planned award
    firms: FirmTable

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return self.policy.rule_ids

    @property
    def district_shares(self) -> np.ndarray:
        return np.array([r.district_share.value for r in self.policy.rules])

    @property
    def district(self) -> np.ndarray:
        """The district-paid part, (n_rules, n)."""
        return co_funded_share(self.gross, self.district_shares[:, None])

    def frame(self, district: bool = False) -> pd.DataFrame:
        """One row per claimant, one column per rule (萬元)."""
        values = self.district if district else self.gross
        index = pd.Index(self.firms.ids, name="firm_id") if self.firms.ids is not None else None
        return pd.DataFrame(values.T, columns=list(self.rule_ids), index=index)

    def rule_table(self) -> pd.DataFrame:
        """Totals per rule: claimants with an award, gross and district-paid 萬元 (float64 sums)."""
        gross = self.gross.sum(axis=1, dtype=np.float64)
        return pd.DataFrame({
            "rule": self.rule_ids,
            "article": [r.article for r in self.policy.rules],
            "domain": [r.domain for r in self.policy.rules],
            "claimants": (self.gross > 0).sum(axis=1),
            "award": gross,
            "district": gross * self.district_shares,
        })

    def domain_table(self) -> pd.DataFrame:
        """Totals per funding domain, in the model's domain order."""
        table = self.rule_table().groupby("domain", sort=False)[["award", "district"]].sum()
        return table.reindex(list(self.policy.domain_keys), fill_value=0.0)


def evaluate(policy: Policy, firms: Any, *, chunk_size: int = DEFAULT_CHUNK,
             validate: bool = True, source: str = "<firm table>") -> Awards:
    """Apply every rule of ``policy`` to a columnar firm table.

    ``firms`` is a pandas DataFrame, a mapping of column name to array, or a :class:`FirmTable`.
    With ``validate`` the table is checked against the policy's declared attributes first (a clear
    :class:`~sim.errors.FirmTableError` names the offending columns and rows).

    >>> import sim.policy
    >>> policy = sim.policy.load()
    >>> awards = evaluate(policy, {"rd_spending": [3000.0, 12000.0], "rd_increase": [1000.0, 0.0],
    ...                            "tech_sme_scale": [1, 1]})
    >>> awards.frame()["a13-rd-increase-sme"].tolist()
    [50.0, 200.0]
    """
    table = firms if isinstance(firms, FirmTable) else firm_table(policy, firms, source=source,
                                                                  validate=validate)
    inclusive = policy.reading.threshold_inclusive
    gross = np.empty((len(policy.rules), table.n), dtype=np.float64)
    chunk_size = max(1, int(chunk_size))
    for start in range(0, table.n, chunk_size):
        stop = min(start + chunk_size, table.n)
        chunk = {name: column[start:stop] for name, column in table.columns.items()}
        for row, rule in enumerate(policy.rules):
            gross[row, start:stop] = rule_award(rule, chunk, inclusive)
    return Awards(policy, gross, table)


# ----------------------------------------------------------------------------- explain
def _fmt(x: float) -> str:
    return f"{x:,.4f}".rstrip("0").rstrip(".")


def explain(policy: Policy, firm: Mapping[str, float]) -> list[dict]:
    """Why one claimant gets what it gets: for every rule whose base is non-zero, the arithmetic.

    ``firm`` maps attribute names to values (missing attributes take the model's defaults).  Each
    entry holds the rule, its quote, the steps of the arithmetic and the award and district part.
    """
    columns = {}
    for attribute in policy.input_attributes():
        value = firm.get(attribute.name, attribute.default)
        columns[attribute.name] = np.array([0.0 if value is None else float(value)])
    inclusive = policy.reading.threshold_inclusive
    ge = ">=" if inclusive else ">"
    out = []
    for rule in policy.rules:
        base = columns[rule.base][0]
        tier_value = columns[rule.tier_base][0] if rule.tier_base else 0.0
        if base == 0 and tier_value == 0:
            continue
        steps = []
        ok = True
        if rule.eligibility:
            ok = bool(eligible(columns, rule.eligibility)[0])
            conditions = ", ".join(c.describe() for c in rule.eligibility)
            values = ", ".join(f"{c.attribute} = {_fmt(columns[c.attribute][0])}"
                               for c in rule.eligibility)
            steps.append(f"eligibility {conditions}: {values} -> {'met' if ok else 'NOT met: no award'}")
        if rule.eligibility and not ok:
            pass
        elif rule.kind in ("rate", "external_share"):
            rate, cap = rule.rate.value, _value(rule.cap, np.inf)
            if rule.threshold is not None:
                met = base >= rule.threshold.value if inclusive else base > rule.threshold.value
                steps.append(f"{rule.base} = {_fmt(base)} {ge} threshold {_fmt(rule.threshold.value)}"
                             f"? {'yes' if met else 'no'}")
            raw = rate * base
            capped = capped_rate(np.array([base]), rate, cap, _value(rule.threshold), inclusive)[0]
            cap_text = f", cap {_fmt(cap)}" if np.isfinite(cap) else ""
            steps.append(f"{_fmt(rate * 100)}% x {rule.base} {_fmt(base)} = {_fmt(raw)}{cap_text}"
                         f" -> {_fmt(capped)}")
            if rule.tiers:
                direct = tiered_award(np.array([tier_value]), [t.at for t in rule.tiers],
                                      [t.amount.value for t in rule.tiers], inclusive)[0]
                tiers = ", ".join(f"{rule.tier_base} {ge} {_fmt(t.at)}: {_fmt(t.amount.value)}"
                                  for t in rule.tiers)
                steps.append(f"direct tiers ({tiers}); {rule.tier_base} = {_fmt(tier_value)} -> "
                             f"{_fmt(direct)}; the larger of the two: {_fmt(max(capped, direct))}")
        elif rule.kind == "fixed":
            steps.append(f"{rule.base} is set -> fixed {_fmt(rule.amount.value)}")
        elif rule.kind == "tiered":
            tiers = ", ".join(f"{ge} {_fmt(t.at)}: {_fmt(t.amount.value)}" for t in rule.tiers)
            steps.append(f"{rule.base} = {_fmt(base)} against tiers ({tiers})")
        elif rule.kind == "per_unit":
            cap = _value(rule.cap, np.inf)
            cap_text = f", cap {_fmt(cap)}" if np.isfinite(cap) else ""
            steps.append(f"{_fmt(base)} x {_fmt(rule.amount.value)} per unit{cap_text}")
        award = rule_award(rule, columns, inclusive)[0]
        if rule.intensity.value != 1.0:
            steps.append(f"award intensity {_fmt(rule.intensity.value)} applied")
        district = co_funded_share(award, rule.district_share.value)
        if rule.district_share.value != 1.0:
            steps.append(f"district share {_fmt(rule.district_share.value)} -> district pays "
                         f"{_fmt(district)}")
        out.append({
            "rule": rule.id, "article": rule.article, "name_en": rule.name_en,
            "award": float(award), "district": float(district), "steps": steps,
            "quote": rule.quote, "judgement": rule.judgement,
            "assumed": [name for name, p in rule.params().items() if p.assumed],
        })
    return out
