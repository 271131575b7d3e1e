"""Multi-year liabilities: what one year's awards commit the district to in the years after.

A model folder's ``years.toml`` (read only by multi-year runs, ``fiscalsim run --years 2024-2026``) says:

- ``[terms.<rule>]``: how long a rule's award lasts (``years = 3``: the year it is granted and two more) and
  what a claimant must still be for a later year's payment (``continues``: a key of ``[continuations]``,
  each with its yearly ``survival`` probability); or that a rule's award falls due ``after`` years to the
  claimants of another rule (``follows``) that still qualify then.  Each term quotes the text.
- ``[growth]``: the yearly growth of the number of claimants and of their money figures;
- ``[renewal]``: whether later years have new awards of their own (the package renewed as it stands);
- ``[budgets]``: each later year's claims budget as a factor of the year before's first (by domain where a
  source gives one).

What a run computes, per replication and year (every sum in float64):

- **new awards**: the first year's are the one-year run's, bit for bit; a later year's come from a fresh
  draw of the population (its own stream) with claimant numbers and money grown; for a term rule only the
  year's entrants start a new award (each claimant of the draw is an entrant with probability
  ``entrants``; the others are already carried), and a rule that follows another has no new awards once
  the claimants of its source rule can reach it;
- **commitments**: each claimant of a term rule in year t is paid the same award again in year t + j
  (j < ``years`` less the years of its term already paid; every year for ``no_end``) if it still qualifies,
  each year independently with probability ``survival``; of the first year's claimants only the entrants
  start a term, the others carry one from before the horizon (:func:`term_year`); a follower
  rule pays its (fixed) award in year t + ``after`` to the source rule's claimants of year t that still
  qualify.  So N claimants of a three-year rule of amount a leave N s a in year 2 and N s^2 a in year 3
  in expectation.

Survival and entry are drawn from their own seeded streams, per replication, rule and year of grant.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sim.errors import FiscalsimError
from sim.headline import rank_correlations
from sim.policy import Policy, resolve_model, verbatim_quote
from sim.validation import (
    FrozenMap,
    Param,
    Problems,
    Table,
    canonical_json,
    check_range,
    read_toml,
)

YEARS_FILE = "years.toml"
YEARS_STREAM = 0x59454152  # spawn key of the survival and entry draws ("YEAR")
GROWTH_STREAM = 0x47524F57  # spawn key of the later years' population seeds ("GROW")
ORIGINS = ("new", "commitment")
MAX_YEARS = 10
DRIVER_DRAWS = 10  # assumption draws needed before a driver of the commitments is named


class YearsError(FiscalsimError):
    """A multi-year model file or setting that cannot work."""


# ----------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Continuation:
    """What a claimant must still be for a later year's payment, and the yearly probability it is."""

    key: str
    label_zh: str
    label_en: str
    survival: Param


@dataclass(frozen=True)
class Term:
    """How a rule's award carries into later years: ``years`` of payments (None: every year, the text sets no
    end), or one payment ``after`` years to the claimants of the rule it ``follows``; later payments while the
    claimant ``continues``."""

    rule: str
    continues: str
    quote: str
    why: str
    years: int | None = 1
    entrants: Param | None = None
    follows: str | None = None
    after: int = 0
    cumulative: bool = False  # the rule's cap holds for a claimant over all years together


@dataclass(frozen=True)
class YearsModel:
    path: str
    renewed: bool
    renewal_why: str
    claimant_growth: Param
    amount_growth: Param
    budget_factor: Param
    by_year: Mapping[int, Mapping[str, Param]]  # later year -> domain -> budget factor (a source's)
    continuations: Mapping[str, Continuation]
    terms: Mapping[str, Term]
    groups: Mapping[str, tuple[str, str]]  # assumption group -> (label_zh, label_en)
    raw: str = field(default="{}", repr=False)

    def numbers(self) -> dict[str, Param]:
        """Every number of the file by its name (``growth.claimants``, ``terms.<rule>.entrants``, ...)."""
        out = {"growth.claimants": self.claimant_growth, "growth.amounts": self.amount_growth,
               "budgets.later_years": self.budget_factor}
        for year, domains in self.by_year.items():
            for domain, p in domains.items():
                out[f"budgets.by_year.{year}.{domain}"] = p
        for key, c in self.continuations.items():
            out[f"continuations.{key}.survival"] = c.survival
        for rule, t in self.terms.items():
            if t.entrants is not None:
                out[f"terms.{rule}.entrants"] = t.entrants
        return out

    def uncertain(self) -> dict[str, Param]:
        return {k: p for k, p in self.numbers().items() if p.uncertainty is not None}

    def table(self) -> pd.DataFrame:
        """The file's numbers, each with its value, range and reason (for the report and the catalogue)."""
        rows = []
        for name, p in self.numbers().items():
            u = p.uncertainty
            rows.append({"number": name, "value": p.value, "assumed": p.assumed, "low": u.low if u else np.nan,
                         "high": u.high if u else np.nan, "group": u.group if u else "", "why": p.why or p.derived})
        return pd.DataFrame(rows)


