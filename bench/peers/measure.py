"""Run a command and record its wall time and peak memory (RSS) beside its output.

    python bench/peers/measure.py OUT.json -- COMMAND [ARGS...]

Every model of the peer benchmark, clrec's and the peers', runs as its own process under this
wrapper, so peak memory is measured the same way for all (the largest resident set of the
process tree, from ``getrusage(RUSAGE_CHILDREN)``). Uses the standard library only, so any of
the benchmark's virtual environments can run it. Exits with the command's status.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main() -> int:
    if len(sys.argv) < 4 or sys.argv[2] != "--":
        print(__doc__, file=sys.stderr)
        return 2
    out = Path(sys.argv[1])
    command = sys.argv[3:]
    started = time.perf_counter()
    status = subprocess.call(command)
    wall = time.perf_counter() - started
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # kilobytes on Linux
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "command": command,
        "status": status,
        "wall_seconds": wall,
        "peak_rss_mb": peak_kb / 1024,
    }
    out.write_text(json.dumps(record, indent=2) + "\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
