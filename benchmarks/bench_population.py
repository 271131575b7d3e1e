"""Population generator throughput and peak memory at 1,000,000 and 10,000,000 claimants.

    python -m benchmarks.bench_population [--sizes 1000000 10000000] [--repeat 3] [--json out.json]

Peak memory is the traced NumPy/Python allocation peak while streaming the whole population: it is
set by the chunk and block sizes, not by the population size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc

import numpy as np

import sim.population as pop


def stream(spec, n, chunk_size, seed=0):
    rows = 0
    for chunk in pop.generate(spec, seed, n=n, chunk_size=chunk_size):
        rows += len(chunk)
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunk", type=int, default=pop.DEFAULT_CHUNK)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    spec = pop.load_spec()
    results = []
    print(f"{'claimants':>11} {'median s':>9} {'M claimants/s':>14} {'[min, max]':>14} {'peak MiB':>9}")
    for n in args.sizes:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            assert stream(spec, n, args.chunk) == n
            times.append(time.perf_counter() - start)
        tracemalloc.start()
        stream(spec, n, args.chunk)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        rates = sorted(n / t for t in times)
        r = {"claimants": n, "chunk_size": args.chunk, "columns": len(spec.columns),
             "seconds_median": statistics.median(times), "per_s_median": statistics.median(rates),
             "per_s_min": rates[0], "per_s_max": rates[-1], "peak_bytes": peak}
        results.append(r)
        print(f"{n:>11,} {r['seconds_median']:>9.2f} {r['per_s_median'] / 1e6:>14.2f} "
              f"[{rates[0] / 1e6:.2f}, {rates[-1] / 1e6:.2f}] {peak / 2**20:>9.1f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "numpy": np.__version__, "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
