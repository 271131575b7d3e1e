"""Design LP timings: the baseline's 45 rules x 6 domains (and its sub-lines) over S = 1,000 and 10,000
replications, built from arrays and solved with HiGHS (through PuLP), scipy's HiGHS and CBC; and with a
reallocation between domains (every replication of every domain then has a row), with the first solver.

    python -m benchmarks.bench_design [--scenarios 1000 10000] [--repeat 3] [--solvers highs scipy cbc]

Replications of each rule's district-paid claims at full intensity are resampled from a 100-replication
baseline run (rows drawn with replacement, each rule's claim jittered by a lognormal factor of 10%), so
that S = 10,000 needs no 10,000-replication run; claims budgets are the run's draws resampled the same way.
The tolerance is 1% of each budget at level 0.95, with each rule with latitude floored at 0.3 (at the
model's 0.5 the science-and-technology domain has no design at this risk; see fiscalsim design).
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

import sim.design as design
import sim.montecarlo as mc
import sim.scenario as scenario


def inputs_like_baseline(policy, spec, scenarios, seed=0, floor=0.3, base=100):
    run = mc.run(policy, spec, base, seed=1, progress=False)
    base = design.DesignInput.from_run(policy, run.rules, run.budgets, tolerance=0.01, floor=floor)
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, base.full.shape[0], scenarios)
    full = base.full[pick] * rng.lognormal(0.0, 0.1, size=(scenarios, base.full.shape[1]))
    lines = tuple(design.Line(line.name, line.kind, line.domain, line.members, line.budget[pick], line.tolerance)
                  for line in base.lines)
    return design.DesignInput(base.rules, base.articles, base.domains, base.rule_domain, full, base.current,
                              base.lower, base.upper, base.weights, lines, base.spending_floor)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--solvers", nargs="+", default=["highs", "scipy", "cbc"])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--base", type=int, default=100, help="replications of the run the inputs are resampled from")
    args = parser.parse_args(argv)
    policy, spec = scenario.apply(scenario.baseline())
    results = []
    print(f"{'S':>7} {'realloc':>7} {'solver':>6} {'rules':>5} {'vars':>7} {'rows':>7} {'build s':>18} {'solve s':>18} "
          f"{'support kept':>12}")
    for s in args.scenarios:
        data = inputs_like_baseline(policy, spec, s, base=args.base)
        for reallocate, solver in [(False, solver) for solver in args.solvers] + [(True, args.solvers[0])]:
            builds, solves, kept = [], [], None
            for _ in range(args.repeat):
                found = design.design(data, 0.95, reallocate=reallocate, solver=solver)
                builds.append(found.solution.lp.build_seconds)
                solves.append(found.solution.solve_seconds + found.solution.model_seconds)
                kept = float(data.expected_full @ found.intensity / (data.expected_full @ data.current))
            b, v = sorted(builds), sorted(solves)
            lp = found.solution.lp
            rows = sum(len(block.names) for block in lp.inequalities + lp.equalities)
            r = {"scenarios": s, "reallocate": reallocate, "solver": solver, "variables": len(lp.variables),
                 "rows": rows,
                 "build_s": statistics.median(b), "build_range": (b[0], b[-1]), "solve_s": statistics.median(v),
                 "solve_range": (v[0], v[-1]), "support_kept": kept}
            results.append(r)
            flag = "yes" if reallocate else "no"
            print(f"{s:>7,} {flag:>7} {solver:>6} {len(data.rules):>5} {r['variables']:>7,} {rows:>7,} "
                  f"{r['build_s']:>7.3f} [{b[0]:.3f},{b[-1]:.3f}] {r['solve_s']:>7.3f} [{v[0]:.3f},{v[-1]:.3f}] "
                  f"{kept:>11.1%}")
    return results


if __name__ == "__main__":
    main()
