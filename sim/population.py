"""Monte Carlo claimant population: a calibrated, correlated, reproducible synthetic register.

The specification (``models/<model>/population.toml``) describes claimants as segments (enterprises by
sector and size class, banks, incubators, families, ...).  Each claimant kind may have a *programme*
(``[claimants.<kind>]``): its dimensions (the classes a segment names, e.g. sector and size), an
optional Gaussian copula over latent factors, and a list of attribute steps drawn in order; a segment
may add steps of its own.  A step is one of a small set of kinds (:data:`STEP_KINDS`): lognormal,
normal, bernoulli, factor_event, event, amount, count, categorical, product, increase, at_most.  A
number may be given per class (``{ small = 200, medium = 5000 }``).  Nothing about a particular
jurisdiction is written here: the attribute names come from the model.

:func:`generate` streams the population in columnar chunks.  Reproducibility: each segment is cut
into blocks of :data:`BLOCK` claimants, and each block draws from its own
``numpy.random.SeedSequence(seed, spawn_key=(replication, segment-hash, block))``, every step taking a
fixed number of draws in a fixed order.  So the same seed gives bit-identical claimants whatever the
chunk size; replications are independent streams; and a scenario that changes a parameter (a
probability, a median) but not the structure sees the same underlying random numbers (common random
numbers).

:func:`load_register` reads a real firm register (CSV or Parquet) instead.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from sim import jit
from sim.errors import SpecError
from sim.firms import FirmTable, firm_table, read_table
from sim.policy import Policy, resolve_model
from sim.validation import (
    COUNT_CEILING,
    MONEY_CEILING,
    NUMBER_CEILING,
    Field,
    FrozenMap,
    Problems,
    Table,
    Uncertain,
    Uncertainty,
    blanket_uncertainty,
    canonical_json,
    check_provenance,
    number,
    ordered_json,
    read_toml,
    table_uncertainty,
)

BLOCK = 1 << 16
DEFAULT_CHUNK = 1 << 16
STEP_KINDS = ("lognormal", "normal", "bernoulli", "factor_event", "event", "amount", "count", "categorical",
              "product", "increase", "at_most")
EXTRA_TYPES = ("float", "int", "bool")

# The numbers each step kind takes: name -> (required, low, high, may be per class, may be partial)
# Bounds keep every draw finite: a lognormal's sigma at most 5 (exp(5 x 8) is still finite), a Pareto tail
# exponent above 1 (a finite mean), a Poisson mean at most 100 per claimant.
_NUMBERS: dict[str, dict[str, tuple[bool, float | None, float | None, bool]]] = {
    "lognormal": {"median": (True, 0.0, MONEY_CEILING, True), "sigma": (True, 0.0, 5.0, True),
                  "multiplier": (False, 0.0, 100.0, True), "tail_from": (False, 0.5, 0.9999, True),
                  "tail_alpha": (False, 1.05, 10.0, True)},
    "normal": {"mean": (True, -NUMBER_CEILING, NUMBER_CEILING, True), "sd": (True, 0.0, NUMBER_CEILING, True)},
    "bernoulli": {"probability": (True, 0.0, 1.0, True)},
    "factor_event": {"probability": (True, 0.0, 1.0, True)},
    "event": {"probability": (True, 0.0, 1.0, True)},
    "amount": {"probability": (True, 0.0, 1.0, True), "median": (True, 0.0, MONEY_CEILING, True),
               "sigma": (True, 0.0, 5.0, True)},
    "count": {"mean": (True, 0.0, 100.0, True)},
    "categorical": {},
    "product": {},
    "increase": {},
    "at_most": {"limit": (True, -NUMBER_CEILING, NUMBER_CEILING, False)},
}
# The numbers of an assumed table that need a plausible range, and the ways they may vary.
UNSURE_FIELDS = {
    "probability": Field(("factor", "shift")), "median": Field(("factor",)), "sigma": Field(("factor", "range")),
    "multiplier": Field(("factor",)), "tail_from": Field(("range", "shift")), "tail_alpha": Field(("range", "factor")),
    "mean": Field(("factor", "shift", "range")), "sd": Field(("factor", "range")), "limit": Field(("range", "factor")),
    "loading": Field(("range", "shift", "factor")), "probabilities": Field(("tilt",)),
    "count": Field(("factor", "range"), True), "correlation": Field(("factor",)),
}
GROWTH_BOUND = 3.0  # |mean| + 6 sd of a log growth an `increase` step reads: exp(3) is a twenty-fold change
_PARTIAL = {"tail_from", "tail_alpha"}  # per-class numbers that may name only some classes (the rest: none)
_STEP_KEYS = {"kind", "factor", "loading", "only", "only_if", "of", "when", "log_growth", "values", "probabilities",
              "internal", "source", "assumed", "why", "uncertainty"}
_STEP_KEYS |= {k for numbers in _NUMBERS.values() for k in numbers}
_FACTOR_KINDS = {"lognormal", "normal", "factor_event"}  # steps that may read a copula factor directly
_LOADING_KINDS = {"event", "amount", "count"}  # steps that may load on the event factor


# ----------------------------------------------------------------------------- spec objects
@dataclass(frozen=True)
class Level:
    """A number that is either one value or one value per class of a dimension (``by``)."""

    by: str | None
    values: Any  # float, or a FrozenMap class -> float

    def at(self, segment: Segment, default: float | None = None) -> float | None:
        if self.by is None:
            return self.values
        return self.values.get(segment.classes.get(self.by), default)


@dataclass(frozen=True)
class Lognormal:
    median: float
    sigma: float
    tail_from: float | None = None  # quantile above which a Pareto tail replaces the lognormal
    tail_alpha: float | None = None

    def quantile_from_normal(self, z: np.ndarray) -> np.ndarray:
        """The value at standard-normal score ``z`` (spliced lognormal body / Pareto tail)."""
        body = self.median * np.exp(self.sigma * z)
        if self.tail_from is None:
            return body
        z_q = special.ndtri(self.tail_from)
        x_q = self.median * np.exp(self.sigma * z_q)
        tail = z > z_q
        if not tail.any():
            return body
        survival = special.ndtr(-z[tail])  # 1 - u, accurate in the far tail
        body[tail] = x_q * ((1.0 - self.tail_from) / survival) ** (1.0 / self.tail_alpha)
        return body

    def cdf(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        with np.errstate(divide="ignore"):
            u = special.ndtr(np.log(np.maximum(x, 1e-300) / self.median) / self.sigma)
        if self.tail_from is None:
            return u
        x_q = self.median * np.exp(self.sigma * special.ndtri(self.tail_from))
        tail = x > x_q
        u[tail] = 1.0 - (1.0 - self.tail_from) * (x_q / x[tail]) ** self.tail_alpha
        return u


@dataclass(frozen=True)
class Step:
    """How one attribute is drawn (see :data:`STEP_KINDS`)."""

    attribute: str
    kind: str
    numbers: Mapping[str, Level] = field(default_factory=FrozenMap)
    factor: str | None = None  # a copula factor the step reads (lognormal, normal, factor_event, or loading)
    loading: float = 0.0
    only: Mapping[str, tuple[str, ...]] = field(default_factory=FrozenMap)  # dimension -> classes reached
    only_if: str | None = None  # a flag drawn earlier: the event happens only where it is set
    of: tuple[str, ...] = ()
    when: str | None = None
    log_growth: str | None = None
    values: tuple[float, ...] = ()
    probabilities: tuple[float, ...] = ()
    internal: bool = False

    def number(self, name: str, segment: Segment, default: float | None = None) -> float | None:
        level = self.numbers.get(name)
        return default if level is None else level.at(segment, default)

    def reaches(self, segment: Segment) -> bool:
        return all(segment.classes.get(dim) in classes for dim, classes in self.only.items())

    def lognormal(self, segment: Segment, median: str = "median", sigma: str = "sigma") -> Lognormal:
        scale = self.number(median, segment) * self.number("multiplier", segment, 1.0) \
            if "multiplier" in self.numbers else self.number(median, segment)
        return Lognormal(scale, self.number(sigma, segment), self.number("tail_from", segment),
                         self.number("tail_alpha", segment))


@dataclass(frozen=True)
class Programme:
    """How every segment of one claimant kind is drawn: dimensions, copula, attribute steps."""

    claimant: str
    dimensions: Mapping[str, tuple[str, ...]]
    labels: Mapping[str, str]
    factors: tuple[str, ...]
    correlation: np.ndarray = field(repr=False)
    cholesky: np.ndarray = field(repr=False)
    event_factor: str | None
    steps: tuple[Step, ...]


@dataclass(frozen=True)
class Segment:
    id: str
    claimant: str
    count: int
    classes: Mapping[str, str] = field(default_factory=FrozenMap)  # dimension -> class
    steps: tuple[Step, ...] = ()  # the segment's own steps, after its programme's

    @property
    def key(self) -> int:
        """A stable stream key: the same segment id always draws from the same streams."""
        return zlib.crc32(self.id.encode())


@dataclass(frozen=True)
class ExtraAttribute:
    name: str
    type: str
    unit: str
    description: str


ROLES = {"set": "used to set a parameter (met by construction, not evidence)",
         "independent": "independent evidence (not used to set any parameter)"}
EVIDENCE = {"district": "the district's own figure", "zone": "a figure of the zone the district belongs to",
            "neighbour": "another district's figure", "city": "a city-wide figure",
            "province": "a province-wide figure", "national": "a national figure",
            "policy goal": "the policy's own goal, not an observation", "derived": "arithmetic on sourced figures",
            "assumed": "a planning assumption"}


@dataclass(frozen=True)
class CalibrationTarget:
    id: str
    kind: str
    attribute: str
    value: float
    unit: str
    source: str
    claimant: str | None = None
    low: float | None = None
    high: float | None = None
    role: str = "independent"  # see ROLES
    evidence: str = "district"  # see EVIDENCE
    sets: str = ""  # for role "set": which parameter the target set


@dataclass(frozen=True)
class ClassSummary:
    """What `fiscalsim calibrate` tabulates by class: quantiles of one attribute, totals of another."""

    claimant: str
    by: str
    quantiles_of: str
    totals_of: str


_NO_PROGRAMME = Programme("", FrozenMap(), FrozenMap(), (), np.zeros((0, 0)), np.zeros((0, 0)), None, ())


@dataclass(frozen=True)
class PopulationSpec:
    path: str
    policy: Policy
    programmes: Mapping[str, Programme]
    segments: tuple[Segment, ...]
    extra_attributes: Mapping[str, ExtraAttribute]
    calibration: tuple[CalibrationTarget, ...]
    shocks: Mapping[str, float] = field(default_factory=dict)  # attribute -> multiplicative factor
    summary: ClassSummary | None = None
    uncertain: tuple[Uncertain, ...] = ()  # the numbers with a plausible range (sim.assumptions draws them)
    raw: str = field(default="{}", repr=False)  # the validated data as canonical JSON

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(canonical_json(json.loads(self.raw)).encode()).hexdigest()

    def data(self) -> dict:
        """A fresh, mutable copy of the specification data."""
        return json.loads(self.raw)

    @functools.cached_property
    def columns(self) -> tuple[str, ...]:
        """The columns of every generated chunk: the policy's inputs, the extras, the attributes calibration
        and the class summary read (even when no rule reads them), the segment index."""
        names = [a.name for a in self.policy.input_attributes()]
        names += [c for c in self.extra_attributes if c not in names]
        read = [t.attribute for t in self.calibration]
        if self.summary is not None:
            read += [self.summary.quantiles_of, self.summary.totals_of]
        names += [c for c in dict.fromkeys(read) if c not in names]
        return (*names, "segment")

    @functools.cached_property
    def column_types(self) -> tuple[tuple[str, Any], ...]:
        """(column, dtype) of every generated chunk's columns (worked out once per spec, not per block)."""
        return tuple((name, _dtype(self, name)) for name in self.columns)

    @property
    def total(self) -> int:
        return sum(s.count for s in self.segments)

    def programme(self, claimant: str) -> Programme:
        return self.programmes.get(claimant, _NO_PROGRAMME)

    def steps_of(self, segment: Segment) -> tuple[Step, ...]:
        return self.programme(segment.claimant).steps + segment.steps

    def step(self, segment: Segment, attribute: str) -> Step | None:
        return next((s for s in self.steps_of(segment) if s.attribute == attribute), None)

    def segment_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"segment": i, "id": s.id, "claimant": s.claimant, **s.classes, "count": s.count}
                             for i, s in enumerate(self.segments)])

    def share_set(self, segment: Segment, attribute: str) -> float | None:
        """Probability that a claimant of the segment has the flag set (or a positive amount), in closed
        form from the spec (the copula leaves marginals exact); None where there is no closed form."""
        step = self.step(segment, attribute)
        if step is None:
            return 0.0
        if step.kind in ("bernoulli", "factor_event", "event", "amount"):
            p = step.number("probability", segment) if step.reaches(segment) else 0.0
            if step.only_if is not None:
                condition = self.share_set(segment, step.only_if)
                return None if condition is None else p * condition
            return p
        if step.kind == "product" and step.when is not None:
            return self.share_set(segment, step.when)
        return None

    def expected(self, attribute: str, counts: np.ndarray | None = None) -> float:
        """Expected number of claimants with the flag set or a positive amount, or for a count the
        expected total, in closed form from the spec."""
        counts = self.counts() if counts is None else counts
        total = 0.0
        for segment, count in zip(self.segments, counts):
            step = self.step(segment, attribute)
            if step is None:
                continue
            if step.kind == "count":
                total += count * (step.number("mean", segment) if step.reaches(segment) else 0.0)
            else:
                share = self.share_set(segment, attribute)
                total += count * (share or 0.0)
        return total

    def has_expectation(self, attribute: str) -> bool:
        """Whether :meth:`expected` has a closed form for the attribute in every segment that draws it."""
        drawn = [(s, self.step(s, attribute)) for s in self.segments]
        drawn = [(s, step) for s, step in drawn if step is not None]
        return bool(drawn) and all(step.kind == "count" or self.share_set(s, attribute) is not None
                                   for s, step in drawn)

    def counts(self, n: int | None = None, scale: float = 1.0) -> np.ndarray:
        """Segment counts scaled to ``n`` claimants in all (largest remainder) or by ``scale``."""
        base = np.array([s.count for s in self.segments], dtype=np.float64)
        if n is not None:
            if n < 0:
                raise SpecError(f"{self.path}: n must be >= 0, got {n}")
            scale = n / base.sum()
        if scale < 0 or not np.isfinite(scale):
            raise SpecError(f"{self.path}: scale must be a non-negative number, got {scale}")
        exact = base * scale
        counts = np.floor(exact).astype(np.int64)
        target = int(round(exact.sum())) if n is None else n
        remainder = target - counts.sum()
        if remainder > 0:
            counts[np.argsort(-(exact - counts), kind="stable")[:remainder]] += 1
        return counts


