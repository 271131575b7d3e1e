"""Monte Carlo claimant population: a calibrated, correlated, reproducible synthetic register.

The specification (``models/<model>/population.toml``) describes claimants as segments: enterprises
by sector and size class, plus banks, incubators, maker spaces, research teams, exhibitions, cultural
venues and families.  :func:`generate` streams the population in columnar chunks.

Reproducibility: each segment is cut into blocks of :data:`BLOCK` claimants, and each block draws from
its own ``numpy.random.SeedSequence(seed, spawn_key=(replication, segment-hash, block))``, every
variable taking a fixed number of draws in a fixed order.  So the same seed gives bit-identical
claimants whatever the chunk size; replications are independent streams; and a scenario that changes a
parameter (a probability, a median) but not the structure sees the same underlying random numbers
(common random numbers).

:func:`load_register` reads a real firm register (CSV or Parquet) instead.
"""

from __future__ import annotations

import hashlib
import json
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import special

from sim.errors import SpecError
from sim.firms import FirmTable, firm_table, read_table
from sim.policy import Policy, resolve_model
from sim.validation import FrozenMap, Problems, Table, canonical_json, check_provenance, number, ordered_json, read_toml

BLOCK = 1 << 16
DEFAULT_CHUNK = 1 << 16
GENERATOR_KINDS = ("event", "amount", "count", "categorical")
CORE_COLUMNS = ("revenue", "rd_spending", "rd_increase", "tech_sme_scale", "manufacturing",
                "export_credit_premium")
COPULA_FACTORS = ("size", "rd_intensity", "rd_growth", "export", "recognition")


# ----------------------------------------------------------------------------- spec objects
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
class SizeClass:
    name: str
    revenue: Lognormal
    rd_performer: float
    rd_intensity: Lognormal
    insured_exporter: float


@dataclass(frozen=True)
class Sector:
    name: str
    manufacturing_share: float
    rd_multiplier: float


@dataclass(frozen=True)
class AttributeGenerator:
    """How one attribute is drawn: an event, an amount, a Poisson count or a categorical value."""

    attribute: str
    kind: str
    probability: Mapping[str, float] | float = 0.0  # by size class for enterprises
    mean: Mapping[str, float] | float = 0.0
    median: float = 0.0
    sigma: float = 0.0
    loading: float = 0.0
    sectors: tuple[str, ...] | None = None
    manufacturing: bool = False
    values: tuple[float, ...] = ()
    probabilities: tuple[float, ...] = ()

    def level(self, which: Mapping[str, float] | float, size: str | None) -> float:
        return float(which[size]) if isinstance(which, Mapping) else float(which)


@dataclass(frozen=True)
class Segment:
    id: str
    claimant: str
    count: int
    sector: str | None = None
    size: str | None = None
    generators: tuple[AttributeGenerator, ...] = ()

    @property
    def key(self) -> int:
        """A stable stream key: the same segment id always draws from the same streams."""
        return zlib.crc32(self.id.encode())


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


