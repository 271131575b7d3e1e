"""Mutation testing of the core modules (not part of the default test run).

    python tools/mutation.py run [--children N] [--modules M ...]  # both passes (hours on two cores)
    python tools/mutation.py report [--survivors]    # killed share per module, from both passes
    python tools/mutation.py sample [--per-module K] [--seed S] [--children N]  # a random sample (minutes)
    python tools/mutation.py report --sample [--survivors]  # killed share per module in the sample

The sample mode draws K mutants per module at random (seeded; the compiled kernels excluded: they are
mutated in pass 2) and runs only those, for a killed share with a binomial interval when the full passes take
longer than one has.  Results of mutants already run are reused.

mutmut (configured under [tool.mutmut] in pyproject.toml) changes the code one small edit at a time (a
comparison flipped, a number moved by one, an argument dropped, ...) and runs the tests that reach the
changed function; a mutant the tests do not notice "survived".  Statements that only word a message are
not mutated (see do_not_mutate_patterns).

Two passes, because the compiled kernels cannot be mutated while compiled:

1. the whole of each core module with ``FISCALSIM_JIT=off`` (the NumPy path), in ``mutants/``;
2. the compiled path -- the kernels of :mod:`sim.kinds` and :mod:`sim.fused`, and the functions of
   :mod:`sim.fused` that only run when the kernels do (the column layout, the kernel calls) -- with the
   kernels run as plain Python (``FISCALSIM_JIT=python``), in a copy of the repository
   (``.mutation-kernels/``), against the tests that compare them with the NumPy path.

The report counts a mutant as killed when a test failed or timed out in either pass that ran it, and as
not killed when it survived or no test reached it in every pass that ran it.
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
KERNELS = ROOT / ".mutation-kernels"
MODULES = ("policy", "kinds", "awards", "fused", "population", "montecarlo", "process", "budget", "design",
           "scenario", "assumptions", "headline", "sensitivity", "years", "nowcast", "queues")
KERNEL_FUNCTIONS = [f"sim.fused.x_{name}*" for name in (
    "condition_loop", "award_of", "rule_chunk", "lanes_python", "direct_python", "direct_rule", "chunk_totals",
    "chunk_range", "fused_serial",
    "fused_parallel", "chunk_awards",
    "per_claimant_serial", "per_claimant_parallel", "positive_awards")] + [f"sim.kinds.x_{name}*" for name in (
        "clip", "rate_kernel", "share_kernel", "fixed_kernel", "tiered_kernel", "unit_kernel", "bands_kernel",
        "award_into")] + [f"sim.population.x_{name}*" for name in ("copula_exceeds", "poisson_inversion")]
KERNEL_TESTS = ["tests/test_fused.py", "tests/test_kinds.py", "tests/test_robustness.py::"
                "test_the_award_intensity_applies_on_every_path", "tests/test_population.py::"
                "test_compiled_draws_equal_the_numpy_formulas"]
# Functions outside the kernels whose results only the compiled path reads (the column layout, the kernel calls,
# the kinds' numbers packed for the kernels) run in pass 2; those with a NumPy branch too run in both passes.
BOTH_PASSES = [f"sim.fused.x_{name}__mutmut*" for name in ("awards_per_claimant", "totals", "compile_rules")]
COMPILED_PATH = KERNEL_FUNCTIONS + BOTH_PASSES + [f"sim.fused.x_{name}__mutmut*" for name in (
    "column_matrix", "rule_arrays", "direct_path", "evaluation_order")] + [f"sim.kinds.x_{name}__mutmut*" for name in (
        "_rate_pack", "_share_pack", "_fixed_pack", "_no_numbers", "_unit_pack", "_bands_pack", "packed")]
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def _mutmut(args: list[str], cwd: Path, jit: str) -> None:
    env = {**os.environ, "FISCALSIM_JIT": jit}
    subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=cwd, env=env, check=False)


def run(children: int, modules: tuple[str, ...] = MODULES) -> None:
    print(f"pass 1: {', '.join(modules)}, FISCALSIM_JIT=off", flush=True)
    _mutmut(["run", "--max-children", str(children), *(f"sim.{m}.*" for m in modules)], ROOT, "off")
    compiled = [p for p in COMPILED_PATH if p.split(".")[1] in modules]
    if compiled:
        print("pass 2: the compiled path as Python, FISCALSIM_JIT=python", flush=True)
        _pass2(children, compiled)


def _pass2(children: int, names: list[str]) -> None:
    """Run mutants of the compiled path with the kernels as plain Python, in a fresh copy of the repository."""
    if KERNELS.exists():
        shutil.rmtree(KERNELS)
    shutil.copytree(ROOT, KERNELS, ignore=shutil.ignore_patterns(".git", "mutants", ".mutation-kernels",
                                                                  "__pycache__", "runs"))
    config = (KERNELS / "pyproject.toml").read_text(encoding="utf-8")
    selection = re.compile(r"pytest_add_cli_args_test_selection = \[.*?\]", re.S)
    config = selection.sub("pytest_add_cli_args_test_selection = " + repr(KERNEL_TESTS).replace("'", '"'), config)
    (KERNELS / "pyproject.toml").write_text(config, encoding="utf-8")
    _mutmut(["run", "--max-children", str(children), *names], KERNELS, "python")


SAMPLE = ROOT / "mutants" / "sample.json"


def _all_mutants(modules: tuple[str, ...]) -> dict[str, list[str]]:
    """Mutant names per module, from mutmut's generated ``mutants/sim/<module>.py.meta`` files."""
    import json

    if not (ROOT / "mutants" / "sim").is_dir():  # a fresh checkout: generate the mutants (and the test timings)
        _mutmut(["run", "--max-children", "1", "sim.no_module.x_no_function"], ROOT, "off")
    out = {}
    for module in modules:
        meta = json.loads((ROOT / "mutants" / "sim" / f"{module}.py.meta").read_text(encoding="utf-8"))
        out[module] = sorted(meta["exit_code_by_key"])
    return out


