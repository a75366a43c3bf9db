#!/usr/bin/env bash
# Sourced by scripts/search.sh and scripts/test.sh: makes .venv, installs the project into it
# (again only when pyproject.toml changed) and, where apt is available, the real Fashion-MNIST.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${KERAS_ATTN_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"

if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV" >&2
    "$PY" -m venv "$VENV"
fi
STAMP="$VENV/.keras-attn-installed"
WANT="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    echo "[setup] installing keras-attn and its dependencies into $VENV (first run: a few minutes)" >&2
    "$VENV/bin/python" -m pip install -q --upgrade pip >&2
    "$VENV/bin/python" -m pip install -q -e "$ROOT[dev]" >&2
    echo "$WANT" > "$STAMP"
fi

# The real Fashion-MNIST, offline: Debian's dataset-fashion-mnist (IDX .gz files).
FMNIST=/usr/share/datasets/fashion-mnist
if [ ! -f "$FMNIST/train-images-idx3-ubyte.gz" ] && command -v apt-get >/dev/null 2>&1; then
    SUDO=""
    if [ "$(id -u)" != 0 ]; then SUDO="$(command -v sudo || true)"; fi
    if [ "$(id -u)" = 0 ] || [ -n "$SUDO" ]; then
        echo "[setup] installing Debian package dataset-fashion-mnist" >&2
        { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq dataset-fashion-mnist; } >&2 \
            || echo "[setup] could not install dataset-fashion-mnist; pass --data-dir DIR with the four IDX files" >&2
    fi
fi
export PATH="$VENV/bin:$PATH"
# TensorFlow's oneDNN CPU kernels, also on CPUs where TensorFlow leaves them off by default (those
# without AVX-512, e.g. AMD EPYC): there they made a ResNet-20 train step 1.6x and a ResNet-50
# step 3.0x faster, and CBAM's 7x7 one-channel convolution 5x (benchmarks/README.md). Export
# TF_ENABLE_ONEDNN_OPTS=0 for TensorFlow's own kernels.
export TF_ENABLE_ONEDNN_OPTS="${TF_ENABLE_ONEDNN_OPTS:-1}"
# Quieter TensorFlow start-up; errors still print.
export TF_CPP_MIN_LOG_LEVEL="${TF_CPP_MIN_LOG_LEVEL:-3}"