def load_years(model: str | Path | None, policy: Policy) -> YearsModel:
    """``years.toml`` of a model folder, checked against the policy; a clear message if it is missing."""
    folder = resolve_model(model)
    data, shown = read_toml(folder / YEARS_FILE, YearsError,
                            f"no {YEARS_FILE} in the model folder {folder}: a multi-year run needs one saying how "
                            "awards carry into later years (see models/README.md); or run one year")
    return years_from_dict(data, policy, shown)


_TOP = {"renewal", "growth", "budgets", "continuations", "terms", "groups"}


def years_from_dict(data: Mapping[str, Any], policy: Policy, origin: str = "<years>",
                    all_used: bool = True) -> YearsModel:
    """A multi-year model from its data, checked against the policy (``all_used``: every group of
    ``[groups]`` must be named by a number, as in a model file; a scenario may hold a group's numbers)."""
    problems = Problems(origin, YearsError, "the multi-year model")
    top = Table(data, "", problems, allowed=_TOP)
    for key in ("renewal", "growth", "budgets"):
        if key not in top.data:
            problems.add(f"[{key}]", "is required")
    source = policy.source_text

    renewal = Table(top.data.get("renewal", {}), "[renewal]", problems, allowed={"renewed", "assumed", "quote", "why"})
    renewed = renewal.bool("renewed")
    renewal_why = renewal.str("why")
    verbatim_quote(renewal, source)

    growth = Table(top.data.get("growth", {}), "[growth]", problems, allowed={"claimants", "amounts"})
    claimant_growth, amount_growth = growth.param("claimants"), growth.param("amounts")
    for key, p in (("claimants", claimant_growth), ("amounts", amount_growth)):
        check_range(problems, "[growth]", key, p, -0.5, 1.0)
        _check_uncertain_range(problems, "[growth]", key, p, -0.5, 1.0)

    factor, by_year = _budgets(top.data.get("budgets", {}), policy, problems)
    groups = _groups(top.data.get("groups", {}), problems)
    continuations = _continuations(top.data.get("continuations", {}), problems)
    terms = _terms(top.data.get("terms", {}), policy, continuations, source, problems)
    model = YearsModel(origin, renewed, renewal_why, claimant_growth or Param(0.0), amount_growth or Param(0.0),
                       factor or Param(1.0), FrozenMap({y: FrozenMap(d) for y, d in by_year.items()}),
                       FrozenMap(continuations), FrozenMap(terms), FrozenMap(groups), canonical_json(dict(data)))
    for name, p in model.uncertain().items():
        if p.uncertainty.group not in groups:
            problems.add(name, f"group {p.uncertainty.group!r} is not in [groups] (known: "
                         f"{', '.join(sorted(groups)) or 'none'}); add [groups.{p.uncertainty.group}] with label_zh "
                         "and label_en")
    used = {p.uncertainty.group for p in model.uncertain().values()}
    for key in sorted(set(groups) - used) if all_used else ():
        problems.add(f"[groups.{key}]", "no number of the file names this group; remove it or use it")
    problems.raise_if_any()
    return model


def _budgets(raw: Any, policy: Policy, problems: Problems) -> tuple[Param | None, dict[int, dict[str, Param]]]:
    """``[budgets]``: the assumed factor of later years, and the factors a source gives by year and domain."""
    budgets = Table(raw, "[budgets]", problems, allowed={"later_years", "by_year"})
    factor = budgets.param("later_years")
    check_range(problems, "[budgets]", "later_years", factor, 0.0, 10.0)
    _check_uncertain_range(problems, "[budgets]", "later_years", factor, 0.0, 10.0)
    by_year: dict[int, dict[str, Param]] = {}
    raw_years = budgets.data.get("by_year", {})
    if not isinstance(raw_years, dict):
        problems.add("[budgets]", f"by_year must be a table of year = {{ domain = factor }}, got {raw_years!r}")
        raw_years = {}
    for year_text, domains in raw_years.items():
        where = f"[budgets.by_year.{year_text}]"
        if not re.fullmatch(r"\d{4}", str(year_text)):
            problems.add(where, f"{year_text!r} is not a year (write it as 2025)")
            continue
        t = Table(domains, where, problems, allowed=set(policy.domain_keys))
        by_year[int(year_text)] = {}
        for key in t.data:
            p = t.param(key)
            check_range(problems, where, key, p, 0.0, 10.0)
            if p is not None:
                by_year[int(year_text)][key] = p
    return factor, by_year


