"""Vectorised award kernels, one small pure function per award pattern, and :func:`evaluate`.

Money is in 萬元 and float64 throughout.  The kernels take NumPy arrays of claimant attributes and
return award arrays; none loops over firms in Python.  :func:`evaluate` applies every rule of a policy
to a columnar firm table in cache-sized chunks (the per-rule Python overhead is paid once per chunk,
not once per firm) and returns an :class:`Awards` table.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from sim import kinds
from sim.errors import FirmTableError
from sim.firms import FirmTable, firm_table

# The kernels live in the registry of rule kinds (one pure function per award pattern); re-exported here.
from sim.kinds import (
    capped_rate,
    co_funded_share,
    fixed_award,
    fmt,
    numpy_award,
    per_unit_award,
    share_of_external_funds,
    tiered_award,
)
from sim.policy import Condition, Policy, Rule

__all__ = ["Awards", "capped_rate", "co_funded_share", "eligible", "evaluate", "explain", "fixed_award",
           "per_unit_award", "rule_award", "share_of_external_funds", "tiered_award"]

DEFAULT_CHUNK = 1 << 15


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
def rule_award(rule: Rule, columns: Mapping[str, np.ndarray], inclusive: bool) -> np.ndarray:
    """The planned award of one rule for every claimant in ``columns`` (before the district split):
    the kind's kernel, then the eligibility conditions, then the award intensity."""
    award = numpy_award(rule, columns, inclusive)
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
        table = self.rule_table().groupby("domain")[["award", "district"]].sum()
        return table.reindex(list(self.policy.domain_keys), fill_value=0.0)


def evaluate(policy: Policy, firms: Any, *, chunk_size: int = DEFAULT_CHUNK,
             validate: bool = True, source: str = "<firm table>", first_row: int = 1) -> Awards:
    """Apply every rule of ``policy`` to a columnar firm table.

    ``firms`` is a pandas DataFrame, a mapping of column name to array, or a :class:`FirmTable`.
    With ``validate`` the table is checked against the policy's declared attributes first (a clear
    :class:`~sim.errors.FirmTableError` names the offending columns and rows).

    >>> import sim.policy
    >>> policy = sim.policy.load("template")
    >>> awards = evaluate(policy, {"rd_spending": [3000.0, 6000.0], "rd_increase": [150.0, 0.0]})
    >>> awards.frame()["t01-rd-increase"].tolist()
    [15.0, 50.0]
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, numbers.Integral) or chunk_size < 1:
        raise FirmTableError(f"chunk_size must be a whole number >= 1, got {chunk_size!r}")
    table = firms if isinstance(firms, FirmTable) else firm_table(policy, firms, source=source,
                                                                  validate=validate, first_row=first_row)
    inclusive = policy.reading.threshold_inclusive
    gross = np.empty((len(policy.rules), table.n), dtype=np.float64)
    for start in range(0, table.n, chunk_size):
        stop = min(start + chunk_size, table.n)
        chunk = {name: column[start:stop] for name, column in table.columns.items()}
        for row, rule in enumerate(policy.rules):
            gross[row, start:stop] = rule_award(rule, chunk, inclusive)
    return Awards(policy, gross, table)


# ----------------------------------------------------------------------------- explain
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
            values = ", ".join(f"{c.attribute} = {fmt(columns[c.attribute][0])}" for c in rule.eligibility)
            steps.append(f"eligibility {conditions}: {values} -> {'met' if ok else 'NOT met: no award'}")
        if ok:
            steps.extend(kinds.KINDS[rule.kind].explain(rule, base, tier_value, inclusive))
        award = rule_award(rule, columns, inclusive)[0]
        if rule.intensity.value != 1.0:
            steps.append(f"award intensity {fmt(rule.intensity.value)} applied")
        district = co_funded_share(award, rule.district_share.value)
        if rule.district_share.value != 1.0:
            steps.append(f"district share {fmt(rule.district_share.value)} -> district pays {fmt(district)}")
        out.append({
            "rule": rule.id, "article": rule.article, "name_en": rule.name_en,
            "award": float(award), "district": float(district), "steps": steps,
            "quote": rule.quote, "judgement": rule.judgement,
            "assumed": [name for name, p in rule.params().items() if p.assumed],
        })
    return out
