"""Scenarios: partial overrides of a baseline model, validated in full before anything changes.

A scenario file (TOML) names a model and overrides any of its numbers::

    name = "article-13-caps-up"
    model = "binjiang-2024"
    description = "Raise article 13's caps by half"

    [policy.rules.a13-rd-increase-sme]
    cap = 300

    [policy.domains.science_technology]
    claims_budget = 91000

    [population.core.rd_growth]
    mean = 0.09

    [population.segments.iot-small]
    count = 25000

    [population.shocks]
    export_credit_premium = 0.8

The overrides are applied to a copy of the baseline's data (the baseline objects are immutable), and
the result is validated by the same loaders as the model itself, so an override of a field that does
not exist, or a value out of range, is an error naming the scenario file and the field.  A number a
scenario changes is marked ``assumed`` with the scenario as its reason, so it shows in the catalogue.
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim import policy as policy_module
from sim import population as population_module
from sim.errors import ScenarioError
from sim.validation import canonical_json, read_toml

_TOP = {"name", "model", "description", "policy", "population", "process"}
_POLICY_SECTIONS = {"rules", "domains"}
_RULE_NUMBERS = {"rate", "cap", "threshold", "amount", "district_share", "intensity", "priority"}
_KEYED_POPULATION = {"enterprise", "sizes", "sectors"}


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    description: str
    overrides: str  # canonical JSON of {"policy": ..., "population": ..., "process": ...}
    path: str | None = None

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.overrides.encode()).hexdigest()

    def section(self, name: str) -> dict:
        import json

        return json.loads(self.overrides).get(name, {})

    @property
    def is_baseline(self) -> bool:
        return self.overrides == canonical_json({})


def baseline(model: str | None = None) -> Scenario:
    """The model as it is: a scenario with no overrides."""
    return Scenario("baseline", model or policy_module.DEFAULT_MODEL, "The model as published.", canonical_json({}))


def scenarios_root() -> Path:
    """The bundled scenarios (inside an installed wheel, or the repository's ``scenarios/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "scenarios", here.parent / "scenarios"):
        if candidate.is_dir() and any(candidate.glob("*.toml")):
            return candidate
    raise ScenarioError(f"the bundled scenarios are missing: looked in {here / 'scenarios'} and "
                        f"{here.parent / 'scenarios'}")


def resolve(name_or_path: str | Path) -> Path:
    path = Path(name_or_path)
    if path.is_file():
        return path
    if isinstance(name_or_path, str) and "/" not in name_or_path:
        bundled = scenarios_root() / f"{name_or_path.removesuffix('.toml')}.toml"
        if bundled.is_file():
            return bundled
    names = sorted(p.stem for p in scenarios_root().glob("*.toml"))
    raise ScenarioError(f"{name_or_path}: no such scenario file and no bundled scenario of that name; "
                        f"bundled: {', '.join(names)}")


def load(name_or_path: str | Path) -> Scenario:
    """Read a scenario file (or a bundled scenario by name) and check its shape."""
    data, shown = read_toml(resolve(name_or_path), ScenarioError, "no such scenario file")
    scenario = from_dict(data, origin=shown)
    apply(scenario)  # validated in full now, not half-way through a run
    return scenario


def from_dict(data: dict[str, Any], origin: str = "<scenario>") -> Scenario:
    unknown = set(data) - _TOP
    if unknown:
        raise ScenarioError(f"{origin}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_TOP))})")
    for key in ("name",):
        if not isinstance(data.get(key), str):
            raise ScenarioError(f"{origin}: `{key}` is required (text)")
    overrides = {k: data[k] for k in ("policy", "population", "process") if k in data}
    for section, allowed in (("policy", _POLICY_SECTIONS),):
        extra = set(overrides.get(section, {})) - allowed
        if extra:
            raise ScenarioError(f"{origin}: {section}.{sorted(extra)[0]} cannot be overridden "
                                f"(allowed: {', '.join(sorted(allowed))})")
    return Scenario(data["name"], str(data.get("model", policy_module.DEFAULT_MODEL)),
                    str(data.get("description", "")), canonical_json(overrides), origin)


def _mark(value: Any, reason: str) -> Any:
    """A scenario's number, kept as a model Param that says where it comes from."""
    if isinstance(value, dict):
        return value
    return {"value": value, "assumed": True, "why": reason}


def _apply_policy(data: dict, overrides: dict, scenario: Scenario, where: str) -> dict:
    data = copy.deepcopy(data)
    reason = f"scenario {scenario.name}"
    rules = {r["id"]: r for r in data["rules"]}
    for rule_id, fields in overrides.get("rules", {}).items():
        if rule_id not in rules:
            raise ScenarioError(f"{where}: policy.rules.{rule_id}: no such rule in model {scenario.model}")
        for key, value in fields.items():
            if key in _RULE_NUMBERS:
                rules[rule_id][key] = _mark(value, reason)
            elif key == "tiers":
                rules[rule_id][key] = [{"at": t["at"], "amount": _mark(t["amount"], reason)} for t in value]
            else:
                raise ScenarioError(f"{where}: policy.rules.{rule_id}.{key}: only numbers can be overridden "
                                    f"({', '.join(sorted(_RULE_NUMBERS | {'tiers'}))})")
    for key, fields in overrides.get("domains", {}).items():
        if key not in data["domains"]:
            raise ScenarioError(f"{where}: policy.domains.{key}: no such domain in model {scenario.model}")
        for field, value in fields.items():
            if field == "claims_budget":
                data["domains"][key][field] = _mark(value, reason)
            elif field == "budget":
                data["domains"][key][field] = value
                data["domains"][key].pop("sublines", None)  # a new total replaces the published lines
            else:
                raise ScenarioError(f"{where}: policy.domains.{key}.{field}: only budget and claims_budget "
                                    "can be overridden")
    return data


def _merge(target: dict, override: dict, path: str, where: str) -> None:
    for key, value in override.items():
        here = f"{path}.{key}"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, here, where)
        elif key not in target and isinstance(value, dict):
            raise ScenarioError(f"{where}: {here}: no such entry in the model's population specification")
        else:
            target[key] = value