def _groups(raw: Any, problems: Problems) -> dict[str, tuple[str, str]]:
    groups = {}
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        t = Table(value, f"[groups.{key}]", problems, allowed={"label_zh", "label_en"})
        groups[key] = (t.str("label_zh"), t.str("label_en"))
    return groups


def _continuations(raw: Any, problems: Problems) -> dict[str, Continuation]:
    continuations = {}
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        where = f"[continuations.{key}]"
        t = Table(value, where, problems, allowed={"label_zh", "label_en", "survival"})
        survival = t.param("survival")
        check_range(problems, where, "survival", survival, 0.0, 1.0)
        _check_uncertain_range(problems, where, "survival", survival, 0.0, 1.0)
        if survival is not None:
            continuations[key] = Continuation(key, t.str("label_zh"), t.str("label_en"), survival)
    return continuations


def _check_uncertain_range(problems: Problems, where: str, key: str, p: Param | None, low: float,
                           high: float) -> None:
    u = p.uncertainty if p is not None else None
    if u is not None and (u.low < low or u.high > high):
        problems.add(where, f"the range of {key} [{u.low:g}, {u.high:g}] must lie within [{low:g}, {high:g}]")


def _cumulative_term(t: Table, rule, quote: str, problems: Problems) -> Term | None:
    """``cumulative_cap = true``: the rule's cap holds for a claimant over all years (「累計最高不超過」)."""
    where = t.where
    if t.data["cumulative_cap"] is not True:
        problems.add(where, "cumulative_cap must be true (the rule's cap then holds over all years together)")
    if rule.number("cap") is None:
        problems.add(where, f"cumulative_cap needs a rule with a cap; {rule.id} has none")
    for key in ("years", "no_end", "follows", "after", "continues"):
        if key in t.data:
            problems.add(where, f"{key} does not go with cumulative_cap")
    entrants = t.param("entrants")
    check_range(problems, where, "entrants", entrants, 0.0, 1.0)
    _check_uncertain_range(problems, where, "entrants", entrants, 0.0, 1.0)
    if entrants is None or rule.number("cap") is None:
        return None
    return Term(rule.id, "", quote, t.str("why"), years=None, entrants=entrants, cumulative=True)


def _terms(raw: Any, policy: Policy, continuations: Mapping[str, Continuation], source: str,
           problems: Problems) -> dict[str, Term]:
    if not isinstance(raw, dict):
        problems.add("[terms]", "must be a table of rule id = { ... }")
        return {}
    terms = {}
    for rule_id, value in raw.items():
        where = f"[terms.{rule_id}]"
        t = Table(value, where, problems, allowed={"years", "no_end", "follows", "after", "continues", "quote",
                                                   "why", "entrants", "cumulative_cap"})
        if rule_id not in policy.rule_ids:
            problems.add(where, f"no rule {rule_id!r} in the policy; rules: {', '.join(policy.rule_ids)}")
            continue
        rule = policy.rule(rule_id)
        quote = verbatim_quote(t, source)
        if "cumulative_cap" in t.data:
            term = _cumulative_term(t, rule, quote, problems)
            if term is not None:
                terms[rule_id] = term
            continue
        continues = t.str("continues")
        if continues and continues not in continuations:
            problems.add(where, f"continues = {continues!r} is not in [continuations] (known: "
                         f"{', '.join(sorted(continuations)) or 'none'})")
        why = t.str("why")
        if ("years" in t.data) + ("no_end" in t.data) + ("follows" in t.data) != 1:
            problems.add(where, "give one of years = N (the award is paid N years), no_end = true (paid every year "
                         "while the claimant qualifies: the text sets no end) or follows = \"rule\" with after = N "
                         "(paid once, N years after the other rule's award)")
            continue
        if "years" in t.data or "no_end" in t.data:
            years = t.int("years") if "years" in t.data else None
            if years is not None and not 2 <= years <= MAX_YEARS:
                problems.add(where, f"years must be 2-{MAX_YEARS} (a one-year award needs no term), got {years}")
            if "no_end" in t.data and t.data["no_end"] is not True:
                problems.add(where, "no_end must be true (or give years = N instead)")
            entrants = t.param("entrants")
            check_range(problems, where, "entrants", entrants, 0.0, 1.0)
            _check_uncertain_range(problems, where, "entrants", entrants, 0.0, 1.0)
            for key in ("after",):
                if key in t.data:
                    problems.add(where, f"{key} goes with follows, not with years")
            if entrants is not None and (years is not None or t.data.get("no_end") is True):
                terms[rule_id] = Term(rule_id, continues, quote, why, years=years, entrants=entrants)
            continue
        follows = t.str("follows")
        after = t.int("after")
        if "entrants" in t.data:
            problems.add(where, "entrants goes with years, not with follows")
        if follows and follows not in policy.rule_ids:
            problems.add(where, f"follows = {follows!r}: no such rule")
            continue
        if after is not None and not 1 <= after <= MAX_YEARS:
            problems.add(where, f"after must be 1-{MAX_YEARS}, got {after}")
        if rule.kind != "fixed":
            problems.add(where, f"a rule that follows another pays a fixed amount to each claimant that still "
                         f"qualifies; {rule_id} is of kind {rule.kind!r}")
        elif follows and policy.rule(follows).claimant != rule.claimant:
            problems.add(where, f"{rule_id} and {follows} have different claimants")
        elif any(p is not None and p.uncertainty is not None
                 for p in (rule.number("amount"), rule.intensity, rule.district_share)):
            problems.add(where, f"{rule_id} follows another rule, so its amount, intensity and district share are "
                         "taken as written in policy.toml; remove their uncertainty ranges, or give the rule years "
                         "instead")
        if follows and after is not None:
            terms[rule_id] = Term(rule_id, continues, quote, why, follows=follows, after=after)
    return terms


