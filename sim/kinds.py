"""The registry of rule kinds: every award pattern declared once.

A kind (:class:`Kind`) says which numbers a rule of that kind takes and their bounds, whether it has
tiers and a separate tier base, which attribute types its base may have, and it brings three
implementations that must agree to the bit:

- a small pure NumPy kernel (``capped_rate``, ``fixed_award``, ...), which :func:`sim.awards.evaluate`
  uses and which is documented by a doctest;
- a compiled kernel (numba) working on one chunk of claimants, reached through :func:`award_into`,
  whose per-rule numbers arrive packed in one float64 row (:meth:`Kind.pack`), not as arguments;
- the explanation text of ``fiscalsim awards --explain``.

Eligibility conditions, the award intensity and the district share are common to every kind and are
applied by the callers (:mod:`sim.awards`, :mod:`sim.fused`), not here.

Adding a kind touches this module (a kernel, its compiled twin, an explanation, an entry in
:data:`KINDS` and a branch in :func:`award_into`) and the tests; the loader, the fused kernel, the
scenario overrides and the catalogue read the registry.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np

from sim import jit
from sim.validation import MONEY_CEILING

NPARAM = 4  # packed numbers per rule (the widest kind uses four)


# ----------------------------------------------------------------------------- NumPy kernels
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

    ``tier_at`` must be increasing.  Star ratings: four stars 20萬, five stars 30萬.

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


def marginal_rate(base, tier_at, tier_rates, cap=np.inf):
    """Rates by band: ``tier_rates[i]`` of the part of the base between ``tier_at[i]`` and the next bound,
    summed, at most ``cap`` ("1% of exports up to 1000萬, 0.5% of the part above, at most 30萬").

    >>> marginal_rate(np.array([500.0, 1000.0, 3000.0, 9000.0]), [0, 1000], [0.01, 0.005], cap=30)
    array([ 5., 10., 20., 30.])
    """
    base = np.asarray(base, dtype=np.float64)
    award = np.zeros(base.shape)
    upper = [*tier_at[1:], np.inf]
    for lower, top, rate in zip(tier_at, upper, tier_rates):
        award = award + rate * np.clip(base - lower, 0.0, top - lower)
    return np.clip(award, 0.0, cap)


def co_funded_share(award, district_share):
    """The district-paid part of an award co-funded with a higher level (a 1:1 split gives 0.5).

    >>> co_funded_share(np.array([300.0, 1000.0]), district_share=0.5)
    array([150., 500.])
    """
    return np.asarray(award, dtype=np.float64) * district_share


# ----------------------------------------------------------------------------- declarations
@dataclass(frozen=True)
class Number:
    """A number a rule of some kind takes: its name, whether it is required, its bounds."""

    name: str
    required: bool
    low: float = 0.0
    high: float = MONEY_CEILING  # money: at most one trillion yuan; shares: 1
    money: bool = True  # 萬元 or a share


@dataclass(frozen=True)
class Kind:
    name: str
    code: int  # the compiled kernel's branch in :func:`award_into`
    summary: str
    numbers: tuple[Number, ...]
    base_types: tuple[str, ...]
    numpy: Callable  # (rule, columns, inclusive) -> award array, before eligibility and intensity
    explain: Callable  # (rule, base value, tier-base value, inclusive) -> list of arithmetic steps
    pack: Callable  # rule -> up to NPARAM floats for the compiled kernel
    tiers: str = "none"  # "none", "optional" or "required"
    tier_value: str = "amount"  # the key of each tier's value
    tier_value_high: float | None = None  # bound of a tier's value (1 for rates)
    tier_values_rise: bool = True  # tier values must not fall as `at` rises
    tier_base: bool = False  # tiers may read another attribute (`tier_base`)

    def number(self, name: str) -> Number | None:
        return next((n for n in self.numbers if n.name == name), None)


def _value(param, default=None):
    return default if param is None else param.value


def fmt(x: float) -> str:
    """A number for explanations: thousands separators, at most four decimals, no trailing zeros.

    >>> fmt(1234.5), fmt(0.05), fmt(200.0)
    ('1,234.5', '0.05', '200')
    """
    return f"{x:,.4f}".rstrip("0").rstrip(".")


def _tiers(rule):
    return [t.at for t in rule.tiers], [t.value.value for t in rule.tiers]


# rate -------------------------------------------------------------------------------------
def _rate_numpy(rule, columns, inclusive):
    award = capped_rate(columns[rule.base], rule.number("rate").value, _value(rule.number("cap"), np.inf),
                        _value(rule.number("threshold")), inclusive)
    if rule.tiers:
        at, values = _tiers(rule)
        award = np.maximum(award, tiered_award(columns[rule.tier_base], at, values, inclusive))
    return award


def _rate_explain(rule, base, tier_value, inclusive):
    ge = ">=" if inclusive else ">"
    rate, cap = rule.number("rate").value, _value(rule.number("cap"), np.inf)
    threshold = rule.number("threshold")
    steps = []
    if threshold is not None:
        met = base >= threshold.value if inclusive else base > threshold.value
        steps.append(f"{rule.base} = {fmt(base)} {ge} threshold {fmt(threshold.value)}? {'yes' if met else 'no'}")
    capped = capped_rate(np.array([base]), rate, cap, _value(threshold), inclusive)[0]
    cap_text = f", cap {fmt(cap)}" if np.isfinite(cap) else ""
    steps.append(f"{fmt(rate * 100)}% x {rule.base} {fmt(base)} = {fmt(rate * base)}{cap_text} -> {fmt(capped)}")
    if rule.tiers:
        at, values = _tiers(rule)
        direct = tiered_award(np.array([tier_value]), at, values, inclusive)[0]
        tiers = ", ".join(f"{rule.tier_base} {ge} {fmt(a)}: {fmt(v)}" for a, v in zip(at, values))
        steps.append(f"direct tiers ({tiers}); {rule.tier_base} = {fmt(tier_value)} -> {fmt(direct)}; "
                     f"the larger of the two: {fmt(max(capped, direct))}")
    return steps


def _rate_pack(rule):
    threshold = rule.number("threshold")
    return (rule.number("rate").value, _value(rule.number("cap"), np.inf),
            0.0 if threshold is None else threshold.value, 0.0 if threshold is None else 1.0)


# external share ---------------------------------------------------------------------------
def _share_numpy(rule, columns, inclusive):
    return share_of_external_funds(columns[rule.base], rule.number("rate").value, _value(rule.number("cap"), np.inf))


def _share_explain(rule, base, tier_value, inclusive):
    rate, cap = rule.number("rate").value, _value(rule.number("cap"), np.inf)
    award = share_of_external_funds(np.array([base]), rate, cap)[0]
    cap_text = f", cap {fmt(cap)}" if np.isfinite(cap) else ""
    return [f"{fmt(rate * 100)}% x {rule.base} {fmt(base)} = {fmt(rate * base)}{cap_text} -> {fmt(award)}"]


def _share_pack(rule):
    return (rule.number("rate").value, _value(rule.number("cap"), np.inf))


# fixed ------------------------------------------------------------------------------------
def _fixed_numpy(rule, columns, inclusive):
    return fixed_award(columns[rule.base], rule.number("amount").value)


def _fixed_explain(rule, base, tier_value, inclusive):
    return [f"{rule.base} is set -> fixed {fmt(rule.number('amount').value)}"]


def _fixed_pack(rule):
    return (rule.number("amount").value,)


# tiered -----------------------------------------------------------------------------------
def _tiered_numpy(rule, columns, inclusive):
    at, values = _tiers(rule)
    return tiered_award(columns[rule.base], at, values, inclusive)


def _tiered_explain(rule, base, tier_value, inclusive):
    ge = ">=" if inclusive else ">"
    at, values = _tiers(rule)
    tiers = ", ".join(f"{ge} {fmt(a)}: {fmt(v)}" for a, v in zip(at, values))
    award = tiered_award(np.array([base]), at, values, inclusive)[0]
    return [f"{rule.base} = {fmt(base)} against tiers ({tiers}) -> {fmt(award)}"]


def _no_numbers(rule):
    return ()


# per unit ---------------------------------------------------------------------------------
def _unit_numpy(rule, columns, inclusive):
    return per_unit_award(columns[rule.base], rule.number("amount").value, _value(rule.number("cap"), np.inf))


def _unit_explain(rule, base, tier_value, inclusive):
    cap = _value(rule.number("cap"), np.inf)
    cap_text = f", cap {fmt(cap)}" if np.isfinite(cap) else ""
    award = per_unit_award(np.array([base]), rule.number("amount").value, cap)[0]
    return [f"{fmt(base)} x {fmt(rule.number('amount').value)} per unit{cap_text} -> {fmt(award)}"]


def _unit_pack(rule):
    return (rule.number("amount").value, _value(rule.number("cap"), np.inf))


# tiered rate (rates by band) ---------------------------------------------------------------
def _bands_numpy(rule, columns, inclusive):
    at, rates = _tiers(rule)
    return marginal_rate(columns[rule.base], at, rates, _value(rule.number("cap"), np.inf))


def _bands_explain(rule, base, tier_value, inclusive):
    at, rates = _tiers(rule)
    upper = [*at[1:], np.inf]
    parts = []
    for lower, top, rate in zip(at, upper, rates):
        part = min(max(base - lower, 0.0), top - lower)
        if part > 0:
            parts.append(f"{fmt(rate * 100)}% x {fmt(part)} (the part from {fmt(lower)}"
                         + (f" to {fmt(top)})" if np.isfinite(top) else " up)"))
    cap = _value(rule.number("cap"), np.inf)
    award = marginal_rate(np.array([base]), at, rates, cap)[0]
    cap_text = f", cap {fmt(cap)}" if np.isfinite(cap) else ""
    return [f"{rule.base} = {fmt(base)}: " + " + ".join(parts or ["nothing"]) + f"{cap_text} -> {fmt(award)}"]


def _bands_pack(rule):
    return (_value(rule.number("cap"), np.inf),)


RATE = Number("rate", True, 0.0, 1.0, money=False)
CAP = Number("cap", False)
AMOUNT = Number("amount", True)

KINDS: Mapping[str, Kind] = {kind.name: kind for kind in (
    Kind("rate", 0, "a share of a base, with an optional cap, threshold and direct-award tiers",
         (RATE, CAP, Number("threshold", False)), ("float", "int"), _rate_numpy, _rate_explain, _rate_pack,
         tiers="optional", tier_base=True),
    Kind("external_share", 1, "a share of external funds received, with an optional cap",
         (RATE, CAP), ("float", "int"), _share_numpy, _share_explain, _share_pack),
    Kind("fixed", 2, "a fixed amount for a recognition or event", (AMOUNT,), ("bool",),
         _fixed_numpy, _fixed_explain, _fixed_pack),
    Kind("tiered", 3, "the amount of the highest tier reached", (), ("int", "float"),
         _tiered_numpy, _tiered_explain, _no_numbers, tiers="required"),
    Kind("per_unit", 4, "an amount per unit counted, with an optional cap", (AMOUNT, CAP), ("int",),
         _unit_numpy, _unit_explain, _unit_pack),
    Kind("tiered_rate", 5, "rates by band of the base (x% up to A, y% above), with an optional cap", (CAP,),
         ("float", "int"), _bands_numpy, _bands_explain, _bands_pack, tiers="required", tier_value="rate",
         tier_value_high=1.0, tier_values_rise=False),
)}


def kind(name: str) -> Kind:
    return KINDS[name]


def all_numbers() -> tuple[str, ...]:
    """Every number name some kind takes (rule fields a scenario may override)."""
    return tuple(dict.fromkeys(n.name for k in KINDS.values() for n in k.numbers))


def numpy_award(rule, columns, inclusive: bool) -> np.ndarray:
    """The rule's award by its kind's NumPy kernel (before eligibility, intensity and district share)."""
    return KINDS[rule.kind].numpy(rule, columns, inclusive)


def packed(rule) -> np.ndarray:
    """The rule's numbers for the compiled kernel, padded to :data:`NPARAM`."""
    values = np.zeros(NPARAM)
    numbers = KINDS[rule.kind].pack(rule)
    values[:len(numbers)] = numbers
    return values


