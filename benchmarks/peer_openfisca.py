"""Peer comparison: three award rules written as OpenFisca variables, computed for the same firms as
fiscalsim's kernels, timed in the same run with both sides' builds included (OpenFisca's tax-benefit system
and simulation; fiscalsim's policy from its data, validated, and its compiled rules), results compared
value by value: how many differ, and by how much (OpenFisca computes in float32, fiscalsim in float64).

    python -m benchmarks.peer_openfisca [--firms 1000000] [--repeat 3]

OpenFisca (``openfisca-core``) is installed only for this benchmark (``pip install -e ".[bench]"``).
The rules: article 13's SME-scale R&D subsidy (rate, threshold, cap, direct tier, eligibility),
article 41's manufacturing export credit-insurance subsidy (rate, cap, eligibility) and article 28's
little-giant award (fixed).
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
import tracemalloc

import numpy as np

import sim.policy
from sim import fused
from sim.awards import evaluate
from sim.policy import from_dict

RULES = ("a13-rd-increase-sme", "a28-little-giant", "a41-credit-insurance-manufacturing")  # policy order
YEAR = "2024"


def firms(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Random firm facts, rounded to float32 values: OpenFisca stores float inputs in float32, so both
    libraries then see the very same inputs (a float64 value near a threshold could otherwise round
    across it)."""
    rng = np.random.default_rng(seed)
    table = {
        "rd_spending": rng.lognormal(6.0, 1.5, n),
        "rd_increase": rng.normal(100.0, 600.0, n),
        "tech_sme_scale": (rng.random(n) < 0.8).astype(float),
        "manufacturing": (rng.random(n) < 0.3).astype(float),
        "export_credit_premium": np.where(rng.random(n) < 0.05, rng.lognormal(4.0, 1.5, n), 0.0),
        "new_little_giant": (rng.random(n) < 0.001).astype(float),
    }
    return {name: values.astype(np.float32).astype(np.float64) for name, values in table.items()}


def three_rule_policy():
    policy = sim.policy.load()
    data = policy.data()
    data["rules"] = [r for r in data["rules"] if r["id"] in RULES]
    return from_dict(data, "three rules", policy.source_text)


def openfisca_system():
    from openfisca_core.entities import build_entity
    from openfisca_core.periods import DateUnit
    from openfisca_core.taxbenefitsystems import TaxBenefitSystem
    from openfisca_core.variables import Variable

    firm = build_entity(key="firm", plural="firms", label="An enterprise", is_person=True)

    def inputs(name, kind=float):
        return type(name, (Variable,), {"value_type": kind, "entity": firm, "definition_period": DateUnit.YEAR,
                                        "label": name})

    class a13_rd_increase_sme(Variable):
        value_type = float
        entity = firm
        definition_period = DateUnit.YEAR
        label = "Article 13, SME-scale firms"

        def formula(firm, period):
            increase = firm("rd_increase", period)
            spending = firm("rd_spending", period)
            rate_part = np.where(increase >= 200, np.clip(0.05 * increase, 0, 200), 0.0)
            direct = np.where(spending >= 10000, 200.0, 0.0)
            return np.where(firm("tech_sme_scale", period) == 1, np.maximum(rate_part, direct), 0.0)

    class a41_credit_insurance_manufacturing(Variable):
        value_type = float
        entity = firm
        definition_period = DateUnit.YEAR
        label = "Article 41, manufacturers"

        def formula(firm, period):
            premium = firm("export_credit_premium", period)
            return np.where(firm("manufacturing", period) == 1, np.clip(0.65 * premium, 0, 500), 0.0)

    class a28_little_giant(Variable):
        value_type = float
        entity = firm
        definition_period = DateUnit.YEAR
        label = "Article 28, little giants"

        def formula(firm, period):
            return np.where(firm("new_little_giant", period) != 0, 100.0, 0.0)

    system = TaxBenefitSystem([firm])
    for name in ("rd_spending", "rd_increase", "tech_sme_scale", "manufacturing", "export_credit_premium",
                 "new_little_giant"):
        system.add_variable(inputs(name))
    for variable in (a13_rd_increase_sme, a41_credit_insurance_manufacturing, a28_little_giant):
        system.add_variable(variable)
    return system


def run_openfisca(table: dict[str, np.ndarray]) -> np.ndarray:
    from openfisca_core.simulations import SimulationBuilder

    system = openfisca_system()
    n = len(next(iter(table.values())))
    simulation = SimulationBuilder().build_default_simulation(system, count=n)
    for name, values in table.items():
        simulation.set_input(name, YEAR, values)
    return np.array([simulation.calculate(name.replace("-", "_"), YEAR) for name in RULES])