@dataclass(frozen=True)
class PopulationSpec:
    path: str
    policy: Policy
    factors: tuple[str, ...]
    correlation: np.ndarray = field(repr=False)
    cholesky: np.ndarray = field(repr=False)
    sizes: Mapping[str, SizeClass]
    sectors: Mapping[str, Sector]
    rd_growth_mean: float
    rd_growth_sd: float
    premium_ratio: Lognormal
    tech_sme_revenue_limit: float
    segments: tuple[Segment, ...]
    enterprise_generators: tuple[AttributeGenerator, ...]
    extra_attributes: Mapping[str, str]
    calibration: tuple[CalibrationTarget, ...]
    shocks: Mapping[str, float] = field(default_factory=dict)  # attribute -> multiplicative factor
    raw: str = field(default="{}", repr=False)  # the validated data as canonical JSON

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(canonical_json(json.loads(self.raw)).encode()).hexdigest()

    def data(self) -> dict:
        """A fresh, mutable copy of the specification data."""
        return json.loads(self.raw)

    @property
    def columns(self) -> tuple[str, ...]:
        """The columns of every generated chunk: the policy's inputs, the extras, the segment index."""
        names = [a.name for a in self.policy.input_attributes()]
        names += [c for c in CORE_COLUMNS if c not in names]
        names += [c for c in self.extra_attributes if c not in names]
        return (*names, "segment")

    @property
    def total(self) -> int:
        return sum(s.count for s in self.segments)

    def segment_table(self) -> pd.DataFrame:
        return pd.DataFrame([{"segment": i, "id": s.id, "claimant": s.claimant, "sector": s.sector,
                              "size": s.size, "count": s.count} for i, s in enumerate(self.segments)])

    def generators_of(self, segment: Segment) -> tuple[AttributeGenerator, ...]:
        return self.enterprise_generators if segment.claimant == "enterprise" else segment.generators

    def expected(self, attribute: str, counts: np.ndarray | None = None) -> float:
        """Expected number of claimants with the flag set (event, amount, insured exporters) or the
        expected total (count), in closed form from the spec: the copula leaves marginals exact."""
        counts = self.counts() if counts is None else counts
        total = 0.0
        for segment, count in zip(self.segments, counts):
            if attribute == "export_credit_premium" and segment.claimant == "enterprise":
                total += count * self.sizes[segment.size].insured_exporter
            for g in self.generators_of(segment):
                if g.attribute != attribute:
                    continue
                share = _applies(g, segment, self.sectors)
                if g.kind in ("event", "amount"):
                    total += count * share * g.level(g.probability, segment.size)
                elif g.kind == "count":
                    total += count * share * g.level(g.mean, segment.size)
        return total

    def has_expectation(self, attribute: str) -> bool:
        """Whether :meth:`expected` has a closed form for the attribute."""
        return attribute == "export_credit_premium" or any(
            g.attribute == attribute and g.kind != "categorical"
            for segment in self.segments for g in self.generators_of(segment))

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


def _applies(g: AttributeGenerator, segment: Segment, sectors: Mapping[str, Sector]) -> float:
    """Share of a segment a generator reaches (sector restriction, manufacturers only)."""
    if g.sectors is not None and segment.sector not in g.sectors:
        return 0.0
    if g.manufacturing:
        return sectors[segment.sector].manufacturing_share if segment.sector else 0.0
    return 1.0


# ----------------------------------------------------------------------------- loading
def load_spec(model: str | Path | None = None, policy: Policy | None = None) -> PopulationSpec:
    """Load and validate ``population.toml`` of a model folder against its policy."""
    from sim.policy import load as load_policy

    folder = resolve_model(model)
    data, shown = read_toml(folder / "population.toml", SpecError, "no population specification in the model folder")
    return spec_from_dict(data, policy or load_policy(folder), origin=shown)


def _probability(t: Table, key: str, value: Any, sizes: tuple[str, ...] | None,
                 high: float | None = 1.0) -> Mapping[str, float] | float:
    """A number, or (for enterprises) a table keyed by every size class; each in [0, high]."""
    def check(v: Any, label: str) -> float:
        x = number(v, label, t.where, t.problems)
        if x is None:
            return 0.0
        if x < 0 or (high is not None and x > high):
            bound = f"[0, {high:g}]" if high is not None else ">= 0"
            t.problems.add(t.where, f"{label} must lie in {bound}, got {x:g}")
        return x

    if isinstance(value, dict):
        if sizes is None:
            t.problems.add(t.where, f"{key} must be a single number for this claimant")
            return 0.0
        unknown = set(value) - set(sizes)
        missing = set(sizes) - set(value)
        if unknown:
            t.problems.add(t.where, f"{key} names unknown size class {sorted(unknown)} (known: {', '.join(sizes)})")
        if missing:
            t.problems.add(t.where, f"{key} lacks size class {sorted(missing)}")
        return FrozenMap({s: check(value.get(s, 0.0), f"{key}.{s}") for s in sizes})
    return check(value, key)


