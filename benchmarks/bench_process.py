"""SimPy process stage: one replication with about 100,000 applications, beside a bare SimPy M/M/5
model measured in the same run, so the model's overhead over SimPy itself is a ratio.

    python -m benchmarks.bench_process [--applications 100000] [--repeat 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import numpy as np
import simpy

import sim.montecarlo as mc
import sim.process as pr
import sim.scenario as scenario


def bare_mmc(customers: int, servers: int = 5, utilisation: float = 0.9, seed: int = 0) -> tuple[float, int]:
    """A bare SimPy M/M/c queue (the SimPy documentation's pattern): seconds and events processed."""
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / (utilisation * servers), customers)
    service = rng.exponential(1.0, customers)
    env = pr.CountingEnvironment()
    desk = simpy.Resource(env, capacity=servers)

    def customer(i):
        with desk.request() as request:
            yield request
            yield env.timeout(service[i])

    def source():
        for i in range(customers):
            yield env.timeout(gaps[i])
            env.process(customer(i))

    env.process(source())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start, env.events_processed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--applications", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    policy, spec = scenario.apply(scenario.baseline())
    model = pr.load_process(policy=policy)
    base = mc.replication_claims(policy, spec, 1, 0)
    scale = args.applications / max(len(base), 1)
    claims = mc.replication_claims(policy, spec, 1, 0, scale=scale)
    # A district `scale` times larger: proportionally more reviewers and budget, so the bureaus' queues
    # and the budgets behave as in the baseline (with the baseline's staff, most of 100,000 applications
    # would still be queued at year end).
    budgets = {d: b * scale for d, b in model.budgets.items()}
    bureaus = {k: pr.Bureau(b.name, max(1, round(b.reviewers * scale)), b.review_days, b.window, b.name_en)
               for k, b in model.bureaus.items()}
    model = model.with_changes(bureaus=bureaus)
    rows = []
    for _ in range(args.repeat):
        start = time.perf_counter()
        result = pr.simulate(claims, model, seed=1, budgets=budgets)
        result.summary()
        seconds, events = time.perf_counter() - start, result.events
        bare_seconds, bare_events = bare_mmc(len(claims))
        rows.append({"model_s": seconds, "model_events": events, "bare_s": bare_seconds, "bare_events": bare_events})
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    out = {
        "applications": len(claims), "model_seconds": med["model_s"], "model_events": int(med["model_events"]),
        "applications_per_s": len(claims) / med["model_s"], "model_events_per_s": med["model_events"] / med["model_s"],
        "bare_events_per_s": med["bare_events"] / med["bare_s"],
        "all": rows,
    }
    out["ratio"] = out["model_events_per_s"] / out["bare_events_per_s"]
    print(f"process model: {len(claims):,} applications in {med['model_s']:.2f} s (median of {args.repeat}): "
          f"{out['applications_per_s']:,.0f} applications/s, {out['model_events_per_s']:,.0f} SimPy events/s "
          f"(the whole replication: draws, SimPy, tables)")
    print(f"bare M/M/5 SimPy model, same customers: {out['bare_events_per_s']:,.0f} events/s")
    print(f"model / bare events per second: {out['ratio']:.2f}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": platform.platform(), "simpy": simpy.__version__, **out}, handle, indent=2)
    return out


if __name__ == "__main__":
    main()
