"""Load and validate a policy model folder into typed, immutable objects.

A model folder (``models/<jurisdiction-year>/``) holds ``policy.toml``: the articles, the domains and their
budgets, the claimant attributes the rules read, and the award rules.  :func:`load` reads it and checks
every field; every problem found is reported together in one :class:`~sim.errors.PolicyError` whose
lines each name the file, the article, the rule and the field, e.g.::

    models/x/policy.toml: article 1, rule t01-rd-increase: cap must be >= 0, got -5

Numbers are :class:`Param` objects that remember whether the text printed them, derived them, or left
them open (``assumed = true`` with the reason).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from sim import kinds
from sim.errors import PolicyError
from sim.validation import (
    MONEY_CEILING,
    FrozenMap,
    Param,
    Problems,
    Table,
    Uncertain,
    canonical_json,
    check_range,
    display_path,
    number,
    ordered_json,
    read_toml,
)

MODELS_FILE = "models.toml"  # in the models folder: which bundled model is the default

RECURRENCES = ("one-off", "annual")
YEARS = (1990, 2100)  # a model's year, and the years of its population and process, lie in this range
OTHER_MONEY = ("億美元", "萬美元")  # money a target may state in another currency, as printed
ATTRIBUTE_TYPES = ("float", "int", "bool")
UNITS = {"float": "萬元", "bool": "flag"}  # the closed units of money and flags (counts name what they count)
CONDITION_OPS = ("equals", "at_least", "below")
COMPARISONS = ("at_least", "at_most", "about")  # how a target's value is read

# Fields every rule takes, whatever its kind; a kind adds its numbers, tiers and tier base (sim.kinds).
_RULE_COMMON = {
    "id", "article", "name_en", "kind", "claimant", "domain", "subline", "recurrence", "base",
    "eligibility", "district_share", "intensity", "priority", "quote", "judgement", "note", "latitude", "valid",
}
_KIND_KEYS = set(kinds.all_numbers()) | {"tiers", "tier_base"}


# ----------------------------------------------------------------------------- value objects
@dataclass(frozen=True)
class Tier:
    """One tier: from ``at`` on, ``value`` (an amount or a rate, as the rule's kind says)."""

    at: float
    value: Param


@dataclass(frozen=True)
class Latitude:
    """The room the text leaves a rule's award level: ``word`` is the wording in its quote that leaves it
    open (「最高」, 「不超過」, 「一定比例」, ...), ``floor`` the lowest award intensity a design may choose
    (a share of the planned maximum), ``why`` the reason for that floor.  A rule without a latitude pays
    what its text fixes."""

    word: str
    floor: float
    why: str


@dataclass(frozen=True)
class Validity:
    """The period a rule's text dates it to (「對2024年一季度參加國際專業展會…」), against the package's own
    validity clause (its year): ``until`` the last day (ISO date), ``quote`` the words that date it."""

    until: str
    quote: str

    def ended_before(self, year: int) -> bool:
        """Whether the rule's period is over before 1 January of ``year`` (no new claims from that year on)."""
        return int(self.until[:4]) < year


@dataclass(frozen=True)
class Condition:
    """An eligibility condition: ``attribute`` ``op`` ``value`` (equals, at_least, below)."""

    attribute: str
    op: str
    value: float

    def describe(self) -> str:
        symbol = {"equals": "==", "at_least": ">=", "below": "<"}[self.op]
        return f"{self.attribute} {symbol} {self.value:g}"


@dataclass(frozen=True)
class Rule:
    id: str
    article: int
    name_en: str
    kind: str
    claimant: str
    domain: str
    recurrence: str
    base: str
    quote: str
    numbers: Mapping[str, Param] = field(default_factory=FrozenMap)  # the kind's numbers (rate, cap, ...)
    tier_base: str | None = None
    tiers: tuple[Tier, ...] = ()
    eligibility: tuple[Condition, ...] = ()
    district_share: Param = Param(1.0)
    intensity: Param = Param(1.0)
    priority: Param = Param(1.0)  # weight of the rule's claims in the budget LPs (neutral: 1)
    subline: str | None = None
    judgement: str = ""
    note: str = ""
    latitude: Latitude | None = None  # None: the text fixes the award level
    valid: Validity | None = None  # None: the package's own period of validity

    def number(self, name: str) -> Param | None:
        """One of the kind's numbers (``rate``, ``cap``, ``threshold``, ``amount``, ...), None if absent."""
        return self.numbers.get(name)

    def params(self) -> dict[str, Param]:
        """Every number of the rule by field name (tiers as ``tiers[i]``)."""
        out = dict(self.numbers)
        out.update(district_share=self.district_share, intensity=self.intensity)
        for i, tier in enumerate(self.tiers):
            out[f"tiers[{i}]"] = tier.value
        return out

    def attributes(self) -> tuple[str, ...]:
        """The claimant attributes the rule reads, base first."""
        names = [self.base]
        if self.tier_base:
            names.append(self.tier_base)
        names.extend(c.attribute for c in self.eligibility)
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Attribute:
    name: str
    claimant: str
    type: str
    unit: str
    description: str
    default: float | None = None
    min: float = 0.0
    label_zh: str = ""  # the column heading a Chinese register uses
    aliases: tuple[str, ...] = ()  # other headings a register may use for it

    @property
    def headings(self) -> tuple[str, ...]:
        """Every heading a register may give this attribute: its name, Chinese label and aliases."""
        return (self.name, *([self.label_zh] if self.label_zh else []), *self.aliases)


@dataclass(frozen=True)
class Subline:
    id: str
    name_en: str
    amount: float
    quote: str


@dataclass(frozen=True)
class Domain:
    key: str
    name_zh: str
    name_en: str
    lead: str
    first_article: int
    last_article: int
    budget: float
    budget_article: int
    budget_quote: str
    claims_budget: Param
    sublines: tuple[Subline, ...] = ()
    budget_note: str = ""
    colour: str = ""  # the domain's colour in figures ("#4C72B0"); a default palette where empty


@dataclass(frozen=True)
class Article:
    number: int
    heading_zh: str
    name_en: str
    domain: str
    lead: str
    responsible: tuple[str, ...]


@dataclass(frozen=True)
class Target:
    id: str
    domain: str
    value: float
    unit: str
    comparison: str
    quote: str
    article: int | None = None
    stretch: float | None = None
    progress: Progress | None = None  # how the simulation speaks to it, where it can


@dataclass(frozen=True)
class Progress:
    """A target the simulation can speak to: ``factor`` x the population's calibration statistic
    ``calibration`` (in population.toml) is the simulated value; ``why`` says how the two relate."""

    calibration: str
    factor: float
    why: str


@dataclass(frozen=True)
class SpendingFloor:
    """A share of all general-budget spending the text reserves for one domain's field (e.g. the preamble of a
    section: 「2024年,確保一般公共預算支出三分之二用于民生領域」).  ``section`` is the heading of the text's
    section that states it (verbatim), since such a floor is often in no article.  ``margin`` is how far the
    year's plan lies above the floor (萬元): the most of the domain's budget a reallocation may take away while
    the total is unchanged; a change of the total by T moves the floor by ``share`` x T."""

    id: str
    domain: str
    share: float
    expenditure: float  # 萬元, the general budget expenditure the share applies to
    expenditure_source: str
    margin: Param
    quote: str
    section: str = ""


@dataclass(frozen=True)
class Reading:
    threshold_inclusive: bool
    plan_at_maximum: bool
    notes: Mapping[str, str]


@dataclass(frozen=True)
class Policy:
    """A validated policy model.  Immutable; scenarios make modified copies."""

    path: str
    meta: Mapping[str, Any]
    reading: Reading
    claimants: Mapping[str, str]
    domains: tuple[Domain, ...]
    net_total: float
    net_total_quote: str
    targets: tuple[Target, ...]
    articles: tuple[Article, ...]
    attributes: tuple[Attribute, ...]
    rules: tuple[Rule, ...]
    spending_floors: tuple[SpendingFloor, ...] = ()
    source_text: str = field(default="", repr=False)
    raw: str = field(default="{}", repr=False)  # the validated data as canonical JSON (hashing, scenarios)

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(canonical_json(json.loads(self.raw)).encode()).hexdigest()

    def data(self) -> dict:
        """A fresh, mutable copy of the model data this policy was built from."""
        return json.loads(self.raw)

    # look-ups -------------------------------------------------------------------------------
    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(f"{self.path}: no rule {rule_id!r}; known rules: {', '.join(self.rule_ids)}")

    def attribute(self, name: str) -> Attribute:
        for attribute in self.attributes:
            if attribute.name == name:
                return attribute
        raise KeyError(f"{self.path}: no attribute {name!r}")

    def domain(self, key: str) -> Domain:
        for domain in self.domains:
            if domain.key == key:
                return domain
        raise KeyError(f"{self.path}: no domain {key!r}")

    def article(self, number: int) -> Article:
        return self.articles[number - 1]

    @property
    def rule_ids(self) -> tuple[str, ...]:
        return tuple(rule.id for rule in self.rules)

    @property
    def domain_keys(self) -> tuple[str, ...]:
        return tuple(domain.key for domain in self.domains)

    def input_attributes(self) -> tuple[Attribute, ...]:
        """The attributes some rule reads, in declaration order."""
        used = {name for rule in self.rules for name in rule.attributes()}
        return tuple(a for a in self.attributes if a.name in used)

    def uncertain(self) -> list[Uncertain]:
        """The numbers with a plausible range, each with its path in the policy data (its ``value``)."""
        out = [Uncertain("policy", ("domains", d.key, "claims_budget", "value"), f"domain {d.key}, claims_budget",
                         d.claims_budget.value, d.claims_budget.uncertainty)
               for d in self.domains if d.claims_budget.uncertainty is not None]
        for i, rule in enumerate(self.rules):
            named = {**rule.numbers, "district_share": rule.district_share, "intensity": rule.intensity,
                     "priority": rule.priority}
            for name, p in named.items():
                if p.uncertainty is not None:
                    out.append(Uncertain("policy", ("rules", i, name, "value"), f"rule {rule.id}, {name}", p.value,
                                         p.uncertainty))
            value_key = kinds.KINDS[rule.kind].tier_value
            for j, tier in enumerate(rule.tiers):
                if tier.value.uncertainty is not None:
                    out.append(Uncertain("policy", ("rules", i, "tiers", j, value_key, "value"),
                                         f"rule {rule.id}, tier {j + 1}", tier.value.value, tier.value.uncertainty))
        return out

    def assumptions(self) -> list[tuple[str, str, Param]]:
        """(where, field, param) for every assumed number in the model."""
        out = [
            (f"domain {d.key}", "claims_budget", d.claims_budget)
            for d in self.domains
            if d.claims_budget.assumed
        ]
        for rule in self.rules:
            out.extend((f"rule {rule.id}", name, p) for name, p in rule.params().items() if p.assumed)
        out.extend((f"spending floor {f.id}", "margin", f.margin) for f in self.spending_floors if f.margin.assumed)
        return out


# ----------------------------------------------------------------------------- model location
def models_root() -> Path:
    """The folder holding the bundled models (and ``models.toml``, which names the default).

    In an installed wheel the models travel inside the package (``sim/models``); in a source checkout
    (also an editable install) they are the repository's top-level ``models/`` folder.
    """
    here = Path(__file__).resolve().parent
    for candidate in (here / "models", here.parent / "models"):
        if (candidate / MODELS_FILE).is_file():
            return candidate
    raise PolicyError(
        f"the bundled models are missing: looked in {here / 'models'} and {here.parent / 'models'}; "
        "reinstall fiscalsim or pass a model folder explicitly"
    )


def default_model() -> str:
    """The name of the bundled model used when none is named (``default`` in ``models/models.toml``)."""
    data, shown = read_toml(models_root() / MODELS_FILE, PolicyError, "missing")
    name = data.get("default")
    if not isinstance(name, str) or not (models_root() / name / "policy.toml").is_file():
        raise PolicyError(f"{shown}: default must name a bundled model folder, got {name!r}")
    return name


def resolve_model(model: str | Path | None = None) -> Path:
    """A model folder from a bundled model's name, a folder path, or a ``policy.toml`` path."""
    if model is None:
        model = default_model()
    path = Path(model)
    if path.name == "policy.toml":
        path = path.parent
    if (path / "policy.toml").is_file():
        return path
    if isinstance(model, str) and "/" not in model and "\\" not in model:
        bundled = models_root() / model
        if (bundled / "policy.toml").is_file():
            return bundled
    names = sorted(p.name for p in models_root().iterdir() if (p / "policy.toml").is_file())
    raise PolicyError(
        f"{model}: no policy.toml there and no bundled model of that name; bundled models: "
        f"{', '.join(names)}"
    )


def load(model: str | Path | None = None) -> Policy:
    """Load and validate a model folder (or a bundled model by name; default: see :func:`default_model`)."""
    folder = resolve_model(model)
    data, shown = read_toml(folder / "policy.toml", PolicyError, "no policy.toml in the model folder")
    source_text = ""
    source_name = data.get("model", {}).get("source") if isinstance(data.get("model"), dict) else None
    if isinstance(source_name, str) and source_name.strip() and Path(source_name).name == source_name:
        file = folder / source_name
        if not file.is_file():
            raise PolicyError(f"{shown}: [model]: source {source_name!r} is not in the model folder {folder}; put the "
                              "published text there (quotes are checked against it)")
        try:
            source_text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise PolicyError(f"{display_path(file)}: not UTF-8 text; save the policy text as UTF-8") from None
    return from_dict(data, origin=shown, source_text=source_text)


_TOP_KEYS = {"model", "reading", "claimants", "domains", "budget_total", "targets", "articles",
             "attributes", "rules", "spending_floors"}
_OPTIONAL_KEYS = {"targets", "spending_floors"}
_RULE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


def from_dict(data: Mapping[str, Any], origin: str = "<policy>", source_text: str = "") -> Policy:
    """Validate the parsed contents of a ``policy.toml`` into a :class:`Policy`."""
    problems = Problems(origin)
    top = Table(dict(data), "", problems, allowed=_TOP_KEYS)
    for key in sorted(_TOP_KEYS - _OPTIONAL_KEYS - set(top.data)):
        problems.add("", f"missing section [{key}]")

    meta = Table(top.data.get("model", {}), "[model]", problems, allowed={
        "id", "title_zh", "title_en", "short_zh", "short_en", "issuer", "issued", "year", "money_unit", "source",
        "validity_quote"})
    for key in ("id", "title_zh", "money_unit"):
        meta.str(key)
    if meta.data.get("money_unit", "萬元") != "萬元":
        problems.add("[model]", f"money_unit must be 萬元, got {meta.data.get('money_unit')!r}")
    year = meta.int("year", required=False)
    if year is not None and not YEARS[0] <= year <= YEARS[1]:
        problems.add("[model]", f"year must lie in {YEARS[0]}-{YEARS[1]}, got {year}")
    source = meta.str("source", required=False)
    if source and (Path(source).name != source or source.startswith(".")):
        problems.add("[model]", f"source must be a file name inside the model folder (such as source.txt), "
                     f"got {source!r}")

    reading_table = Table(top.data.get("reading", {}), "[reading]", problems, allowed={
        "threshold_inclusive", "threshold_note", "plan_at_maximum", "maximum_note",
        "district_share_note", "lead_note"})
    reading = Reading(
        threshold_inclusive=reading_table.bool("threshold_inclusive"),
        plan_at_maximum=reading_table.bool("plan_at_maximum"),
        notes=FrozenMap({k: v for k, v in reading_table.data.items() if k.endswith("_note")}),
    )

    claimants_raw = top.data.get("claimants", {})
    claimants: dict[str, str] = {}
    if isinstance(claimants_raw, dict):
        for key, text in claimants_raw.items():
            if not isinstance(text, str):
                problems.add(f"claimant {key}", "must be a description (text)")
            claimants[key] = str(text)
    else:
        problems.add("[claimants]", "must be a table of claimant kind = description")

    domains = _domains(top.data.get("domains", {}), problems)
    domain_keys = {d.key for d in domains}
    budget_total = Table(top.data.get("budget_total", {}), "[budget_total]", problems,
                          allowed={"net_of_overlap", "quote", "note"})
    net_total = budget_total.number("net_of_overlap", high=MONEY_CEILING) or 0.0
    gross = sum(d.budget for d in domains)
    if net_total > gross + 1e-6:
        problems.add("[budget_total]", f"net_of_overlap {net_total:g} exceeds the sum of the domain "
                     f"budgets {gross:g} 萬元")
    if net_total < 0:
        problems.add("[budget_total]", f"net_of_overlap must be >= 0, got {net_total:g}")

    articles = _articles(top.list("articles"), domain_keys, domains, problems)
    targets = _targets(top.list("targets"), domain_keys, source_text, problems)
    floors = _spending_floors(top.list("spending_floors"), domain_keys, source_text, problems)
    attributes = _attributes(top.data.get("attributes", {}), claimants, problems)
    rules = _rules(top.list("rules"), articles, domains, attributes, claimants, source_text, problems)

    problems.raise_if_any()
    return Policy(
        path=origin,
        meta=FrozenMap(dict(meta.data)),
        reading=reading,
        claimants=FrozenMap(claimants),
        domains=tuple(domains),
        net_total=net_total,
        net_total_quote=budget_total.str("quote", required=False),
        targets=tuple(targets),
        spending_floors=tuple(floors),
        articles=tuple(articles),
        attributes=tuple(attributes.values()),
        rules=tuple(rules),
        source_text=source_text,
        raw=ordered_json(data),
    )


def _domains(raw: Any, problems: Problems) -> list[Domain]:
    out = []
    if not isinstance(raw, dict):
        problems.add("[domains]", "must be a table of domains")
        return out
    for key, value in raw.items():
        where = f"domain {key}"
        t = Table(value, where, problems, allowed={
            "name_zh", "name_en", "lead", "articles", "budget", "budget_article", "budget_quote",
            "budget_note", "claims_budget", "sublines", "colour"})
        colour = t.str("colour", required=False)
        if colour and not re.fullmatch(r"#[0-9A-Fa-f]{6}", colour):
            problems.add(where, f"colour must be #RRGGBB, got {colour!r}")
        span = t.list("articles")
        if len(span) != 2 or not all(isinstance(a, int) and not isinstance(a, bool) for a in span):
            problems.add(where, f"articles must be [first, last] article numbers, got {span!r}")
            span = [0, -1]
        budget = t.number("budget", low=0, high=MONEY_CEILING)
        claims = t.param("claims_budget")
        if claims is not None and budget is not None and not 0 <= claims.value <= budget:
            problems.add(where, f"claims_budget must lie between 0 and the budget {budget:g}, got "
                         f"{claims.value:g}")
        sublines = []
        for i, raw_line in enumerate(t.list("sublines")):
            lt = Table(raw_line, f"{where}, subline {i + 1}", problems,
                        allowed={"id", "name_en", "amount", "quote"})
            amount = lt.number("amount", low=0, high=MONEY_CEILING)
            sublines.append(Subline(lt.str("id"), lt.str("name_en", required=False),
                                    amount or 0.0, lt.str("quote")))
        if sublines and budget is not None:
            total = sum(s.amount for s in sublines)
            if abs(total - budget) > 1e-6 * max(1.0, budget):
                problems.add(where, f"sublines add to {total:g} 萬元 but the budget is {budget:g} 萬元; "
                             "fix a subline amount or the budget")
        out.append(Domain(
            key=key, name_zh=t.str("name_zh"), name_en=t.str("name_en"), lead=t.str("lead"),
            first_article=span[0], last_article=span[1], budget=budget or 0.0,
            budget_article=t.int("budget_article") or 0, budget_quote=t.str("budget_quote"),
            claims_budget=claims or Param(0.0), sublines=tuple(sublines),
            budget_note=t.str("budget_note", required=False), colour=colour,
        ))
    return out


def _articles(raw: list, domain_keys: set[str], domains: list[Domain],
              problems: Problems) -> list[Article]:
    out = []
    seen: set[int] = set()
    spans = {d.key: (d.first_article, d.last_article) for d in domains}
    for i, value in enumerate(raw):
        number = value.get("number") if isinstance(value, dict) else None
        where = f"article {number}" if isinstance(number, int) else f"articles entry {i + 1}"
        t = Table(value, where, problems, allowed={
            "number", "heading_zh", "name_en", "domain", "lead", "responsible"})
        number = t.int("number")
        domain = t.str("domain")
        if number is not None:
            if number in seen:
                problems.add(where, "duplicate article number")
            seen.add(number)
        if domain and domain not in domain_keys:
            problems.add(where, f"unknown domain {domain!r} (known: {', '.join(sorted(domain_keys))})")
        elif domain and number is not None:
            first, last = spans[domain]
            if not first <= number <= last:
                problems.add(where, f"domain {domain} covers articles {first}-{last}")
        responsible = t.list("responsible")
        out.append(Article(number or 0, t.str("heading_zh"), t.str("name_en"), domain,
                           t.str("lead"), tuple(str(r) for r in responsible)))
    if seen and seen != set(range(1, len(out) + 1)):
        problems.add("[[articles]]", f"articles must be numbered 1..{len(out)} without gaps; missing "
                     f"{sorted(set(range(1, len(out) + 1)) - seen)}")
    out.sort(key=lambda a: a.number)
    return out


def verbatim_quote(t: Table, source_text: str) -> str:
    """A table's ``quote``, which must be found verbatim in the model's source text (when there is one)."""
    quote = t.str("quote")
    if quote and source_text and quote not in source_text:
        t.problems.add(t.where, "quote is not found verbatim in the model's source text; copy it exactly")
    return quote


def _targets(raw: list, domain_keys: set[str], source_text: str, problems: Problems) -> list[Target]:
    out = []
    for i, value in enumerate(raw):
        t = Table(value, f"target {value.get('id', i + 1) if isinstance(value, dict) else i + 1}",
                   problems, allowed={"id", "domain", "article", "value", "stretch", "unit",
                                      "comparison", "quote", "progress"})
        domain = t.str("domain")
        if domain and domain not in domain_keys:
            problems.add(t.where, f"unknown domain {domain!r}")
        unit = t.str("unit")
        if "元" in unit and unit != "萬元" and unit not in OTHER_MONEY:
            problems.add(t.where, f"unit {unit!r}: write money in 萬元 (1億 = 10,000萬), or one of "
                         f"{', '.join(OTHER_MONEY)} as printed")
        comparison = t.str("comparison")
        if comparison and comparison not in COMPARISONS:
            problems.add(t.where, f"comparison must be one of {', '.join(COMPARISONS)}, got {comparison!r}")
        progress = None
        if "progress" in t.data:
            pt = Table(t.data["progress"], f"{t.where}, progress", problems, allowed={"calibration", "factor", "why"})
            progress = Progress(pt.str("calibration"), pt.number("factor", low=0.0) or 0.0, pt.str("why"))
        quote = verbatim_quote(t, source_text)
        out.append(Target(t.str("id"), domain, t.number("value", low=0.0) or 0.0, unit,
                          comparison, quote, t.int("article", required=False),
                          t.number("stretch", required=False, low=0.0), progress))
    return out


def _spending_floors(raw: list, domain_keys: set[str], source_text: str, problems: Problems) -> list[SpendingFloor]:
    out = []
    for i, value in enumerate(raw):
        t = Table(value, f"spending floor {value.get('id', i + 1) if isinstance(value, dict) else i + 1}", problems,
                  allowed={"id", "domain", "share", "expenditure", "expenditure_source", "margin", "quote", "section"})
        domain = t.str("domain")
        if domain and domain not in domain_keys:
            problems.add(t.where, f"unknown domain {domain!r} (known: {', '.join(sorted(domain_keys))})")
        share = t.param("share")
        check_range(problems, t.where, "share", share, 0.0, 1.0)
        margin = t.param("margin")
        check_range(problems, t.where, "margin", margin, 0.0, MONEY_CEILING)
        quote = verbatim_quote(t, source_text)
        section = t.str("section")
        if section and source_text and not (section in source_text
                                            and source_text.find(quote, source_text.find(section)) >= 0):
            problems.add(t.where, "section must be the heading of the text's section that states the quote, copied "
                         "verbatim (the quote must follow it)")
        out.append(SpendingFloor(t.str("id"), domain, share.value if share else 0.0,
                                 t.number("expenditure", low=0.0, high=MONEY_CEILING) or 0.0,
                                 t.str("expenditure_source"), margin or Param(0.0), quote, section))
    return out


def _attributes(raw: Any, claimants: Mapping[str, str], problems: Problems) -> dict[str, Attribute]:
    out: dict[str, Attribute] = {}
    if not isinstance(raw, dict):
        problems.add("[attributes]", "must be a table of attributes")
        return out
    for name, value in raw.items():
        where = f"attribute {name}"
        t = Table(value, where, problems, allowed={
            "claimant", "type", "unit", "description", "default", "min", "label_zh", "aliases"})
        claimant = t.str("claimant")
        if claimant and claimant not in claimants:
            problems.add(where, f"unknown claimant {claimant!r} (known: {', '.join(claimants)})")
        kind = t.str("type")
        if kind and kind not in ATTRIBUTE_TYPES:
            problems.add(where, f"type must be one of {', '.join(ATTRIBUTE_TYPES)}, got {kind!r}")
        minimum = t.number("min", required=False)
        minimum = 0.0 if minimum is None else minimum
        default = t.number("default", required=False)
        if default is not None and default < minimum:
            problems.add(where, f"default {default:g} is below min {minimum:g}")
        if kind == "bool" and default is not None and default not in (0.0, 1.0):
            problems.add(where, f"a bool attribute's default must be 0 or 1, got {default:g}")
        unit = t.str("unit")
        expected = UNITS.get(kind)
        if unit and expected and unit != expected:
            problems.add(where, f"unit of a {kind} attribute must be {expected!r}, got {unit!r}"
                         + (" (money is in 萬元: 1億 = 10,000萬)" if kind == "float" else ""))
        elif unit and kind == "int" and "元" in unit:
            problems.add(where, f"unit {unit!r}: a count or grade (int) cannot be money; money attributes are "
                         "type float in 萬元")
        aliases = value.get("aliases", []) if isinstance(value, dict) else []
        if not (isinstance(aliases, list) and all(isinstance(a, str) and a.strip() for a in aliases)):
            problems.add(where, "aliases must be a list of column headings (text)")
            aliases = []
        out[name] = Attribute(name, claimant, kind, unit, t.str("description"), default, minimum,
                              t.str("label_zh", required=False), tuple(aliases))
    taken: dict[str, str] = {}
    for attribute in out.values():  # a heading names one attribute only
        for heading in attribute.headings:
            other = taken.setdefault(heading_key(heading), attribute.name)
            if other != attribute.name:
                problems.add(f"attribute {attribute.name}", f"heading {heading!r} also names attribute {other}")
    return out


def heading_key(heading: str) -> str:
    """A column heading as registers are matched: full-width forms folded (NFKC), Simplified script, no case
    or spaces.

    >>> heading_key(" 研發投入 "), heading_key("RD_Spending"), heading_key("研发投入（万元）")
    ('研发投入', 'rd_spending', '研发投入(万元)')
    """
    import unicodedata

    from sim.language import simplified

    return simplified(unicodedata.normalize("NFKC", str(heading)).strip().lower().replace(" ", ""))


def _check_attribute(problems: Problems, where: str, attributes: Mapping[str, Attribute], claimant: str,
                     name: str | None, role: str, types: tuple[str, ...] = ATTRIBUTE_TYPES) -> None:
    """A rule's base, tier base or eligibility attribute must be declared, the rule's claimant's, typed."""
    if not name:
        return
    if name not in attributes:
        problems.add(where, f"{role} names unknown attribute {name!r}; declare it under "
                     "[attributes] with its unit and type")
        return
    a = attributes[name]
    if claimant and a.claimant != claimant:
        problems.add(where, f"{role} {name!r} belongs to claimant {a.claimant!r}, the rule to {claimant!r}")
    if a.type not in types:
        problems.add(where, f"{role} {name!r} must be of type {' or '.join(types)}, is {a.type}")


@dataclass
class _RuleContext:
    """What every rule is checked against: the model's articles, domains, attributes and text."""

    articles: set[int]
    domains: Mapping[str, Domain]
    attributes: Mapping[str, Attribute]
    claimants: Mapping[str, str]
    source_text: str
    problems: Problems
    seen: set[str] = field(default_factory=set)


def _rule_where(value: Any, i: int) -> str:
    rule_id = value.get("id") if isinstance(value, dict) else None
    article_no = value.get("article") if isinstance(value, dict) else None
    named = isinstance(rule_id, str) and rule_id.strip()
    return (f"article {article_no}, " if isinstance(article_no, int) else "") + (
        f"rule {rule_id}" if named else f"rules entry {i + 1}")


def _rule_identity(t: Table, ctx: _RuleContext) -> dict[str, Any]:
    """id, article, kind, claimant, domain, sub-line and recurrence, each checked against the model."""
    where, problems = t.where, ctx.problems
    rule_id = t.str("id")
    if rule_id:
        if not _RULE_ID.match(rule_id):
            problems.add(where, "id must be lower-case letters, digits and '-'")
        if rule_id in ctx.seen:
            problems.add(where, "duplicate rule id; every rule needs its own stable id")
        ctx.seen.add(rule_id)
    article = t.int("article")
    if article is not None and article not in ctx.articles:
        problems.add(where, f"article {article} is not among the model's articles")
    kind = t.str("kind")
    if kind and kind not in kinds.KINDS:
        problems.add(where, f"kind must be one of {', '.join(kinds.KINDS)}, got {kind!r}")
    claimant = t.str("claimant")
    if claimant and claimant not in ctx.claimants:
        problems.add(where, f"unknown claimant {claimant!r} (known: {', '.join(ctx.claimants)})")
    domain = t.str("domain")
    if domain and domain not in ctx.domains:
        problems.add(where, f"unknown domain {domain!r} (known: {', '.join(ctx.domains)})")
    subline = t.str("subline", required=False) or None
    if subline and domain in ctx.domains:
        ids = [s.id for s in ctx.domains[domain].sublines]
        if subline not in ids:
            problems.add(where, f"unknown subline {subline!r} of domain {domain} (known: {', '.join(ids) or 'none'})")
    recurrence = t.str("recurrence")
    if recurrence and recurrence not in RECURRENCES:
        problems.add(where, f"recurrence must be one of {', '.join(RECURRENCES)}, got {recurrence!r}")
    return {"id": rule_id, "article": article or 0, "kind": kind, "claimant": claimant, "domain": domain,
            "subline": subline, "recurrence": recurrence}


def _rule_fields_fit_kind(t: Table, kind: kinds.Kind | None) -> None:
    """A kind's required numbers are present; no number, tier or tier base the kind does not take."""
    if kind is None:
        return
    for declared in kind.numbers:
        if declared.required and declared.name not in t.data:
            t.problems.add(t.where, f"a {kind.name} rule needs {declared.name}")
    if kind.tiers == "required" and "tiers" not in t.data:
        t.problems.add(t.where, f"a {kind.name} rule needs tiers")
    own = {n.name for n in kind.numbers} | ({"tiers"} if kind.tiers != "none" else set()) | (
        {"tier_base"} if kind.tier_base else set())
    for name in t.data:
        if name in _KIND_KEYS and name not in own:
            t.problems.add(t.where, f"{name} does not apply to a {kind.name} rule")


def _rule_numbers(t: Table, kind: kinds.Kind | None) -> dict[str, Param]:
    out = {}
    for declared in (kind.numbers if kind else ()):
        value = t.param(declared.name, required=False)
        check_range(t.problems, t.where, declared.name, value, declared.low, declared.high)
        if value is not None:
            out[declared.name] = value
    return out


def _rule_tiers(t: Table, kind: kinds.Kind | None, floor: float = 0.0) -> tuple[Tier, ...]:
    """A rule's tiers; ``floor`` is the least value of the attribute the tiers read (its ``min``)."""
    if kind is None or kind.tiers == "none":
        return ()
    tiers = []
    for j, raw_tier in enumerate(t.list("tiers")):
        tt = Table(raw_tier, f"{t.where}, tier {j + 1}", t.problems, allowed={"at", kind.tier_value})
        at = tt.number("at", low=floor)
        value = tt.param(kind.tier_value)
        check_range(t.problems, tt.where, kind.tier_value, value, 0.0, kind.tier_value_high or MONEY_CEILING)
        if at is not None and value is not None:
            tiers.append(Tier(at, value))
    if "tiers" in t.data and not t.data.get("tiers") and kind.tiers == "required":
        t.problems.add(t.where, f"a {kind.name} rule needs at least one tier")
    for lower, upper in zip(tiers, tiers[1:]):
        if upper.at <= lower.at:
            t.problems.add(t.where, "tiers must be listed with `at` strictly increasing")
        if kind.tier_values_rise and upper.value.value < lower.value.value:
            t.problems.add(t.where, f"tier {kind.tier_value}s must not fall as `at` rises")
    return tuple(tiers)


def _rule_conditions(t: Table, ctx: _RuleContext, claimant: str) -> tuple[Condition, ...]:
    conditions = []
    for j, raw_condition in enumerate(t.list("eligibility")):
        ct = Table(raw_condition, f"{t.where}, eligibility {j + 1}", ctx.problems,
                   allowed={"attribute", *CONDITION_OPS})
        name = ct.str("attribute")
        _check_attribute(ctx.problems, t.where, ctx.attributes, claimant, name, "eligibility")
        ops = [op for op in CONDITION_OPS if op in ct.data]
        if len(ops) != 1:
            ctx.problems.add(ct.where, f"give exactly one of {', '.join(CONDITION_OPS)}")
            continue
        value = ct.number(ops[0])
        if value is not None and name:
            conditions.append(Condition(name, ops[0], value))
    return tuple(conditions)


def _rule(value: Any, i: int, ctx: _RuleContext) -> Rule:
    t = Table(value, _rule_where(value, i), ctx.problems, allowed=_RULE_COMMON | _KIND_KEYS)
    identity = _rule_identity(t, ctx)
    kind = kinds.KINDS.get(identity["kind"])
    _rule_fields_fit_kind(t, kind)
    base = t.str("base")
    _check_attribute(ctx.problems, t.where, ctx.attributes, identity["claimant"], base, "base",
                     kind.base_types if kind else ATTRIBUTE_TYPES)
    tier_base = t.str("tier_base", required=False) or None
    _check_attribute(ctx.problems, t.where, ctx.attributes, identity["claimant"], tier_base, "tier_base",
                     ("float", "int"))
    read = ctx.attributes.get(tier_base or base)
    tiers = _rule_tiers(t, kind, read.min if read is not None else 0.0)
    if kind is not None and kind.tier_base and bool(tiers) != bool(tier_base):
        ctx.problems.add(t.where, f"tiers and tier_base go together on a {kind.name} rule")
    common = {}
    for name, high in (("district_share", 1.0), ("intensity", 1.0), ("priority", None)):
        common[name] = t.param(name, required=False) or Param(1.0)
        check_range(ctx.problems, t.where, name, common[name], 0.0, high)
    quote = verbatim_quote(t, ctx.source_text)
    latitude = _rule_latitude(t, quote)
    return Rule(
        **identity, name_en=t.str("name_en"), base=base, quote=quote, numbers=FrozenMap(_rule_numbers(t, kind)),
        tier_base=tier_base, tiers=tiers, eligibility=_rule_conditions(t, ctx, identity["claimant"]), **common,
        judgement=t.str("judgement", required=False), note=t.str("note", required=False), latitude=latitude,
        valid=_rule_validity(t, ctx.source_text),
    )


def _rule_validity(t: Table, source_text: str) -> Validity | None:
    """A rule's ``valid = { until = "2024-03-31", quote = "對2024年一季度..." }``: a date, and the words of the
    text that set it (verbatim)."""
    if t.data.get("valid") is None:
        return None
    vt = Table(t.data["valid"], f"{t.where}, valid", t.problems, allowed={"until", "quote"})
    if not vt.is_table:
        return None
    until, quote = vt.str("until"), verbatim_quote(vt, source_text)
    try:
        dt.date.fromisoformat(until)
    except ValueError:
        t.problems.add(vt.where, f"until must be a date as YYYY-MM-DD, got {until!r}")
        return None
    return Validity(until, quote)


def _rule_latitude(t: Table, quote: str) -> Latitude | None:
    """A rule's ``latitude = { word = "最高", floor = 0.5, why = "..." }``: the word must be in its quote."""
    if t.data.get("latitude") is None:
        return None
    lt = Table(t.data["latitude"], f"{t.where}, latitude", t.problems, allowed={"word", "floor", "why"})
    if not lt.is_table:
        return None
    word, why = lt.str("word"), lt.str("why")
    floor = lt.number("floor", low=0.0, high=1.0)
    if word and quote and word not in quote:
        t.problems.add(lt.where, f"word {word!r} is not in the rule's quote; quote the wording that leaves the "
                       "award level open (「最高」, 「不超過」, 「一定比例」, ...)")
    if word in NOT_LATITUDE:
        t.problems.add(lt.where, f"word {word!r} {NOT_LATITUDE[word]}: it leaves no award level open, so the rule has "
                       "no latitude; remove it (an unprinted level stays an assumption: assumed = true with a range)")
    return Latitude(word, 0.0 if floor is None else floor, why)


# Words of a rule's text that read like discretion but are not: the award follows a standard once verified.
NOT_LATITUDE = {"經核定": "means verified (the level follows the standard the text cites)",
                "核定": "means verified (the level follows the standard the text cites)",
                "經認定": "means recognised (a condition, not a level)",
                "經審核": "means reviewed (a condition, not a level)"}


def _rules(raw: list, articles: list[Article], domains: list[Domain],
           attributes: Mapping[str, Attribute], claimants: Mapping[str, str], source_text: str,
           problems: Problems) -> list[Rule]:
    ctx = _RuleContext({a.number for a in articles}, {d.key: d for d in domains}, attributes, claimants,
                       source_text, problems)
    out = [_rule(value, i, ctx) for i, value in enumerate(raw)]
    if not out:
        problems.add("[[rules]]", "the model has no rules")
    return out


# ----------------------------------------------------------------------------- worked examples
@dataclass(frozen=True)
class Example:
    """A hand-worked case: a claimant's facts and the awards the text implies (萬元 per rule)."""

    file: str
    article: int
    name: str
    firm: Mapping[str, float]
    expect: Mapping[str, float]
    expect_district: Mapping[str, float]


def load_examples(model: str | Path | None = None, policy: Policy | None = None) -> list[Example]:
    """Read ``examples/*.toml`` of a model folder, checking rule ids and attribute names."""
    folder = resolve_model(model) / "examples"
    policy = policy or load(model)
    rule_ids = set(policy.rule_ids)
    attributes = {a.name for a in policy.attributes}
    out = []
    for file in sorted(folder.glob("*.toml")):
        data, shown = read_toml(file, PolicyError, "missing")
        problems = Problems(shown)
        top = Table(data, "", problems, allowed={"article", "cases"})
        article = top.int("article")
        for i, raw in enumerate(top.list("cases")):
            t = Table(raw, f"case {i + 1}", problems, allowed={"name", "firm", "expect", "expect_district"})
            firm = {k: number(v, k, t.where, problems) for k, v in t.data.get("firm", {}).items()}
            expect = {k: number(v, k, t.where, problems) for k, v in t.data.get("expect", {}).items()}
            district = {k: number(v, k, t.where, problems)
                        for k, v in t.data.get("expect_district", {}).items()}
            for name in firm:
                if name not in attributes:
                    problems.add(t.where, f"firm names unknown attribute {name!r}")
            for rule_id in [*expect, *district]:
                if rule_id not in rule_ids:
                    problems.add(t.where, f"expects unknown rule {rule_id!r}")
                elif policy.rule(rule_id).article != article:
                    problems.add(t.where, f"rule {rule_id} belongs to article {policy.rule(rule_id).article}")
            if not expect:
                problems.add(t.where, "a case needs `expect`")
            out.append(Example(shown, article or 0, t.str("name"), FrozenMap(firm),
                               FrozenMap(expect), FrozenMap(district)))
        problems.raise_if_any()
    return out


# ----------------------------------------------------------------------------- catalogue tables
def format_param(param: Param | None, percent: bool = False) -> str:
    """A number for the catalogue: a percentage or plain, with * when it is assumed and † when a scenario set it."""
    if param is None:
        return ""
    text = f"{param.value * 100:g}%" if percent else f"{param.value:g}"
    return text + ("*" if param.assumed else "†" if param.scenario else "")


def _rule_cells(rule: Rule) -> dict[str, str]:
    kind = kinds.KINDS[rule.kind]
    numbers = ", ".join(f"{n.name} {format_param(rule.number(n.name), percent=not n.money)}"
                        for n in kind.numbers if rule.number(n.name) is not None)
    tiers = "; ".join(f">={t.at:g}: {format_param(t.value, percent=kind.tier_value_high == 1.0)}" for t in rule.tiers)
    if rule.tier_base:
        tiers = f"{rule.tier_base} {tiers}"
    return {
        "rule": rule.id,
        "kind": rule.kind,
        "base": rule.base,
        "numbers": numbers,
        "tiers": tiers,
        "district": "" if rule.district_share.value == 1 and not rule.district_share.assumed
        else format_param(rule.district_share, percent=True),
        "recurs": rule.recurrence,
        "latitude": f"{rule.latitude.word} >= {rule.latitude.floor:.0%}" if rule.latitude else "",
    }


def catalogue_table(policy: Policy) -> pd.DataFrame:
    """One row per rule, and one row for each article without a monetary rule."""
    rows = []
    for article in policy.articles:
        rules = [r for r in policy.rules if r.article == article.number]
        common = {"art": article.number, "domain": article.domain, "heading": article.heading_zh,
                  "lead": article.lead}
        if not rules:
            rows.append({**common, "rule": "—"})
        for rule in rules:
            rows.append({**common, **_rule_cells(rule)})
    return pd.DataFrame(rows).fillna("")


def inputs_table(policy: Policy) -> pd.DataFrame:
    used: dict[str, list[str]] = {}
    for rule in policy.rules:
        for name in rule.attributes():
            used.setdefault(name, []).append(rule.id)
    return pd.DataFrame([{
        "attribute": a.name, "claimant": a.claimant, "type": a.type, "unit": a.unit,
        "default": "required" if a.default is None else f"{a.default:g}",
        "rules": len(used.get(a.name, [])), "description": a.description,
    } for a in policy.attributes])
