"""Compiled kernels: numba, configured in one place.

Every compiled function of fiscalsim is defined at module level with :func:`kernel` and cached on disk,
so it is compiled once per installation and source version, not once per run.  The cache key covers
every source file with compiled code (:data:`COMPILED_SOURCES`): an edit to a kind's kernel in
:mod:`sim.kinds` invalidates the fused kernels of :mod:`sim.fused` that call it (numba by itself keys
each function on its own file only, and would keep a stale caller).  The cache lives in the package's
``__pycache__`` when that is writable, else in the user's cache folder, else in the system's temporary
folder; when none is writable the kernels compile in memory.  Without numba (or with the environment
variable ``FISCALSIM_JIT=off``) :data:`AVAILABLE` is False and callers take the NumPy path, which
gives the same bits.  ``FISCALSIM_JIT=python`` runs the kernels uncompiled, as plain Python (slow: for
mutation testing and debugging the kernels themselves).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
# every module that defines compiled kernels
COMPILED_SOURCES = ("jit.py", "kinds.py", "fused.py", "queues.py", "population.py")

MODE = os.environ.get("FISCALSIM_JIT", "numba")  # numba, python (kernels uncompiled) or off (NumPy path)
if MODE not in ("numba", "python", "off"):
    raise ImportError(f"FISCALSIM_JIT must be numba, python or off, got {MODE!r}")
try:
    if MODE != "numba":
        raise ImportError(f"compilation switched off by FISCALSIM_JIT={MODE}")
    import numba
    from numba import prange
    from numba.core import caching
except ImportError:  # pragma: no cover - numba is a dependency; the NumPy path gives the same results
    numba = None
    caching = None
    prange = range

AVAILABLE = numba is not None or MODE == "python"  # whether the kernels of sim.fused run (compiled or not)


def source_stamp() -> str:
    """A hash of every source file with compiled code: the cache is valid only for exactly these sources."""
    digest = hashlib.sha256()
    for name in COMPILED_SOURCES:
        digest.update((HERE / name).read_bytes())
    return digest.hexdigest()


def cache_candidates() -> list[Path]:
    """Where the compiled kernels may be cached, in order of preference."""
    install = hashlib.sha1(str(HERE).encode()).hexdigest()[:12]  # one folder per installation
    user = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "fiscalsim" / "numba" / install
    return [HERE / "__pycache__", user, Path(tempfile.gettempdir()) / f"fiscalsim-numba-{os.getuid()}" / install]


def _writable(path: Path) -> bool:
    try:
        path.mkdir(parents=True, exist_ok=True)
        tempfile.TemporaryFile(dir=path).close()
    except OSError:
        return False
    return True


if caching is not None:
    class SourcesLocator(caching._CacheLocator):
        """numba's cache locator for fiscalsim's kernels: keyed on all compiled sources together."""

        def __init__(self, py_func, py_file, path: Path):
            self._py_file = py_file  # numba names it when it declines to cache a function
            self._lineno = py_func.__code__.co_firstlineno
            self._path = path

        def get_cache_path(self) -> str:
            return str(self._path)

        def get_source_stamp(self) -> str:
            return source_stamp()

        def get_disambiguator(self) -> str:
            return str(self._lineno)

        @classmethod
        def from_function(cls, py_func, py_file):
            if Path(py_file).resolve().parent != HERE:
                return None  # someone else's function: numba's own locators decide
            for path in cache_candidates():
                if _writable(path):
                    return cls(py_func, py_file, path)
            return None

    _impl = getattr(caching, "CacheImpl", None) or caching._CacheImpl
    if SourcesLocator not in _impl._locator_classes:
        _impl._locator_classes.insert(0, SourcesLocator)


def threads() -> int:
    """How many threads numba's parallel kernels run on (1 without numba)."""
    return numba.get_num_threads() if numba is not None else 1


def kernel(parallel: bool = False):
    """Decorator: a module-level numba function, cached on disk (in memory if no folder is writable)."""
    if numba is None:  # pragma: no cover
        return lambda function: function

    def decorate(function):
        try:
            return numba.njit(cache=True, nogil=True, parallel=parallel)(function)
        except RuntimeError:  # no cache location at all: compile in memory each run
            return numba.njit(nogil=True, parallel=parallel)(function)
    return decorate
