"""Benchmarks: speed and memory, never part of the default test run (see README.md)."""

from __future__ import annotations

import multiprocessing
import statistics
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor


def fresh_runs(function: Callable[..., dict], args: tuple, repeat: int) -> list[dict]:
    """``function(*args)`` ``repeat`` times, each in a fresh process (so imports, compilation caches and the
    peak resident memory are that run's own)."""
    context = multiprocessing.get_context("spawn")
    out = []
    for _ in range(repeat):  # not a Pool: its daemonic worker could not start fiscalsim's own workers
        with ProcessPoolExecutor(1, mp_context=context) as pool:
            out.append(pool.submit(function, *args).result())
    return out


def medians(runs: Sequence[dict], columns: Sequence[str], row: dict) -> dict:
    """``row`` with each column's median over the runs, ``<column>_range`` (min, max), and the median peak
    memory ``peak_mib``."""
    for column in columns:
        values = sorted(r.get(column, 0.0) for r in runs)
        row[column], row[f"{column}_range"] = statistics.median(values), (values[0], values[-1])
    row["peak_mib"] = statistics.median(r["peak_mib"] for r in runs)
    return row
