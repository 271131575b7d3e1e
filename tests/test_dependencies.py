"""What `pip install .` brings is what sim/ imports.

Every third-party module that sim/ imports comes from a distribution that `[project] dependencies`
names itself (not one that only arrives as a dependency of a dependency), or from an extra, imported
only inside the function of that extra's feature, with a message naming the extra when it is missing.
The check reads the code (an AST scan of every module of sim/) and the installed distributions'
metadata, so it fails on a clean install where a module is missing, and on this machine where a module
happens to be installed by hand but is not declared.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Declared dependencies that sim/ does not import by name, and why it needs them all the same.
USED_WITHOUT_IMPORT = {
    "pyarrow": "pandas' Parquet engine: every run folder's tables (DataFrame.to_parquet, read_parquet)",
}
# Extras and the modules of sim/ allowed to import them (inside a function, never at module level).
EXTRA_MODULES = {"dask": {"dask", "distributed"}}
EXTRA_USERS = {"dask": {"sim/executors.py"}}


def norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(requirement: str) -> str:
    return norm(re.split(r"[<>=!~;\[ ]", requirement.strip(), maxsplit=1)[0])


def imports_of(root: Path = ROOT) -> list[tuple[str, str, int, bool]]:
    """(top-level module, file, line, at module level) of every absolute import in sim/."""
    found = []
    for path in sorted((root / "sim").rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        top_level = {id(node) for node in tree.body}
        for guard in (n for n in tree.body if isinstance(n, ast.Try | ast.If)):  # module-level try/if bodies
            top_level |= {id(node) for node in ast.walk(guard)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ("sim", "__future__"):
                    continue
                found.append((top, path.relative_to(root).as_posix(), node.lineno, id(node) in top_level))
    return found


def problems(project: dict, root: Path = ROOT) -> list[str]:
    """Every import of sim/ that a plain `pip install .` of ``project`` (pyproject's [project]) would not
    bring, or that relies on a dependency of a dependency, or an extra's module imported at module level."""
    base = {requirement_name(r) for r in project.get("dependencies", [])}
    extras = {name: {requirement_name(r) for r in reqs} for name, reqs in project.get("optional-dependencies",
                                                                                       {}).items()}
    providers = md.packages_distributions()
    out = []
    for top, file, line, at_module_level in imports_of(root):
        where = f"{file}:{line}"
        dists = {norm(d) for d in providers.get(top, [])}
        if not dists:
            out.append(f"{where}: imports {top}, which no installed distribution provides")
            continue
        if dists & base:
            continue
        extra = next((name for name, modules in EXTRA_MODULES.items() if top in modules and dists & extras.get(name,
                                                                                                            set())), None)
        if extra is None:
            out.append(f"{where}: imports {top} (from {', '.join(sorted(dists))}), which [project] dependencies "
                       "does not name")
        elif at_module_level or file not in EXTRA_USERS[extra]:
            out.append(f"{where}: imports {top} from the extra [{extra}] outside the function that needs it")
    return out


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_every_import_of_sim_is_declared():
    assert problems(pyproject()) == []


def test_every_declared_dependency_is_used():
    imported = {norm(d) for top, *_ in imports_of() for d in md.packages_distributions().get(top, [])}
    unused = [r for r in map(requirement_name, pyproject()["dependencies"]) if r not in imported
              and r not in USED_WITHOUT_IMPORT]
    assert unused == []


@pytest.mark.parametrize("dropped", ["threadpoolctl", "fonttools", "llvmlite", "numba", "simpy", "opencc"])
def test_the_check_fails_when_a_dependency_is_dropped(dropped):
    project = pyproject()
    kept = [r for r in project["dependencies"] if requirement_name(r) != dropped]
    assert len(kept) == len(project["dependencies"]) - 1
    found = problems({**project, "dependencies": kept})
    assert found and all("which [project] dependencies does not name" in p for p in found), found


def test_the_check_fails_on_an_import_nothing_provides(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "x.py").write_text("import numpy\n\ndef f():\n    import not_a_real_module_42\n")
    assert problems(pyproject(), tmp_path) == ["sim/x.py:4: imports not_a_real_module_42, which no installed "
                                               "distribution provides"]


def test_an_extra_imported_at_module_level_is_a_problem(tmp_path):
    (tmp_path / "sim").mkdir()
    (tmp_path / "sim" / "executors.py").write_text("import dask\n")
    assert problems(pyproject(), tmp_path) == ["sim/executors.py:1: imports dask from the extra [dask] outside the "
                                               "function that needs it"]


def test_the_shared_static_check_agrees():
    tool = ROOT.parent / "shared" / "tools" / "check-declared-imports"
    if not tool.is_file():
        pytest.skip("no shared/tools/check-declared-imports beside this checkout")
    done = subprocess.run([sys.executable, str(tool)], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "UNDECLARED" not in done.stdout, done.stdout + done.stderr
    assert "arrives only as a dependency of a dependency" not in done.stdout, done.stdout


def test_without_dask_its_feature_names_the_extra():
    code = ("import sys; sys.modules['dask'] = None; sys.modules['dask.distributed'] = None\n"
            "from sim import executors\nfrom sim.errors import FiscalsimError\n"
            "try:\n    executors.dask(2)\nexcept FiscalsimError as exc:\n    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.stdout.strip() == "--workers and --scheduler need Dask: pip install 'fiscalsim[dask]'", done.stderr
