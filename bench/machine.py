"""What every benchmark table records about where it ran: the CPU's name and the commit.

Bench scripts run as ``python bench/NAME.py``, so this folder is on ``sys.path`` and they
import it as ``machine``.
"""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path


def cpu_name() -> str:
    """The CPU's model name from /proc/cpuinfo, else what the platform module says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def commit() -> str:
    """The short hash of the checkout the bench scripts live in ("unknown" outside git)."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parent,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def publish(section: str, append: Path | None, heading: str = "") -> None:
    """Print a benchmark's Markdown section and, with ``append``, add it to that file under
    ``heading`` (e.g. ``"## Serving load (bench/serve_load.py)"``, none by default)."""
    print()
    print(section)
    if append is not None:
        with append.open("a", encoding="utf-8") as handle:
            handle.write("\n" + (f"{heading}\n\n" if heading else "") + section)
        print(f"appended to {append}", file=sys.stderr)