# ----------------------------------------------------------------------------- loading
def load_spec(model: str | Path | None = None, policy: Policy | None = None) -> PopulationSpec:
    """Load and validate ``population.toml`` of a model folder against its policy."""
    from sim.policy import load as load_policy

    folder = resolve_model(model)
    data, shown = read_toml(folder / "population.toml", SpecError, "no population specification in the model folder")
    return spec_from_dict(data, policy or load_policy(folder), origin=shown)


def _level(t: Table, key: str, dimensions: Mapping[str, tuple[str, ...]], low: float | None,
           high: float | None, per_class: bool) -> Level | None:
    """A step's number: one value, or (where ``per_class``) a table keyed by every class of one dimension."""
    value = t.data.get(key)
    if value is None:
        return None

    def check(v: Any, label: str) -> float:
        x = number(v, label, t.where, t.problems)
        if x is None:
            return 0.0
        if (low is not None and x < low) or (high is not None and x > high):
            bound = f"lie in [{low:g}, {high:g}]" if low is not None and high is not None else (
                f"be >= {low:g}" if low is not None else f"be <= {high:g}")
            t.problems.add(t.where, f"{label} must {bound}, got {x:g}")
        return x

    if not isinstance(value, dict):
        return Level(None, check(value, key))
    if not per_class:
        t.problems.add(t.where, f"{key} must be a single number")
        return None
    if not value:
        t.problems.add(t.where, f"{key} is an empty table: give one number, or one per class such as {{ small = 0.1 }}")
        return None
    by = next((dim for dim, classes in dimensions.items() if set(value) <= set(classes)), None)
    if by is None:
        known = "; ".join(f"{dim}: {', '.join(classes)}" for dim, classes in dimensions.items()) or "none"
        t.problems.add(t.where, f"{key} names {sorted(value)}, not the classes of one dimension (known: {known})")
        return None
    missing = [c for c in dimensions[by] if c not in value]
    if missing and key not in _PARTIAL:
        t.problems.add(t.where, f"{key} lacks {by} class {missing}")
    return Level(by, FrozenMap({c: check(v, f"{key}.{c}") for c, v in value.items()}))


