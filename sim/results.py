"""Run folders: tidy Parquet tables plus ``manifest.json``, written atomically, read back with :func:`load`.

A run folder holds its tables as ``<name>.parquet`` (the pipeline, :mod:`sim.pipeline`, defines them),
text files (the exact policy, population and process data the run used), sub-folders of later stages
(``budget/``, ``report/``), and ``manifest.json``: what was run (model and scenario content hashes,
seed, replications, population size, package versions) and how long each stage took.  Timings live
only in the manifest, never in a table, so identical runs give byte-identical tables.

The folder is written under a temporary name next to the target (:class:`RunWriter`); the manifest is
written last, with ``"complete": true``, and the folder is then renamed into place.  So an interrupted
run never leaves a folder that looks complete, and :func:`load` refuses any folder without a complete
manifest or with a damaged table.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from sim.errors import FiscalsimError

MANIFEST = "manifest.json"
PACKAGES = ("fiscalsim", "numpy", "pandas", "scipy", "simpy", "pulp", "pyarrow", "numba", "dask", "distributed")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a folder fiscalsim wrote (its manifest names a fiscalsim kind)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(manifest, dict) and str(manifest.get("kind", "")).startswith("fiscalsim")


def check_target(out: str | Path, force: bool) -> Path:
    """The output folder may be written: it does not exist, or ``force`` and it is a fiscalsim folder.

    Called before any computation, so a mistake costs nothing.
    """
    out = Path(out)
    if out.exists():
        if not force:
            raise FiscalsimError(f"{out}: already exists; choose another --out or pass --force to replace it")
        if not out.is_dir() or not is_run_folder(out):
            raise FiscalsimError(f"{out}: exists and is not a fiscalsim run folder; --force only replaces "
                                 "folders fiscalsim wrote. Choose another --out")
    return out


class RunWriter:
    """Write a run folder atomically: tables and files into a staging folder, the manifest last, then
    rename.  Used as a context manager: on any error the staging folder is removed and nothing changes.
    """

    def __init__(self, out: str | Path, force: bool = False):
        self.out = check_target(out, force)
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.staging = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        self.staging.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who reads results
        self.tables: list[str] = []

    def __enter__(self) -> RunWriter:
        return self

    def __exit__(self, kind, value, traceback) -> None:
        if self.staging.exists():
            shutil.rmtree(self.staging, ignore_errors=True)

    def table(self, name: str, frame: pd.DataFrame) -> None:
        frame.to_parquet(self.staging / f"{name}.parquet", index=False)
        self.tables.append(name)

    def file(self, name: str, content: str | bytes) -> None:
        target = self.staging / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        else:
            target.write_text(content, encoding="utf-8")

    def finish(self, manifest: dict[str, Any]) -> Path:
        """Write the manifest (the completion marker) and move the folder into place."""
        manifest = {**manifest, "tables": sorted(self.tables), "platform": platform.platform(),
                    "versions": package_versions(), "complete": True}
        (self.staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str),
                                             encoding="utf-8")
        if self.out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            os.replace(self.out, retired / self.out.name)
            os.replace(self.staging, self.out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.staging, self.out)
        return self.out


def write_run(out: str | Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any],
              force: bool = False, files: dict[str, str | bytes] | None = None) -> Path:
    """Write ``tables`` (name -> DataFrame, as ``name.parquet``), ``files`` (name -> text or bytes) and the
    manifest atomically."""
    with RunWriter(out, force) as writer:
        for name, table in tables.items():
            writer.table(name, table)
        for name, content in (files or {}).items():
            writer.file(name, content)
        return writer.finish(manifest)


@dataclass(frozen=True)
class Run:
    """A run: its manifest and its tables (pandas), read back from its folder or held in memory (``texts``
    and ``stages`` then hold what the folder would: the model data used, the later stages' tables)."""

    path: Path | None
    manifest: dict
    tables: dict[str, pd.DataFrame]
    texts: dict[str, str] = field(default_factory=dict)
    stages: dict[str, Run] = field(default_factory=dict)

    def __getitem__(self, name: str) -> pd.DataFrame:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"{self.path}: no table {name!r}; tables: {', '.join(sorted(self.tables))}") from None

    def __contains__(self, name: str) -> bool:
        return name in self.tables

    @property
    def rules(self) -> pd.DataFrame:
        return self["rules"]

    def summary(self, level: str = "domain") -> pd.DataFrame:
        return self[f"summary_{level}"]

    def text(self, name: str) -> str:
        if name in self.texts:
            return self.texts[name]
        file = Path(self.path or "") / name
        if self.path is None or not file.is_file():
            raise FiscalsimError(f"{self.path}: no {name}; the run was written by an older fiscalsim")
        return file.read_text(encoding="utf-8")

    def policy(self):
        """The exact policy the run used (scenario applied), rebuilt from the run folder."""
        from sim.policy import from_dict

        return from_dict(json.loads(self.text("policy.json")), origin=f"{self.path or 'run'}/policy.json")

    def stage(self, name: str) -> Run | None:
        """A later stage's sub-folder (``budget``, ``report``) read back, or None if it was not run."""
        if name in self.stages:
            return self.stages[name]
        if self.path is None:
            return None
        folder = self.path / name
        return load(folder) if (folder / MANIFEST).is_file() else None


def load(path: str | Path) -> Run:
    """Read a run folder written by fiscalsim into pandas; a clear error for anything incomplete or damaged."""
    path = Path(path)
    if not path.is_dir():
        raise FiscalsimError(f"{path}: no such folder")
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FiscalsimError(f"{path}: no manifest.json: not a finished run (interrupted?); run it again") from None
    except (OSError, ValueError) as exc:
        raise FiscalsimError(f"{path}: manifest.json is damaged ({exc}); run it again") from None
    if not isinstance(manifest, dict) or manifest.get("complete") is not True:
        raise FiscalsimError(f"{path}: the run did not finish (its manifest is not marked complete); run it again")
    tables = {}
    for name in manifest.get("tables", []):
        try:
            tables[name] = pd.read_parquet(path / f"{name}.parquet")
        except Exception as exc:  # noqa: BLE001 - any unreadable table is one damaged-folder message
            raise FiscalsimError(f"{path}: table {name}.parquet is missing or damaged ({type(exc).__name__}); "
                                 "run it again") from None
    return Run(path, manifest, tables)
