"""Every benchmark in one command: a table on screen and a JSON of results.

    python -m benchmarks [--quick] [--json benchmarks/results.json]

Medians over repeated runs, with [min, max] spreads. Measures: streaming memory bandwidth (triad);
the fused award kernel and the NumPy kernels at 1M and 10M claimants, as a fraction of the
bandwidth bound; the population generator against NumPy's raw generator for the same draws; the
baseline claims engine at 100 and 1,000 replications; peak memory of the claims engine at 1M, 10M
and 30M claimants (separate processes); the SimPy process and the budget LPs; OpenFisca on the same
rules and firms (when openfisca-core is installed: pip install -e ".[bench]").
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time

import numpy as np

REPEAT = 3


def spread(values):
    values = sorted(values)
    return statistics.median(values), values[0], values[-1]


def triad_kernels():
    """STREAM-style triad a = b + s*c, on every thread and on one (compiled once, cached)."""
    from numba import njit, prange

    @njit(parallel=True, cache=True)
    def triad(a, b, c, s):
        for i in prange(a.shape[0]):
            a[i] = b[i] + s * c[i]

    @njit(cache=True)
    def triad_one(a, b, c, s):
        for i in range(a.shape[0]):
            a[i] = b[i] + s * c[i]

    return triad, triad_one


def triad_meter(n=20_000_000):
    """A function giving the triad bandwidth of one run on every thread, in GB/s (24 bytes per element, arrays far
    larger than any cache): measured right after each kernel timing, so each ratio has its own bound."""
    triad, _ = triad_kernels()
    a, b, c = np.zeros(n), np.random.default_rng(0).random(n), np.random.default_rng(1).random(n)
    triad(a, b, c, 3.0)

    def measure():
        start = time.perf_counter()
        triad(a, b, c, 3.0)
        return 24 * n / (time.perf_counter() - start) / 1e9
    return measure


def bandwidth(n=40_000_000, repeat=REPEAT):
    """STREAM-style triad a = b + s*c over arrays far larger than cache: 24 bytes per element."""
    triad, triad_one = triad_kernels()
    a, b, c = np.zeros(n), np.random.default_rng(0).random(n), np.random.default_rng(1).random(n)
    out = {}
    for name, fn in (("triad_threads", triad), ("triad_one_thread", triad_one)):
        fn(a, b, c, 3.0)
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn(a, b, c, 3.0)
            times.append(time.perf_counter() - start)
        out[name] = spread([24 * n / t / 1e9 for t in times])
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        np.multiply(c, 3.0, out=a)
        np.add(a, b, out=a)
        times.append(time.perf_counter() - start)
    out["numpy_triad"] = spread([32 * n / t / 1e9 for t in times])  # two passes: 32 bytes per element
    return out


def kernels(sizes, repeat=REPEAT, paired=7, triad_n=20_000_000):
    """The fused kernel and the NumPy kernels per claimant-rule evaluation; the fused kernel ``paired`` times, each
    followed by one triad run, and its rate over that run's bandwidth bound (bytes read per evaluation)."""
    import sim.policy
    from benchmarks.bench_awards import random_firms
    from sim import fused
    from sim.awards import evaluate
    from sim.firms import firm_table

    policy = sim.policy.load()
    compiled = fused.compile_rules(policy)
    rules = len(policy.rules)
    bytes_per_firm = 8 * len(compiled.wide) + 4 * len(compiled.narrow)
    out = {"rules": rules, "bytes_per_firm": bytes_per_firm, "bytes_per_evaluation": bytes_per_firm / rules}
    meter = triad_meter(triad_n)
    for n in sizes:
        columns = random_firms(policy, n)
        start = time.perf_counter()
        matrix = fused.column_matrix(compiled, columns)
        layout = time.perf_counter() - start
        fused.totals(policy, None, compiled, matrix, n)
        times, ratios, triads = [], [], []
        for _ in range(max(repeat, paired)):  # the triad after the kernel: it leaves no dirty lines to write back
            start = time.perf_counter()
            fused.totals(policy, None, compiled, matrix, n)
            times.append(time.perf_counter() - start)
            triads.append(meter())
            ratios.append(n * rules / times[-1] / (triads[-1] * 1e9 / out["bytes_per_evaluation"]))
        del matrix
        table = firm_table(policy, columns, validate=False)
        numpy_times = []
        for _ in range(max(1, repeat - 1)):
            start = time.perf_counter()
            evaluate(policy, table)
            numpy_times.append(time.perf_counter() - start)
        out[str(n)] = {"fused": spread([n * rules / t for t in times]), "layout_seconds": layout,
                       "numpy": spread([n * rules / t for t in numpy_times]), "triad_GBps": spread(triads),
                       "fused_to_bound": spread(ratios)}
        del columns, table
    return out


