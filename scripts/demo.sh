#!/usr/bin/env bash
# The README's demo command: set up the cloud extra and run the demo on the embedded defaults.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh cloud
.venv/bin/tokencast demo --out "${1:-demo_out}"
