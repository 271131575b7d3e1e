"""The pipeline as a library: every stage on one executor, a thin CLI, a report that only reads, a second
model that needs no code, one registry of rule kinds."""

import ast
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

import sim.pipeline as pipeline
import sim.policy
import sim.population
import sim.results as results
from sim import assumptions, kinds, sensitivity
from sim.cli import main
from tests.strategies import random_table

ROOT = Path(__file__).resolve().parent.parent
SIM = ROOT / "sim"
TEMPLATE = ROOT / "models" / "template"


# ----------------------------------------------------------------------------- a second model, no code
def test_template_model_runs_through_every_command(tmp_path, capsys):
    model = str(TEMPLATE)
    assert main(["policy", "--model", model]) == 0
    assert "6 award rules" in capsys.readouterr().out
    assert main(["awards", "--sample", "--model", model]) == 0
    assert "t01-rd-increase" in capsys.readouterr().out
    assert main(["calibrate", "--model", model, "--replications", "2"]) == 0
    assert "new-high-tech" in capsys.readouterr().out
    out = tmp_path / "run"
    assert main(["run", "--model", model, "-r", "20", "-o", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "科技创新" in printed and "报告:" in printed and "innovation" not in printed  # names, not keys
    run = results.load(out)
    assert run.manifest["stages"] == list(pipeline.STAGES) and run.manifest["model"] == model
    assert (out / "report" / "report.zh-Hans.html").is_file() and run.stage("budget") is not None
    assert run.manifest["process_replications"] == 20
    groups = set(assumptions.load_groups(model)) | {sensitivity.ALEATORY}
    assert set(run["sobol_indices"]["group"]) == groups and len(groups) > 10
    assert main(["sensitivity", str(out), "-N", "4", "--no-progress"]) == 0
    assert "Sobol" in capsys.readouterr().out
    finer = results.load(out).stage("sensitivity")
    assert set(finer["sobol_indices"]["group"]) == groups and finer["sobol_evaluations"]["row"].nunique() == 4 * (len(groups) + 2)
    assert main(["budget", str(out), "--solver", "scipy"]) == 0
    assert main(["report", str(out), "--lang", "en", "--out", str(tmp_path / "en")]) == 0
    assert "Template district 2024 policy" in (tmp_path / "en" / "report.en.html").read_text(encoding="utf-8")
    assert (tmp_path / "en" / "claims.en.png").is_file() and not (tmp_path / "en" / "report.zh-Hans.html").exists()
    assert main(["compare", str(out), str(out), "--out", str(tmp_path / "cmp")]) == 0
    assert "Sobol" not in capsys.readouterr().out and (tmp_path / "cmp" / "compare.zh-Hans.html").is_file()


def test_template_model_through_the_python_api(tmp_path):
    settings = pipeline.Settings(replications=10, seed=3)
    run = pipeline.run(model="template", settings=settings, out=tmp_path / "run", progress=False)
    summary = run.summary("domain").set_index("domain")
    assert list(summary.index) == ["innovation", "industry", "livelihood"]
    assert (summary["district_mean"] > 0).all()
    assert run["process_outcomes"]["replication"].nunique() == 10
    in_memory = pipeline.run(model="template", settings=settings, progress=False)
    assert in_memory.path is None and "report" not in in_memory.manifest["stages"]
    assert in_memory.summary("domain").equals(run.summary("domain"))


# ----------------------------------------------------------------------------- the same bytes everywhere
def _table_bytes(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.parquet"))}


SMALL = pipeline.Settings(replications=4, seed=5, n=20_000, stages=("claims", "process", "budget", "sensitivity"),
                          per_draw=2, sensitivity_samples=2)


def test_same_seed_byte_identical_tables_in_process_and_on_two_dask_workers(tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    from sim.executors import Dask, Serial, local_cluster

    pipeline.run(settings=SMALL, out=tmp_path / "serial", progress=False, executor=Serial())
    with local_cluster(2) as cluster, distributed.Client(cluster) as client:
        executor = Dask(client)
        run = pipeline.run(settings=SMALL, out=tmp_path / "dask", executor=executor, progress=False)
    assert run.manifest["executor"] == "dask" and run.manifest["workers"] == 2
    serial, dask = _table_bytes(tmp_path / "serial"), _table_bytes(tmp_path / "dask")
    assert "process_outcomes.parquet" in serial and "budget/cvar_overall.parquet" in serial
    assert {"assumptions.parquet", "sobol_indices.parquet", "headline.parquet"} <= set(serial)  # the draws too
    assert serial.keys() == dask.keys()
    different = [name for name in serial if serial[name] != dask[name]]
    assert different == []


def test_same_bytes_on_this_machines_cores_and_with_simpy_stepping_every_year(tmp_path):
    """Worker processes (the default on a machine with several cores) and the SimPy model stepped event by
    event instead of the queue recursion: the run's tables are the same bytes."""
    from sim.executors import Processes, Serial

    serial = pipeline.run(settings=SMALL, out=tmp_path / "serial", progress=False, executor=Serial())
    cores = pipeline.run(settings=SMALL, out=tmp_path / "cores", progress=False, executor=Processes(2))
    stepped = pipeline.run(settings=replace(SMALL, process_engine="simpy"), out=tmp_path / "simpy", progress=False,
                           executor=Serial())
    assert (cores.manifest["executor"], cores.manifest["workers"]) == ("processes", 2)
    assert serial.manifest["process_engines"] == {"recursion": 4} and stepped.manifest["process_engines"] == {
        "simpy": 4}
    tables = _table_bytes(tmp_path / "serial")
    assert "process_queues.parquet" in tables and "process_events.parquet" in tables
    assert tables == _table_bytes(tmp_path / "cores") == _table_bytes(tmp_path / "simpy")


def test_identical_runs_identical_bytes_and_timings_only_in_the_manifest(tmp_path):
    first = pipeline.run(settings=SMALL, out=tmp_path / "a", progress=False)
    pipeline.run(settings=SMALL, out=tmp_path / "b", progress=False)
    assert _table_bytes(tmp_path / "a") == _table_bytes(tmp_path / "b")
    timing = re.compile(r"(^|_)(seconds|wall|time|build_s|solve_s|model_s)($|_)")
    for name, table in [*first.tables.items(), *first.stage("budget").tables.items()]:
        assert not [c for c in table.columns if timing.search(str(c))], name
    assert {"claims", "process", "budget", "sensitivity"} <= set(first.manifest["timings"])


def test_process_stage_runs_every_replication_unless_asked_for_fewer():
    full = pipeline.Settings(replications=3, n=5000, stages=("claims", "process"))
    assert pipeline.run(settings=full, progress=False)["process_events"]["replication"].tolist() == [0, 1, 2]
    fewer = pipeline.Settings(replications=3, n=5000, stages=("claims", "process"), process_replications=2)
    assert pipeline.run(settings=fewer, progress=False).manifest["process_replications"] == 2


# ----------------------------------------------------------------------------- the report reads, never computes
def test_the_report_draws_a_finished_run_without_computing(tmp_path, monkeypatch):
    run = pipeline.run(model="template", settings=pipeline.Settings(replications=5), out=tmp_path / "run",
                       progress=False)
    import sim.budget
    import sim.montecarlo
    import sim.process

    def forbidden(*args, **kwargs):
        raise AssertionError("the report must not compute")
    for module, name in ((sim.montecarlo, "run"), (sim.montecarlo, "replication_task"), (sim.process, "simulate"),
                         (sim.budget, "solve"), (sim.budget, "analyse")):
        monkeypatch.setattr(module, name, forbidden)
    from sim import report
    page = report.write_report(run.path, lang="en", out=tmp_path / "en")
    assert page.is_file()


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            if node.module == "sim":
                names.update(f"sim.{alias.name}" for alias in node.names)
    return {n for n in names if n.startswith("sim")}


def test_the_import_graph():
    graph = {p.stem: _imports(p) for p in SIM.glob("*.py")}
    runners = {"sim.montecarlo", "sim.process", "sim.budget", "sim.sensitivity", "sim.pipeline", "sim.executors"}
    assert not graph["report"] & runners, graph["report"] & runners
    assert "sim.pipeline" in graph["cli"]
    assert not graph["cli"] & {"sim.montecarlo", "sim.process", "sim.budget", "sim.sensitivity"}
    # Acyclic: a topological order exists.
    remaining = {k: {d.removeprefix("sim.") for d in v} - {k} for k, v in graph.items()}
    while remaining:
        free = [k for k, deps in remaining.items() if not deps & set(remaining)]
        assert free, f"import cycle among {sorted(remaining)}"
        for k in free:
            del remaining[k]


def test_no_module_reaches_into_another_modules_private_names():
    modules = {p.stem for p in SIM.glob("*.py")}
    found = []
    for path in SIM.glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        aliases = {}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.startswith("sim."):
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("sim"):
                for alias in node.names:
                    if alias.name.startswith("_"):
                        found.append(f"{path.name}: from {node.module} import {alias.name}")
                    if node.module == "sim" and alias.name in modules:
                        aliases[alias.asname or alias.name] = alias.name
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in aliases):
                found.append(f"{path.name}: {node.value.id}.{node.attr}")
    assert found == []


# ----------------------------------------------------------------------------- nothing of one model in sim/
def _model_names(model: str) -> set[str]:
    policy = sim.policy.load(model)
    spec = sim.population.load_spec(model, policy=policy)
    names = {a.name for a in policy.attributes} | set(policy.rule_ids) | {s.id for s in spec.segments}
    names |= {s.attribute for p in spec.programmes.values() for s in p.steps}
    names |= {d.key for d in policy.domains if "_" in d.key} | {a.lead for a in policy.articles}
    names |= {policy.meta["id"]}
    return {n for n in names if len(n) > 3}


def test_sim_names_no_attribute_rule_segment_or_bureau_of_a_model():
    # The default model's own names (those the documented template shares, and plain English words such as
    # a segment called "banks", are not its own) appear nowhere in sim/.
    source = "\n".join(p.read_text(encoding="utf-8") for p in SIM.glob("*.py"))
    own = {n for n in _model_names(sim.policy.default_model()) - _model_names("template")
           if not n.isascii() or not n.isalpha()}
    assert len(own) > 100
    found = sorted(name for name in own if re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source))
    assert found == []
    assert not re.search(r"(?i)binjiang|濱江|hangzhou", source)


def test_functions_are_short_enough_to_read():
    long = []
    for path in SIM.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef):
                statements = sum(isinstance(x, ast.stmt) for x in ast.walk(node)) - 1
                if statements > 60:
                    long.append(f"{path.name}:{node.name} ({statements})")
    assert long == []


# ----------------------------------------------------------------------------- one registry of rule kinds
def test_every_kind_is_declared_once_and_the_template_shows_each():
    codes = [k.code for k in kinds.KINDS.values()]
    assert sorted(codes) == list(range(len(codes)))
    template = sim.policy.load("template")
    assert {r.kind for r in template.rules} == set(kinds.KINDS)
    for kind in kinds.KINDS.values():
        rule = next(r for r in template.rules if r.kind == kind.name)
        assert len(kind.pack(rule)) <= kinds.NPARAM and len(kinds.packed(rule)) == kinds.NPARAM
        assert kind.explain(rule, 1e6, 1e6, True)  # says something for a claimant with a large base


def test_compiled_and_numpy_kernels_agree_for_every_kind_of_the_template():
    import sim.fused as fused
    from sim.awards import evaluate

    policy = sim.policy.load("template")
    compiled = fused.compile_rules(policy)
    rng = np.random.default_rng(12)
    n = fused.CHUNK * 3 + 17
    table = random_table(policy, n, rng, flag_share=0.3, top_count=15)
    gross = fused.awards_per_claimant(compiled, table, n)
    assert np.array_equal(gross, evaluate(policy, table, validate=False).gross)
    (award, district), counts, firms = fused.totals(policy, table, compiled)
    (award_np, district_np), counts_np, firms_np = fused.totals_numpy(policy, table, compiled)
    assert np.array_equal(award, award_np) and np.array_equal(counts, counts_np)
    assert np.array_equal(firms, firms_np)
