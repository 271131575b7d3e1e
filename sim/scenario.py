"""Scenarios: partial overrides of a baseline model, validated in full before anything changes.

A scenario file (TOML) names a model and overrides any of its numbers::

    name = "rd-rate-up"
    model = "template"
    description = "Raise article 1's rate to 15%"

    [policy.rules.t01-rd-increase]
    rate = 0.15

    [policy.domains.innovation]
    claims_budget = 1800

    [population.claimants.enterprise.attributes.rd_log_growth]
    mean = 0.10

    [population.segments.small-firms]
    count = 3500

    [population.shocks]
    export_value = 0.8

The overrides are applied to a copy of the baseline's data (the baseline objects are immutable), and
the result is validated by the same loaders as the model itself, so an override of a field that does
not exist, or a value out of range, is an error naming the scenario file and the field.  A policy number
a scenario sets is marked as the scenario's (``scenario = name``), so it shows in the catalogue, and is
held at that value: it is a decision, not an assumption, so it has no plausible range.  A population or
process number with its own range is likewise held at the scenario's value; one under a relative
uncertainty (a factor or a shift of the file's ``[uncertainty]``) keeps that spread around its new value.
Every assumption group of the model stays a column of the draws, so the same replication sees the same
assumption values in every scenario (common random numbers).
"""

from __future__ import annotations

import copy
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sim import kinds
from sim import policy as policy_module
from sim import population as population_module
from sim.errors import PolicyError, ScenarioError
from sim.validation import canonical_json, read_toml

_TOP = {"name", "model", "description", "title_zh", "title_en", "policy", "population", "process", "years"}
_POLICY_SECTIONS = {"rules", "domains"}
_RULE_NUMBERS = {*kinds.all_numbers(), "district_share", "intensity", "priority"}


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    description: str
    overrides: str  # canonical JSON of {"policy": ..., "population": ..., "process": ...}
    path: str | None = None
    title_zh: str = ""  # the scenario's title for a Chinese reader (written in Simplified), else its name
    title_en: str = ""

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
    return Scenario("baseline", model or policy_module.default_model(), "The model as published.", canonical_json({}),
                    title_zh="基准情景", title_en="Baseline")


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


def load(name_or_path: str | Path, allow_outside: bool = False) -> Scenario:
    """Read a scenario file (or a bundled scenario by name) and validate it in full: policy, population and
    process overrides, now, not half-way through a run.

    A model folder the scenario names by path is found relative to the scenario file, and must lie within
    the bundled models folder unless ``allow_outside``."""
    file = resolve(name_or_path)
    data, shown = read_toml(file, ScenarioError, "no such scenario file")
    scenario = from_dict(data, origin=shown, base=file.parent, allow_outside=allow_outside)
    policy, _ = apply(scenario)
    apply_process(scenario, policy)
    return scenario


def model_folder(model: Any, origin: str, base: Path | None, allow_outside: bool) -> str:
    """The model a scenario names: a bundled model's name, or a folder path relative to the scenario file."""
    if model is None:
        return policy_module.default_model()
    if not isinstance(model, str) or not model.strip():
        raise ScenarioError(f"{origin}: model must be a bundled model's name or a model folder, got {model!r}")
    root = policy_module.models_root().resolve()
    if "/" not in model and "\\" not in model:
        if not (root / model / "policy.toml").is_file():
            names = sorted(p.name for p in root.iterdir() if (p / "policy.toml").is_file())
            raise ScenarioError(f"{origin}: model {model!r} is not a bundled model (bundled: {', '.join(names)}); "
                                "give a model folder's path instead")
        return model
    folder = ((base or Path.cwd()) / model).resolve()
    if not allow_outside and not folder.is_relative_to(root):
        raise ScenarioError(f"{origin}: model {model!r} is {folder}, outside the models folder {root}; move the "
                            "model there, or pass --allow-outside if you mean it")
    if not (folder / "policy.toml").is_file():
        raise ScenarioError(f"{origin}: model {model!r}: no policy.toml in {folder}")
    return str(folder)


def from_dict(data: dict[str, Any], origin: str = "<scenario>", base: Path | None = None,
              allow_outside: bool = False) -> Scenario:
    unknown = set(data) - _TOP
    if unknown:
        raise ScenarioError(f"{origin}: unknown key {sorted(unknown)[0]!r} (allowed: {', '.join(sorted(_TOP))})")
    if not isinstance(data.get("name"), str) or not data["name"].strip():
        raise ScenarioError(f"{origin}: `name` is required (text)")
    for key in ("description", "title_zh", "title_en"):
        if not isinstance(data.get(key, ""), str):
            raise ScenarioError(f"{origin}: {key} must be text")
    for section in ("policy", "population", "process", "years"):
        if section in data and not isinstance(data[section], dict):
            raise ScenarioError(f"{origin}: [{section}] must be a table of overrides")
    overrides = {k: data[k] for k in ("policy", "population", "process", "years") if k in data}
    for section, allowed in (("policy", _POLICY_SECTIONS),):
        extra = set(overrides.get(section, {})) - allowed
        if extra:
            raise ScenarioError(f"{origin}: {section}.{sorted(extra)[0]} cannot be overridden "
                                f"(allowed: {', '.join(sorted(allowed))})")
    return Scenario(data["name"], model_folder(data.get("model"), origin, base, allow_outside),
                    str(data.get("description", "")), canonical_json(overrides), origin,
                    data.get("title_zh", ""), data.get("title_en", ""))


