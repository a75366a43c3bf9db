#!/usr/bin/env bash
# The test command: set up .venv (first run installs everything), then run pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m slow` or `-k simam`.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec python -m pytest "$@"
