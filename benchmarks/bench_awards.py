"""Award-kernel throughput: evaluate() over all encoded rules for 1,000,000 and 10,000,000 random firms.

    python -m benchmarks.bench_awards [--sizes 1000000 10000000] [--repeat 3] [--json out.json]

Prints firm-rule evaluations per second (median and spread over repeats) for each population size
and chunk size.  Not part of the test suite; tests/test_benchmarks.py runs it at a tiny size.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np

import sim.policy
from sim.awards import evaluate
from sim.firms import firm_table


def random_firms(policy, n, seed=0):
    """Columns for every input attribute: flags at 5%, small counts, lognormal money."""
    rng = np.random.default_rng(seed)
    columns = {}
    for a in policy.input_attributes():
        if a.type == "bool":
            columns[a.name] = (rng.random(n, dtype=np.float32) < 0.05).astype(np.float64)
        elif a.type == "int":
            columns[a.name] = rng.integers(0, 6, n).astype(np.float64)
        else:
            columns[a.name] = rng.lognormal(5.0, 2.0, n)
            if a.min < 0:
                columns[a.name] -= rng.lognormal(4.0, 2.0, n)
    return columns


def measure(policy, n, chunk_size, repeat):
    table = firm_table(policy, random_firms(policy, n), validate=False)
    evaluate(policy, table, chunk_size=chunk_size)  # warm-up
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        evaluate(policy, table, chunk_size=chunk_size)
        times.append(time.perf_counter() - start)
    evaluations = n * len(policy.rules)
    rates = sorted(evaluations / t for t in times)
    return {"firms": n, "rules": len(policy.rules), "chunk_size": chunk_size, "repeat": repeat,
            "seconds_median": statistics.median(times), "evals_per_s_median": statistics.median(rates),
            "evals_per_s_min": rates[0], "evals_per_s_max": rates[-1]}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--chunks", type=int, nargs="+", default=[1 << 13, 1 << 15, 1 << 17])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    policy = sim.policy.load()
    results = []
    print(f"{'firms':>11} {'chunk':>7} {'median s':>9} {'G evals/s median':>17} {'[min, max]':>16}")
    for n in args.sizes:
        for chunk in args.chunks:
            r = measure(policy, n, chunk, args.repeat)
            results.append(r)
            print(f"{n:>11,} {chunk:>7} {r['seconds_median']:>9.3f} {r['evals_per_s_median'] / 1e9:>17.3f} "
                  f"[{r['evals_per_s_min'] / 1e9:.3f}, {r['evals_per_s_max'] / 1e9:.3f}]")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "processor": platform.processor(),
                       "numpy": np.__version__, "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
