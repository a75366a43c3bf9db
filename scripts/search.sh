#!/usr/bin/env bash
# The main job: set up .venv (first run installs everything), then run the default architecture
# search on the real Fashion-MNIST. Extra arguments go to keras-attn-search (see --help).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/bootstrap.sh"
cd "$ROOT"
exec keras-attn-search "$@"