def run_fiscalsim(policy, table: dict[str, np.ndarray]) -> np.ndarray:
    """Per-firm awards with the NumPy kernels (sim.awards.evaluate); rows in RULES (policy) order."""
    return evaluate(policy, table, validate=False).gross


def run_fiscalsim_compiled(policy, table: dict[str, np.ndarray]) -> np.ndarray:
    """Per-firm awards with the compiled kernel (sim.fused.awards_per_claimant), the same bits."""
    n = len(next(iter(table.values())))
    return fused.awards_per_claimant(fused.compile_rules(policy), table, n)


def run_fiscalsim_totals(policy, table: dict[str, np.ndarray], block: int = 1 << 16) -> np.ndarray:
    """Claims per rule as the claims engine computes them: the fused kernel over blocks of claimants."""
    compiled = fused.compile_rules(policy)
    n = len(next(iter(table.values())))
    parts = []
    for lo in range(0, n, block):
        (award, _), _, _ = fused.totals(policy, {k: v[lo:lo + block] for k, v in table.items()}, compiled)
        parts.append(award)
    return np.array([math.fsum(column) for column in np.array(parts).T])


def run_openfisca_totals(table: dict[str, np.ndarray]) -> np.ndarray:
    return run_openfisca(table).astype(np.float64).sum(axis=1)


def measure(fn, repeat):
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, times, peak


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--firms", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    table = firms(args.firms)
    policy = three_rule_policy()
    assert policy.rule_ids == RULES
    run_fiscalsim_totals(policy, {k: v[:1000] for k, v in table.items()})  # compile (or load) the kernels first
    run_fiscalsim_compiled(policy, {k: v[:1000] for k, v in table.items()})
    run_openfisca({k: v[:1000] for k, v in table.items()})  # and warm OpenFisca up the same way
    out = {"firms": args.firms, "rules": list(RULES)}
    rows = (("per-firm awards", lambda: run_fiscalsim(three_rule_policy(), table), lambda: run_openfisca(table)),
            ("per-firm awards, compiled", lambda: run_fiscalsim_compiled(three_rule_policy(), table),
             lambda: run_openfisca(table)),
            ("claims per rule", lambda: run_fiscalsim_totals(three_rule_policy(), table),
             lambda: run_openfisca_totals(table)))
    print(f"{args.firms:,} firms x {len(RULES)} rules ({', '.join(RULES)}); medians of {args.repeat}, build included")
    for label, ours_fn, theirs_fn in rows:
        ours, our_times, our_peak = measure(ours_fn, args.repeat)
        theirs, their_times, their_peak = measure(theirs_fn, args.repeat)
        # OpenFisca computes float variables in float32 by design; fiscalsim in float64.  Compared: every value,
        # exactly; and fiscalsim's values rounded to float32 against OpenFisca's (per firm), or totals within
        # float32's relative precision (per rule).
        theirs64 = np.asarray(theirs, dtype=np.float64)
        differ = int(np.count_nonzero(ours != theirs64))
        rounded = ours.astype(np.float32) != np.asarray(theirs, dtype=np.float32) if label.startswith("per-firm") \
            else ~np.isclose(ours, theirs64, rtol=2.0 ** -23 * 8, atol=0.0)
        same = not bool(rounded.any())
        row = {"same_results": same, "values": int(ours.size), "values_differing": differ,
               "values_differing_after_float32_rounding": int(np.count_nonzero(rounded)),
               "max_abs_difference": float(np.max(np.abs(ours - theirs64))) if ours.size else 0.0,
               "fiscalsim_s_median": statistics.median(our_times),
               "openfisca_s_median": statistics.median(their_times), "fiscalsim_s_all": our_times,
               "openfisca_s_all": their_times, "fiscalsim_peak_bytes": our_peak, "openfisca_peak_bytes": their_peak}
        row["speed_ratio"] = row["openfisca_s_median"] / row["fiscalsim_s_median"]
        row["memory_ratio"] = our_peak / max(their_peak, 1)
        out[label] = row
        print(f"  {label}: fiscalsim {row['fiscalsim_s_median']:.3f} s, peak {our_peak / 2**20:.1f} MiB; "
              f"OpenFisca {row['openfisca_s_median']:.3f} s, peak {their_peak / 2**20:.1f} MiB; "
              f"{row['speed_ratio']:.1f}x faster, {row['memory_ratio']:.2f} of the memory; "
              f"{differ:,} of {ours.size:,} values differ (max {row['max_abs_difference']:.2g} 萬元), "
              f"{row['values_differing_after_float32_rounding']:,} after rounding to OpenFisca's float32")
    return out


if __name__ == "__main__":
    main()