def _classes(level: Level | None) -> tuple[str | None, frozenset]:
    """A level's dimension and the classes it names (one number for all: no dimension, every class)."""
    if level is None:
        return None, frozenset()
    return level.by, frozenset(level.values) if level.by is not None else frozenset({"*"})


def _check_tail(numbers: Mapping[str, Level], where: str, problems: Problems) -> None:
    """A Pareto tail needs both where it starts and its exponent, for the same classes."""
    start, alpha = _classes(numbers.get("tail_from")), _classes(numbers.get("tail_alpha"))
    if start != alpha:
        problems.add(where, "tail_from and tail_alpha go together: give both for the same classes "
                     f"(tail_from names {sorted(start[1]) or 'none'}, tail_alpha {sorted(alpha[1]) or 'none'})")


@dataclass
class _StepContext:
    """What a step is checked against: its claimant's dimensions, factors, and the attributes so far."""

    claimant: str
    policy: Policy
    extra: Mapping[str, ExtraAttribute]
    dimensions: Mapping[str, tuple[str, ...]]
    factors: tuple[str, ...]
    event_factor: str | None
    drawn: dict[str, str]  # attribute -> step kind, in order
    problems: Problems
    steps: dict[str, Step] = field(default_factory=dict)  # the steps drawn so far, by attribute
    uncertain: list[Uncertain] = field(default_factory=list)  # collected for the whole file
    blanket: Mapping[str, Uncertainty] = field(default_factory=dict)  # the file's [uncertainty] entries


def _growth_is_bounded(step: Step, dimensions: Mapping[str, tuple[str, ...]]) -> bool:
    def values(level: Level | None) -> list[float]:
        if level is None:
            return [0.0]
        return list(level.values.values()) if level.by is not None else [level.values]
    return max(abs(m) for m in values(step.numbers.get("mean"))) + 6 * max(values(step.numbers.get("sd"))) \
        <= GROWTH_BOUND


def _step_references(t: Table, kind: str, ctx: _StepContext) -> dict[str, Any]:
    """The attributes and factor a step reads, each checked: drawn earlier, a factor of the copula."""
    out: dict[str, Any] = {}

    def earlier(name: Any, key: str, flag: bool = False) -> str | None:
        if not isinstance(name, str) or not name:
            t.problems.add(t.where, f"{key} must name an attribute drawn earlier")
            return None
        if name not in ctx.drawn:
            t.problems.add(t.where, f"{key} names {name!r}, which is not drawn before this step "
                           f"(drawn so far: {', '.join(ctx.drawn) or 'none'})")
            return None
        if flag and ctx.drawn[name] not in ("bernoulli", "factor_event", "event", "at_most"):
            t.problems.add(t.where, f"{key} names {name!r}, which is not a flag")
        return name

    if kind == "product":
        of = t.data.get("of")
        if not isinstance(of, list) or len(of) != 2:
            t.problems.add(t.where, "of must list two attributes drawn earlier")
        else:
            out["of"] = tuple(earlier(x, "of") for x in of)
        if "when" in t.data:
            out["when"] = earlier(t.data["when"], "when", flag=True)
    elif kind in ("increase", "at_most"):
        out["of"] = (earlier(t.data.get("of"), "of"),)
        if kind == "increase":
            out["log_growth"] = earlier(t.data.get("log_growth"), "log_growth")
            growth = ctx.steps.get(out["log_growth"])
            if growth is not None and growth.kind != "normal":
                t.problems.add(t.where, f"log_growth names {growth.attribute!r}, a {growth.kind} step; a log growth is "
                               "a normal step")
            elif growth is not None and not _growth_is_bounded(growth, ctx.dimensions):
                t.problems.add(t.where, f"log growth {growth.attribute!r} is implausibly large: |mean| + 6 sd must "
                               f"stay within {GROWTH_BOUND:g} (a {np.exp(GROWTH_BOUND):.0f}-fold change in a year)")
    if "only_if" in t.data:
        if kind not in ("event", "amount"):
            t.problems.add(t.where, "only_if applies to event and amount steps")
        out["only_if"] = earlier(t.data["only_if"], "only_if", flag=True)
    factor = t.data.get("factor")
    if factor is not None:
        if kind not in _FACTOR_KINDS | _LOADING_KINDS:
            t.problems.add(t.where, f"factor does not apply to a {kind} step")
        elif factor not in ctx.factors:
            t.problems.add(t.where, f"factor {factor!r} is not a factor of the {ctx.claimant} copula "
                           f"(factors: {', '.join(ctx.factors) or 'none'})")
        else:
            out["factor"] = factor
    elif kind == "factor_event":
        t.problems.add(t.where, "a factor_event step needs factor")
    return out


