"""Run folders: tidy Parquet tables plus ``manifest.json``, written atomically, read back with :func:`load`.

A run folder holds its tables as ``<name>.parquet`` (the pipeline, :mod:`sim.pipeline`, defines them),
text files (the exact policy, population and process data the run used), sub-folders of later stages
(``budget/``, ``report/``), and ``manifest.json``: what was run (model and scenario content hashes,
seed, replications, population size, package versions) and how long each stage took.  Timings live
only in the manifest, never in a table, so identical runs give byte-identical tables.

The folder is written under a temporary name next to the target (:class:`RunWriter`), reserved before any
computation (:func:`reserve`: locked against a second writer, checked writable, stale staging folders of
killed runs removed); the manifest is written last, with ``"complete": true``, and the folder is then
renamed into place.  So an interrupted run never leaves a folder that looks complete, and :func:`load`
refuses any folder without a complete manifest or with a damaged table.
"""

from __future__ import annotations

import contextlib
import fcntl
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

from sim import sizing
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
    blocking = next((p for p in out.parents if p.exists() and not p.is_dir()), None)
    if blocking is not None:
        raise FiscalsimError(f"{out}: {blocking} is a file, not a folder; choose another --out")
    if out.exists():
        if not force:
            raise FiscalsimError(f"{out}: already exists; choose another --out or pass --force to replace it")
        if not out.is_dir() or not is_run_folder(out):
            raise FiscalsimError(f"{out}: exists and is not a fiscalsim run folder; --force only replaces "
                                 "folders fiscalsim wrote. Choose another --out")
    return out


STAGING, RETIRED, LOCK = ".partial-", ".old-", ".lock"  # hidden names beside a run folder: .NAME.partial-XXXX


def _hidden(out: Path, kind: str) -> str:
    return f".{out.name}{kind}"


class Target:
    """An output folder reserved for one writer, from the check before any computation to the rename.

    Reserving (:func:`reserve`) checks the target (:func:`check_target`), creates its parent, takes an
    exclusive lock (``.NAME.lock`` beside it, so a second run into the same folder refuses at once instead
    of silently replacing the first), removes staging folders of earlier writers that were killed (their
    lock is free), and creates this writer's own staging folder ``.NAME.partial-XXXX``: that proves the
    location is writable (a read-only file system, a parent that is a file, no permission) before anything
    is computed.  :meth:`need` then checks the free space for the folder's estimated size.  Leaving the
    ``with`` block without :meth:`RunWriter.finish` removes the staging folder (and a parent it created).
    """

    def __init__(self, out: str | Path, force: bool = False):
        self.out, self.force = check_target(out, force), force
        self.notes: list[str] = []  # what the reservation did that the user should hear of
        self.created = _missing_parents(self.out.parent)
        try:
            self.out.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise FiscalsimError(f"{self.out}: cannot create its folder {self.out.parent} ({_reason(exc)}); "
                                 "choose another --out") from None
        self.lock = _Lock(self.out.parent / _hidden(self.out, LOCK))
        try:
            self.lock.acquire(self.out)
            self.notes += remove_stale(self.out.parent, self.lock.path)
            try:
                self.staging = Path(tempfile.mkdtemp(prefix=_hidden(self.out, STAGING), dir=self.out.parent))
                self.staging.chmod(0o755)  # mkdtemp makes it private; a run folder is for everyone who reads it
            except OSError as exc:
                raise FiscalsimError(f"{self.out}: cannot write in {self.out.parent} ({_reason(exc)}); choose "
                                     "another --out") from None
        except BaseException:
            self.release()
            raise

    def need(self, size: int) -> None:
        """Refuse, before any computation, a folder of about ``size`` bytes where less than that is free."""
        free = shutil.disk_usage(self.staging).free
        if free < size:
            raise FiscalsimError(f"{self.out}: the run folder needs about {sizing.size(size)} and {self.out.parent} "
                                 f"has {sizing.size(free)} free; free some space, choose another --out or run fewer "
                                 "replications")

    def release(self) -> None:
        """Remove the staging folder (if still there), a parent folder the reservation created, the lock."""
        staging = getattr(self, "staging", None)
        if staging is not None and staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
        self.lock.release()
        for folder in self.created:  # deepest first; only while empty
            with contextlib.suppress(OSError):
                folder.rmdir()

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def reserve(out: str | Path, force: bool = False) -> Target:
    """The output folder ``out`` reserved for one writer (see :class:`Target`); use it as a context manager."""
    return Target(out, force)


