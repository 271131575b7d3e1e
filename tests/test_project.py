"""Project hygiene: the README's commands, CI, lint, and the model inside a built wheel."""

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def readme_commands():
    return re.findall(r"```bash\n(.+?)\n```", (ROOT / "README.md").read_text(encoding="utf-8"))


def test_readme_opens_with_the_two_commands():
    first, second = readme_commands()[:2]
    assert "pip install ." in first and "fiscalsim" in first
    assert 'pip install -e ".[dev]"' in second and "pytest" in second


def test_ci_runs_both_readme_commands_in_fresh_environments():
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    first, second = readme_commands()[:2]
    # .ci/run reads the two commands from the README and refuses to go on unless they are these
    assert f"[ \"$first\" = '{first}' ]" in ci and f"[ \"$second\" = '{second}' ]" in ci
    assert 'bash -c "$small"' in ci and 'bash -c "$second"' in ci  # run as written (the first at a small size)
    assert ci.count('fresh "$work/venv-') == 2 and '"$python" -m venv "$1"' in ci  # each in a new environment
    assert "set -euo pipefail" in ci


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff not installed")
def test_ruff_is_clean():
    done = subprocess.run(["ruff", "check", str(ROOT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_wheel_carries_the_default_model(tmp_path):
    pytest.importorskip("hatchling")
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path), str(ROOT)],
        capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    wheel = next(tmp_path.glob("fiscalsim-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    for needed in ("sim/models/binjiang-2024/policy.toml", "sim/models/binjiang-2024/source.txt",
                   "sim/models/binjiang-2024/sample-firms.csv", "sim/models/binjiang-2024/observed-2024-06.csv",
                   "sim/models/binjiang-2024/examples/article-13.toml"):
        assert needed in names
    # Unpacked on its own, away from the checkout, the package finds its bundled model.
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    code = "import sim.policy as p; pol = p.load(); print(p.models_root(), len(pol.rules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert str(site) in done.stdout and done.stdout.strip().endswith(" 45")
