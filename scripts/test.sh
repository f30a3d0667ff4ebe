#!/usr/bin/env bash
# The README's test command: set up from scratch if needed, lint, type-check the link layer, test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/apt-deps.sh
bash scripts/setup.sh dev
.venv/bin/python -m ruff check .
.venv/bin/python -m mypy link
.venv/bin/python -m pytest -q "$@"
