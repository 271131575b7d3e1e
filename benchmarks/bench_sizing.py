"""The run-size estimate (:mod:`sim.sizing`) beside what runs of the main job really take.

    python -m benchmarks.bench_sizing [--replications 60 300 1200]

For each size, a fresh process runs the README's main job (every stage) into a temporary folder and
reports its wall time, the peak resident memory of the main process and of the largest worker (resident
pages shared with the main process count in both, so their sum over-counts), and the run folder's size on
disk, each beside the estimate that the run would print and refuse by.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
from pathlib import Path

from benchmarks import fresh_runs


def one(replications: int) -> dict:
    import sim.pipeline as pipeline
    from sim import executors, scenario, sizing

    executor = executors.local()
    policy, spec = scenario.apply(scenario.baseline())
    groups = len(pipeline.assumptions_module.load_groups(scenario.baseline().model))
    found = sizing.estimate(replications=replications, claimants=int(spec.counts(None, 1.0).sum()),
                            rules=len(policy.rules), groups=groups, per_draw=pipeline.Settings().per_draw,
                            workers=executor.workers)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        run = pipeline.run(settings=pipeline.Settings(replications=replications), out=f"{folder}/run",
                           progress=False, executor=executor)
        seconds = time.perf_counter() - start
        disk = sum(f.stat().st_size for f in Path(run.path).rglob("*") if f.is_file())
    return {"replications": replications, "workers": executor.workers, "seconds": seconds,
            "estimated_seconds": found.seconds,
            "main_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "worker_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
            "estimated_memory_mib": found.memory / sizing.MIB, "disk_mib": disk / sizing.MIB,
            "estimated_disk_mib": found.disk / sizing.MIB}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, nargs="+", default=[60, 300, 1200])
    parser.add_argument("--json", default=None, help="also write the rows as JSON here")
    args = parser.parse_args(argv)
    rows = [fresh_runs(one, (r,), 1)[0] for r in args.replications]
    print(f"{'replications':>12} {'time s':>8} {'est. s':>8} {'main MiB':>9} {'worker MiB':>10} {'est. MiB':>9} "
          f"{'disk MiB':>9} {'est. MiB':>9}")
    for r in rows:
        print(f"{r['replications']:>12,} {r['seconds']:>8.1f} {r['estimated_seconds']:>8.1f} {r['main_mib']:>9.0f} "
              f"{r['worker_mib']:>10.0f} {r['estimated_memory_mib']:>9.0f} {r['disk_mib']:>9.1f} "
              f"{r['estimated_disk_mib']:>9.1f}")
    print(f"(cores: {os.cpu_count()}; the estimate's memory is for every process together)")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1), encoding="utf-8")
    return rows


if __name__ == "__main__":
    main()
