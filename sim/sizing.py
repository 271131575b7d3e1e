"""How big a run will be, estimated before anything is computed: memory, disk and time.

A run that cannot fit is refused at once with its figures, instead of failing an hour in (or at once, as
an out-of-memory error deep inside NumPy); a run that will take long says so before it starts.  The
figures scale with the model's size (claimants per replication, rules, assumption groups) and the run's
(replications, years, worker processes).  Their constants were measured on the default model on 2 cores
(``python -m benchmarks.bench_sizing`` measures them again and prints each estimate beside the reading):

* memory: the main process holds, per replication, its totals per rule and its process year (monthly cash,
  waits, the paid applications), about 15 bytes per claimant of the replication (0.85 MiB for
  59,455 claimants), on top of about 500 MiB of code and model; each worker process adds about 200 MiB of its own;
  the Latin-hypercube design adds 8 bytes per assumption group and draw;
* disk: about 3 MiB (the report, the model data) and 200 bytes per rule and replication (Parquet);
* time: about 1.8 microseconds per claimant and replication on one worker (drawing, awards, process year),
  divided among the workers, plus about 12 s for the stages whose size does not grow with the replications.
  Machines differ by a factor of two either way: the time is a rough guide, the memory a bound to refuse by.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from sim.errors import FiscalsimError

MIB = 2**20
MAIN_BASE_BYTES = 500 * MIB
WORKER_BYTES = 200 * MIB
BYTES_PER_CLAIMANT_REPLICATION = 15.0
DESIGN_BYTES_PER_GROUP_DRAW = 8
DISK_BASE_BYTES = 3 * MIB
DISK_BYTES_PER_RULE_REPLICATION = 200
SECONDS_PER_CLAIMANT_REPLICATION = 1.8e-6  # on one worker
FIXED_SECONDS = 12.0
SAY_TIME_ABOVE_S = 60.0  # a run expected to take longer says so before it starts


@dataclass(frozen=True)
class Estimate:
    """A run's expected peak memory (bytes, all processes), run-folder size (bytes) and wall time (s)."""

    memory: float
    disk: float
    seconds: float


def estimate(*, replications: int, claimants: int, rules: int, groups: int, per_draw: int, workers: int,
             years: int = 1) -> Estimate:
    """The estimate for a run of ``replications`` (times ``years``) of ``claimants`` each.

    >>> e = estimate(replications=300, claimants=59_455, rules=45, groups=39, per_draw=5, workers=2)
    >>> round(e.memory / MIB), round(e.disk / MIB, 1), round(e.seconds)
    (955, 5.6, 28)
    """
    evaluations = float(replications) * max(years, 1)
    draws = math.ceil(replications / max(per_draw, 1))
    memory = (MAIN_BASE_BYTES + max(workers - 1, 0) * WORKER_BYTES
              + evaluations * claimants * BYTES_PER_CLAIMANT_REPLICATION
              + draws * groups * DESIGN_BYTES_PER_GROUP_DRAW * max(years, 1))
    disk = DISK_BASE_BYTES + evaluations * rules * DISK_BYTES_PER_RULE_REPLICATION
    seconds = FIXED_SECONDS + evaluations * claimants * SECONDS_PER_CLAIMANT_REPLICATION / max(workers, 1)
    return Estimate(memory, disk, seconds)


def available_memory() -> float | None:
    """The memory this machine can give a new process now (bytes; Linux's MemAvailable), else its physical
    memory, else None (not known: nothing is refused)."""
    try:
        with open("/proc/meminfo", encoding="ascii") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return float(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return float(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def size(value: float) -> str:
    """Bytes for a reader.

    >>> size(5.1 * MIB), size(58 * 2**30), size(3.2 * 2**50)
    ('5 MiB', '58.0 GiB', '3,276.8 TiB')
    """
    if value < 2**30:
        return f"{value / MIB:,.0f} MiB"
    if value < 2**40:
        return f"{value / 2**30:,.1f} GiB"
    return f"{value / 2**40:,.1f} TiB"


def duration(seconds: float) -> str:
    """Seconds for a reader (minutes, hours or days).

    >>> duration(42), duration(600), duration(5400), duration(3 * 86400)
    ('42 s', '10 min', '90 min', '3.0 days')
    """
    if seconds < 100:
        return f"{seconds:.0f} s"
    if seconds < 6000:
        return f"{seconds / 60:.0f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def check_memory(found: Estimate, replications: int, available: float | None) -> None:
    """Refuse a run whose estimated memory exceeds what this machine has available, with both figures and
    the most replications that would fit."""
    if available is None or found.memory <= available:
        return
    per = max((found.memory - MAIN_BASE_BYTES) / max(replications, 1), 1.0)
    fits = max(int((available - MAIN_BASE_BYTES) / per), 0)
    raise FiscalsimError(f"--replications {replications:,}: the run needs about {size(found.memory)} of memory and "
                         f"this machine has {size(available)} available; run at most about {fits:,} replications "
                         "here (the figures scale linearly), or split the work into several runs with other --seed")
