#!/usr/bin/env bash
# Sets up everything napari-reddino needs on a fresh machine: the system libraries napari's window needs
# (Xvfb, xauth, xcb, GL) and a virtual environment .venv with the plugin, the training package and the
# test tools. Safe to run again: it only installs what is missing or changed.
set -euo pipefail
cd "$(dirname "$0")/.."

SYSTEM_PACKAGES="xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxcb-image0 libxcb-render-util0 \
libxcb-randr0 libxcb-shape0 libxcb-xfixes0 libxcb-xkb1 libxkbcommon-x11-0 libxcb-cursor0 libgl1 libegl1 \
libglib2.0-0 libfontconfig1 libdbus-1-3"

missing=""
if command -v dpkg-query >/dev/null 2>&1; then
  for p in $SYSTEM_PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
  done
elif ! command -v xvfb-run >/dev/null 2>&1; then
  missing=" $SYSTEM_PACKAGES"
fi
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing system packages:$missing"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    echo "setup: missing system packages. Install them with:" >&2
    echo "  sudo apt-get update && sudo apt-get install -y$missing" >&2
    exit 1
  fi
fi

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
# Reinstall only when the project's dependency files change.
stamp=.venv/.napari-reddino-installed
want=$(cat pyproject.toml training/pyproject.toml requirements/constraints.txt | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "setup: installing napari-reddino, reddino-train and test tools into .venv (first time: a few minutes)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch/torchvision first, as the pinned pair (see requirements/constraints.txt)
  .venv/bin/python -m pip install -q -c requirements/constraints.txt torch torchvision
  .venv/bin/python -m pip install -q -c requirements/constraints.txt -e ".[gui,test]" -e ./training
  echo "$want" > "$stamp"
fi
# The pinned torch is a CUDA build that brings triton. On a machine without an NVIDIA GPU, napari's software
# OpenGL (Mesa llvmpipe) and triton's own LLVM cannot live in one process: importing triton after a napari
# window exists segfaults. CPU torch does not need triton (inductor's CPU backend is C++), so remove it there.
if ! command -v nvidia-smi >/dev/null 2>&1 && [ -d .venv/lib/python*/site-packages/triton ]; then
  echo "setup: no NVIDIA GPU: removing triton (conflicts with software OpenGL; not used on CPU)"
  .venv/bin/python -m pip uninstall -y -q triton
fi
