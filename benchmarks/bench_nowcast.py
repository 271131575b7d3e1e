"""The in-year nowcast: how long it takes on the baseline run, and whether it is right (synthetic truths).

    python -m benchmarks.bench_nowcast [--run RUN_DIR] [--repeat 3] [--truths 100] [--workers 0]

1. **Time.** The baseline run of the README command (``fiscalsim run --replications 300``; given with
   ``--run`` or made here, stages claims and process) is nowcast with the bundled sample,
   ``models/binjiang-2024/observed-2024-06.csv`` (6 months), with the default settings (4 rounds of 60 fresh
   draws at most), each repeat in a fresh process: median and range of the wall time, the time of each
   round, the effective sample size and the weight of the data.
2. **Synthetic truths.** ``--truths`` replications of the baseline with their own seed, one per assumption
   draw (truths drawn from the assumption ranges), each observed for its first 3, 6 and 9 months and
   nowcast from the baseline run (the run's own draws, no fresh ones, for time): the share of truths whose
   year-end science-and-technology payments lie in the nowcast's 90% interval (with its binomial 3-sigma
   band), the mean width of that interval, and the article-15 rate's posterior against each truth's rate.
"""

from __future__ import annotations

import argparse
import math
import resource
import time
from pathlib import Path

from benchmarks import fresh_runs, medians

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "models" / "binjiang-2024" / "observed-2024-06.csv"


def baseline(path: Path, replications: int = 300) -> Path:
    import sim.pipeline as pipeline

    if not (path / "manifest.json").is_file():
        pipeline.run(settings=pipeline.Settings(replications=replications, stages=("claims", "process")), out=path,
                     progress=False)
    return path


def one(run_dir: str, workers: int) -> dict:
    import sim.pipeline as pipeline
    from sim import executors, results

    start = time.perf_counter()
    executor = executors.dask(workers) if workers else executors.Serial()
    try:
        nc = pipeline.nowcast_of(results.load(run_dir), SAMPLE, "2024-06-30", executor=executor, progress=False,
                                 lang=None)
    finally:
        executor.close()
    total = time.perf_counter() - start
    rounds = nc.manifest["timings"]["rounds_s"]
    return {"total": total, "rounds_s": float(sum(rounds)), "rounds": len(rounds) - 1,
            "ess": float(nc.manifest["ess"]), "beta": float(nc.manifest["beta"]),
            "st_beta": float(nc["domains"].set_index("domain").loc["science_technology", "beta"]),
            "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def validate(run_dir: Path, truths: int, seed: int = 4242):
    import numpy as np

    import sim.pipeline as pipeline
    from sim import results

    prior = results.load(run_dir)
    settings = pipeline.Settings(replications=truths, per_draw=1, seed=seed, stages=("claims", "process"))
    start = time.perf_counter()
    truth = pipeline.run(settings=settings, progress=False)
    made = time.perf_counter() - start
    start = time.perf_counter()
    found = pipeline.nowcast_validation(prior, truth, "science_technology", ("a15-tech-rate",))
    seconds = time.perf_counter() - start
    rate = "a15-tech-rate"
    found["rate_error"] = np.abs(np.log(found[f"{rate}:p50"] / found[f"{rate}:truth"]))
    found["rate_width"] = np.log(found[f"{rate}:p95"] / found[f"{rate}:p5"])
    found["rate_covered"] = (found[f"{rate}:p5"] <= found[f"{rate}:truth"]) & (found[f"{rate}:truth"] <=
                                                                              found[f"{rate}:p95"])
    band = 3 * math.sqrt(0.9 * 0.1 / truths)
    print(f"\nSynthetic truths: {truths} (made in {made:.0f} s), nowcast {len(found)} times in {seconds:.0f} s "
          f"from {prior.manifest['replications']} replications; 90% interval, band {0.9 - band:.1%}-"
          f"{min(0.9 + band, 1):.1%}")
    print(f"{'months':>6} {'covered':>8} {'mean width 萬元':>15} {'beta S&T':>9} {'rate: covered':>14} "
          f"{'|log error| median':>19} {'log width mean':>15}")
    rows = []
    for months, part in found.groupby("months"):
        row = {"months": int(months), "covered": float(part["covered"].mean()), "width": float(part["width"].mean()),
               "beta": float(part["beta"].median()), "rate_covered": float(part["rate_covered"].mean()),
               "rate_error": float(part["rate_error"].median()), "rate_width": float(part["rate_width"].mean())}
        rows.append(row)
        print(f"{months:>6} {row['covered']:>8.1%} {row['width']:>15,.0f} {row['beta']:>9.3g} "
              f"{row['rate_covered']:>14.1%} {row['rate_error']:>19.3f} {row['rate_width']:>15.3f}")
    prior_width = float((found["prior_p95"] - found["prior_p5"]).mean())
    print(f"the run's own 90% interval: {prior_width:,.0f} 萬元 wide")
    return rows


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "runs" / "bench-nowcast-baseline",
                        help="the baseline run (made here with 300 replications if it does not exist)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--truths", type=int, default=100)
    parser.add_argument("--workers", type=int, default=0)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    run_dir = baseline(args.run)
    print(f"baseline run: {run_dir} ({time.perf_counter() - start:.0f} s to make or find)")
    out = {}
    if args.repeat:
        runs = fresh_runs(one, (str(run_dir), args.workers), args.repeat)
        row = medians(runs, ("total", "rounds_s", "ess", "beta", "st_beta"), {"workers": args.workers})
        print(f"nowcast, 6 months of the sample: {row['total']:.1f} s (range {row['total_range'][0]:.1f}-"
              f"{row['total_range'][1]:.1f}) over {args.repeat} fresh processes; rounds of fresh draws "
              f"{runs[0]['rounds']} taking {row['rounds_s']:.1f} s; ESS {row['ess']:.0f} draws; beta "
              f"{row['beta']:.3g} (science and technology alone: {row['st_beta']:.3g}); peak {row['peak_mib']:.0f} MiB")
        out["time"] = row
    if args.truths:
        out["truths"] = validate(run_dir, args.truths)
    return out


if __name__ == "__main__":
    main()