class _Lock:
    """An exclusive, non-blocking lock on a small file beside the target (flock: released by the system when
    its holder dies, so a killed run never leaves the folder locked)."""

    def __init__(self, path: Path):
        self.path, self.handle = path, None

    def acquire(self, out: Path) -> None:
        while True:
            try:
                handle = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as exc:
                raise FiscalsimError(f"{out}: cannot write in {out.parent} ({_reason(exc)}); choose another "
                                     "--out") from None
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(handle, 64).decode(errors="replace").strip() or "?"
                os.close(handle)
                raise FiscalsimError(f"{out}: another fiscalsim run (pid {holder}) is writing this folder now; "
                                     "wait for it to finish or choose another --out") from None
            try:
                same = os.stat(self.path).st_ino == os.fstat(handle).st_ino
            except FileNotFoundError:
                same = False
            if same:  # not a lock file its last holder removed while we opened it
                os.ftruncate(handle, 0)
                os.write(handle, str(os.getpid()).encode())
                self.handle = handle
                return
            os.close(handle)

    def release(self) -> None:
        if self.handle is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # while still held: a writer that opened it meanwhile sees another inode
        os.close(self.handle)
        self.handle = None


def remove_stale(parent: Path, own: Path | None = None) -> list[str]:
    """Remove the staging and retired folders in ``parent`` whose writer is gone: its lock is free, or it is
    ``own``, the lock this process holds before creating its own staging folder.  One note per folder."""
    notes = []
    try:
        hidden = [p for p in parent.iterdir() if p.name.startswith(".") and p.is_dir()]
    except OSError:
        return notes
    for path in hidden:
        for kind in (STAGING, RETIRED):
            name, found, _ = path.name[1:].rpartition(kind)
            if not found or not name:
                continue
            lock = parent / f".{name}{LOCK}"
            if (lock == own or _lock_free(lock)) and path.exists():
                shutil.rmtree(path, ignore_errors=True)
                notes.append(f"removed {path}, left by an earlier run that was interrupted")
            break
    return notes


def _lock_free(path: Path) -> bool:
    """Whether no other process holds the lock at ``path`` (a missing lock file is free)."""
    try:
        handle = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)  # fails while another process holds it exclusively
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(handle)  # closing drops the shared lock taken here; an exclusive lock of ours is unaffected


def _missing_parents(folder: Path) -> list[Path]:
    """The folders of ``folder``'s path that do not exist yet, deepest first."""
    missing = []
    for candidate in [folder, *folder.parents]:
        if candidate.exists() or candidate.is_symlink():
            break
        missing.append(candidate)
    return missing


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


class RunWriter:
    """Write a run folder atomically into a reserved :class:`Target`: tables and files into its staging
    folder, the manifest last, then rename.  Used as a context manager: on any error the staging folder is
    removed and nothing changes.
    """

    def __init__(self, target: Target):
        self.target, self.out, self.staging = target, target.out, target.staging
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
        check_target(self.out, self.target.force)  # something else may have put a folder there meanwhile
        if self.out.exists():
            retired = Path(tempfile.mkdtemp(prefix=_hidden(self.out, RETIRED), dir=self.out.parent))
            os.replace(self.out, retired / self.out.name)
            os.replace(self.staging, self.out)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(self.staging, self.out)
        self.target.created = []  # the parent now holds the run
        return self.out


def write_run(out: str | Path, tables: dict[str, pd.DataFrame], manifest: dict[str, Any],
              force: bool = False, files: dict[str, str | bytes] | None = None) -> Path:
    """Write ``tables`` (name -> DataFrame, as ``name.parquet``), ``files`` (name -> text or bytes) and the
    manifest atomically."""
    with reserve(out, force) as target:
        return write_into(target, tables, manifest, files)


def write_into(target: Target, tables: dict[str, pd.DataFrame], manifest: dict[str, Any],
               files: dict[str, str | bytes] | None = None) -> Path:
    """:func:`write_run` into a folder reserved earlier (before the computation that made the tables)."""
    with RunWriter(target) as writer:
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