def _lognormal(t: Table, key: str, problems: Problems) -> Lognormal:
    raw = t.data.get(key)
    lt = Table(raw if raw is not None else {}, f"{t.where}, {key}", problems,
               allowed={"median", "sigma", "tail_from", "tail_alpha"})
    if raw is None:
        problems.add(t.where, f"{key} is required")
    median = lt.number("median") or 0.0
    sigma = lt.number("sigma") or 0.0
    if median <= 0:
        problems.add(lt.where, f"median must be > 0, got {median:g}")
    if sigma < 0:
        problems.add(lt.where, f"sigma must be >= 0, got {sigma:g}")
    tail_from = lt.number("tail_from", required=False)
    tail_alpha = lt.number("tail_alpha", required=False)
    if (tail_from is None) != (tail_alpha is None):
        problems.add(lt.where, "tail_from and tail_alpha go together")
    if tail_from is not None and not 0 < tail_from < 1:
        problems.add(lt.where, f"tail_from must lie in (0, 1), got {tail_from:g}")
    if tail_alpha is not None and tail_alpha <= 0:
        problems.add(lt.where, f"tail_alpha must be > 0, got {tail_alpha:g}")
    return Lognormal(median, sigma, tail_from, tail_alpha)


_GEN_KEYS = {"kind", "probability", "mean", "median", "sigma", "loading", "sectors", "manufacturing",
             "values", "probabilities", "source", "assumed", "why"}


def _generator(name: str, raw: Any, where: str, claimant: str, policy: Policy,
               extra: Mapping[str, str], sizes: tuple[str, ...] | None, sectors: Mapping[str, Sector],
               problems: Problems) -> AttributeGenerator:
    t = Table(raw, where, problems, allowed=_GEN_KEYS)
    check_provenance(t)
    declared = {a.name: a for a in policy.attributes}
    if name in declared:
        if declared[name].claimant != claimant:
            problems.add(where, f"attribute {name!r} belongs to claimant {declared[name].claimant!r}, "
                         f"not {claimant!r}")
    elif name not in extra:
        problems.add(where, f"unknown attribute {name!r}: the policy does not declare it and it is not "
                     "listed under [population.extra_attributes]")
    kind = t.str("kind")
    if kind and kind not in GENERATOR_KINDS:
        problems.add(where, f"kind must be one of {', '.join(GENERATOR_KINDS)}, got {kind!r}")
    needs = {"event": {"probability"}, "amount": {"probability", "median", "sigma"},
             "count": {"mean"}, "categorical": {"values", "probabilities"}}.get(kind, set())
    for key in needs - set(t.data):
        problems.add(where, f"a {kind} generator needs {key}")
    for key in {"probability", "mean", "median", "sigma", "values", "probabilities"} - needs:
        if key in t.data and kind in GENERATOR_KINDS:
            problems.add(where, f"{key} does not apply to a {kind} generator")
    probability = _probability(t, "probability", t.data["probability"], sizes) if "probability" in t.data else 0.0
    mean = _probability(t, "mean", t.data["mean"], sizes, high=None) if "mean" in t.data else 0.0
    median = t.number("median", required=False) or 0.0
    sigma = t.number("sigma", required=False) or 0.0
    if "median" in t.data and median <= 0:
        problems.add(where, f"median must be > 0, got {median:g}")
    if sigma < 0:
        problems.add(where, f"sigma must be >= 0, got {sigma:g}")
    loading = t.number("loading", required=False) or 0.0
    if not 0 <= loading < 1:
        problems.add(where, f"loading must lie in [0, 1), got {loading:g}")
    if loading and sizes is None:
        problems.add(where, "loading applies to enterprise generators only (other claimants have no copula)")
    gen_sectors = t.data.get("sectors")
    if gen_sectors is not None:
        unknown = [s for s in gen_sectors if s not in sectors]
        if unknown:
            problems.add(where, f"sectors names unknown sector {unknown} (known: {', '.join(sectors)})")
        gen_sectors = tuple(gen_sectors)
    values = tuple(t.list("values"))
    probabilities = tuple(t.list("probabilities"))
    if kind == "categorical":
        if len(values) != len(probabilities) or not values:
            problems.add(where, "values and probabilities must be non-empty lists of the same length")
        elif any(not 0 <= p <= 1 for p in probabilities) or abs(sum(probabilities) - 1) > 1e-9:
            problems.add(where, f"probabilities must lie in [0, 1] and add to 1, got {list(probabilities)}")
        elif list(values) != sorted(values):
            problems.add(where, "values must be increasing")
    return AttributeGenerator(name, kind, probability, mean, median, sigma, loading, gen_sectors,
                              t.bool("manufacturing", required=False), tuple(float(v) for v in values),
                              tuple(float(p) for p in probabilities))


