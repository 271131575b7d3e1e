"""What we don't know, as data: a model's uncertain numbers, their groups, draws of them, and applying a draw.

Every number a model marks ``assumed`` carries a plausible range (:class:`~sim.validation.Uncertainty`): its
own values (``range``), a ``factor`` it is multiplied by, a ``shift`` added to it, or a ``tilt`` of a
categorical mix, with a distribution (uniform, triangular peaking at the value as written, or loguniform)
and a reason.  Numbers that move together form a *group* (the whole turnover distribution of one article,
say); ``assumptions.toml`` of the model names each group in words.  A group is one factor of the
uncertainty analysis: one uniform number per group and draw, mapped through each member's distribution.

A draw is applied to copies of the model's data and the copies are validated by the same loaders as the
model itself (:func:`build`), so a drawn model is as checked as the published one.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats
from scipy.stats import qmc

from sim.errors import FiscalsimError, SpecError
from sim.policy import Policy, resolve_model
from sim.validation import NEUTRAL, Problems, Table, Uncertain, Uncertainty, read_toml

ASSUMPTION_STREAM = 0xA55_0011  # the spawn key of the assumption draws within a run's SeedSequence
FILES = ("policy", "population", "process")


@dataclass(frozen=True)
class Group:
    key: str
    label_zh: str
    label_en: str
    what: str
    what_zh: str = ""


@dataclass(frozen=True)
class Assumptions:
    """The groups (the design's columns, in file order) and every uncertain number of a model."""

    groups: tuple[Group, ...]
    numbers: tuple[Uncertain, ...]

    @property
    def keys(self) -> tuple[str, ...]:
        return tuple(g.key for g in self.groups)

    def group(self, key: str) -> Group:
        return self.groups[self.keys.index(key)]

    def members(self, key: str) -> list[Uncertain]:
        return [n for n in self.numbers if n.uncertainty.group == key]

    def table(self) -> pd.DataFrame:
        """One row per uncertain number: its group, where it is, its point value and range."""
        return pd.DataFrame([{
            "group": n.uncertainty.group, "file": n.file, "where": n.where, "point": _point_text(n.point),
            "mode": n.uncertainty.mode, "low": n.uncertainty.low, "high": n.uncertainty.high,
            "distribution": n.uncertainty.distribution, "why": n.uncertainty.why,
        } for n in self.numbers])


def _point_text(point: Any) -> str:
    return json.dumps(point, ensure_ascii=False) if isinstance(point, (dict, list)) else f"{point:g}"


def load_groups(model: str | Path | None = None) -> dict[str, Group]:
    """The groups of ``assumptions.toml`` in a model folder (none if the model has no such file)."""
    file = resolve_model(model) / "assumptions.toml"
    if not file.is_file():
        return {}
    data, shown = read_toml(file, SpecError, "no assumptions.toml")
    problems = Problems(shown, SpecError, "the assumption groups")
    top = Table(data, "", problems, allowed={"groups"})
    groups = {}
    raw = top.data.get("groups", {})
    for key, value in (raw.items() if isinstance(raw, dict) else []):
        t = Table(value, f"group {key}", problems, allowed={"label_zh", "label_en", "what", "what_zh"})
        groups[key] = Group(key, t.str("label_zh"), t.str("label_en"), t.str("what"), t.str("what_zh"))
    if not isinstance(raw, dict) or not raw:
        problems.add("[groups]", "must be a table of group = { label_zh, label_en, what }")
    problems.raise_if_any()
    return groups


def collect(policy: Policy, spec, process, groups: dict[str, Group], origin: str = "assumptions.toml",
            all_used: bool = True) -> Assumptions:
    """The uncertain numbers of a policy, population and process, each group named in ``groups``; every
    number's group declared and (``all_used``, for a model as published) every group used.  A scenario may
    hold every member of a group at its own values: the group then stays a column of the draws without
    effect, so the other groups draw the same values as in the baseline (common random numbers)."""
    numbers = [*policy.uncertain(), *spec.uncertain, *(process.uncertain if process is not None else ())]
    problems = Problems(origin, SpecError, "the assumptions")
    used = {n.uncertainty.group for n in numbers}
    for n in numbers:
        if n.uncertainty.group not in groups:
            problems.add(n.where, f"group {n.uncertainty.group!r} is not declared in assumptions.toml "
                         f"(declared: {', '.join(groups) or 'none'})")
    for key in groups:
        if all_used and key not in used:
            problems.add(f"group {key}", "no number of the model names this group; remove it or use it")
    problems.raise_if_any()
    return Assumptions(tuple(groups.values()), tuple(numbers))


# ----------------------------------------------------------------------------- drawing
def design(draws: int, groups: int, seed: int) -> np.ndarray:
    """(draws x groups) uniforms: a scrambled Latin hypercube from the run's seed (any number of draws
    stratifies every group's range), the same for every scenario of a model (common random numbers)."""
    if groups == 0 or draws == 0:
        return np.zeros((draws, groups))
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence(seed, spawn_key=(ASSUMPTION_STREAM,))))
    return qmc.LatinHypercube(d=groups, rng=rng).random(draws)


def quantile(u: Uncertainty, point: Any, p: float) -> float:
    """The value of the uncertainty's mode (the number itself, the factor, the shift, the tilt) at probability p,
    always within [low, high]."""
    low, high = u.low, u.high
    if high == low:
        return float(low)
    if u.distribution == "uniform":
        x = low + p * (high - low)
    elif u.distribution == "loguniform":
        x = np.exp(np.log(low) + p * (np.log(high) - np.log(low)))
    else:
        mode = point if u.mode == "range" else NEUTRAL[u.mode]
        x = stats.triang.ppf(p, (mode - low) / (high - low), loc=low, scale=high - low)
    return float(min(max(x, low), high))