def _mark(value: Any, reason: str) -> Any:
    """A scenario's number, kept as a model Param that says which scenario set it (and so has no range)."""
    if isinstance(value, dict):
        return value
    return {"value": value, "scenario": reason}


def _table(value: Any, where: str, path: str) -> dict:
    """An override that must be a table (of rules, of fields, ...): one clear message when it is not."""
    if not isinstance(value, dict):
        raise ScenarioError(f"{where}: {path} must be a table, got {value!r}")
    return value


def _apply_policy(data: dict, overrides: dict, scenario: Scenario, where: str) -> dict:
    data = copy.deepcopy(data)
    reason = scenario.name
    rules = {r["id"]: r for r in data["rules"]}
    for rule_id, fields in _table(overrides.get("rules", {}), where, "policy.rules").items():
        if rule_id not in rules:
            raise ScenarioError(f"{where}: policy.rules.{rule_id}: no such rule in model {scenario.model}")
        for key, value in _table(fields, where, f"policy.rules.{rule_id}").items():
            if key in _RULE_NUMBERS:
                rules[rule_id][key] = _mark(value, reason)
            elif key == "tiers":
                rules[rule_id][key] = _tiers(value, f"{where}: policy.rules.{rule_id}.tiers", reason)
            else:
                raise ScenarioError(f"{where}: policy.rules.{rule_id}.{key}: only numbers can be overridden "
                                    f"({', '.join(sorted(_RULE_NUMBERS | {'tiers'}))})")
    for key, fields in _table(overrides.get("domains", {}), where, "policy.domains").items():
        if key not in data["domains"]:
            raise ScenarioError(f"{where}: policy.domains.{key}: no such domain in model {scenario.model}")
        for field, value in _table(fields, where, f"policy.domains.{key}").items():
            if field == "claims_budget":
                data["domains"][key][field] = _mark(value, reason)
            elif field == "budget":
                data["domains"][key][field] = value
                if data["domains"][key].pop("sublines", None):  # a new total replaces the published lines,
                    for rule in data["rules"]:  # so the domain's rules draw on the new total as a whole
                        if rule["domain"] == key:
                            rule.pop("subline", None)
            else:
                raise ScenarioError(f"{where}: policy.domains.{key}.{field}: only budget and claims_budget "
                                    "can be overridden")
    return data


def _tiers(value: Any, where: str, reason: str) -> list[dict]:
    """A scenario's tiers: a list of tables each with `at` and one value (amount or rate), values marked."""
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ScenarioError(f"{where}: must be a list of tables such as {{ at = 4, amount = 20 }}")
    out = []
    for i, tier in enumerate(value, start=1):
        values = [k for k in tier if k != "at"]
        if "at" not in tier or len(values) != 1:
            raise ScenarioError(f"{where}, tier {i}: give `at` and one value (amount or rate), got "
                                f"{', '.join(sorted(tier)) or 'nothing'}")
        out.append({"at": tier["at"], values[0]: _mark(tier[values[0]], reason)})
    return out


def _merge(target: dict, override: Any, path: str, where: str) -> None:
    for key, value in _table(override, where, path).items():
        here = f"{path}.{key}"
        if isinstance(value, dict) and isinstance(target.get(key), dict):
            _merge(target[key], value, here, where)
        elif key not in target and isinstance(value, dict):
            section = "population specification" if path.startswith("population") else "process settings"
            raise ScenarioError(f"{where}: {here}: no such entry in the model's {section}")
        else:
            target[key] = value
            own = target.get("uncertainty")
            if isinstance(own, dict) and isinstance(own.get(key), dict) and "range" in own[key]:
                del own[key]  # the scenario's value is held: its own range no longer applies