def spec_from_dict(data: Mapping[str, Any], policy: Policy, origin: str = "<population>") -> PopulationSpec:
    problems = Problems(origin, SpecError, "the population specification")
    top = Table(dict(data), "", problems, allowed={
        "population", "copula", "sizes", "sectors", "core", "segments", "enterprise", "calibration", "shocks"})
    head = Table(top.data.get("population", {}), "[population]", problems,
                 allowed={"policy", "money_unit", "year", "extra_attributes"})
    if head.data.get("money_unit", "萬元") != "萬元":
        problems.add("[population]", "money_unit must be 萬元")
    extra = dict(head.data.get("extra_attributes", {}) or {})

    copula = Table(top.data.get("copula", {}), "[copula]", problems,
                   allowed={"factors", "correlation", "source", "assumed", "why"})
    check_provenance(copula)
    factors = tuple(copula.list("factors"))
    if factors != COPULA_FACTORS:
        problems.add("[copula]", f"factors must be {list(COPULA_FACTORS)}, got {list(factors)}")
    try:
        corr = np.array(copula.list("correlation"), dtype=np.float64)
    except (TypeError, ValueError):
        corr = np.zeros((0, 0))
        problems.add("[copula]", "correlation must be a square matrix of numbers")
    chol = np.eye(len(COPULA_FACTORS))
    k = len(COPULA_FACTORS)
    if corr.shape != (k, k):
        problems.add("[copula]", f"correlation must be {k} x {k}, got shape {corr.shape}")
    else:
        if not np.allclose(corr, corr.T):
            problems.add("[copula]", "correlation must be symmetric")
        if not np.allclose(np.diag(corr), 1.0):
            problems.add("[copula]", "correlation must have ones on the diagonal")
        if np.any(np.abs(corr) > 1):
            problems.add("[copula]", "correlations must lie in [-1, 1]")
        eigen = np.linalg.eigvalsh((corr + corr.T) / 2)
        if eigen.min() < -1e-10:
            problems.add("[copula]", f"correlation matrix is not positive semi-definite (smallest "
                         f"eigenvalue {eigen.min():.4g}); adjust the correlations")
        else:
            chol = np.linalg.cholesky((corr + corr.T) / 2 + 1e-12 * np.eye(k))

    sizes: dict[str, SizeClass] = {}
    raw_sizes = top.data.get("sizes", {})
    for name, raw in (raw_sizes.items() if isinstance(raw_sizes, dict) else []):
        t = Table(raw, f"size {name}", problems, allowed={
            "revenue", "rd_performer", "rd_intensity", "insured_exporter", "source", "assumed", "why"})
        check_provenance(t)
        sizes[name] = SizeClass(name, _lognormal(t, "revenue", problems),
                                _probability(t, "rd_performer", t.data.get("rd_performer", 0.0), None),
                                _lognormal(t, "rd_intensity", problems),
                                _probability(t, "insured_exporter", t.data.get("insured_exporter", 0.0), None))
    size_names = tuple(sizes)
    if not sizes:
        problems.add("[sizes]", "at least one size class is required")

    sectors: dict[str, Sector] = {}
    raw_sectors = top.data.get("sectors", {})
    for name, raw in (raw_sectors.items() if isinstance(raw_sectors, dict) else []):
        t = Table(raw, f"sector {name}", problems, allowed={
            "name_en", "manufacturing_share", "rd_multiplier", "source", "assumed", "why"})
        check_provenance(t)
        share = _probability(t, "manufacturing_share", t.data.get("manufacturing_share", 0.0), None)
        multiplier = t.number("rd_multiplier") or 0.0
        if multiplier < 0:
            problems.add(t.where, f"rd_multiplier must be >= 0, got {multiplier:g}")
        sectors[name] = Sector(name, share, multiplier)

    core = Table(top.data.get("core", {}), "[core]", problems, allowed={
        "rd_growth", "export_premium_ratio", "tech_sme_revenue_limit", "source", "assumed", "why"})
    check_provenance(core)
    growth = Table(core.data.get("rd_growth", {}), "[core] rd_growth", problems, allowed={"mean", "sd"})
    growth_mean = growth.number("mean") or 0.0
    growth_sd = growth.number("sd") or 0.0
    if growth_sd < 0:
        problems.add(growth.where, f"sd must be >= 0, got {growth_sd:g}")
    premium = _lognormal(core, "export_premium_ratio", problems)
    limit = core.number("tech_sme_revenue_limit") or 0.0

    enterprise_raw = top.data.get("enterprise", {})
    enterprise = tuple(
        _generator(name, raw, f"enterprise.{name}", "enterprise", policy, extra, size_names, sectors, problems)
        for name, raw in (enterprise_raw.items() if isinstance(enterprise_raw, dict) else [])
    )

    segments = []
    seen: set[str] = set()
    for i, raw in enumerate(top.list("segments")):
        sid = raw.get("id") if isinstance(raw, dict) else None
        where = f"segment {sid}" if isinstance(sid, str) else f"segments entry {i + 1}"
        t = Table(raw, where, problems, allowed={
            "id", "claimant", "sector", "size", "count", "attributes", "source", "assumed", "why"})
        check_provenance(t)
        sid = t.str("id")
        if sid in seen:
            problems.add(where, "duplicate segment id")
        seen.add(sid)
        claimant = t.str("claimant")
        if claimant and claimant not in policy.claimants:
            problems.add(where, f"unknown claimant {claimant!r} (known: {', '.join(policy.claimants)})")
        count = t.int("count")
        if count is not None and count < 0:
            problems.add(where, f"count must be >= 0, got {count}")
        sector = t.str("sector", required=claimant == "enterprise") or None
        size = t.str("size", required=claimant == "enterprise") or None
        if claimant == "enterprise":
            if sector and sector not in sectors:
                problems.add(where, f"unknown sector {sector!r} (known: {', '.join(sectors)})")
            if size and size not in sizes:
                problems.add(where, f"unknown size class {size!r} (known: {', '.join(sizes)})")
            if "attributes" in t.data:
                problems.add(where, "enterprise attributes are generated by [enterprise.*], not per segment")
        raw_attrs = t.data.get("attributes", {})
        generators = tuple(
            _generator(name, g, f"{where}, attribute {name}", claimant, policy, extra, None, sectors, problems)
            for name, g in (raw_attrs.items() if isinstance(raw_attrs, dict) else [])
        )
        segments.append(Segment(sid, claimant, count or 0, sector, size, generators))

    # Every attribute a rule reads must be generated for the claimants of that rule.
    generated: dict[str, set[str]] = {"enterprise": set(CORE_COLUMNS) | {g.attribute for g in enterprise}}
    for segment in segments:
        if segment.claimant != "enterprise":
            generated.setdefault(segment.claimant, set()).update(g.attribute for g in segment.generators)
    for attribute in policy.input_attributes():
        if attribute.name not in generated.get(attribute.claimant, set()):
            problems.add("", f"attribute {attribute.name} (read by the policy's rules) is generated for no "
                         f"{attribute.claimant} segment; add a generator for it")
    for claimant in {r.claimant for r in policy.rules}:
        if not any(s.claimant == claimant for s in segments):
            problems.add("", f"no segment of claimant {claimant!r}: its rules would have no one to claim them")

    shocks = {}
    raw_shocks = top.data.get("shocks", {})
    money = {a.name for a in policy.attributes if a.type == "float"} | {"revenue"}
    for name, factor in (raw_shocks.items() if isinstance(raw_shocks, dict) else []):
        value = number(factor, f"shocks.{name}", "[shocks]", problems)
        if name not in money:
            problems.add("[shocks]", f"{name}: a shock multiplies a money attribute "
                         f"(one of {', '.join(sorted(money))})")
        elif value is not None and value < 0:
            problems.add("[shocks]", f"{name}: the factor must be >= 0, got {value:g}")
        elif value is not None:
            shocks[name] = value

    targets = []
    all_attributes = {a.name for a in policy.attributes} | set(extra) | set(CORE_COLUMNS)
    for i, raw in enumerate(top.list("calibration")):
        t = Table(raw, f"calibration {raw.get('id', i + 1) if isinstance(raw, dict) else i + 1}", problems,
                  allowed={"id", "statistic", "value", "low", "high", "unit", "source"})
        stat = Table(t.data.get("statistic", {}), f"{t.where}, statistic", problems,
                     allowed={"kind", "attribute", "claimant"})
        kind = stat.str("kind")
        if kind and kind not in ("count", "sum", "share"):
            problems.add(stat.where, f"kind must be count, sum or share, got {kind!r}")
        attribute = stat.str("attribute")
        if attribute and attribute not in all_attributes:
            problems.add(stat.where, f"unknown attribute {attribute!r}")
        targets.append(CalibrationTarget(t.str("id"), kind, attribute, t.number("value") or 0.0,
                                         t.str("unit"), t.str("source"),
                                         stat.str("claimant", required=False) or None,
                                         t.number("low", required=False), t.number("high", required=False)))

    problems.raise_if_any()
    return PopulationSpec(
        path=origin, policy=policy, factors=factors, correlation=corr, cholesky=chol,
        sizes=FrozenMap(sizes), sectors=FrozenMap(sectors), rd_growth_mean=growth_mean,
        rd_growth_sd=growth_sd, premium_ratio=premium, tech_sme_revenue_limit=limit,
        segments=tuple(segments), enterprise_generators=enterprise,
        extra_attributes=FrozenMap(extra), calibration=tuple(targets), shocks=FrozenMap(shocks),
        raw=ordered_json(data),
    )


