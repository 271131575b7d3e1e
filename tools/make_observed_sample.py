"""Make the bundled sample of observed data, models/binjiang-2024/observed-2024-06.csv.

    python tools/make_observed_sample.py

What the finance bureau would have seen by 30 June 2024 of one simulated year of the Binjiang baseline:
one replication (its assumptions drawn from their ranges, seed 20240630), its applications received (count
and amount claimed, 萬元), approvals (count and amount) and payments per rule and month, January to June.
The same call gives the same file (tests/test_nowcast.py checks it).
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from sim import pipeline  # noqa: E402

TARGET = ROOT / "models" / "binjiang-2024" / "observed-2024-06.csv"


def main() -> None:
    table, _ = pipeline.observed_sample(months=6, seed=20240630)
    table.to_csv(TARGET, index=False, float_format="%.4f", lineterminator="\n")
    print(f"wrote {TARGET} ({len(table)} rows)")


if __name__ == "__main__":
    main()
