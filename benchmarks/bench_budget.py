"""Budget LP timings: the CVaR LP over S = 1,000 and 10,000 replications and every domain, built from
arrays and solved with HiGHS on the arrays themselves (the default), CBC and HiGHS through PuLP, and
scipy's HiGHS; the coverage LP beside them.

    python -m benchmarks.bench_budget [--scenarios 1000 10000] [--repeat 3] [--json out.json]

Replications of domain claims are drawn as lognormals matched to the baseline's domain means and
standard deviations (from a 100-replication run), so that S = 10,000 needs no 10,000-replication run.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics

import numpy as np

import sim.budget as budget
import sim.montecarlo as mc
import sim.scenario as scenario


def losses_like_baseline(policy, spec, scenarios, seed=0):
    run = mc.run(policy, spec, 100, seed=1, progress=False)
    base = budget.domain_loss_matrix(run.rules, policy.domain_keys)
    mean, sd = base.mean(axis=0), base.std(axis=0, ddof=1)
    sigma = np.sqrt(np.log1p((sd / mean) ** 2))
    mu = np.log(mean) - sigma**2 / 2
    return np.random.default_rng(seed).lognormal(mu, sigma, size=(scenarios, len(mean))), run


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--solvers", nargs="+", default=list(budget.SOLVERS))
    parser.add_argument("--level", type=float, default=0.95)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    policy, spec = scenario.apply(scenario.baseline())
    results = []
    print(f"{'LP':>10} {'S':>7} {'solver':>10} {'vars':>7} {'build s':>8} {'model s':>8} {'solve s':>8} {'total s':>8}")
    for s in args.scenarios:
        losses, run = losses_like_baseline(policy, spec, s)
        tolerance = 0.01 * losses.sum(axis=1).mean()
        for solver in args.solvers:
            rows = []
            for _ in range(args.repeat):
                out = budget.cvar_budgets(losses, policy.domain_keys, args.level, tolerance, solver=solver)
                rows.append({**out["overall"].iloc[0].to_dict(), **out["timing"]})
            pick = {k: statistics.median(float(r[k]) for r in rows) for k in ("build_s", "model_s", "solve_s")}
            total = pick["build_s"] + pick["model_s"] + pick["solve_s"]
            r = {"lp": "cvar", "scenarios": s, "solver": solver, "variables": int(rows[0]["variables"]),
                 **pick, "total_s": total, "total_budget": float(rows[0]["total_budget"])}
            results.append(r)
            print(f"{'CVaR':>10} {s:>7,} {solver:>10} {r['variables']:>7,} {pick['build_s']:>8.3f} "
                  f"{pick['model_s']:>8.3f} {pick['solve_s']:>8.3f} {total:>8.3f}")
    expected = run.rules.groupby("rule", observed=True)["district"].mean()
    data = budget.ClaimsInput.from_policy(policy, expected)
    for solver in args.solvers:
        timing = budget.coverage(data, solver=solver)["timing"]
        print(f"{'coverage':>10} {'':>7} {solver:>10} {len(policy.rules):>7} {timing['build_s']:>8.4f} "
              f"{timing['model_s']:>8.4f} {timing['solve_s']:>8.4f}")
        times = {k: float(timing[k]) for k in ("build_s", "model_s", "solve_s")}
        results.append({"lp": "coverage", "solver": solver, **times})
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "results": results}, handle, indent=2)
    return results


if __name__ == "__main__":
    main()