# ----------------------------------------------------------------------------- compiled twins
_compiled = jit.kernel()


@_compiled
def clip(value, cap):
    if value < 0.0:
        return 0.0
    if value > cap:
        return cap
    return value


@_compiled
def rate_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    rate, cap, threshold, has_threshold = p[0], p[1], p[2], p[3]
    for i in range(m):
        out[i] = clip(rate * base[i], cap)
    if has_threshold != 0.0:
        if inclusive:
            for i in range(m):
                if not base[i] >= threshold:
                    out[i] = 0.0
        else:
            for i in range(m):
                if not base[i] > threshold:
                    out[i] = 0.0
    for t in range(n_tiers):  # direct-award tiers rise in `at` and amount: the last reached wins
        at, direct = tiers[t, 0], tiers[t, 1]
        for i in range(m):
            reached = tier_col[i] >= at if inclusive else tier_col[i] > at
            if reached and direct > out[i]:
                out[i] = direct


@_compiled
def share_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    rate, cap = p[0], p[1]  # read once: a read of p inside the loop keeps it from being vectorised
    for i in range(m):
        out[i] = clip(rate * base[i], cap)


@_compiled
def fixed_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    amount = p[0]
    for i in range(m):
        out[i] = amount if base[i] != 0.0 else 0.0


