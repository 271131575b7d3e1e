"""What a multi-year horizon costs: the baseline run over one year and over 2024-2026, stage by stage.

    python -m benchmarks.bench_years [--replications 100] [--process 100] [--horizons 1 3] [--repeat 1]

Each configuration runs in a fresh process (so its peak resident memory is its own), every stage but the
sensitivity analysis and the report (they do not change with the horizon), with the baseline's
assumptions drawn from their ranges.  Printed: the wall time of each stage (median and range over the
repeats), the total, its ratio to the one-year run, and the peak resident memory.
"""

from __future__ import annotations

import argparse
import resource
import time

from benchmarks import fresh_runs, medians


def one(replications: int, process: int, horizon: int) -> dict:
    import sim.pipeline as pipeline

    years = tuple(range(2024, 2024 + horizon)) if horizon > 1 else ()
    settings = pipeline.Settings(replications=replications, process_replications=process,
                                 stages=("claims", "process", "budget"), years=years)
    start = time.perf_counter()
    run = pipeline.run(settings=settings, progress=False)
    total = time.perf_counter() - start
    timings = {k: float(v) for k, v in run.manifest["timings"].items() if isinstance(v, (int, float))}
    return {"total": total, **timings, "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=100)
    parser.add_argument("--process", type=int, default=100, help="replications through the process stage")
    parser.add_argument("--horizons", type=int, nargs="+", default=[1, 3])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    stages = ("claims", "years", "process", "budget", "total")
    print(f"{'years':>5} " + " ".join(f"{s + ' s':>20}" for s in stages) + f" {'x one year':>10} {'peak MiB':>9}")
    base = None
    for horizon in args.horizons:
        runs = fresh_runs(one, (args.replications, args.process, horizon), args.repeat)
        row = medians(runs, stages, {"horizon": horizon, "replications": args.replications, "process": args.process})
        cells = [f"{row[s]:8.2f} ({row[s + '_range'][0]:.2f}-{row[s + '_range'][1]:.2f})" for s in stages]
        base = base or row["total"]
        row["ratio"] = row["total"] / base
        print(f"{horizon:>5} " + " ".join(f"{c:>20}" for c in cells)
              + f" {row['ratio']:>10.2f} {row['peak_mib']:>9.0f}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