def _step_shape(t: Table, kind: str, ctx: _StepContext) -> dict[str, Any]:
    """Loading, class restrictions, and a categorical step's values and probabilities."""
    out: dict[str, Any] = {}
    loading = t.number("loading", required=False) or 0.0
    if not 0 <= loading < 1:
        t.problems.add(t.where, f"loading must lie in [0, 1), got {loading:g}")
    if loading and kind not in _LOADING_KINDS:
        t.problems.add(t.where, f"loading does not apply to a {kind} step")
    elif loading and t.data.get("factor", ctx.event_factor) is None:
        t.problems.add(t.where, f"loading needs a copula factor; claimant {ctx.claimant} has no event_factor")
    out["loading"] = loading
    if loading and "factor" not in t.data:
        out["factor"] = ctx.event_factor
    only = t.data.get("only")
    if only is not None:
        if not isinstance(only, dict):
            t.problems.add(t.where, "only must be a table such as { sector = [\"iot\"] }")
        else:
            restricted = {}
            for dim, classes in only.items():
                known = ctx.dimensions.get(dim)
                if known is None or not isinstance(classes, list) or not set(classes) <= set(known):
                    t.problems.add(t.where, f"only.{dim} must list classes of dimension {dim!r} "
                                   f"(dimensions: {', '.join(f'{d}: {list(c)}' for d, c in ctx.dimensions.items())})")
                else:
                    restricted[dim] = tuple(classes)
            out["only"] = FrozenMap(restricted)
    if kind == "categorical":
        values, probabilities = tuple(t.list("values")), tuple(t.list("probabilities"))
        if len(values) != len(probabilities) or not values:
            t.problems.add(t.where, "values and probabilities must be non-empty lists of the same length")
        elif not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
                     for v in values + probabilities):
            t.problems.add(t.where, "values and probabilities must be finite numbers")
        elif any(not 0 <= p <= 1 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-9:
            t.problems.add(t.where, f"probabilities must lie in [0, 1] and add to 1, got {list(probabilities)}")
        elif list(values) != sorted(values):
            t.problems.add(t.where, "values must be increasing")
        elif any(abs(v) > COUNT_CEILING or v != round(v) for v in values):
            t.problems.add(t.where, f"values must be whole numbers within {COUNT_CEILING:g} (grades, stars, counts)")
        else:
            out["values"] = tuple(float(v) for v in values)
            out["probabilities"] = tuple(float(p) for p in probabilities)
    else:
        for key in ("values", "probabilities"):
            if key in t.data:
                t.problems.add(t.where, f"{key} does not apply to a {kind} step")
    return out


def _step(name: str, raw: Any, where: str, ctx: _StepContext, path: tuple) -> Step | None:
    t = Table(raw, where, ctx.problems, allowed=_STEP_KEYS)
    check_provenance(t)
    table_uncertainty(t, "population", path, UNSURE_FIELDS, ctx.blanket, ctx.uncertain)
    kind = t.str("kind")
    internal = t.bool("internal", required=False)
    declared = {a.name: a for a in ctx.policy.attributes}
    if name in declared:
        if declared[name].claimant != ctx.claimant:
            t.problems.add(where, f"attribute {name!r} belongs to claimant {declared[name].claimant!r}, "
                           f"not {ctx.claimant!r}")
    elif name not in ctx.extra and not internal:
        t.problems.add(where, f"unknown attribute {name!r}: the policy does not declare it, it is not listed "
                       "under [population.extra_attributes], and the step is not marked internal = true")
    if name in ctx.drawn:
        t.problems.add(where, f"attribute {name!r} is drawn twice for claimant {ctx.claimant}")
    if kind not in STEP_KINDS:
        t.problems.add(where, f"kind must be one of {', '.join(STEP_KINDS)}, got {kind!r}")
        return None
    numbers = {}
    for key, (required, low, high, per_class) in _NUMBERS[kind].items():
        if required and key not in t.data:
            t.problems.add(where, f"a {kind} step needs {key}")
        level = _level(t, key, ctx.dimensions, low, high, per_class)
        if level is not None:
            numbers[key] = level
    for key in {k for numbers_ in _NUMBERS.values() for k in numbers_} - set(_NUMBERS[kind]):
        if key in t.data:
            t.problems.add(where, f"{key} does not apply to a {kind} step")
    _check_tail(numbers, where, t.problems)
    step = Step(name, kind, FrozenMap(numbers), internal=internal, **_step_references(t, kind, ctx),
                **_step_shape(t, kind, ctx))
    ctx.drawn[name] = kind
    ctx.steps[name] = step
    return step


def _programme(claimant: str, raw: Any, policy: Policy, extra: Mapping[str, ExtraAttribute],
               problems: Problems, uncertain: list[Uncertain], blanket: Mapping[str, Uncertainty]) -> Programme:
    where = f"[claimants.{claimant}]"
    t = Table(raw, where, problems, allowed={"dimensions", "labels", "copula", "event_factor", "attributes"})
    if claimant not in policy.claimants:
        problems.add(where, f"unknown claimant {claimant!r} (the policy's claimants: {', '.join(policy.claimants)})")
    dimensions = {}
    raw_dims = t.data.get("dimensions", {})
    for dim, classes in (raw_dims.items() if isinstance(raw_dims, dict) else []):
        if not isinstance(classes, list) or not classes or not all(isinstance(c, str) and c for c in classes) \
                or len(set(classes)) != len(classes):
            problems.add(where, f"dimensions.{dim} must be a list of distinct class names")
            continue
        dimensions[dim] = tuple(classes)
    factors, corr, chol = _copula(t.data.get("copula"), f"{where} copula", problems)
    if isinstance(t.data.get("copula"), dict):
        table_uncertainty(Table(t.data["copula"], f"{where} copula", problems), "population",
                          ("claimants", claimant, "copula"), UNSURE_FIELDS, blanket, uncertain)
    event_factor = t.str("event_factor", required=False) or None
    if event_factor is not None and event_factor not in factors:
        problems.add(where, f"event_factor {event_factor!r} is not a factor of the copula "
                     f"(factors: {', '.join(factors) or 'none'})")
    ctx = _StepContext(claimant, policy, extra, dimensions, factors, event_factor, {}, problems, {}, uncertain,
                       blanket)
    raw_steps = t.data.get("attributes", {})
    steps = [_step(name, value, f"claimants.{claimant}.attributes.{name}", ctx,
                   ("claimants", claimant, "attributes", name))
             for name, value in (raw_steps.items() if isinstance(raw_steps, dict) else [])]
    labels = t.data.get("labels", {})
    return Programme(claimant, FrozenMap(dimensions), FrozenMap(labels if isinstance(labels, dict) else {}),
                     factors, corr, chol, event_factor, tuple(s for s in steps if s is not None))


def _copula(raw: Any, where: str, problems: Problems) -> tuple[tuple[str, ...], np.ndarray, np.ndarray]:
    if raw is None:
        return (), np.zeros((0, 0)), np.zeros((0, 0))
    copula = Table(raw, where, problems, allowed={"factors", "correlation", "source", "assumed", "why", "uncertainty"})
    check_provenance(copula)
    factors = tuple(copula.list("factors"))
    k = len(factors)
    if not k or not all(isinstance(f, str) and f for f in factors) or len(set(factors)) != k:
        problems.add(where, "factors must be a list of distinct names")
        return (), np.zeros((0, 0)), np.zeros((0, 0))
    try:
        corr = np.array(copula.list("correlation"), dtype=np.float64)
    except (TypeError, ValueError):
        problems.add(where, "correlation must be a square matrix of numbers")
        return factors, np.eye(k), np.eye(k)
    if corr.shape != (k, k):
        problems.add(where, f"correlation must be {k} x {k}, got shape {corr.shape}")
        return factors, np.eye(k), np.eye(k)
    if not np.isfinite(corr).all():
        problems.add(where, "correlations must be finite numbers")
        return factors, np.eye(k), np.eye(k)
    if not np.allclose(corr, corr.T):
        problems.add(where, "correlation must be symmetric")
    if not np.allclose(np.diag(corr), 1.0):
        problems.add(where, "correlation must have ones on the diagonal")
    if np.any(np.abs(corr) > 1):
        problems.add(where, "correlations must lie in [-1, 1]")
        return factors, np.eye(k), np.eye(k)
    eigen = np.linalg.eigvalsh((corr + corr.T) / 2)
    if eigen.min() < -1e-10:
        problems.add(where, f"correlation matrix is not positive semi-definite (smallest eigenvalue "
                     f"{eigen.min():.4g}); adjust the correlations")
        return factors, np.eye(k), np.eye(k)
    return factors, corr, np.linalg.cholesky((corr + corr.T) / 2 + 1e-12 * np.eye(k))


def _extra_attributes(raw: Any, problems: Problems) -> dict[str, ExtraAttribute]:
    out = {}
    for name, value in (raw.items() if isinstance(raw, dict) else []):
        t = Table(value, f"[population.extra_attributes] {name}", problems, allowed={"type", "unit", "description"})
        kind = t.str("type")
        if kind and kind not in EXTRA_TYPES:
            problems.add(t.where, f"type must be one of {', '.join(EXTRA_TYPES)}, got {kind!r}")
        unit = t.str("unit")
        expected = {"float": "萬元", "bool": "flag"}.get(kind)
        if unit and expected and unit != expected:
            problems.add(t.where, f"unit of a {kind} attribute must be {expected!r}, got {unit!r}")
        out[name] = ExtraAttribute(name, kind, unit, t.str("description"))
    return out


def _segments(raw: list, programmes: Mapping[str, Programme], policy: Policy,
              extra: Mapping[str, ExtraAttribute], problems: Problems, uncertain: list[Uncertain],
              blanket: Mapping[str, Uncertainty]) -> list[Segment]:
    segments = []
    seen: set[str] = set()
    for i, value in enumerate(raw):
        sid = value.get("id") if isinstance(value, dict) else None
        where = f"segment {sid}" if isinstance(sid, str) else f"segments entry {i + 1}"
        claimant = value.get("claimant") if isinstance(value, dict) else None
        claimant = claimant if isinstance(claimant, str) else None  # a wrong type is reported by the table below
        programme = programmes.get(claimant, _NO_PROGRAMME)
        t = Table(value, where, problems, allowed={"id", "claimant", "count", "attributes", "source", "assumed", "why",
                                                   "uncertainty", *programme.dimensions})
        check_provenance(t)
        table_uncertainty(t, "population", ("segments", i), UNSURE_FIELDS, blanket, uncertain)
        sid = t.str("id")
        if sid in seen:
            problems.add(where, "duplicate segment id")
        seen.add(sid)
        claimant = t.str("claimant")
        if claimant and claimant not in policy.claimants:
            problems.add(where, f"unknown claimant {claimant!r} (known: {', '.join(policy.claimants)})")
        count = t.int("count")
        if count is not None and not 0 <= count <= COUNT_CEILING:
            problems.add(where, f"count must lie in 0-{COUNT_CEILING:,.0f}, got {count}")
        classes = {}
        for dim, known in programme.dimensions.items():
            value_ = t.str(dim)
            if value_ and value_ not in known:
                problems.add(where, f"unknown {dim} {value_!r} (known: {', '.join(known)})")
            classes[dim] = value_
        ctx = _StepContext(claimant, policy, extra, programme.dimensions, programme.factors, programme.event_factor,
                           {s.attribute: s.kind for s in programme.steps}, problems,
                           {s.attribute: s for s in programme.steps}, uncertain, blanket)
        raw_attrs = t.data.get("attributes", {})
        steps = [_step(name, g, f"{where}, attribute {name}", ctx, ("segments", i, "attributes", name))
                 for name, g in (raw_attrs.items() if isinstance(raw_attrs, dict) else [])]
        segments.append(Segment(sid, claimant, count or 0, FrozenMap(classes),
                                tuple(s for s in steps if s is not None)))
    return segments


def _check_coverage(policy: Policy, programmes: Mapping[str, Programme], segments: list[Segment],
                    problems: Problems) -> None:
    """Every attribute a rule reads is drawn for every segment of that rule's claimant kind."""
    for attribute in policy.input_attributes():
        if not any(attribute.name in {st.attribute for st in programmes.get(s.claimant, _NO_PROGRAMME).steps + s.steps}
                   for s in segments if s.claimant == attribute.claimant):
            problems.add("", f"attribute {attribute.name} (read by the policy's rules) is generated for no "
                         f"{attribute.claimant} segment; add a generator for it")
    for claimant in {r.claimant for r in policy.rules}:
        if not any(s.claimant == claimant for s in segments):
            problems.add("", f"no segment of claimant {claimant!r}: its rules would have no one to claim them")


def _shocks(raw: Any, policy: Policy, extra: Mapping[str, ExtraAttribute], problems: Problems) -> dict[str, float]:
    shocks = {}
    money = {a.name for a in policy.attributes if a.type == "float"} | {
        e.name for e in extra.values() if e.type == "float"}
    for name, factor in (raw.items() if isinstance(raw, dict) else []):
        value = number(factor, f"shocks.{name}", "[shocks]", problems, high=100.0)
        if name not in money:
            problems.add("[shocks]", f"{name}: a shock multiplies a money attribute "
                         f"(one of {', '.join(sorted(money))})")
        elif value is not None and value < 0:
            problems.add("[shocks]", f"{name}: the factor must be >= 0, got {value:g}")
        elif value is not None:
            shocks[name] = value
    return shocks


def _calibration(raw: list, attributes: set[str], problems: Problems) -> list[CalibrationTarget]:
    targets = []
    for i, value in enumerate(raw):
        t = Table(value, f"calibration {value.get('id', i + 1) if isinstance(value, dict) else i + 1}", problems,
                  allowed={"id", "statistic", "value", "low", "high", "unit", "source", "role", "evidence", "sets"})
        role, evidence = t.str("role"), t.str("evidence")
        if role and role not in ROLES:
            problems.add(t.where, f"role must be one of {', '.join(ROLES)}, got {role!r}")
        if evidence and evidence not in EVIDENCE:
            problems.add(t.where, f"evidence must be one of {', '.join(EVIDENCE)}, got {evidence!r}")
        sets = t.str("sets", required=role == "set")
        stat = Table(t.data.get("statistic", {}), f"{t.where}, statistic", problems,
                     allowed={"kind", "attribute", "claimant"})
        kind = stat.str("kind")
        if kind and kind not in ("count", "sum", "share"):
            problems.add(stat.where, f"kind must be count, sum or share, got {kind!r}")
        attribute = stat.str("attribute")
        if attribute and attribute not in attributes:
            problems.add(stat.where, f"unknown attribute {attribute!r}")
        targets.append(CalibrationTarget(t.str("id"), kind, attribute, t.number("value", low=0.0) or 0.0,
                                         t.str("unit"), t.str("source"),
                                         stat.str("claimant", required=False) or None,
                                         t.number("low", required=False, low=0.0),
                                         t.number("high", required=False, low=0.0), role, evidence, sets))
    return targets


def _class_summary(raw: Any, programmes: Mapping[str, Programme], attributes: set[str],
                   problems: Problems) -> ClassSummary | None:
    if raw is None:
        return None
    t = Table(raw, "[population.class_summary]", problems, allowed={"claimant", "by", "quantiles_of", "totals_of"})
    summary = ClassSummary(t.str("claimant"), t.str("by"), t.str("quantiles_of"), t.str("totals_of"))
    if summary.by not in programmes.get(summary.claimant, _NO_PROGRAMME).dimensions:
        problems.add(t.where, f"by must be a dimension of claimant {summary.claimant!r}")
    for name in (summary.quantiles_of, summary.totals_of):
        if name and name not in attributes:
            problems.add(t.where, f"unknown attribute {name!r}")
    return summary


def spec_from_dict(data: Mapping[str, Any], policy: Policy, origin: str = "<population>") -> PopulationSpec:
    problems = Problems(origin, SpecError, "the population specification")
    top = Table(dict(data), "", problems, allowed={"population", "claimants", "segments", "calibration", "shocks",
                                                   "uncertainty"})
    blanket = blanket_uncertainty(top.data.get("uncertainty"), UNSURE_FIELDS, problems)
    uncertain: list[Uncertain] = []
    head = Table(top.data.get("population", {}), "[population]", problems,
                 allowed={"policy", "money_unit", "year", "extra_attributes", "class_summary"})
    if head.data.get("money_unit", "萬元") != "萬元":
        problems.add("[population]", "money_unit must be 萬元")
    year = head.int("year", required=False)
    if year is not None and policy.meta.get("year") is not None and year != policy.meta.get("year"):
        problems.add("[population]", f"year {year} is not the policy's year {policy.meta.get('year')}")
    extra = _extra_attributes(head.data.get("extra_attributes", {}), problems)
    raw_programmes = top.data.get("claimants", {})
    programmes = {claimant: _programme(claimant, raw, policy, extra, problems, uncertain, blanket)
                  for claimant, raw in (raw_programmes.items() if isinstance(raw_programmes, dict) else [])}
    segments = _segments(top.list("segments"), programmes, policy, extra, problems, uncertain, blanket)
    _check_coverage(policy, programmes, segments, problems)
    shocks = _shocks(top.data.get("shocks", {}), policy, extra, problems)
    attributes = {a.name for a in policy.attributes} | set(extra)
    targets = _calibration(top.list("calibration"), attributes, problems)
    summary = _class_summary(head.data.get("class_summary"), programmes, attributes, problems)
    problems.raise_if_any()
    return PopulationSpec(
        path=origin, policy=policy, programmes=FrozenMap(programmes), segments=tuple(segments),
        extra_attributes=FrozenMap(extra), calibration=tuple(targets), shocks=FrozenMap(shocks), summary=summary,
        uncertain=tuple(uncertain), raw=ordered_json(data),
    )


# ----------------------------------------------------------------------------- drawing
@functools.lru_cache(maxsize=4096)
def _threshold(p: float) -> float:
    """Score above which a standard normal lies with probability p (remembered: a few dozen values recur)."""
    if p <= 0:
        return np.inf
    if p >= 1:
        return -np.inf
    return float(special.ndtri(1.0 - p))


def occurs(rng: np.random.Generator, m: int, p: float, factor: np.ndarray | None, loading: float) -> np.ndarray:
    """Bernoulli(p) flags, correlated with a latent factor through a one-factor Gaussian copula.

    Each flag is ``loading * factor + sqrt(1 - loading^2) * noise > threshold(p)``: the marginal
    probability is exactly ``p`` whatever the loading.  Always consumes ``m`` normals.
    """
    noise = rng.standard_normal(m)
    if factor is None or not loading:
        return noise > _threshold(p)
    scale = np.sqrt(1.0 - loading * loading)
    if jit.AVAILABLE:  # one compiled pass, the same IEEE operations in the same order
        flags = np.empty(m, dtype=bool)
        copula_exceeds(noise, scale, loading, factor, _threshold(p), flags)
        return flags
    noise *= scale
    noise += loading * factor
    return noise > _threshold(p)


@jit.kernel()
def copula_exceeds(noise, scale, loading, factor, threshold, flags):
    """``flags[i] = noise[i] * scale + loading * factor[i] > threshold``: each product rounded, then the sum (what
    NumPy's ``noise *= scale; noise += loading * factor`` computes; numba contracts nothing into a fused
    multiply-add without fastmath)."""
    for i in range(noise.shape[0]):
        flags[i] = noise[i] * scale + loading * factor[i] > threshold


def poisson_from_uniform(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts by inversion of uniforms (fixed consumption: one uniform per claimant).

    >>> poisson_from_uniform(np.array([0.1, 0.5, 0.99]), np.array([1.0, 1.0, 1.0]))
    array([0., 1., 4.])
    """
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), u.shape)
    term = np.exp(-mean)
    if jit.AVAILABLE:  # claimant by claimant, each only as far as its own count: the same sums, bit for bit
        count = np.empty(u.shape)
        poisson_inversion(u, np.ascontiguousarray(mean), term, count)
        return count
    cdf = term.copy()
    count = np.zeros(u.shape)
    k = 0
    active = u > cdf
    while active.any():
        k += 1
        term = term * mean / k
        cdf = cdf + term
        count[active] = k
        active &= u > cdf
        if k > POISSON_MAX:  # means here are small; guards against u rounding to 1
            break
    return count


POISSON_MAX = 1000


@jit.kernel()
def poisson_inversion(u, mean, first, count):
    """The inversion of :func:`poisson_from_uniform` for each claimant on its own: ``term`` multiplied by the mean
    and divided by k, added to the distribution function, until it reaches u (or k passes :data:`POISSON_MAX`)."""
    for i in range(u.shape[0]):
        term = first[i]
        cdf = term
        k = 0
        while u[i] > cdf:
            k += 1
            term = term * mean[i] / k
            cdf = cdf + term
            if k > POISSON_MAX:
                break
        count[i] = k


def _block_rng(seed: int, replication: int, segment: Segment, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(seed, spawn_key=(replication, segment.key, block))))


@dataclass
class _Block:
    """What a step sees while a block is drawn: the segment, its size, its stream, factors, columns so far."""

    segment: Segment
    m: int
    rng: np.random.Generator
    factors: Mapping[str, np.ndarray]
    columns: dict[str, np.ndarray]


def _factor(block: _Block, step: Step) -> np.ndarray | None:
    return block.factors.get(step.factor) if step.factor else None


def _draw_lognormal(step: Step, b: _Block) -> np.ndarray:
    z = _factor(b, step)
    if z is None:
        z = b.rng.standard_normal(b.m)
    return step.lognormal(b.segment).quantile_from_normal(z.copy())


def _draw_normal(step: Step, b: _Block) -> np.ndarray:
    z = _factor(b, step)
    if z is None:
        z = b.rng.standard_normal(b.m)
    return step.number("mean", b.segment) + step.number("sd", b.segment) * z


def _draw_bernoulli(step: Step, b: _Block) -> np.ndarray:
    return b.rng.random(b.m) < step.number("probability", b.segment)


def _draw_factor_event(step: Step, b: _Block) -> np.ndarray:
    return _factor(b, step) > _threshold(step.number("probability", b.segment))


def _draw_event(step: Step, b: _Block) -> np.ndarray:
    p = step.number("probability", b.segment) if step.reaches(b.segment) else 0.0
    flag = occurs(b.rng, b.m, p, _factor(b, step), step.loading)
    if step.only_if is not None:
        flag &= b.columns[step.only_if]
    return flag


def _draw_amount(step: Step, b: _Block) -> np.ndarray:
    flag = _draw_event(step, b)
    z = b.rng.standard_normal(b.m)  # drawn for every claimant (the stream), turned into money only where needed
    value = np.zeros(b.m)
    value[flag] = step.number("median", b.segment) * np.exp(step.number("sigma", b.segment) * z[flag])
    return value


def _draw_count(step: Step, b: _Block) -> np.ndarray:
    mean = np.full(b.m, step.number("mean", b.segment) if step.reaches(b.segment) else 0.0)
    factor = _factor(b, step)
    if factor is not None and step.loading:
        mean = mean * np.exp(step.loading * factor - 0.5 * step.loading**2)
    return poisson_from_uniform(b.rng.random(b.m), mean)


def _draw_categorical(step: Step, b: _Block) -> np.ndarray:
    cumulative = np.cumsum(step.probabilities)
    pick = np.searchsorted(cumulative, b.rng.random(b.m) * cumulative[-1], side="right")
    return np.asarray(step.values)[np.minimum(pick, len(step.values) - 1)]


def _draw_product(step: Step, b: _Block) -> np.ndarray:
    value = b.columns[step.of[0]] * b.columns[step.of[1]]
    return value if step.when is None else np.where(b.columns[step.when], value, 0.0)


def _draw_increase(step: Step, b: _Block) -> np.ndarray:
    return b.columns[step.of[0]] * -np.expm1(-b.columns[step.log_growth])


def _draw_at_most(step: Step, b: _Block) -> np.ndarray:
    return b.columns[step.of[0]] <= step.number("limit", b.segment)


DRAWS = {"lognormal": _draw_lognormal, "normal": _draw_normal, "bernoulli": _draw_bernoulli,
         "factor_event": _draw_factor_event, "event": _draw_event, "amount": _draw_amount, "count": _draw_count,
         "categorical": _draw_categorical, "product": _draw_product, "increase": _draw_increase,
         "at_most": _draw_at_most}


def _draw_block(spec: PopulationSpec, segment: Segment, index: int, m: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    programme = spec.programme(segment.claimant)
    factors = {}
    if programme.factors:
        z = rng.standard_normal((m, len(programme.factors))) @ programme.cholesky.T
        factors = {name: z[:, k] for k, name in enumerate(programme.factors)}
    block = _Block(segment, m, rng, factors, {})
    for step in spec.steps_of(segment):
        block.columns[step.attribute] = DRAWS[step.kind](step, block)
    columns = block.columns
    for name, factor in spec.shocks.items():
        if name in columns:
            columns[name] = columns[name] * factor
    columns["segment"] = np.full(m, index, dtype=np.int16)
    return columns


def draws_per_claimant(spec: PopulationSpec, segment: Segment) -> tuple[int, int]:
    """How many standard normals and uniforms the generator draws per claimant of a segment."""
    normals = len(spec.programme(segment.claimant).factors)
    uniforms = 0
    for step in spec.steps_of(segment):
        if step.kind in ("lognormal", "normal") and step.factor is None:
            normals += 1
        normals += {"event": 1, "amount": 2}.get(step.kind, 0)
        uniforms += step.kind in ("bernoulli", "count", "categorical")
    return normals, uniforms


@dataclass
class PopulationChunk:
    """A run of consecutive claimants: column name -> 1-D array; ``start`` is the first row number."""

    columns: dict[str, np.ndarray]
    start: int

    def __len__(self) -> int:
        return len(self.columns["segment"])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, index=pd.RangeIndex(self.start, self.start + len(self)))


def _dtype(spec: PopulationSpec, name: str):
    if name == "segment":
        return np.int16
    declared = {a.name: a.type for a in spec.policy.attributes} | {
        e.name: e.type for e in spec.extra_attributes.values()}
    return bool if declared.get(name) == "bool" else np.float64


def block_plan(counts: np.ndarray) -> list[tuple[int, int, int]]:
    """(segment index, block index, claimants) of every generation block, in population order."""
    return [(index, block, min(BLOCK, int(count) - start))
            for index, count in enumerate(counts) for block, start in enumerate(range(0, int(count), BLOCK))]


def draw_block(spec: PopulationSpec, seed: int, replication: int, segment_index: int, block: int,
               m: int) -> dict[str, np.ndarray]:
    """One generation block with every column of the population (attributes of other claimant kinds zero);
    internal steps and attributes no rule reads are drawn (they keep the streams) but not kept."""
    segment = spec.segments[segment_index]
    drawn = _draw_block(spec, segment, segment_index, m, _block_rng(seed, replication, segment, block))
    out = {}
    for name, dtype in spec.column_types:
        out[name] = drawn[name].astype(dtype, copy=False) if name in drawn else np.zeros(m, dtype=dtype)
    return out


def blocks(spec: PopulationSpec, seed: int, counts: np.ndarray, replication: int = 0) -> Iterator[dict]:
    """Every block of every segment, in order, as full column dicts."""
    for segment_index, block, m in block_plan(counts):
        yield draw_block(spec, seed, replication, segment_index, block, m)


def generate(spec: PopulationSpec, seed: int, n: int | None = None, chunk_size: int = DEFAULT_CHUNK,
             *, replication: int = 0, scale: float = 1.0) -> Iterator[PopulationChunk]:
    """Stream the population in chunks of ``chunk_size`` claimants (the last may be shorter).

    ``n`` sets the total (segment shares kept); ``scale`` multiplies every segment count instead.
    Same ``seed`` and ``replication``: identical claimants whatever ``chunk_size``.

    >>> spec = load_spec()
    >>> chunk = next(generate(spec, seed=1, n=1000, chunk_size=500))
    >>> len(chunk), chunk.frame().shape[1] == len(spec.columns)
    (500, True)
    """
    if chunk_size < 1:
        raise SpecError(f"chunk_size must be >= 1, got {chunk_size}")
    counts = spec.counts(n, scale)
    pending: list[dict[str, np.ndarray]] = []
    held = 0
    start = 0
    for block in blocks(spec, seed, counts, replication):
        pending.append(block)
        held += len(block["segment"])
        while held >= chunk_size:
            chunk, pending, held = _take(pending, chunk_size)
            yield PopulationChunk(chunk, start)
            start += chunk_size
    if held:
        chunk, pending, held = _take(pending, held)
        yield PopulationChunk(chunk, start)


def _take(pending: list[dict], size: int) -> tuple[dict, list[dict], int]:
    """Cut the first ``size`` rows off a list of column dicts."""
    parts, rest, needed = [], [], size
    for block in pending:
        m = len(block["segment"])
        if needed >= m:
            parts.append(block)
            needed -= m
        elif needed > 0:
            parts.append({k: v[:needed] for k, v in block.items()})
            rest.append({k: v[needed:] for k, v in block.items()})
            needed = 0
        else:
            rest.append(block)
    chunk = parts[0] if len(parts) == 1 else {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return chunk, rest, sum(len(b["segment"]) for b in rest)


def population_frame(spec: PopulationSpec, seed: int, n: int | None = None, *, replication: int = 0,
                     scale: float = 1.0) -> pd.DataFrame:
    """The whole population as one DataFrame (for small populations and notebooks)."""
    chunks = [c.frame() for c in generate(spec, seed, n, chunk_size=BLOCK, replication=replication, scale=scale)]
    return pd.concat(chunks) if chunks else pd.DataFrame(columns=list(spec.columns))


# ----------------------------------------------------------------------------- real registers
def load_register(path: str | Path, policy: Policy) -> FirmTable:
    """Read a real firm register (CSV or Parquet) and validate it against the policy's attributes.

    Missing columns without a default, non-numbers, NaN, infinities, negative amounts, flags other
    than 0/1 and fractional counts raise :class:`~sim.errors.FirmTableError` naming the columns and
    their first offending rows; nothing is returned for bad data.
    """
    frame = read_table(path, policy)
    return firm_table(policy, frame, source=str(path), validate=True)


# ----------------------------------------------------------------------------- calibration
def _statistic(target: CalibrationTarget, frame: pd.DataFrame, spec: PopulationSpec) -> float:
    column = frame[target.attribute]
    if target.kind == "sum":
        return float(column.to_numpy(dtype=np.float64).sum())
    if target.kind == "count":
        return float((column > 0).sum())
    claimants = [i for i, s in enumerate(spec.segments) if target.claimant in (None, s.claimant)]
    rows = frame["segment"].isin(claimants)
    return float((column[rows] > 0).mean())


def calibration_table(spec: PopulationSpec, seed: int = 0, replications: int = 5) -> pd.DataFrame:
    """Each calibration target beside what the synthetic population gives.

    ``expected`` is the closed-form expectation where the spec gives one (event counts); ``mean`` and
    ``sd`` are over ``replications`` independent draws of the whole population.
    """
    values: dict[str, list[float]] = {t.id: [] for t in spec.calibration}
    for replication in range(replications):
        frame = population_frame(spec, seed, replication=replication)
        for target in spec.calibration:
            values[target.id].append(_statistic(target, frame, spec))
    rows = []
    for target in spec.calibration:
        sample = np.array(values[target.id])
        expected = np.nan
        if target.kind in ("count", "share") and spec.has_expectation(target.attribute):
            expected = spec.expected(target.attribute)
            if target.kind == "share":
                expected /= sum(s.count for s in spec.segments if target.claimant in (None, s.claimant))
        centre = expected if np.isfinite(expected) else sample.mean()
        in_band = None
        if target.low is not None and target.high is not None:
            in_band = bool(target.low <= centre <= target.high)
        rows.append({
            "target": target.id, "statistic": f"{target.kind} {target.attribute}", "unit": target.unit,
            "target_value": target.value, "low": target.low, "high": target.high,
            "expected": expected, "mean": sample.mean(), "sd": sample.std(ddof=1) if len(sample) > 1 else np.nan,
            "in_band": in_band, "role": target.role, "evidence": target.evidence, "sets": target.sets,
            "source": target.source,
        })
    return pd.DataFrame(rows)


def class_quantiles(spec: PopulationSpec, seed: int = 0) -> pd.DataFrame:
    """Quantiles of one attribute and totals of another by class (``[population.class_summary]``)."""
    summary = spec.summary
    if summary is None:
        return pd.DataFrame()
    frame = population_frame(spec, seed)
    classes = {i: s.classes[summary.by] for i, s in enumerate(spec.segments) if s.claimant == summary.claimant}
    frame = frame[frame["segment"].isin(list(classes))].assign(**{summary.by: lambda f: f["segment"].map(classes)})
    grouped = frame.groupby(summary.by, sort=False)
    out = grouped[summary.quantiles_of].quantile([0.1, 0.5, 0.9, 0.99]).unstack()
    out.columns = [f"{summary.quantiles_of} P{int(q * 100)}" for q in out.columns]
    out["claimants"] = grouped.size()
    out[f"with {summary.totals_of} > 0"] = frame[frame[summary.totals_of] > 0].groupby(summary.by, sort=False).size()
    out[f"{summary.totals_of} (sum)"] = grouped[summary.totals_of].sum()
    return out
