#!/usr/bin/env bash
# Create .venv and install tokencast with the given extras (default: dev).
#   bash scripts/setup.sh            # everything for tests
#   bash scripts/setup.sh cloud      # what the demo needs
# Torch is installed first and pinned so pip never pulls a multi-GB CUDA build by accident on
# machines that keep a CPU wheel locally; elsewhere pick the build you want before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="${1:-dev}"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  .venv/bin/python -m pip install -q "torch==${TOKENCAST_TORCH_VERSION:-2.13.0}"
fi
.venv/bin/python -m pip install -q -e ".[${extras}]"
case ",${extras}," in
  *,dev,*|*,bench,*) .venv/bin/python -m pip install -q --no-deps "piq==0.8.0" ;;
esac
echo "tokencast installed in .venv with extras [${extras}]"
