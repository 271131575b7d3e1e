"""Mutation testing of the core modules (not part of the default test run).

    python tools/mutation.py run [--children N]     # both passes (hours on two cores)
    python tools/mutation.py report [--survivors]    # killed share per module, from both passes

mutmut (configured under [tool.mutmut] in pyproject.toml) changes the code one small edit at a time (a
comparison flipped, a number moved by one, an argument dropped, ...) and runs the tests that reach the
changed function; a mutant the tests do not notice "survived".  Statements that only word a message are
not mutated (see do_not_mutate_patterns).

Two passes, because the compiled kernels cannot be mutated while compiled:

1. the whole of each core module with ``FISCALSIM_JIT=off`` (the NumPy path), in ``mutants/``;
2. the compiled kernels of :mod:`sim.kinds` and :mod:`sim.fused` run as plain Python
   (``FISCALSIM_JIT=python``), in a copy of the repository (``.mutation-kernels/``), against the tests
   that compare them with the NumPy path.

The report counts a mutant as killed when a test failed or timed out, and as not killed when it survived or
no test reached it; a kernel's mutants are taken from the second pass.
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
MODULES = ("policy", "kinds", "awards", "fused", "population", "montecarlo", "process", "budget", "scenario",
           "assumptions", "headline", "sensitivity")
KERNEL_FUNCTIONS = [f"sim.fused.x_{name}*" for name in (
    "condition_loop", "widen", "rule_chunk", "chunk_totals", "fused_serial", "fused_parallel", "chunk_awards",
    "per_claimant_serial", "per_claimant_parallel")] + [f"sim.kinds.x_{name}*" for name in (
        "clip", "rate_kernel", "share_kernel", "fixed_kernel", "tiered_kernel", "unit_kernel", "bands_kernel",
        "award_into")]
KERNEL_TESTS = ["tests/test_fused.py", "tests/test_kinds.py", "tests/test_robustness.py::"
                "test_the_award_intensity_applies_on_every_path"]
KILLED = {"killed", "timeout", "caught by type check", "segfault"}


def _mutmut(args: list[str], cwd: Path, jit: str) -> None:
    env = {**os.environ, "FISCALSIM_JIT": jit}
    subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=cwd, env=env, check=False)


def run(children: int) -> None:
    print("pass 1: every core module, FISCALSIM_JIT=off", flush=True)
    _mutmut(["run", "--max-children", str(children), *(f"sim.{m}*" for m in MODULES)], ROOT, "off")
    print("pass 2: the compiled kernels as Python, FISCALSIM_JIT=python", flush=True)
    if KERNELS.exists():
        shutil.rmtree(KERNELS)
    shutil.copytree(ROOT, KERNELS, ignore=shutil.ignore_patterns(".git", "mutants", ".mutation-kernels",
                                                                  "__pycache__", "runs"))
    config = (KERNELS / "pyproject.toml").read_text(encoding="utf-8")
    selection = re.compile(r"pytest_add_cli_args_test_selection = \[.*?\]", re.S)
    config = selection.sub("pytest_add_cli_args_test_selection = " + repr(KERNEL_TESTS).replace("'", '"'), config)
    (KERNELS / "pyproject.toml").write_text(config, encoding="utf-8")
    _mutmut(["run", "--max-children", str(children), *KERNEL_FUNCTIONS], KERNELS, "python")


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


def _is_kernel(name: str) -> bool:
    return any(re.fullmatch(pattern.replace(".", r"\.").replace("*", ".*"), name) for pattern in KERNEL_FUNCTIONS)


def report(survivors: bool) -> dict[str, tuple[int, int]]:
    statuses = {k: v for k, v in _statuses(ROOT).items() if not _is_kernel(k)}
    statuses.update({k: v for k, v in _statuses(KERNELS).items() if _is_kernel(k)})
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for name, status in statuses.items():
        counts[name.split(".")[1]][status] += 1
    table = {}
    print(f"{'module':<12} {'mutants':>8} {'killed':>7} {'survived':>9} {'no tests':>9} {'killed share':>13}")
    for module in MODULES:
        c = counts.get(module, collections.Counter())
        killed = sum(c[s] for s in KILLED)
        judged = killed + c["survived"] + c["no tests"]
        share = killed / judged if judged else float("nan")
        table[module] = (killed, judged)
        print(f"{module:<12} {sum(c.values()):>8} {killed:>7} {c['survived']:>9} {c['no tests']:>9} {share:>12.1%}")
    if survivors:
        for name, status in sorted(statuses.items()):
            if status in ("survived", "no tests"):
                print(f"{status}: {name}")
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run")
    p.add_argument("--children", type=int, default=os.cpu_count() or 1)
    p = sub.add_parser("report")
    p.add_argument("--survivors", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "run":
        run(args.children)
        report(False)
    else:
        report(args.survivors)


if __name__ == "__main__":
    main()
