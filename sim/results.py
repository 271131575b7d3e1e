"""Run folders: tidy Parquet tables plus ``manifest.json``, written atomically, read back with :func:`load`.

A run folder holds

- ``rules.parquet``: replication x rule totals (award, district-paid part, claimants), 萬元;
- ``firms.parquet``: replication x scope (all, or a domain) claimant firms;
- ``summary_rule.parquet``, ``summary_article.parquet``, ``summary_domain.parquet``: mean, sd, standard
  error, P5/P50/P95/P99, and per domain the claims budget and the probability of overrun;
- further stage tables (the process stage, budget LPs) as they are added;
- ``manifest.json``: model and scenario content hashes, seed, replications, population size, package
  versions, wall time.  It is written last; a folder without it is not a finished run.

The folder is written under a temporary name next to the target and renamed into place at the end,
so an interrupted run never leaves a folder that looks complete.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from sim.errors import FiscalsimError

MANIFEST = "manifest.json"
PACKAGES = ("fiscalsim", "numpy", "pandas", "scipy", "simpy", "pulp", "pyarrow", "dask", "distributed")


def package_versions() -> dict[str, str]:
    versions = {"python": sys.version.split()[0]}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return versions


def write_run(out: str | Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any],
              force: bool = False, files: dict[str, str] | None = None,
              binary: dict[str, bytes] | None = None) -> Path:
    """Write ``tables`` (name -> DataFrame, as ``name.parquet``), ``files`` (name -> text) and the
    manifest atomically."""
    out = Path(out)
    if out.exists() and not force:
        raise FiscalsimError(f"{out}: already exists; choose another --out or pass --force to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    staging.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who reads results
    try:
        for name, table in tables.items():
            table.to_parquet(staging / f"{name}.parquet", index=False)
        for name, text in (files or {}).items():
            (staging / name).write_text(text, encoding="utf-8")
        for name, data in (binary or {}).items():
            (staging / name).write_bytes(data)
        manifest = {**manifest, "tables": sorted(tables), "platform": platform.platform(),
                    "versions": package_versions()}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, ensure_ascii=False, default=str),
                                        encoding="utf-8")
        if out.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{out.name}.old-", dir=out.parent))
            os.replace(out, retired / out.name)
            os.replace(staging, out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(staging, out)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return out


@dataclass(frozen=True)
class Run:
    """A finished run read back from disk: its manifest and its tables (pandas)."""

    path: Path
    manifest: dict
    tables: dict[str, pd.DataFrame]

    def __getitem__(self, name: str) -> pd.DataFrame:
        try:
            return self.tables[name]
        except KeyError:
            raise KeyError(f"{self.path}: no table {name!r}; tables: {', '.join(sorted(self.tables))}") from None

    @property
    def rules(self) -> pd.DataFrame:
        return self["rules"]

    def summary(self, level: str = "domain") -> pd.DataFrame:
        return self[f"summary_{level}"]

    def policy(self):
        """The exact policy the run used (scenario applied), rebuilt from the run folder."""
        from sim.policy import from_dict

        file = self.path / "policy.json"
        if not file.is_file():
            raise FiscalsimError(f"{self.path}: no policy.json; the run was written by an older fiscalsim")
        return from_dict(json.loads(file.read_text(encoding="utf-8")), origin=str(file))


def load(path: str | Path) -> Run:
    """Read a run folder written by ``fiscalsim run`` into pandas."""
    path = Path(path)
    manifest_file = path / MANIFEST
    if not manifest_file.is_file():
        what = "no such folder" if not path.exists() else "no manifest.json: not a finished run (interrupted?)"
        raise FiscalsimError(f"{path}: {what}")
    manifest = json.loads(manifest_file.read_text(encoding="utf-8"))
    tables = {name: pd.read_parquet(path / f"{name}.parquet") for name in manifest.get("tables", [])}
    return Run(path, manifest, tables)
