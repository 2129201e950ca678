#!/usr/bin/env bash
# Sets up (scripts/setup.sh), lints (ruff: errors only) and runs the whole test suite under a virtual X display.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_images.py -x`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export QT_QPA_PLATFORM=xcb NAPARI_REDDINO_OFFLINE=1 HF_HUB_OFFLINE=1 PYTHONHASHSEED=0
.venv/bin/ruff check --quiet .
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/python -m pytest "$@"
