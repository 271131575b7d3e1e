"""Claims engine throughput: the baseline population x 100 and 1,000 replications, and peak memory
for one replication of a 10,000,000-claimant population.

    python -m benchmarks.bench_montecarlo [--replications 100 1000] [--big 10000000 [--big-replications 100]]
        [--threads N] [--json out.json]

The replications run as the pipeline runs them: a worker process per core (``--threads`` for another
number; 1 for this process alone).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
import tracemalloc

import numpy as np

import sim.montecarlo as mc
import sim.scenario as scenario
from sim import executors


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--replications", type=int, nargs="+", default=[100, 1000])
    parser.add_argument("--repeat", type=int, default=1, help="repeats of each replication count")
    parser.add_argument("--big", type=int, default=10_000_000, help="claimants for the memory measurement")
    parser.add_argument("--threads", type=int, default=None, help="worker processes (default: one per core)")
    parser.add_argument("--big-replications", type=int, default=0,
                        help="run --big claimants this many times on the executor (time, memory, share drawing)")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    executor = executors.local(args.threads)
    policy, spec = scenario.apply(scenario.baseline())
    rules = len(policy.rules)
    results = []
    print(f"baseline: {spec.total:,} claimants x {rules} rules")
    print(f"{'replications':>12} {'median s':>9} {'reps/s':>8} {'G firm-rule evals/s':>20}")
    for reps in args.replications:
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            mc.run(policy, spec, reps, seed=1, progress=False, executor=executor)
            times.append(time.perf_counter() - start)
        median = statistics.median(times)
        r = {"replications": reps, "claimants": spec.total, "seconds_median": median, "workers": executor.workers,
             "seconds_all": times, "reps_per_s": reps / median,
             "evals_per_s": reps * spec.total * rules / median}
        results.append(r)
        print(f"{reps:>12,} {median:>9.2f} {r['reps_per_s']:>8.1f} {r['evals_per_s'] / 1e9:>20.3f}")
    big = None
    if args.big and args.big_replications:
        big = large(policy, spec, args.big, args.big_replications, executor)
    elif args.big:
        tracemalloc.start()
        start = time.perf_counter()
        mc.run(policy, spec, 1, seed=1, n=args.big, progress=False)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        big = {"claimants": args.big, "seconds": seconds, "peak_bytes": peak}
        print(f"one replication of {args.big:,} claimants: {seconds:.1f} s (traced), peak {peak / 2**20:.0f} MiB")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "numpy": np.__version__, "results": results,
                       "big": big}, handle, indent=2)
    return results, big


def large(policy, spec, claimants: int, replications: int, executor) -> dict:
    """``replications`` replications of ``claimants`` claimants on the executor: the time, the peak resident
    memory of this process and of the largest worker, and the share of the time that NumPy alone needs to
    draw the same random numbers (the same normals and uniforms, in blocks of the generator's size, on one
    core each: the floor that no rearrangement of the generator's own work can go under)."""
    import resource

    import sim.population as pop

    start = time.perf_counter()
    mc.run(policy, spec, replications, seed=1, n=claimants, progress=False, executor=executor)
    seconds = time.perf_counter() - start
    counts = spec.counts(n=claimants)
    normals = sum(int(c) * pop.draws_per_claimant(spec, s)[0] for s, c in zip(spec.segments, counts, strict=True))
    uniforms = sum(int(c) * pop.draws_per_claimant(spec, s)[1] for s, c in zip(spec.segments, counts, strict=True))
    rng = np.random.default_rng(1)
    begin = time.perf_counter()
    for lo in range(0, normals, pop.BLOCK):  # one replication's draws, block by block
        rng.standard_normal(min(pop.BLOCK, normals - lo))
    for lo in range(0, uniforms, pop.BLOCK):
        rng.random(min(pop.BLOCK, uniforms - lo))
    drawing = (time.perf_counter() - begin) * replications / executor.workers
    out = {"claimants": claimants, "replications": replications, "seconds": seconds, "workers": executor.workers,
           "normals_per_replication": normals, "uniforms_per_replication": uniforms,
           "raw_drawing_seconds": drawing, "drawing_share": drawing / seconds,
           "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
           "worker_peak_mib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}
    print(f"{replications} replications of {claimants:,} claimants on {executor.workers} worker(s): {seconds:.1f} s "
          f"({claimants * replications / seconds / 1e6:.2f} M claimants/s); NumPy alone drawing the same numbers: "
          f"{drawing:.1f} s ({out['drawing_share']:.0%}); peak {out['peak_mib']:.0f} MiB here, "
          f"{out['worker_peak_mib']:.0f} MiB in a worker")
    return out


if __name__ == "__main__":
    main()