def parse_years(text: str) -> tuple[int, ...]:
    """``2024-2026`` (or ``2024``) as the tuple of years (that the first is the model's year is checked when the
    run is prepared, where the model is known)."""
    match = re.fullmatch(r"\s*(\d{4})\s*(?:[-–]\s*(\d{4})\s*)?", str(text))
    if not match:
        raise YearsError(f"--years {text!r}: write a span of years such as 2024-2026 (or one year, 2024)")
    start, end = int(match.group(1)), int(match.group(2) or match.group(1))
    if end < start:
        raise YearsError(f"--years {text}: the last year comes before the first")
    if end - start + 1 > MAX_YEARS:
        raise YearsError(f"--years {text}: at most {MAX_YEARS} years")
    return tuple(range(start, end + 1))


# ----------------------------------------------------------------------------- drawing the numbers
@dataclass(frozen=True)
class YearsValues:
    """Each number of the years model per assumption draw (``draws`` x 1 arrays by name), and the draw of each
    replication (``per_draw`` replications share a draw, as in the one-year run)."""

    values: Mapping[str, np.ndarray]
    per_draw: int
    groups: Mapping[str, np.ndarray] = field(default_factory=FrozenMap)  # group -> its uniforms per draw

    def of(self, name: str, replication: int) -> float:
        column = self.values[name]
        return float(column[min(replication // self.per_draw, len(column) - 1)])


def draw_values(model: YearsModel, draws: int, per_draw: int, seed: int, vary: bool) -> YearsValues:
    """The numbers of each assumption draw: a Latin hypercube over the file's groups (its own stream, so the
    one-year draws are untouched; one column per declared group, so a scenario that holds some numbers sees
    the same draws of the others), or the point values when ``vary`` is false."""
    from sim import assumptions

    numbers = model.numbers()
    groups = sorted(model.groups)
    draws = max(draws, 1)
    if not vary or not groups:
        return YearsValues(FrozenMap({k: np.full(draws, float(p.value)) for k, p in numbers.items()}), per_draw)
    rows = assumptions.design(draws, len(groups), _stream_seed(seed, YEARS_STREAM))
    values = {}
    for name, p in numbers.items():
        if p.uncertainty is None:
            values[name] = np.full(draws, p.value)
        else:
            column = rows[:, groups.index(p.uncertainty.group)]
            values[name] = np.array([assumptions.quantile(p.uncertainty, p.value, x) for x in column])
    return YearsValues(FrozenMap(values), per_draw, FrozenMap({g: rows[:, i] for i, g in enumerate(groups)}))


def _stream_seed(seed: int, stream: int, *more: int) -> int:
    return int(np.random.SeedSequence(seed, spawn_key=(stream, *more)).generate_state(1, np.uint64)[0]
               % np.uint64(2 ** 63))


def year_seed(seed: int, index: int) -> int:
    """The population seed of the horizon's year ``index`` (0: the run's own seed, so the first year is the
    one-year run's)."""
    return seed if index == 0 else _stream_seed(seed, GROWTH_STREAM, index)


def budget_factor(model: YearsModel, values: YearsValues, year: int, first: int, domain: str,
                  replication: int) -> float:
    """A later year's claims budget over the first year's, for one domain and replication (1 in the first): the
    factor of ``[budgets.by_year]`` for that year or the latest year before it that has one, else the assumed
    ``later_years`` factor of the replication's draw.

    >>> from sim.policy import load
    >>> data = {"renewal": {"renewed": False, "quote": "本文件是fiscalsim的模板政策", "why": "an example"},
    ...         "growth": {"claimants": 0.0, "amounts": 0.0},
    ...         "budgets": {"later_years": 0.9,
    ...                     "by_year": {"2025": {"innovation": {"value": 1.2, "derived": "a source"}}}}}
    >>> m = years_from_dict(data, load("template"))
    >>> v = draw_values(m, 1, 1, seed=1, vary=False)
    >>> [budget_factor(m, v, y, 2024, "innovation", 0) for y in (2024, 2025, 2026)]
    [1.0, 1.2, 1.2]
    >>> budget_factor(m, v, 2026, 2024, "industry", 0)
    0.9
    """
    if year == first:
        return 1.0
    known = [y for y in model.by_year if first < y <= year and domain in model.by_year[y]]
    if known:  # a source's figure holds until a later one replaces it
        return float(model.by_year[max(known)][domain].value)
    return values.of("budgets.later_years", replication)


# ----------------------------------------------------------------------------- carrying awards
@dataclass(frozen=True)
class Cohort:
    """The claimants of one term rule (or of the rule a follower follows) in one year of one replication:
    their award and district-paid part, in block order."""

    award: np.ndarray
    district: np.ndarray


@dataclass(frozen=True)
class Carried:
    """What one replication's term rules pay, by year: per (year index, rule, origin, grant year index) the
    award, district part and claimants; per year the district-paid claims as (rule, amount) for the process."""

    rows: list[dict]
    claims: list[tuple[list[int], list[np.ndarray]]]  # per year: rule indices, district amounts (one per claim)


def _rng(seed: int, replication: int, rule: int, grant: int, what: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(
        seed, spawn_key=(YEARS_STREAM, replication, rule, grant, what))))


def survivors(alive: np.ndarray, survival: float, rng: np.random.Generator) -> np.ndarray:
    """Who of ``alive`` still qualifies a year later: each independently with probability ``survival``.

    >>> rng = np.random.default_rng(1)
    >>> survivors(np.array([True, False, True]), 1.0, rng).tolist()
    [True, False, True]
    >>> survivors(np.array([True, True]), 0.0, rng).tolist()
    [False, False]
    """
    return alive & (rng.random(len(alive)) < survival)


def carry(model: YearsModel, policy: Policy, cohorts: Sequence[Mapping[str, Cohort]], values: YearsValues,
          seed: int, replication: int, share: Mapping[str, float]) -> Carried:
    """The new awards and commitments of every term rule over the horizon, for one replication.

    ``cohorts[k][rule]``: the claimants the year-k population draw gives the rule (for a follower rule, of
    the rule it follows).  New awards of a term rule in a later year are its entrants; commitments follow the
    claimants year by year while they still qualify.
    """
    horizon = len(cohorts)
    index = {r: i for i, r in enumerate(policy.rule_ids)}
    rows: list[dict] = []
    claims = [([], []) for _ in range(horizon)]

    def add(year: int, rule: str, origin: str, grant: int, award: np.ndarray, district: np.ndarray) -> None:
        rows.append({"year": year, "rule": rule, "origin": origin, "grant": grant, "award": float(np.sum(award)),
                     "district": float(np.sum(district)), "claimants": len(award)})
        if len(district):
            claims[year][0].append(index[rule])
            claims[year][1].append(district)

    for rule, term in model.terms.items():
        if term.cumulative:
            cap = float(policy.rule(rule).number("cap").value) * float(policy.rule(rule).intensity.value)
            entrants = values.of(f"terms.{rule}.entrants", replication)
            for grant, award in enumerate(capped_over_years([cohorts[k][rule].award for k in range(horizon)], cap,
                                                            entrants, seed, replication, index[rule])):
                paid = award[award > 0]  # a returning family with nothing left of the cap claims nothing
                add(grant, rule, "new", grant, paid, paid * share[rule])
            continue
        survival = values.of(f"continuations.{term.continues}.survival", replication)
        if term.follows is not None:
            amount = float(policy.rule(rule).number("amount").value) * float(policy.rule(rule).intensity.value)
            for grant in range(horizon):
                due = grant + term.after
                if due >= horizon:
                    continue
                source = cohorts[grant][term.follows]
                alive = np.ones(len(source.award), dtype=bool)
                rng = _rng(seed, replication, index[rule], grant, 0)
                for _ in range(term.after):
                    alive = survivors(alive, survival, rng)
                n = int(alive.sum())
                add(due, rule, "commitment", grant, np.full(n, amount), np.full(n, amount * share[rule]))
            continue
        entrants = values.of(f"terms.{rule}.entrants", replication)
        for grant in range(horizon):
            c = cohorts[grant][rule]
            new = np.ones(len(c.award), dtype=bool)
            if grant > 0:
                new = _rng(seed, replication, index[rule], grant, 1).random(len(c.award)) < entrants
            add(grant, rule, "new", grant, c.award[new], c.district[new])
            if term.years is None:  # paid every year while the claimant qualifies
                left, last = np.full(len(c.award), horizon), horizon
            else:
                rng = _rng(seed, replication, index[rule], grant, 3)
                left = term.years - term_year(len(c.award), term.years, entrants, survival, rng, first=grant == 0)
                last = min(grant + term.years, horizon)
            alive = new
            rng = _rng(seed, replication, index[rule], grant, 2)
            for year in range(grant + 1, last):
                alive = survivors(alive, survival, rng)
                due = alive & (left >= year - grant)
                add(year, rule, "commitment", grant, c.award[due], c.district[due])
    return Carried(rows, claims)


def capped_over_years(awards: Sequence[np.ndarray], cap: float, entrants: float, seed: int, replication: int,
                      rule: int) -> list[np.ndarray]:
    """Each year's awards of a rule whose cap holds over all years (「累計最高不超過1萬元」).

    ``awards[k]``: the year-k claimants' awards as that year's draw gives them (each capped on its own).  The
    first year's claimants start afresh.  In a later year each claimant is new with probability ``entrants``;
    the others return: each is one of the earlier claimants (drawn without replacement; any beyond their number
    count as new) and is paid at most what that claimant has left of the cap.

    >>> year0, year1 = np.full(4, 0.4), np.full(4, 1.0)
    >>> [a.tolist() for a in capped_over_years([year0, year1, year1], 1.0, 0.0, 1, 0, 0)]
    [[0.4, 0.4, 0.4, 0.4], [0.6, 0.6, 0.6, 0.6], [0.0, 0.0, 0.0, 0.0]]
    """
    out, used = [], np.zeros(0)  # used: each claimant so far, what it has been paid in all
    for k, award in enumerate(awards):
        paid = np.array(award, dtype=float)
        if k > 0 and len(paid):
            rng = _rng(seed, replication, rule, k, 4)
            back = np.flatnonzero(rng.random(len(paid)) >= entrants)[:len(used)]
            who = rng.choice(len(used), size=len(back), replace=False)
            paid[back] = np.minimum(paid[back], np.maximum(cap - used[who], 0.0))
            used[who] += paid[back]
            fresh = np.ones(len(paid), dtype=bool)
            fresh[back] = False
            used = np.concatenate([used, paid[fresh]])
        elif len(paid):
            used = np.concatenate([used, paid])
        out.append(paid)
    return out


def term_year(n: int, years: int, entrants: float, survival: float, rng: np.random.Generator,
              first: bool) -> np.ndarray:
    """Which year (1 .. ``years``) of its term each of ``n`` claimants is in.

    A later year's claimants that start a term are its entrants (year 1).  The first year's claimants are the
    population model's draw of everyone who claims that year: the share ``entrants`` of them start a term, the
    others carry one from before the horizon, in year j = 2 .. ``years`` with weights survival^(j - 2) (of
    the firms that started a term j - 1 years before, those still qualifying).  So of the first year's
    claimants a share e + (1 - e) / (1 + s + ... + s^(years - 2)) is still due a payment in the second year.

    >>> term_year(8, 3, 1.0, 0.7, np.random.default_rng(0), first=True).tolist()
    [1, 1, 1, 1, 1, 1, 1, 1]
    >>> sorted(set(term_year(1000, 3, 0.35, 0.7, np.random.default_rng(0), first=True).tolist()))
    [1, 2, 3]
    """
    if not first:
        return np.ones(n, dtype=np.int64)
    u = rng.random(n)
    later = survival ** np.arange(years - 1, dtype=float)  # years 2 .. years
    bounds = entrants + (1.0 - entrants) * np.cumsum(later) / later.sum()  # upper end of each year's share of u
    return np.where(u < entrants, 1, 2 + np.searchsorted(bounds[:-1], u, side="right"))


def ended(policy: Policy, year: int) -> tuple[int, ...]:
    """Indices of the rules whose text dates them to a period over before ``year`` (「對2024年一季度…」): a
    renewed package has no new awards of them in that year, since the validity clause excepts dated items."""
    return tuple(i for i, rule in enumerate(policy.rules) if rule.valid is not None and rule.valid.ended_before(year))


def sources(model: YearsModel) -> tuple[str, ...]:
    """The rules whose claimants a multi-year run keeps one by one: term rules and the rules followed."""
    names = []
    for rule, term in model.terms.items():
        names.append(term.follows if term.follows is not None else rule)
    return tuple(dict.fromkeys(names))


def replaced(model: YearsModel, year: int) -> set[str]:
    """Rules whose new awards in year index ``year`` are replaced by what :func:`carry` gives: term rules
    from the second year on (only entrants are new), follower rules once the followed claimants can reach
    them."""
    out = set()
    for rule, term in model.terms.items():
        if term.follows is None and year > 0:
            out.add(rule)
        if term.follows is not None and year >= term.after:
            out.add(rule)
    return out


# ----------------------------------------------------------------------------- tables
def _quantiles(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(np.mean(values)), "p5": float(np.quantile(values, 0.05)),
            "p50": float(np.quantile(values, 0.50)), "p95": float(np.quantile(values, 0.95))}


def between_share(values: np.ndarray, per_draw: int) -> float:
    """The share of the variance of ``values`` (in replication order) that lies between assumption draws:
    the part of the uncertainty that comes from the assumptions rather than from the year's luck (NaN with
    one replication per draw or no variance)."""
    n = len(values) // per_draw * per_draw
    if per_draw < 2 or n < 2 * per_draw:
        return float("nan")
    groups = values[:n].reshape(-1, per_draw)
    total = groups.var(ddof=1) if groups.size > 1 else 0.0
    within = groups.var(axis=1, ddof=1).mean()
    if not total > 0:
        return float("nan")
    between = max(groups.mean(axis=1).var(ddof=1) - within / per_draw, 0.0)
    return float(min(between / (between + within), 1.0))


def driver(values: np.ndarray, per_draw: int, factors: Mapping[str, np.ndarray]) -> tuple[str, float]:
    """The assumption group whose draws move ``values`` most, and how much: the largest squared Spearman rank
    correlation between a group's draws (``factors``: group -> one number per draw) and the mean of
    ``values`` (in replication order) per draw; ("", NaN) with fewer than :data:`DRIVER_DRAWS` draws (a rank
    correlation over a handful of points is noise) or no variation.

    >>> x = np.arange(12.0)
    >>> driver(np.repeat(x ** 2, 2), 2, {"a": x, "b": np.sin(x)})
    ('a', 1.0)
    >>> driver(np.repeat(x[:5], 2), 2, {"a": x[:5]})[0]
    ''
    """
    n = len(values) // per_draw * per_draw
    means = values[:n].reshape(-1, per_draw).mean(axis=1)
    keys = [key for key, column in factors.items() if len(column) >= len(means)]
    if len(means) < DRIVER_DRAWS or np.ptp(means) == 0 or not keys:
        return "", float("nan")
    rho = rank_correlations(np.column_stack([np.asarray(factors[k], dtype=float)[:len(means)] for k in keys]), means)
    top = int(np.argmax(rho ** 2))
    if rho[top] == 0:
        return "", float("nan")
    return keys[top], round(float(rho[top] ** 2), 12)


def summary_table(liabilities: pd.DataFrame, per_draw: int) -> pd.DataFrame:
    """Year x domain x origin: district-paid liabilities (萬元), mean and P5/P50/P95 over replications,
    with the share of their variance that comes from the assumptions."""
    totals = (liabilities.groupby(["replication", "year", "domain", "origin"], observed=True)["district"].sum()
              .unstack(["year", "domain", "origin"], fill_value=0.0))
    rows = []
    for (year, domain, origin) in totals.columns:
        values = totals[(year, domain, origin)].to_numpy(dtype=float)
        rows.append({"year": year, "domain": domain, "origin": origin, **_quantiles(values),
                     "from_assumptions": between_share(values, per_draw)})
    return pd.DataFrame(rows).sort_values(["year", "domain", "origin"], kind="stable").reset_index(drop=True)


def commitments_table(liabilities: pd.DataFrame, per_draw: int,
                      factors: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The commitments each grant year creates for each later year, per domain (district-paid, 萬元): mean,
    P5/P50/P95, the share of their variance from the assumptions, and the assumption group that moves them
    most (``driver``, with ``driver_share`` its squared rank correlation) among ``factors``."""
    part = liabilities[liabilities["origin"] == "commitment"]
    if not len(part):
        return pd.DataFrame(columns=["domain", "granted", "year", "mean", "p5", "p50", "p95", "from_assumptions",
                                     "driver", "driver_share"])
    reps = np.sort(liabilities["replication"].unique())
    totals = (part.groupby(["replication", "domain", "granted", "year"], observed=True)["district"].sum()
              .unstack(["domain", "granted", "year"], fill_value=0.0).reindex(reps, fill_value=0.0))
    rows = []
    for (domain, granted, year) in totals.columns:
        values = totals[(domain, granted, year)].to_numpy(dtype=float)
        key, share = driver(values, per_draw, factors or {})
        rows.append({"domain": domain, "granted": granted, "year": year, **_quantiles(values),
                     "from_assumptions": between_share(values, per_draw), "driver": key, "driver_share": share})
    out = pd.DataFrame(rows)
    return out.sort_values(["granted", "year", "domain"], kind="stable").reset_index(drop=True)


def budget_table(liabilities: pd.DataFrame, budgets: pd.DataFrame) -> pd.DataFrame:
    """Year x domain: the claims budget, district-paid claims (new + commitments), the commitments already
    in them, P(overrun) and the mean shortfall (萬元); ``budgets`` is replication x year x domain."""
    totals = liabilities.groupby(["replication", "year", "domain"], observed=True)["district"].sum()
    committed = liabilities[liabilities["origin"] == "commitment"].groupby(
        ["replication", "year", "domain"], observed=True)["district"].sum()
    frame = budgets.set_index(["replication", "year", "domain"])["claims_budget"].to_frame()
    frame["claims"] = totals.reindex(frame.index, fill_value=0.0)
    frame["commitments"] = committed.reindex(frame.index, fill_value=0.0)
    rows = []
    for (year, domain), g in frame.groupby(level=["year", "domain"], observed=True, sort=False):
        b, c = g["claims_budget"].to_numpy(float), g["claims"].to_numpy(float)
        rows.append({"year": year, "domain": domain, "claims_budget": float(b.mean()), "claims": float(c.mean()),
                     "claims_p5": float(np.quantile(c, 0.05)), "claims_p95": float(np.quantile(c, 0.95)),
                     "commitments": float(g["commitments"].mean()), "p_overrun": float((c > b).mean()),
                     "mean_shortfall": float(np.maximum(c - b, 0.0).mean())})
    return pd.DataFrame(rows)


def liabilities_frame(policy: Policy, model: YearsModel, calendar: Sequence[int], first: pd.DataFrame,
                      later: Sequence[pd.DataFrame | None], carried: Sequence[Carried]) -> pd.DataFrame:
    """Replication x year x rule x origin x grant year: award, district-paid part and claimants (萬元).

    ``first``: the one-year run's ``rules`` table (the first year's new awards, unchanged); ``later[k - 1]``:
    the ``rules`` table of year k's fresh draw (None when the package is not renewed); ``carried``: per
    replication, what :func:`carry` gave.
    """
    rules = policy.rules
    article = {r.id: r.article for r in rules}
    domain = {r.id: r.domain for r in rules}
    columns = ["replication", "rule", "award", "district", "claimants"]
    parts = [first[columns].assign(year=calendar[0], origin="new", granted=calendar[0])]
    for k in range(1, len(calendar)):
        table = later[k - 1]
        if table is None:
            continue
        gone = replaced(model, k)
        keep = table[~table["rule"].astype(str).isin(gone)][columns]
        parts.append(keep.assign(year=calendar[k], origin="new", granted=calendar[k]))
    rows = []
    for replication, c in enumerate(carried):
        for row in c.rows:
            if row["year"] == 0:
                continue  # the first year's new awards are the one-year run's own totals
            if row["grant"] > 0 and later[row["grant"] - 1] is None:
                continue  # a year without new awards (the package not renewed) grants nothing to carry
            rows.append({**row, "replication": replication, "year": calendar[row["year"]],
                         "granted": calendar[row["grant"]]})
    if rows:
        extra = pd.DataFrame(rows).drop(columns="grant")
        parts.append(extra[columns + ["year", "origin", "granted"]])
    out = pd.concat(parts, ignore_index=True)
    out["rule"] = pd.Categorical(out["rule"].astype(str), categories=list(policy.rule_ids))
    out["article"] = out["rule"].astype(str).map(article).astype(np.int64)
    out["domain"] = pd.Categorical(out["rule"].astype(str).map(domain), categories=list(policy.domain_keys))
    out["origin"] = pd.Categorical(out["origin"], categories=list(ORIGINS))
    out["claimants"] = out["claimants"].astype(np.int64)
    order = ["replication", "year", "rule", "article", "domain", "origin", "granted", "award", "district",
             "claimants"]
    return out[order].sort_values(["replication", "year", "origin", "granted", "rule"], kind="stable",
                                  ignore_index=True)


def year_budgets(model: YearsModel, values: YearsValues, budgets: pd.DataFrame, calendar: Sequence[int]
                 ) -> pd.DataFrame:
    """Replication x year x domain claims budget (萬元): the first year's as drawn, later years' times their
    factor."""
    parts = []
    for year in calendar:
        factor = np.array([budget_factor(model, values, year, calendar[0], str(d), int(r))
                           for r, d in zip(budgets["replication"], budgets["domain"])])
        parts.append(budgets.assign(year=year, claims_budget=budgets["claims_budget"].to_numpy(float) * factor))
    out = pd.concat(parts, ignore_index=True)
    return out[["replication", "year", "domain", "claims_budget"]]