def _apply_population(data: dict, overrides: dict, where: str) -> dict:
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        if key == "segments":
            segments = {s["id"]: s for s in data.get("segments", [])}
            for segment_id, fields in value.items():
                if segment_id not in segments:
                    raise ScenarioError(f"{where}: population.segments.{segment_id}: no such segment")
                _merge(segments[segment_id], fields, f"population.segments.{segment_id}", where)
        elif key == "shocks":
            data.setdefault("shocks", {}).update(value)
        elif key in _KEYED_POPULATION:
            for name, fields in value.items():
                if name not in data.get(key, {}):
                    raise ScenarioError(f"{where}: population.{key}.{name}: no such entry in the model")
                _merge(data[key][name], fields, f"population.{key}.{name}", where)
        elif key in data and isinstance(value, dict):
            _merge(data[key], value, f"population.{key}", where)
        else:
            raise ScenarioError(f"{where}: population.{key} cannot be overridden")
    return data


def apply_process(scenario: Scenario, policy: policy_module.Policy):
    """The scenario's process settings (reviewers, windows, the exhaustion rule, ...), validated."""
    from sim import process as process_module

    where = scenario.path or scenario.name
    base = process_module.load_process(scenario.model, policy=policy)
    overrides = scenario.section("process")
    if not overrides:
        return base
    data = process_module.process_data(base)  # a fresh copy
    for key, value in overrides.items():
        if key not in ("payment", "bureaus", "windows", "rules", "defaults", "calendar"):
            raise ScenarioError(f"{where}: process.{key} cannot be overridden")
        if key in ("bureaus", "windows"):
            for name, fields in value.items():
                if name not in data.get(key, {}):
                    raise ScenarioError(f"{where}: process.{key}.{name}: no such entry in the model's process settings")
                _merge(data[key][name], fields, f"process.{key}.{name}", where)
        elif key == "rules":
            for rule_id, fields in value.items():
                entry = data.setdefault("rules", {}).setdefault(
                    rule_id, {"assumed": True, "why": f"scenario {scenario.name}"})
                _merge(entry, fields, f"process.rules.{rule_id}", where)
        else:
            _merge(data.setdefault(key, {}), value, f"process.{key}", where)
    return process_module.process_from_dict(data, policy, origin=f"{where} (scenario applied to {base.path})")


def apply(scenario: Scenario) -> tuple[policy_module.Policy, population_module.PopulationSpec]:
    """The scenario's policy and population: overrides applied to copies of the baseline, validated."""
    where = scenario.path or scenario.name
    base_policy = policy_module.load(scenario.model)
    base_spec = population_module.load_spec(scenario.model, policy=base_policy)
    if scenario.is_baseline:
        return base_policy, base_spec
    policy_data = _apply_policy(base_policy.data(), scenario.section("policy"), scenario, where)
    origin = f"{where} (scenario applied to {base_policy.path})"
    policy = policy_module.from_dict(policy_data, origin=origin, source_text=base_policy.source_text)
    spec_data = _apply_population(base_spec.data(), scenario.section("population"), where)
    spec = population_module.spec_from_dict(spec_data, policy, origin=f"{where} (scenario applied to {base_spec.path})")
    return policy, spec
