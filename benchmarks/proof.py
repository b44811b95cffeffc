"""The long-time-lag table of docs/proof.md (issue 16): the four tasks, every cell, over seeds.

    python benchmarks/proof.py [--seeds 3] [--out runs/proof] [--table benchmarks/proof.md]

Trains the plan of ``longshort.apps.proof`` (about an hour on 2 cores with 3 seeds), prints the
table with the published references, writes it to --table, and lists any target it misses.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from longshort.apps.proof import format_proof, misses, run_proof


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("runs/proof"))
    parser.add_argument("--table", type=Path, default=Path("benchmarks/proof.md"))
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    rows = run_proof(args.out, args.seeds, progress=not args.no_progress)
    table = format_proof(rows)
    args.table.write_text(table + "\n")
    print(table)
    print("\ntargets missed: " + ("; ".join(misses(rows)) or "none"))


if __name__ == "__main__":
    main()
