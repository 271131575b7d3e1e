"""Fuzzing: mutated model files, scenarios and firm registers each give a clean error or a valid, finite result.

Hypothesis picks a place in a model file (any table key or list item), and replaces it with a nasty value
(empty or blank text, a wrong type, a huge, negative, infinite or NaN number, a list, a table), deletes
it, or adds an unknown key.  The mutated model is loaded; when it loads, a small pipeline runs on it and
every total must be finite.  Anything but a FiscalsimError, or a non-finite number, fails the test.

The default run tries a few hundred deterministic examples; ``pytest -m slow tests/test_fuzz.py -s`` tries
thousands of random ones and prints how many ended in each outcome.
"""

import collections
import copy
import math
import shutil
import tempfile
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.pipeline as pipeline
import sim.scenario as scenario
from sim.cli import main
from sim.errors import FiscalsimError

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "models" / "template"
FILES = ("policy.toml", "population.toml", "process.toml")
DATA = {name: tomllib.loads((TEMPLATE / name).read_text(encoding="utf-8")) for name in FILES}
NASTY = ["", " ", "x", "no-such-thing", "../../etc/passwd", "萬元", -1, 0, 1, 2.5, -1e-9, 1e308, -1e308, 1e12,
         float("inf"), float("nan"), True, False, [], [1, 2], {}, {"value": 1}, {"x": "y"}, 10**30]
OUTCOMES: collections.Counter = collections.Counter()
DEFAULT = settings(max_examples=120, deadline=None, derandomize=True,
                   suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
SLOW = settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                        HealthCheck.data_too_large])


