"""Compiled kernels that stay compiled: a second run loads them from the cache (compiles nothing), and a run
where no cache folder is writable (a read-only install without a writable home) compiles in memory and gives
the same bits.  Each in a fresh process, as a user's runs are."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sim import jit

ROOT = Path(__file__).resolve().parent.parent

RUN = """
import json
import sim.pipeline as pipeline
from sim import fused, kinds, population, queues
from numba.core.registry import CPUDispatcher
run = pipeline.run(settings=pipeline.Settings(replications=2, n=5000, stages=("claims", "process")), progress=False)
stats = {}
for module in (fused, kinds, population, queues):
    for name, obj in vars(module).items():
        if isinstance(obj, CPUDispatcher) and obj.signatures:
            stats[name] = [sum(obj.stats.cache_hits.values()), sum(obj.stats.cache_misses.values()),
                           type(obj._cache).__name__]
print(json.dumps({"stats": stats, "district": run["rules"]["district"].tolist(),
                  "process": run["process_outcomes"].select_dtypes("number").to_numpy().tolist()}))
"""

READ_ONLY = """
from pathlib import Path
import sim.jit as jit
jit.cache_candidates = lambda: [Path("/proc/fiscalsim-no-such-cache")]  # nothing writable, even for root
impl = getattr(jit.caching, "CacheImpl", None) or jit.caching._CacheImpl
impl._locator_classes[:] = [jit.SourcesLocator]  # numba's own fallbacks would find the source tree writable
"""


def _fresh(code: str) -> dict:
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


needs_numba = pytest.mark.skipif(jit.numba is None, reason="numba is not installed: the NumPy path runs")


@needs_numba
def test_the_second_run_compiles_nothing():
    _fresh(RUN)  # compiles if the cache is cold (a new source version), else loads
    second = _fresh(RUN)
    assert second["stats"], "no compiled kernel ran"
    for name, (hits, misses, cache) in second["stats"].items():
        assert misses == 0 and hits >= 1, (name, hits, misses, cache)


@needs_numba
def test_a_run_with_no_writable_cache_compiles_in_memory_with_the_same_bits():
    cached = _fresh(RUN)
    memory = _fresh(READ_ONLY + RUN)
    assert {cache for _, _, cache in memory["stats"].values()} == {"NullCache"}  # nothing written anywhere
    assert all(hits == 0 for hits, _, _ in memory["stats"].values())
    assert memory["district"] == cached["district"] and memory["process"] == cached["process"]
