"""The stage profile of the main job: the README's command (300 replications, every stage) beside the claims
stage alone for the same replications, each in a fresh process.

    python -m benchmarks.bench_stages [--replications 300] [--repeat 1]

Printed per configuration: import time, each stage's wall time (median and range over the repeats), the
total, the total over the claims-only run's, and the peak resident memory.  The report is drawn into a
temporary folder (its time is the report stage's).
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time

from benchmarks import fresh_runs, medians

STAGES = ("claims", "process", "budget", "sensitivity", "calibration", "report")


def one(replications: int, stages: tuple[str, ...]) -> dict:
    start = time.perf_counter()
    import sim.pipeline as pipeline

    imported = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as folder:
        begin = time.perf_counter()
        run = pipeline.run(settings=pipeline.Settings(replications=replications, stages=stages),
                           out=f"{folder}/run", progress=False)
        total = time.perf_counter() - begin
    timings = {k: float(v) for k, v in run.manifest["timings"].items() if isinstance(v, (int, float))}
    return {"imports": imported, **timings, "total": total + imported,
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args(argv)
    configurations = {"claims only": ("claims",), "main job": ("claims", "process", "budget", "sensitivity",
                                                               "report")}
    rows = []
    columns = ("imports", *STAGES, "total")
    print(f"{'run':>12} " + " ".join(f"{c:>11}" for c in columns) + f" {'x claims':>9} {'peak MiB':>9}")
    claims_only = None
    for label, stages in configurations.items():
        row = medians(fresh_runs(one, (args.replications, stages), args.repeat), columns,
                      {"run": label, "replications": args.replications})
        claims_only = claims_only or row["total"]
        row["ratio"] = row["total"] / claims_only
        print(f"{label:>12} " + " ".join(f"{row[c]:>11.2f}" for c in columns)
              + f" {row['ratio']:>9.2f} {row['peak_mib']:>9.0f}")
        rows.append(row)
    return rows


if __name__ == "__main__":
    main()