# ----------------------------------------------------------------------------- drawing
def _threshold(p: float) -> float:
    """Score above which a standard normal lies with probability p."""
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
    if factor is not None and loading:
        noise = loading * factor + np.sqrt(1.0 - loading * loading) * noise
    return noise > _threshold(p)


def poisson_from_uniform(u: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Poisson counts by inversion of uniforms (fixed consumption: one uniform per claimant).

    >>> poisson_from_uniform(np.array([0.1, 0.5, 0.99]), np.array([1.0, 1.0, 1.0]))
    array([0., 1., 4.])
    """
    mean = np.broadcast_to(np.asarray(mean, dtype=np.float64), u.shape)
    term = np.exp(-mean)
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
        if k > 1000:  # means here are small; guards against u rounding to 1
            break
    return count


def _block_rng(seed: int, replication: int, segment: Segment, block: int) -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(
        np.random.SeedSequence(seed, spawn_key=(replication, segment.key, block))))


def _draw_block(spec: PopulationSpec, segment: Segment, index: int, m: int,
                rng: np.random.Generator) -> dict[str, np.ndarray]:
    columns: dict[str, np.ndarray] = {}
    factor = None
    if segment.claimant == "enterprise":
        size, sector = spec.sizes[segment.size], spec.sectors[segment.sector]
        z = rng.standard_normal((m, len(COPULA_FACTORS))) @ spec.cholesky.T
        revenue = size.revenue.quantile_from_normal(z[:, 0].copy())
        performer = rng.random(m) < size.rd_performer
        intensity = size.rd_intensity.median * sector.rd_multiplier * np.exp(size.rd_intensity.sigma * z[:, 1])
        rd = np.where(performer, revenue * intensity, 0.0)
        log_growth = spec.rd_growth_mean + spec.rd_growth_sd * z[:, 2]
        insured = z[:, 3] > _threshold(size.insured_exporter)
        ratio = spec.premium_ratio.median * np.exp(spec.premium_ratio.sigma * rng.standard_normal(m))
        columns.update(
            revenue=revenue,
            rd_spending=rd,
            rd_increase=rd * -np.expm1(-log_growth),
            export_credit_premium=np.where(insured, revenue * ratio, 0.0),
            manufacturing=rng.random(m) < sector.manufacturing_share,
            tech_sme_scale=revenue <= spec.tech_sme_revenue_limit,
        )
        factor = z[:, 4]
    for g in spec.generators_of(segment):
        reach = _applies(g, segment, spec.sectors)
        if g.kind in ("event", "amount"):
            p = g.level(g.probability, segment.size) if reach else 0.0
            flag = occurs(rng, m, p, factor, g.loading)
            if g.manufacturing:
                flag &= columns["manufacturing"]
            if g.kind == "event":
                columns[g.attribute] = flag
            else:
                value = g.median * np.exp(g.sigma * rng.standard_normal(m))
                columns[g.attribute] = np.where(flag, value, 0.0)
        elif g.kind == "count":
            mean = np.full(m, g.level(g.mean, segment.size) if reach else 0.0)
            if factor is not None and g.loading:
                mean = mean * np.exp(g.loading * factor - 0.5 * g.loading**2)
            columns[g.attribute] = poisson_from_uniform(rng.random(m), mean)
        else:  # categorical
            cumulative = np.cumsum(g.probabilities)
            pick = np.searchsorted(cumulative, rng.random(m) * cumulative[-1], side="right")
            columns[g.attribute] = np.asarray(g.values)[np.minimum(pick, len(g.values) - 1)]
    for name, factor in spec.shocks.items():
        if name in columns:
            columns[name] = columns[name] * factor
    columns["segment"] = np.full(m, index, dtype=np.int16)
    return columns


@dataclass
class PopulationChunk:
    """A run of consecutive claimants: column name -> 1-D array; ``start`` is the first row number."""

    columns: dict[str, np.ndarray]
    start: int

    def __len__(self) -> int:
        return len(self.columns["segment"])

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.columns, index=pd.RangeIndex(self.start, self.start + len(self)))


def _empty_like(spec: PopulationSpec, m: int) -> dict[str, np.ndarray]:
    kinds = {a.name: a.type for a in spec.policy.attributes}
    out = {}
    for name in spec.columns:
        if kinds.get(name) == "bool" or name in spec.extra_attributes:
            out[name] = np.zeros(m, dtype=bool)
        elif name == "segment":
            out[name] = np.zeros(m, dtype=np.int16)
        else:
            out[name] = np.zeros(m)
    return out


def block_plan(counts: np.ndarray) -> list[tuple[int, int, int]]:
    """(segment index, block index, claimants) of every generation block, in population order."""
    return [(index, block, min(BLOCK, int(count) - start))
            for index, count in enumerate(counts) for block, start in enumerate(range(0, int(count), BLOCK))]


def draw_block(spec: PopulationSpec, seed: int, replication: int, segment_index: int, block: int,
               m: int) -> dict[str, np.ndarray]:
    """One generation block with every column of the population (others' attributes zero)."""
    segment = spec.segments[segment_index]
    drawn = _draw_block(spec, segment, segment_index, m, _block_rng(seed, replication, segment, block))
    full = _empty_like(spec, m)
    for name, values in drawn.items():
        full[name] = values.astype(full[name].dtype, copy=False)
    return full


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
    frame = read_table(path)
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
            "in_band": in_band, "source": target.source,
        })
    return pd.DataFrame(rows)


def size_quantiles(spec: PopulationSpec, seed: int = 0) -> pd.DataFrame:
    """Revenue and R&D quantiles of enterprises by size class (萬元), for the calibration report."""
    frame = population_frame(spec, seed)
    sizes = {i: s.size for i, s in enumerate(spec.segments) if s.claimant == "enterprise"}
    frame = frame[frame["segment"].isin(list(sizes))].assign(size=lambda f: f["segment"].map(sizes))
    out = frame.groupby("size", sort=False)["revenue"].quantile([0.1, 0.5, 0.9, 0.99]).unstack()
    out.columns = [f"revenue P{int(q * 100)}" for q in out.columns]
    out["enterprises"] = frame.groupby("size", sort=False).size()
    out["R&D performers"] = frame[frame["rd_spending"] > 0].groupby("size", sort=False).size()
    out["R&D 萬元 (sum)"] = frame.groupby("size", sort=False)["rd_spending"].sum()
    return out