@_compiled
def tiered_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    for i in range(m):
        out[i] = 0.0
    for t in range(n_tiers):
        at, value = tiers[t, 0], tiers[t, 1]
        for i in range(m):
            if (base[i] >= at) if inclusive else (base[i] > at):
                out[i] = value


@_compiled
def unit_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    amount, cap = p[0], p[1]
    for i in range(m):
        out[i] = clip(base[i] * amount, cap)


@_compiled
def bands_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    cap = p[0]
    for i in range(m):
        award = 0.0
        for t in range(n_tiers):
            lower = tiers[t, 0]
            width = (tiers[t + 1, 0] if t + 1 < n_tiers else np.inf) - lower
            part = base[i] - lower
            if part < 0.0:
                part = 0.0
            if part > width:
                part = width
            award = award + tiers[t, 1] * part
        out[i] = clip(award, cap)


@_compiled
def award_into(code, base, tier_col, m, p, tiers, n_tiers, inclusive, out):
    """One rule's award for the first ``m`` claimants of a chunk into ``out[:m]``, by kind code."""
    if code == 0:
        rate_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
    elif code == 1:
        share_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
    elif code == 2:
        fixed_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
    elif code == 3:
        tiered_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
    elif code == 4:
        unit_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
    else:
        bands_kernel(base, tier_col, m, p, tiers, n_tiers, inclusive, out)