def _places(node, path=()):
    """Every (path, value) in a nested structure of tables and lists."""
    yield path, node
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _places(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _places(value, (*path, i))


@st.composite
def mutated(draw, data):
    """A deep copy of ``data`` with one place replaced, deleted, or given an unknown key."""
    data = copy.deepcopy(data)
    places = [p for p, _ in _places(data) if p]
    path = draw(st.sampled_from(places))
    parent = data
    for part in path[:-1]:
        parent = parent[part]
    action = draw(st.sampled_from(["replace", "replace", "replace", "delete", "unknown"]))
    if action == "delete":
        del parent[path[-1]]
    elif action == "unknown" and isinstance(parent[path[-1]], dict):
        parent[path[-1]]["unexpected_key"] = draw(st.sampled_from(NASTY))
    else:
        parent[path[-1]] = draw(st.sampled_from(NASTY))
    return data


def _finite_run(folder_or_scenario, **kwargs) -> None:
    run = pipeline.run(folder_or_scenario, settings=pipeline.Settings(replications=1, n=1500,
                                                                     stages=("claims", "process", "budget")),
                       progress=False, **kwargs)
    # Money is finite everywhere; NaN only where a statistic is undefined (the sd of one replication, the
    # run-out day of a budget that never ran out, the waits of a rule nobody claimed).
    assert np.isfinite(run.rules[["award", "district"]].to_numpy()).all()
    for name, table in [*run.tables.items(), *run.stage("budget").tables.items()]:
        numbers = table.select_dtypes("number").to_numpy(dtype=float)
        assert not np.isinf(numbers).any(), name


def _outcome(call) -> str:
    try:
        call()
    except FiscalsimError:
        return "clean error"
    return "ran, finite"


def _write_model(folder: Path, name: str, data: dict) -> bool:
    shutil.copytree(TEMPLATE, folder)
    try:
        (folder / name).write_text(tomli_w.dumps(data), encoding="utf-8")
    except (TypeError, ValueError):  # a value TOML cannot hold (a nan in a key, a list of mixed tables)
        return False
    return True


def check_model_file(name: str, data: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "m"
        if not _write_model(folder, name, data):
            OUTCOMES[f"{name}: not TOML-writable"] += 1
            return
        OUTCOMES[f"{name}: {_outcome(lambda: _finite_run(None, model=str(folder)))}"] += 1


def check_scenario(overrides: dict) -> None:
    def call():
        chosen = scenario.from_dict({"name": "fuzz", "model": "template", **overrides})
        _finite_run(chosen)
    OUTCOMES[f"scenario: {_outcome(call)}"] += 1


OVERRIDES = {"policy": {"rules": {r["id"]: {k: v for k, v in r.items() if k in ("rate", "cap", "threshold", "amount",
                                                                              "intensity", "tiers")}
                                  for r in DATA["policy.toml"]["rules"]},
                        "domains": {k: {"claims_budget": v["claims_budget"], "budget": v["budget"]}
                                    for k, v in DATA["policy.toml"]["domains"].items()}},
             "population": {"claimants": DATA["population.toml"]["claimants"],
                            "segments": {s["id"]: {"count": s["count"]} for s in DATA["population.toml"]["segments"]},
                            "shocks": {"export_value": 1.0}},
             "process": {k: DATA["process.toml"][k] for k in ("payment", "bureaus", "windows", "defaults")}}


def check_register(text: str, tmp: Path) -> None:
    path = tmp / "firms.csv"
    path.write_text(text, encoding="utf-8")
    out = tmp / "awards.csv"
    code = main(["awards", str(path), "--model", str(TEMPLATE), "-o", str(out)])
    assert code in (0, 2), code
    if code == 0:
        awards = pd.read_csv(out)
        assert np.isfinite(awards.select_dtypes("number").to_numpy()).all()
        OUTCOMES["register: ran, finite"] += 1
    else:
        assert not out.exists()
        OUTCOMES["register: clean error"] += 1


SAMPLE = [line.split(",") for line in (TEMPLATE / "sample-firms.csv").read_text(encoding="utf-8").splitlines()]
CELLS = ["", "x", "是", "3,000", "-5", "1e308", "inf", "nan", "0.5", "1" + "0" * 30, " 7 ", '"1,000"', "１２"]


@st.composite
def registers(draw):
    """A firm register as CSV text: the template's sample with cells, columns and headers spoiled."""
    rows = [list(row) for row in SAMPLE]
    for _ in range(draw(st.integers(1, 3))):
        action = draw(st.sampled_from(["cell", "cell", "drop", "rename", "duplicate", "extra", "ragged"]))
        column = draw(st.integers(0, len(rows[0]) - 1))
        if action == "cell":
            rows[draw(st.integers(1, len(rows) - 1))][column] = draw(st.sampled_from(CELLS))
        elif action == "drop" and len(rows[0]) > 1:
            rows = [row[:column] + row[column + 1:] for row in rows]
        elif action == "rename":
            rows[0][column] += "x"
        elif action == "duplicate":
            rows = [row + [row[column]] for row in rows]
        elif action == "extra":
            rows = [rows[0] + ["unknown_column"]] + [row + ["1"] for row in rows[1:]]
        elif action == "ragged":
            rows[draw(st.integers(1, len(rows) - 1))].append("9")
    return "\n".join(",".join(row) for row in rows) + "\n"


@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("name", FILES)
@DEFAULT
@given(data=st.data())
def test_mutated_model_files_give_a_clean_error_or_a_finite_run(name, data):
    check_model_file(name, data.draw(mutated(DATA[name])))


@pytest.mark.filterwarnings("error::RuntimeWarning")
@DEFAULT
@given(overrides=mutated(OVERRIDES))
def test_mutated_scenarios_give_a_clean_error_or_a_finite_run(overrides):
    check_scenario(overrides)


@DEFAULT
@given(text=registers())
def test_mutated_firm_registers_give_a_clean_error_or_finite_awards(text):
    with tempfile.TemporaryDirectory() as tmp:
        check_register(text, Path(tmp))


@pytest.mark.slow
@pytest.mark.filterwarnings("error::RuntimeWarning")
@pytest.mark.parametrize("kind", [*FILES, "scenario", "register"])
@SLOW
@given(data=st.data())
def test_many_mutations_of_everything(kind, data):
    if kind in FILES:
        check_model_file(kind, data.draw(mutated(DATA[kind])))
    elif kind == "scenario":
        check_scenario(data.draw(mutated(OVERRIDES)))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            check_register(data.draw(registers()), Path(tmp))


@pytest.fixture(scope="module", autouse=True)
def report_outcomes():
    yield
    if OUTCOMES:
        total = sum(OUTCOMES.values())
        print(f"\nfuzz outcomes over {total} examples (no raw exception, no non-finite number):")
        for key, count in sorted(OUTCOMES.items()):
            print(f"  {key}: {count}")
    assert math.isfinite(sum(OUTCOMES.values()))
