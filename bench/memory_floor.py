"""Peak memory (RSS) of the fixed costs behind every benchmark process, each in a fresh process.

    python bench/memory_floor.py [--data-root ../shared/data] [--datasets amazon-office ...]

Prints the peak RSS after importing torch alone, after importing clrec's experiment module
(what ``clrec train`` loads), and after also loading each named data set — the floor under
the peak-memory column of the peer tables in BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import subprocess
import sys

PROBE = """
import resource, sys
from pathlib import Path
for name in sys.argv[1].split(","):
    __import__(name)
if len(sys.argv) > 2:
    from clrec.data.registry import load
    load(sys.argv[2], Path(sys.argv[3]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""


def peak_mb(modules: str, *dataset: str) -> float:
    """Peak RSS in MB of a fresh interpreter that imports ``modules`` (and loads a data set)."""
    out = subprocess.run(
        [sys.executable, "-c", PROBE, modules, *dataset],
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default="../shared/data")
    parser.add_argument("--datasets", nargs="*", default=["ml-latest-small", "amazon-office"])
    args = parser.parse_args()
    print("| process | peak RSS MB |\n|---|---|")
    print(f"| import torch | {peak_mb('torch'):.0f} |")
    print(f"| import clrec.experiment | {peak_mb('clrec.experiment'):.0f} |")
    for name in args.datasets:
        peak = peak_mb("clrec.experiment", name, args.data_root)
        print(f"| import clrec.experiment + load {name} | {peak:.0f} |")


if __name__ == "__main__":
    main()