def _apply_population(data: dict, overrides: dict, where: str) -> dict:
    data = copy.deepcopy(data)
    for key, value in overrides.items():
        if key == "segments":
            segments = {s["id"]: s for s in data.get("segments", [])}
            for segment_id, fields in _table(value, where, "population.segments").items():
                if segment_id not in segments:
                    raise ScenarioError(f"{where}: population.segments.{segment_id}: no such segment")
                _merge(segments[segment_id], fields, f"population.segments.{segment_id}", where)
        elif key == "shocks":
            data.setdefault("shocks", {}).update(_table(value, where, "population.shocks"))
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
            for name, fields in _table(value, where, f"process.{key}").items():
                if name not in data.get(key, {}):
                    raise ScenarioError(f"{where}: process.{key}.{name}: no such entry in the model's process settings")
                _merge(data[key][name], fields, f"process.{key}.{name}", where)
        elif key == "rules":
            for rule_id, fields in _table(value, where, "process.rules").items():
                entry = data.setdefault("rules", {}).setdefault(
                    rule_id, {"assumed": True, "why": f"scenario {scenario.name}"})
                _merge(entry, fields, f"process.rules.{rule_id}", where)
        else:
            _merge(data.setdefault(key, {}), value, f"process.{key}", where)
    return process_module.process_from_dict(data, policy, origin=f"{where} (scenario applied to {base.path})")


def apply_years(scenario: Scenario, policy: policy_module.Policy):
    """The scenario's multi-year model (``years.toml`` with the scenario's ``[years]`` overrides), validated; a
    number the scenario sets is held at its value (marked as the scenario's, with no range)."""
    import json

    from sim import years as years_module

    where = scenario.path or scenario.name
    base = years_module.load_years(scenario.model, policy)
    overrides = scenario.section("years")
    if not overrides:
        return base
    data = json.loads(base.raw)
    _merge_years(data, overrides, "years", where, scenario.name)
    return years_module.years_from_dict(data, policy, origin=f"{where} (scenario applied to {base.path})",
                                        all_used=False)


def _merge_years(target: dict, override: Any, path: str, where: str, name: str) -> None:
    """Overrides of ``years.toml``: an entry must exist (a year of ``budgets.by_year`` may be added); a number
    replaces a number table as the scenario's; anything else (``renewed``, a term's ``years``) is set as given."""
    for key, value in _table(override, where, path).items():
        here = f"{path}.{key}"
        current = target.get(key)
        if key not in target and not path.startswith("years.budgets.by_year"):
            raise ScenarioError(f"{where}: {here}: no such entry in the model's years.toml")
        if isinstance(value, dict) and isinstance(current, dict) and "value" not in current:
            _merge_years(current, value, here, where, name)
        elif isinstance(value, dict) and path.startswith("years.budgets.by_year") and current is None:
            target[key] = {}
            _merge_years(target[key], value, here, where, name)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and (
                isinstance(current, dict) or path.startswith("years.budgets.by_year")):
            target[key] = _mark(value, name)
        else:
            target[key] = value


def apply(scenario: Scenario) -> tuple[policy_module.Policy, population_module.PopulationSpec]:
    """The scenario's policy and population: overrides applied to copies of the baseline, validated."""
    where = scenario.path or scenario.name
    try:
        base_policy = policy_module.load(scenario.model)
    except PolicyError as exc:
        if scenario.path is None:
            raise
        raise ScenarioError(f"{where}: its model {scenario.model!r} cannot be loaded: {exc}") from None
    base_spec = population_module.load_spec(scenario.model, policy=base_policy)
    if scenario.is_baseline:
        return base_policy, base_spec
    policy_data = _apply_policy(base_policy.data(), scenario.section("policy"), scenario, where)
    origin = f"{where} (scenario applied to {base_policy.path})"
    policy = policy_module.from_dict(policy_data, origin=origin, source_text=base_policy.source_text)
    spec_data = _apply_population(base_spec.data(), scenario.section("population"), where)
    spec = population_module.spec_from_dict(spec_data, policy, origin=f"{where} (scenario applied to {base_spec.path})")
    return policy, spec


def warnings_of(scenario: Scenario, policy: policy_module.Policy, base: policy_module.Policy) -> list[str]:
    """What a scenario's overrides do that the author may not mean: a cap set below a direct award of the
    same rule (article 13: the direct 200萬 at R&D of 1億 is then worth more than the capped subsidy it
    replaces, so the cap no longer bounds the award)."""
    out = []
    for rule in policy.rules:
        cap = rule.number("cap")
        if cap is None or not rule.tiers or rule.tier_base is None:
            continue
        direct = max(t.value.value for t in rule.tiers)
        before = base.rule(rule.id).number("cap") if rule.id in base.rule_ids else None
        if cap.value < direct and (before is None or before.value >= direct or cap.value != before.value):
            out.append(f"scenario {scenario.name}: rule {rule.id} (article {rule.article}): the cap {cap.value:g} "
                       "萬元 "
                       f"is below the rule's direct award of {direct:g} 萬元 (at {rule.tier_base} >= "
                       f"{rule.tiers[-1].at:g}); firms there still get {direct:g} 萬元, so the cap no longer "
                       "bounds the award; lower the direct award too if that is meant")
    return out