def sample(per_module: int, seed: int, children: int, modules: tuple[str, ...] = MODULES) -> None:
    """Run a seeded random sample of ``per_module`` mutants of each module, each in the pass(es) it belongs to."""
    import json
    import random

    rng = random.Random(seed)
    chosen = {m: sorted(rng.sample(names, min(per_module, len(names)))) for m, names in _all_mutants(modules).items()}
    SAMPLE.write_text(json.dumps({"seed": seed, "per_module": per_module, "mutants": chosen}, indent=1),
                      encoding="utf-8")
    names = [n for ns in chosen.values() for n in ns]
    first = [n for n in names if not _matches(n, COMPILED_PATH) or _matches(n, BOTH_PASSES)]
    second = [n for n in names if _matches(n, COMPILED_PATH)]
    print(f"sample: {len(names)} mutants ({per_module} per module, seed {seed}); "
          f"{len(first)} in pass 1, {len(second)} in pass 2", flush=True)
    if first:
        _mutmut(["run", "--max-children", str(children), *first], ROOT, "off")
    if second:
        _pass2(children, second)


def _statuses(cwd: Path) -> dict[str, str]:
    if not (cwd / "mutants").is_dir():
        return {}
    done = subprocess.run([sys.executable, "-m", "mutmut", "results", "--all", "true"], cwd=cwd,
                          capture_output=True, text=True, check=False)
    out = {}
    for line in done.stdout.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name.startswith("sim."):
            out[name] = status
    return out


def _matches(name: str, patterns: list[str]) -> bool:
    return any(re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), name) for pattern in patterns)


def _combined(first: dict[str, str], second: dict[str, str]) -> dict[str, str]:
    """One status per mutant: killed when either pass that ran it killed it."""
    def rank(status: str) -> int:  # killed beats survived, which beats "no tests", which beats "not checked"
        return 3 if status in KILLED else {"survived": 2, "no tests": 1}.get(status, 0)

    out = {k: v for k, v in first.items() if not _matches(k, COMPILED_PATH) or _matches(k, BOTH_PASSES)}
    for name, status in second.items():
        if _matches(name, COMPILED_PATH) and rank(status) > rank(out.get(name, "")):
            out[name] = status
    return out


def report(survivors: bool, sampled: bool = False) -> dict[str, tuple[int, int]]:
    statuses = _combined(_statuses(ROOT), _statuses(KERNELS))
    if sampled:
        import json

        chosen = {n for ns in json.loads(SAMPLE.read_text(encoding="utf-8"))["mutants"].values() for n in ns}
        statuses = {k: v for k, v in statuses.items() if k in chosen}
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        counts[name.split(".")[1]][status] += 1
    table = {}
    print(f"{'module':<12} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'killed share':>13}"
          + (f" {'95% interval':>14}" if sampled else ""))
    for module in MODULES:
        c = counts.get(module, collections.Counter())
        killed = sum(c[s] for s in KILLED)
        judged = killed + c["survived"] + c["no tests"]
        share = killed / judged if judged else float("nan")
        table[module] = (killed, judged)
        line = f"{module:<12} {sum(c.values()):>8} {killed:>7} {c['survived']:>9} {c['no tests']:>9} {share:>12.1%}"
        if sampled and judged:
            low, high = _wilson(killed, judged)
            line += f"   {low:.0%}-{high:.0%}"
        print(line)
    if survivors:
        for name, status in sorted(statuses.items()):
            if status in ("survived", "no tests"):
                print(f"{status}: {name}")
    return table


def _wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial share k/n."""
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return centre - half, centre + half


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--children", type=int, default=os.cpu_count() or 1)
    p.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES),
                   help="the modules to mutate (default: all core modules)")
    p = sub.add_parser("sample")
    p.add_argument("--per-module", type=int, default=80)
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--children", type=int, default=os.cpu_count() or 1)
    p.add_argument("--modules", nargs="+", choices=MODULES, default=list(MODULES))
    p = sub.add_parser("report")
    p.add_argument("--survivors", action="store_true")
    p.add_argument("--sample", action="store_true", help="only the mutants of the last sample")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.children, tuple(args.modules))
        report(False)
    elif args.command == "sample":
        sample(args.per_module, args.seed, args.children, tuple(args.modules))
        report(False, sampled=True)
    else:
        report(args.survivors, args.sample)


if __name__ == "__main__":
    main()
