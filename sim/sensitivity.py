"""Sensitivity: which numbers of the model move the claims most.

One-at-a-time sensitivity (the report's tornado chart): each parameter listed in the model's
``sensitivity.toml`` is moved down and up by a share of its value *in the scenario being run* (so a
scenario's own overrides are kept), with the same seed (common random numbers make the differences
precise with few replications), and the change in mean total district-paid claims is recorded.  The
variants' replications run on the run's executor.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from sim import montecarlo
from sim import scenario as scenario_module
from sim.errors import SpecError
from sim.policy import resolve_model
from sim.validation import Problems, Table, read_toml

POPULATION_SIZE = "population size"


@dataclass(frozen=True)
class Parameter:
    path: str
    label_en: str
    label_zh: str
    at_most: float | None = None


@dataclass(frozen=True)
class Plan:
    step: float
    parameters: tuple[Parameter, ...]


def load_plan(model: str | Path | None = None) -> Plan:
    """The model's ``sensitivity.toml`` (an empty plan where the model has none)."""
    folder = resolve_model(model)
    if not (folder / "sensitivity.toml").is_file():
        return Plan(0.2, ())
    data, shown = read_toml(folder / "sensitivity.toml", SpecError, "no sensitivity.toml")
    problems = Problems(shown, SpecError, "the sensitivity plan")
    top = Table(data, "", problems, allowed={"step", "parameters"})
    step = top.number("step") or 0.0
    if not 0 < step < 1:
        problems.add("", f"step must lie in (0, 1), got {step:g}")
    parameters = []
    for i, raw in enumerate(top.list("parameters")):
        t = Table(raw, f"parameters entry {i + 1}", problems, allowed={"path", "label_en", "label_zh", "at_most"})
        parameters.append(Parameter(t.str("path"), t.str("label_en"), t.str("label_zh"),
                                    t.number("at_most", required=False)))
    problems.raise_if_any()
    return Plan(step, tuple(parameters))


def _scaled(value, factor: float, at_most: float | None):
    if isinstance(value, dict):
        return {k: _scaled(v, factor, at_most) for k, v in value.items()}
    scaled = value * factor
    return min(scaled, at_most) if at_most is not None else scaled


@dataclass(frozen=True)
class Variant:
    label_en: str
    label_zh: str
    factor: float
    job: montecarlo.ClaimsJob


def variants(base: scenario_module.Scenario, plan: Plan, seed: int, n: int | None, scale: float) -> list[Variant]:
    """The base and, for each parameter, the scenario with it moved down and up (validated in full)."""
    policy, spec = scenario_module.apply(base)
    out = [Variant("base", "基準", 1.0, montecarlo.ClaimsJob(policy, spec, seed, spec.counts(n, scale)))]
    for parameter in plan.parameters:
        for factor in (1 - plan.step, 1 + plan.step):
            if parameter.path == POPULATION_SIZE:
                counts = spec.counts(None if n is None else int(round(n * factor)), 1.0 if n is not None else
                                     scale * factor)
                job = montecarlo.ClaimsJob(policy, spec, seed, counts)
            else:
                value = _scaled(scenario_module.value_at(policy, spec, parameter.path), factor, parameter.at_most)
                changed = scenario_module.extend(base, scenario_module.nested(parameter.path, value),
                                                 f"{base.name}: {parameter.label_en} x{factor:g}")
                changed_policy, changed_spec = scenario_module.apply(changed)
                job = montecarlo.ClaimsJob(changed_policy, changed_spec, seed, changed_spec.counts(n, scale))
            out.append(Variant(parameter.label_en, parameter.label_zh, factor, job))
    return out


def variant_task(jobs: list[montecarlo.ClaimsJob], item: tuple[int, int]) -> float:
    """Total district-paid claims of one replication of one variant."""
    v, replication = item
    return float(montecarlo.replication_totals(jobs[v], replication).district.sum())


def one_at_a_time(base: scenario_module.Scenario, plan: Plan, seed: int, replications: int, n: int | None = None,
                  scale: float = 1.0, executor=None, progress: bool | Callable = False) -> pd.DataFrame:
    """Change in mean total district-paid claims (萬元) when each parameter moves down and up by the plan's step."""
    from sim.executors import Serial

    executor = executor or Serial()
    found = variants(base, plan, seed, n, scale)
    items = [(v, r) for v in range(len(found)) for r in range(replications)]
    bar = montecarlo.progress_bar(progress, len(items), "sensitivity")
    totals = np.array(executor.map(variant_task, [v.job for v in found], items, progress=bar)).reshape(
        len(found), replications)
    bar(None)
    means = totals.mean(axis=1)
    reference = means[0]
    rows = []
    for k in range(len(plan.parameters)):
        variant = found[1 + 2 * k]
        rows.append({"parameter": variant.label_en, "parameter_zh": variant.label_zh, "base": reference,
                     "low": means[1 + 2 * k] - reference, "high": means[2 + 2 * k] - reference,
                     "step": plan.step})
    table = pd.DataFrame(rows, columns=["parameter", "parameter_zh", "base", "low", "high", "step"])
    table["swing"] = (table["high"] - table["low"]).abs()
    return table.sort_values("swing", ascending=False, ignore_index=True)
