"""Validation helpers shared by every loader of user data (policy, population spec, scenarios).

Problems are collected with their location and raised together in one error whose lines each name
the file and the place in it (article, rule, segment, field).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim.errors import FiscalsimError, PolicyError

DISTRIBUTIONS = ("uniform", "triangular", "loguniform")
MODES = {
    "range": "the number's own plausible values",
    "factor": "a factor the number (or every class of a table of numbers) is multiplied by",
    "shift": "an amount added to the number (or to every class)",
    "tilt": "an exponential tilt of a categorical mix toward higher (> 0) or lower (< 0) values",
}
NEUTRAL = {"range": None, "factor": 1.0, "shift": 0.0, "tilt": 0.0}  # the mode's value that leaves a number be
TILT_LIMIT = 5.0  # the largest tilt of a categorical mix (exp(5 x 1.5) already moves 99% of it to one end)


@dataclass(frozen=True)
class Uncertainty:
    """How unsure a number is: ``low``-``high`` of its ``mode`` (see :data:`MODES`), drawn by ``distribution``
    (triangular peaks at the point value), moving together with the other numbers of ``group``."""

    mode: str
    low: float
    high: float
    distribution: str
    group: str
    why: str

    def describe(self) -> str:
        return f"{self.mode} {plain(self.low)}-{plain(self.high)} ({self.distribution})"


@dataclass(frozen=True)
class Param:
    """A number of the model with its provenance.

    ``assumed`` numbers are planning figures the text leaves open (``why`` says why this value, and
    ``uncertainty`` how unsure it is); ``derived`` numbers are arithmetic on the text (``derived`` shows
    it); ``scenario`` numbers were set by a scenario; the rest are printed in the quote of the rule or
    domain they belong to.
    """

    value: float
    assumed: bool = False
    why: str = ""
    derived: str = ""
    uncertainty: Uncertainty | None = None
    scenario: str = ""

    def __float__(self) -> float:
        return float(self.value)

class FrozenMap(Mapping):
    """A read-only mapping that pickles (MappingProxyType does not), so models travel to Dask workers."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping | None = None):
        object.__setattr__(self, "_data", dict(data or {}))

    def __getitem__(self, key):
        return self._data[key]

    # The dict's own lookups rather than Mapping's generic ones (the generator asks for numbers per step).
    def get(self, key, default=None):
        return self._data.get(key, default)

    def __contains__(self, key) -> bool:
        return key in self._data

    def items(self):
        return self._data.items()

    def keys(self):
        return self._data.keys()

    def values(self):
        return self._data.values()

    def __iter__(self) -> Iterator:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __setattr__(self, name, value):
        raise AttributeError("FrozenMap is read-only")

    def __getstate__(self):
        return self._data

    def __setstate__(self, state):
        object.__setattr__(self, "_data", state)

    def __repr__(self) -> str:
        return f"FrozenMap({self._data!r})"


def canonical_json(data: Any) -> str:
    """Model data as canonical JSON: the same content always gives the same text (and hash)."""
    import json

    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str)


def ordered_json(data: Any) -> str:
    """Model data as JSON in its original order (order matters: it fixes the population's draw order)."""
    import json

    return json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)


def plain(value: Any) -> str:
    """A value as a person writes it in a message: 3,000 or 0.05 or 'yes', never np.float64(3000.0).

    >>> plain(3000.0), plain(0.05), plain("yes"), plain(1e308)
    ('3,000', '0.05', "'yes'", '1e+308')
    """
    if isinstance(value, str):
        return repr(value)
    try:
        number_ = float(value)
    except (TypeError, ValueError):
        return repr(value)
    if not math.isfinite(number_) or abs(number_) >= 1e15:
        return f"{number_:g}"
    return f"{number_:,.6f}".rstrip("0").rstrip(".")