def changed(number: Uncertain, x: float) -> Any:
    """The number's new value when its mode takes the value ``x`` (the point value itself, untouched, at the
    mode's neutral value: a factor of 1, a shift or tilt of 0, a range at the point)."""
    point, mode = number.point, number.uncertainty.mode
    if x == (point if mode == "range" else NEUTRAL[mode]):
        return point
    if mode == "tilt":
        return _tilted(point, x)
    if isinstance(point, dict):
        return {k: _one(v, x, mode, number.integer) for k, v in point.items()}
    if isinstance(point, list):  # a correlation matrix: the factor scales the correlations, not the diagonal
        return [[v if i == j else v * x for j, v in enumerate(row)] for i, row in enumerate(point)]
    return _one(point, x, mode, number.integer)


def _one(value: float, x: float, mode: str, integer: bool) -> float | int:
    out = x if mode == "range" else value * x if mode == "factor" else value + x
    return max(int(round(out)), 0) if integer else out


def _tilted(point: Any, x: float) -> Any:
    """A categorical step's ``probabilities`` tilted toward higher values (x > 0) or lower ones (x < 0)."""
    p = np.asarray(point, dtype=np.float64)
    z = np.arange(len(p), dtype=np.float64)
    z = (z - z.mean()) / (z.std() or 1.0)
    tilted = p * np.exp(x * z - np.max(x * z))  # scaled by the largest weight: no overflow
    return list(tilted / tilted.sum())


def _set(data: dict, path: tuple, value: Any) -> None:
    node = data
    for part in path[:-1]:
        if isinstance(node, list) and isinstance(part, str):  # segments and rules are lists keyed by position
            raise FiscalsimError(f"assumption path {path} does not fit the model data")
        node = node[part]
    node[path[-1]] = value


def apply(data: dict[str, dict], assumptions: Assumptions, row: np.ndarray,
          files: tuple[str, ...] | None = None) -> dict[str, dict]:
    """Copies of the model data (``{"policy": ..., "population": ..., "process": ...}``, or only ``files``
    of it) with every uncertain number set to its value in the draw ``row`` (one uniform per group)."""
    out = copy.deepcopy(data if files is None else {name: data[name] for name in files if name in data})
    index = {key: k for k, key in enumerate(assumptions.keys)}
    for number in assumptions.numbers:
        if number.file not in out:
            continue
        _set(out[number.file], number.path, value_in(number, float(row[index[number.uncertainty.group]])))
    return out


def value_in(number: Uncertain, u: float) -> Any:
    """The number's value in a draw where its group's uniform is ``u``."""
    return changed(number, quantile(number.uncertainty, number.point, u))


def draws_table(assumptions: Assumptions, rows: np.ndarray, per_draw: int, replications: int) -> pd.DataFrame:
    """The assumption values of every replication: one row per replication and uncertain number, with the
    group's uniform ``u`` and the mode's value (the number itself, its factor, shift or tilt)."""
    index = {key: k for k, key in enumerate(assumptions.keys)}
    records = []
    for draw, row in enumerate(rows):
        for number in assumptions.numbers:
            u = float(row[index[number.uncertainty.group]])
            records.append((draw, number.uncertainty.group, u, number.where, number.uncertainty.mode,
                            quantile(number.uncertainty, number.point, u)))
    per = pd.DataFrame(records, columns=["draw", "group", "u", "where", "mode", "value"])
    reps = pd.DataFrame({"replication": np.arange(replications), "draw": np.arange(replications) // per_draw})
    return reps.merge(per, on="draw", how="left").sort_values(["replication", "where"], kind="stable",
                                                              ignore_index=True)


# ----------------------------------------------------------------------------- drawn models
@dataclass(frozen=True)
class Drawn:
    """Everything needed to rebuild the model of any replication: the scenario's data, its uncertain numbers,
    the design (one row of uniforms per draw), and how many replications share a draw."""

    data: dict[str, dict]
    assumptions: Assumptions
    rows: np.ndarray  # (draws, groups)
    per_draw: int
    source_text: str
    origin: str

    def draw_of(self, replication: int) -> int:
        return replication // self.per_draw

    def build(self, draw: int):
        """(policy, population, process) of one draw, validated like the model itself."""
        return build(self.data, self.assumptions, self.rows[draw], self.source_text, f"{self.origin}, draw {draw}")


def build(data: dict[str, dict], assumptions: Assumptions, row: np.ndarray, source_text: str, origin: str):
    """The policy, population and (where given) process of a draw."""
    from sim import policy as policy_module
    from sim import population as population_module
    from sim import process as process_module

    drawn = apply(data, assumptions, row)
    policy = policy_module.from_dict(drawn["policy"], origin=f"{origin} (policy)", source_text=source_text)
    spec = population_module.spec_from_dict(drawn["population"], policy, origin=f"{origin} (population)")
    process = (process_module.process_from_dict(drawn["process"], policy, origin=f"{origin} (process)")
               if "process" in drawn else None)
    return policy, spec, process


def check_extremes(data: dict[str, dict], assumptions: Assumptions, source_text: str, origin: str) -> None:
    """Every range, at its low end and at its high end together, still gives a valid model."""
    for end, p in (("low", 0.0), ("high", 1.0)):
        try:
            build(data, assumptions, np.full(len(assumptions.groups), p), source_text, f"{origin} at the {end} ends")
        except FiscalsimError as exc:
            raise type(exc)(f"the plausible ranges of the assumptions, all at their {end} ends, make the model "
                            f"invalid; narrow the range that does: {exc}") from None