def generator_vs_raw(n=1_000_000, repeat=REPEAT):
    """The population generator against numpy drawing the same numbers of normals and uniforms raw."""
    import sim.population as pop

    spec = pop.load_spec()
    counts = spec.counts(n=n)
    normals = uniforms = 0
    for segment, count in zip(spec.segments, counts):
        per_normal, per_uniform = pop.draws_per_claimant(spec, segment)
        normals += count * per_normal
        uniforms += count * per_uniform
    gen, raw = [], []
    for _ in range(repeat):
        start = time.perf_counter()
        for _chunk in pop.generate(spec, 1, n=n):
            pass
        gen.append(time.perf_counter() - start)
        rng = np.random.default_rng(1)
        start = time.perf_counter()
        for lo in range(0, normals, 1 << 22):
            rng.standard_normal(min(1 << 22, normals - lo))
        for lo in range(0, uniforms, 1 << 22):
            rng.random(min(1 << 22, uniforms - lo))
        raw.append(time.perf_counter() - start)
    return {"claimants": n, "normals": int(normals), "uniforms": int(uniforms),
            "generator_claimants_per_s": spread([n / t for t in gen]),
            "raw_claimants_per_s": spread([n / t for t in raw]),
            "ratio": statistics.median(raw) / statistics.median(gen)}


