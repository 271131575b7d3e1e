"""The full Sobol sensitivity analysis of the baseline over its assumption groups: in this process and on a
2-worker local Dask cluster, with the indices checked identical.

    python -m benchmarks.bench_sensitivity [--samples 64] [--workers 2] [--n N] [--json out.json]

Each of the N x (groups + 3) evaluations builds the model of one design row (its assumption values,
validated like the published model), draws that row's population and runs every award rule over it.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import pandas as pd

import sim.pipeline as pipeline
from sim import sensitivity


def analyse(ctx, samples: int, n: int | None, executor=None) -> tuple[dict, float]:
    start = time.perf_counter()
    tables = sensitivity.analyse(ctx.drawn, ctx.policy, ctx.spec, seed=ctx.settings.seed, base_samples=samples,
                                 n=n, executor=executor, progress=False)
    return tables, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=64, help="base samples N of the Saltelli design")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers (0: in-process only)")
    parser.add_argument("--n", type=int, default=None, help="claimants per evaluation (default: the model's)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    ctx = pipeline.prepare(settings=pipeline.Settings(seed=2024), progress=False)
    groups = len(ctx.assumptions.groups)
    evaluations = args.samples * (groups + 3)
    print(f"baseline: {groups} assumption groups, N = {args.samples}: {evaluations:,} evaluations of "
          f"{ctx.spec.total if args.n is None else args.n:,} claimants")
    results = []
    serial, seconds = analyse(ctx, args.samples, args.n)
    results.append({"executor": "in-process", "workers": 1, "seconds": seconds, "evaluations": evaluations,
                    "groups": groups, "samples": args.samples})
    if args.workers:
        from dask.distributed import Client

        from sim.executors import Dask, local_cluster

        with local_cluster(args.workers) as cluster, Client(cluster) as client:
            client.run(lambda: __import__("sim.sensitivity"))  # imports and compiled kernels, not timed
            dask, seconds = analyse(ctx, args.samples, args.n, executor=Dask(client))
        same = all(serial[k].equals(dask[k]) for k in serial)
        results.append({"executor": "dask", "workers": args.workers, "seconds": seconds, "evaluations": evaluations,
                        "groups": groups, "samples": args.samples, "identical": bool(same)})
    print(f"{'executor':>12} {'workers':>7} {'seconds':>8} {'evaluations/s':>14}")
    for r in results:
        print(f"{r['executor']:>12} {r['workers']:>7} {r['seconds']:>8.1f} {r['evaluations'] / r['seconds']:>14.1f}"
              + (f"   identical to in-process: {r['identical']}" if "identical" in r else ""))
    top = sensitivity_top(serial["sobol_indices"])
    print("science_technology overrun, largest total indices:\n" + top.to_string(index=False))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "numpy": np.__version__, "results": results}, handle, indent=2)
    return results


def sensitivity_top(indices: pd.DataFrame, domain: str = "science_technology", k: int = 5) -> pd.DataFrame:
    from sim.headline import ranking

    return ranking(indices, domain, "overrun").head(k)[["group", "total", "total_low", "total_high", "first"]]


if __name__ == "__main__":
    main()
