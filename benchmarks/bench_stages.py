"""The stage profile of the main job: the README's command (300 replications, every stage) beside the claims
stage alone for the same replications, each in a fresh process.

    python -m benchmarks.bench_stages [--replications 300] [--repeat 1]

Printed per configuration: import time, each stage's wall time (median and range over the repeats), the
total, the total over the claims-only run's (on every core), and the peak resident memory of the main process
and of the largest worker process.  Besides the default (every core), the claims stage and the main job on
one thread, and the claims stage on a 2-worker local Dask cluster (its start-up included).  The report is drawn into a
temporary folder (its time is the report stage's).
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time

from benchmarks import fresh_runs, medians

STAGES = ("claims", "process", "budget", "sensitivity", "calibration", "report")


def one(replications: int, stages: tuple[str, ...], where: str = "cores") -> dict:
    """One run in this (fresh) process: on every core (the default), on one thread, or on a 2-worker local
    Dask cluster (its start-up counted)."""
    start = time.perf_counter()
    import sim.pipeline as pipeline
    from sim import executors

    imported = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        begin = time.perf_counter()
        executor = {"cores": executors.local, "one thread": lambda: executors.local(1),
                    "dask": lambda: executors.dask(2)}[where]()
        try:
            run = pipeline.run(settings=pipeline.Settings(replications=replications, stages=stages),
                               out=f"{folder}/run", progress=False, executor=executor)
        finally:
            executor.close()
        total = time.perf_counter() - begin
    timings = {k: float(v) for k, v in run.manifest["timings"].items() if isinstance(v, (int, float))}
    return {"imports": imported, **timings, "total": total + imported,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--runs", type=int, default=5, help="the first N configurations only (1-5)")
    args = parser.parse_args(argv)
    every = ("claims", "process", "budget", "sensitivity", "report")
    configurations = {"claims only": (("claims",), "cores"), "main job": (every, "cores"),
                      "claims only, one thread": (("claims",), "one thread"),
                      "claims only, Dask 2 workers": (("claims",), "dask"),
                      "main job, one thread": (every, "one thread")}
    rows = []
    columns = ("imports", *STAGES, "total")
    print(f"{'run':>28} " + " ".join(f"{c:>11}" for c in columns)
          + f" {'x claims':>9} {'peak MiB':>9} {'worker MiB':>10}")
    claims_only = None
    for label, (stages, where) in list(configurations.items())[:args.runs]:
        runs = fresh_runs(one, (args.replications, stages, where), args.repeat)
        row = medians(runs, columns, {"run": label, "replications": args.replications})
        row["worker_mib"] = statistics.median(r["worker_mib"] for r in runs)
        claims_only = claims_only or row["total"]
        row["ratio"] = row["total"] / claims_only
        print(f"{label:>28} " + " ".join(f"{row[c]:>11.2f}" for c in columns)
              + f" {row['ratio']:>9.2f} {row['peak_mib']:>9.0f} {row['worker_mib']:>10.0f}")
        rows.append(row)
    if args.repeat > 1:
        print("ranges [min, max] over the repeats:")
        for row in rows:
            print(f"{row['run']:>28} " + " ".join(f"{c} [{row[c + '_range'][0]:.2f}, {row[c + '_range'][1]:.2f}]"
                                                  for c in columns if row[c] > 0))
    return rows


if __name__ == "__main__":
    main()