def engine_peak_rss(n: int) -> dict:
    """Peak resident memory (VmHWM) of one claims-engine replication of n claimants, in a fresh process.

    VmHWM belongs to the new process image; getrusage's ru_maxrss would carry the parent's peak across
    fork and exec."""
    code = ("import time, sim.scenario as s, sim.montecarlo as m; p, q = s.apply(s.baseline()); "
            f"t = time.perf_counter(); m.run(p, q, 1, 1, n={n}, progress=False); "
            "hwm = [line for line in open('/proc/self/status') if line.startswith('VmHWM')][0].split()[1]; "
            "print(time.perf_counter() - t, hwm)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    seconds, kib = done.stdout.split()
    return {"claimants": n, "seconds": float(seconds), "peak_rss_bytes": int(kib) * 1024}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (the smoke test)")
    parser.add_argument("--json", default="benchmarks/results.json")
    args = parser.parse_args(argv)
    quick = args.quick
    from benchmarks import bench_budget, bench_montecarlo, bench_process, bench_sensitivity

    results = {"machine": {"platform": platform.platform(), "processor": platform.processor(),
                           "python": sys.version.split()[0], "numpy": np.__version__},
               "quick": quick}
    results["bandwidth_GBps"] = bandwidth(2_000_000 if quick else 40_000_000)
    results["kernels"] = kernels([20_000] if quick else [1_000_000, 10_000_000], paired=1 if quick else 7,
                                 triad_n=2_000_000 if quick else 20_000_000)
    results["generator"] = generator_vs_raw(20_000 if quick else 1_000_000)
    mc, big = bench_montecarlo.main(["--replications", *(["2"] if quick else ["100", "1000"]), "--big", "0"])
    results["engine"] = mc
    results["engine_peak_rss"] = [engine_peak_rss(n) for n in ([20_000] if quick else [1_000_000, 10_000_000,
                                                                                       30_000_000])]
    results["process"] = bench_process.main(["--applications", "2000" if quick else "100000", "--repeat", "1"
                                             if quick else "3"])
    results["budget"] = bench_budget.main(["--scenarios", *(["200"] if quick else ["1000", "10000"]),
                                           "--repeat", "1" if quick else "3"])
    results["sensitivity"] = bench_sensitivity.main(["--samples", "2" if quick else "64", "--workers", "2",
                                                     *(["--n", "5000"] if quick else [])])
    try:
        from benchmarks import peer_openfisca
        results["openfisca"] = peer_openfisca.main(["--firms", "20000" if quick else "1000000"])
    except ImportError:
        results["openfisca"] = "openfisca-core not installed: pip install -e '.[bench]'"
    print_table(results)
    with open(args.json, "w") as handle:
        json.dump(results, handle, indent=2, default=float)
    print(f"\nresults in {args.json}")
    return results


def print_table(r):
    bw = r["bandwidth_GBps"]
    threads = bw["triad_threads"][0]
    print("\n=== fiscalsim benchmarks (medians [min, max]) ===")
    print(f"memory bandwidth, triad: {threads:.1f} GB/s both cores, {bw['triad_one_thread'][0]:.1f} GB/s one thread")
    k = r["kernels"]
    bound = threads * 1e9 / k["bytes_per_evaluation"]
    print(f"award kernels: {k['rules']} rules, {k['bytes_per_firm']} bytes read per claimant "
          f"({k['bytes_per_evaluation']:.1f} per evaluation); bandwidth bound {bound / 1e9:.2f} G evaluations/s")
    for key, row in k.items():
        if isinstance(row, dict):
            f, npy, ratio, triad = row["fused"], row["numpy"], row["fused_to_bound"], row["triad_GBps"]
            print(f"  {int(key):>11,} claimants: fused {f[0] / 1e9:.2f} G/s [{f[1] / 1e9:.2f}, {f[2] / 1e9:.2f}] = "
                  f"{f[0] / bound:.0%} of the bound above; each run over the triad run right before it "
                  f"({triad[0]:.1f} GB/s [{triad[1]:.1f}, {triad[2]:.1f}]): {ratio[0]:.2f} [{ratio[1]:.2f}, "
                  f"{ratio[2]:.2f}]; NumPy fallback {npy[0] / 1e9:.2f} G/s")
    g = r["generator"]
    print(f"population generator: {g['generator_claimants_per_s'][0] / 1e6:.2f} M claimants/s; raw numpy for the "
          f"same draws {g['raw_claimants_per_s'][0] / 1e6:.2f} M/s; ratio {g['ratio']:.2f}")
    for row in r["engine"]:
        print(f"claims engine, baseline x {row['replications']}: {row['seconds_median']:.1f} s "
              f"({row['reps_per_s']:.1f} replications/s)")
    for row in r["engine_peak_rss"]:
        print(f"claims engine, one replication of {row['claimants']:,}: {row['seconds']:.1f} s, "
              f"peak RSS {row['peak_rss_bytes'] / 2**20:.0f} MiB")
    p = r["process"]
    print(f"SimPy process: {p['applications_per_s']:,.0f} applications/s, {p['model_events_per_s']:,.0f} events/s; "
          f"bare M/M/5 {p['bare_events_per_s']:,.0f} events/s; ratio {p['ratio']:.2f}")
    for row in r["budget"]:
        if row["lp"] == "cvar":
            print(f"CVaR LP, S = {row['scenarios']:,}, {row['solver']}: build {row['build_s'] + row['model_s']:.2f} s, "
                  f"solve {row['solve_s']:.2f} s")
    for row in r["sensitivity"]:
        print(f"Sobol analysis of the baseline, {row['groups']} groups, N = {row['samples']} ({row['evaluations']:,} "
              f"evaluations), {row['executor']} ({row['workers']} worker{'s' if row['workers'] > 1 else ''}): "
              f"{row['seconds']:.1f} s")
    o = r["openfisca"]
    if isinstance(o, dict):
        for label in ("per-firm awards", "per-firm awards, compiled", "claims per rule"):
            row = o[label]
            print(f"vs OpenFisca, {label}: {row['speed_ratio']:.1f}x faster, {row['memory_ratio']:.2f} of its peak "
                  f"memory; same results: {row['same_results']}")
    else:
        print(o)


if __name__ == "__main__":
    main()
