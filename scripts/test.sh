#!/usr/bin/env bash
# The test command: set up .venv (first run installs everything), then run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `-k simam`.
# With no arguments it also runs the registry-wide layer tests a second time under the JAX
# backend, in their own process (the backend is fixed when Keras is imported).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
python -m pytest "$@"
if [ "$#" -eq 0 ]; then
    echo "[test] the registry-wide layer tests under KERAS_BACKEND=jax" >&2
    KERAS_ATTN_TEST_BACKEND=jax python -m pytest -q tests/test_layers_common.py
fi