def display_path(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- validation
class Problems:
    """Collects every problem with its location; raised once at the end."""

    def __init__(self, origin: str, error: type[FiscalsimError] = PolicyError, what: str = "the policy model"):
        self.origin = origin
        self.error = error
        self.what = what
        self.lines: list[str] = []

    def add(self, where: str, message: str) -> None:
        prefix = f"{self.origin}: {where}: " if where else f"{self.origin}: "
        self.lines.append(prefix + message)

    def raise_if_any(self) -> None:
        if self.lines:
            count = len(self.lines)
            head = "" if count == 1 else f"{count} problems in {self.what}:\n  "
            raise self.error(head + "\n  ".join(self.lines))


class Table:
    """Typed access to one TOML table, remembering its location for messages."""

    def __init__(self, data: Any, where: str, problems: Problems, allowed: set[str] | None = None):
        self.where = where
        self.problems = problems
        self.is_table = isinstance(data, dict)  # if not, one problem says so, and its fields are not asked for too
        if not self.is_table:
            problems.add(where, f"must be a table, got {type(data).__name__}")
            data = {}
        self.data = data
        if allowed is not None:
            for key in data:
                if key not in allowed:
                    problems.add(where, f"unknown key {key!r} (allowed: {', '.join(sorted(allowed))})")

    def _missing(self, key: str) -> None:
        if self.is_table:
            self.problems.add(self.where, f"{key} is required")

    def str(self, key: str, required: bool = True, default: str = "") -> str:
        """Text; an empty (or blank) string is never accepted: a name, id or quote must say something."""
        value = self.data.get(key)
        if value is None:
            if required:
                self._missing(key)
            return default
        if not isinstance(value, str):
            self.problems.add(self.where, f"{key} must be text, got {value!r}")
            return default
        if not value.strip():
            self.problems.add(self.where, f"{key} must not be empty; write it, or leave the key out if optional")
            return default
        return value

    def int(self, key: str, required: bool = True) -> int | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self._missing(key)
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            self.problems.add(self.where, f"{key} must be a whole number, got {value!r}")
            return None
        return value

    def bool(self, key: str, required: bool = True, default: bool = False) -> bool:
        value = self.data.get(key)
        if value is None:
            if required:
                self._missing(key)
            return default
        if not isinstance(value, bool):
            self.problems.add(self.where, f"{key} must be true or false, got {value!r}")
            return default
        return value

    def number(self, key: str, required: bool = True, low: float | None = None,
               high: float | None = None) -> float | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self._missing(key)
            return None
        return number(value, key, self.where, self.problems, low, high)

    def param(self, key: str, required: bool = True) -> Param | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self._missing(key)
            return None
        return param(value, key, self.where, self.problems)

    def list(self, key: str) -> list:
        value = self.data.get(key, [])
        if not isinstance(value, list):
            self.problems.add(self.where, f"{key} must be a list, got {value!r}")
            return []
        return value


# Ceilings that catch a number in the wrong unit or a typo of exponent (1e308), before it becomes inf.
NUMBER_CEILING = 1e12  # any number of a model, firm table or scenario
MONEY_CEILING = 1e8  # 萬元 (one trillion yuan): caps, amounts, budgets, medians of amounts
COUNT_CEILING = 1e7  # claimants in a segment, units one claimant holds, reviewers


def number(value: Any, key: str, where: str, problems: Problems, low: float | None = None,
           high: float | None = None) -> float | None:
    """A finite number within [low, high] (each bound optional) and within :data:`NUMBER_CEILING` in size."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        problems.add(where, f"{key} must be a number, got {value!r}")
        return None
    if not math.isfinite(value):
        problems.add(where, f"{key} must be finite, got {value!r}")
        return None
    if abs(value) > NUMBER_CEILING:
        problems.add(where, f"{key} = {value:g} is beyond any plausible value (at most {NUMBER_CEILING:g} in size); "
                     "check the unit (money is in 萬元) and the exponent")
        return None
    if low is not None and value < low:
        problems.add(where, f"{key} must be >= {low:g}, got {value:g}")
    if high is not None and value > high:
        problems.add(where, f"{key} must be <= {high:g}, got {value:g}")
    return float(value)


def uncertainty(value: Any, key: str, where: str, problems: Problems, point: Any = None,
                modes: tuple[str, ...] = tuple(MODES)) -> Uncertainty | None:
    """Parse ``{ range = [low, high], distribution = "...", group = "...", why = "..." }`` (or factor, shift,
    tilt instead of range) and check it against the number's point value."""
    label = f"uncertainty of {key}"
    t = Table(value, where, problems, allowed={*MODES, "distribution", "group", "why"})
    given = [m for m in MODES if m in t.data]
    if len(given) != 1 or given[0] not in modes:
        problems.add(where, f"{label}: give exactly one of {', '.join(modes)} = [low, high]")
        return None
    mode = given[0]
    bounds = t.data[mode]
    if not (isinstance(bounds, list) and len(bounds) == 2):
        problems.add(where, f"{label}: {mode} must be [low, high], got {bounds!r}")
        return None
    low, high = (number(b, f"{label}.{mode}", where, problems) for b in bounds)
    distribution = t.str("distribution", required=False) or "uniform"
    group = t.str("group")
    why = t.str("why")
    if low is None or high is None or not group or not why:
        return None
    if distribution not in DISTRIBUTIONS:
        problems.add(where, f"{label}: distribution must be one of {', '.join(DISTRIBUTIONS)}, got {distribution!r}")
    if low > high:
        problems.add(where, f"{label}: {mode} [{plain(low)}, {plain(high)}] has low above high")
    if mode == "tilt" and max(abs(low), abs(high)) > TILT_LIMIT:
        problems.add(where, f"{label}: a tilt must lie within [-{TILT_LIMIT:g}, {TILT_LIMIT:g}] (at {TILT_LIMIT:g} "
                     f"nearly all of the mix is in one end category), got [{plain(low)}, {plain(high)}]")
    if distribution == "loguniform" and low <= 0:
        problems.add(where, f"{label}: a loguniform {mode} needs low > 0, got {plain(low)}")
    neutral = point if mode == "range" else NEUTRAL[mode]
    if isinstance(neutral, (int, float)) and not isinstance(neutral, bool) and not low <= neutral <= high:
        what = "the number's value" if mode == "range" else f"{plain(neutral)} (the value as written)"
        problems.add(where, f"{label}: {mode} [{plain(low)}, {plain(high)}] must contain {what} "
                     f"{plain(neutral) if mode == 'range' else ''}".rstrip())
    return Uncertainty(mode, low, high, distribution, group, why)


@dataclass(frozen=True)
class Uncertain:
    """One uncertain number of a model file: where it sits in the file's data, its point value (a number, a
    table per class, a list), how unsure it is, and whether it is a whole number (a count)."""

    file: str  # "policy", "population" or "process"
    path: tuple
    where: str
    point: Any
    uncertainty: Uncertainty
    integer: bool = False


@dataclass(frozen=True)
class Field:
    """A number of an assumed table that needs a range: the modes it takes and whether it is a count."""

    modes: tuple[str, ...] = ("range", "factor", "shift")
    integer: bool = False


def table_uncertainty(t: Table, file: str, path: tuple, fields: dict[str, Field], blanket: Mapping[str, Uncertainty],
                      out: list[Uncertain]) -> None:
    """The uncertain numbers of one table: its own ``uncertainty = { key = {...} }`` entries, else the file's
    ``[uncertainty]`` entry for the key; every number of an assumed table must be covered by one of them."""
    own = t.data.get("uncertainty", {})
    if not isinstance(own, dict):
        t.problems.add(t.where, "uncertainty must be a table: { key = { range = [low, high], ... } }")
        own = {}
    for key in own:
        if key not in fields or key not in t.data:
            t.problems.add(t.where, f"uncertainty.{key}: the table has no such number (numbers: "
                           f"{', '.join(k for k in fields if k in t.data) or 'none'})")
    assumed = t.data.get("assumed") is True
    for key, spec in fields.items():
        if key not in t.data:
            continue
        point = t.data[key]
        modes = spec.modes if not isinstance(point, (dict, list)) else tuple(m for m in spec.modes if m != "range")
        if key in own:
            unsure = uncertainty(own[key], key, t.where, t.problems, point, modes)
        elif key in blanket:
            unsure = blanket[key]
            if unsure.mode not in modes:
                t.problems.add(t.where, f"the file's [uncertainty] {key} is a {unsure.mode}; this {key} takes "
                               f"{' or '.join(modes)}")
                continue
            if unsure.mode == "range" and not unsure.low <= point <= unsure.high:
                t.problems.add(t.where, f"{key} = {plain(point)} lies outside the file's [uncertainty] range "
                               f"[{plain(unsure.low)}, {plain(unsure.high)}]")
                continue
        else:
            if assumed:
                t.problems.add(t.where, f"{key} is assumed, so it needs a plausible range: uncertainty = {{ {key} = "
                               f"{{ {modes[0]} = [low, high], group = \"...\", why = \"...\" }} }}")
            continue
        if unsure is not None:
            out.append(Uncertain(file, (*path, key), f"{t.where}, {key}", point, unsure, spec.integer))


def blanket_uncertainty(raw: Any, fields: Mapping[str, Field], problems: Problems) -> dict[str, Uncertainty]:
    """A file's ``[uncertainty]`` table: one entry per field name, for every assumed table that has the field."""
    out = {}
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        if key not in fields:
            problems.add("[uncertainty]", f"{key}: no table of this file has such a number "
                         f"(numbers: {', '.join(sorted(fields))})")
            continue
        unsure = uncertainty(value, key, f"[uncertainty] {key}", problems, None, fields[key].modes)
        if unsure is not None:
            out[key] = unsure
    if raw is not None and not isinstance(raw, dict):
        problems.add("[uncertainty]", "must be a table of field = { factor = [low, high], ... }")
    return out


def param(value: Any, key: str, where: str, problems: Problems) -> Param | None:
    if isinstance(value, dict):
        table = Table(value, where, problems, allowed={"value", "assumed", "why", "derived", "uncertainty",
                                                       "scenario"})
        amount = number(value.get("value"), f"{key}.value", where, problems)
        assumed = table.bool("assumed", required=False)
        why = table.str("why", required=False)
        derived = table.str("derived", required=False)
        scenario = table.str("scenario", required=False)
        if assumed and not why:
            problems.add(where, f"{key} is assumed, so it needs a `why` saying why this value")
        if not (assumed or derived or scenario):
            problems.add(
                where,
                f"{key} is written as a table but is neither assumed (assumed = true, why = ...) "
                "nor derived (derived = ...); write a number printed in the quote plainly",
            )
        if sum(map(bool, (assumed, derived, scenario))) > 1:
            problems.add(where, f"{key} is one of assumed, derived or set by a scenario, not several")
        unsure = None
        if "uncertainty" in table.data:
            unsure = uncertainty(table.data["uncertainty"], key, where, problems, amount, ("range",))
        elif assumed:
            problems.add(where, f"{key} is assumed, so it needs a plausible range: uncertainty = {{ range = [low, "
                         "high], distribution = \"uniform\", group = \"...\", why = \"...\" }")
        if amount is None:
            return None
        return Param(amount, assumed=assumed, why=why, derived=derived, uncertainty=unsure, scenario=scenario)
    amount = number(value, key, where, problems)
    return None if amount is None else Param(amount)


def check_range(problems: Problems, where: str, key: str, p: Param | None,
                 low: float | None = None, high: float | None = None) -> None:
    if p is None:
        return
    if low is not None and p.value < low:
        problems.add(where, f"{key} must be >= {low:g}, got {p.value:g}")
    if high is not None and p.value > high:
        problems.add(where, f"{key} must be <= {high:g}, got {p.value:g}")




def read_toml(file: Path, error: type[FiscalsimError], missing: str) -> tuple[dict, str]:
    """A model file's data and its display path; ``error`` with ``missing`` or the TOML fault otherwise."""
    import tomllib

    shown = display_path(file)
    if not file.is_file():
        raise error(f"{shown}: {missing}")
    try:
        text = file.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[:exc.start].count(b"\n") + 1
        raise error(f"{shown}: line {line}: byte 0x{exc.object[exc.start]:02x} is not UTF-8; save the file as "
                    "UTF-8 (a TOML file must be)") from None
    except OSError as exc:
        raise error(f"{shown}: cannot be read: {exc.strerror}") from None
    try:
        return tomllib.loads(text), shown
    except tomllib.TOMLDecodeError as exc:
        raise error(f"{shown}: not valid TOML: {exc}") from None


def check_provenance(t: Table) -> None:
    """A table of model numbers must say where they come from: `source`, or `assumed = true` with `why`."""
    if t.is_table and "source" not in t.data and "assumed" not in t.data:
        t.problems.add(t.where, "give a `source` or `assumed = true` with `why`")
    if "source" in t.data:
        t.str("source")
    if "assumed" in t.data:
        t.bool("assumed")
        if t.data["assumed"] is True:
            t.str("why")
