#!/usr/bin/env bash
# Set up a virtual environment with every extra and run the whole check suite:
# lint, format, types, and all tests (slow integration tests included).
# For the fast inner loop: .venv/bin/pytest -m "not slow"
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e ".[all,dev]"
.venv/bin/ruff check src tests bench
.venv/bin/ruff format --check src tests bench
.venv/bin/mypy
.venv/bin/pytest -n 2 "$@"
