#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and runs the main job: the whole pipeline on a sample smear.
# With a display it opens napari with the layers; without one it writes the result layers and a screenshot
# of the real napari window (taken under a virtual display) into the output folder it names.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
OUT=${1:-reddino-output}
# The sample smear comes from ../shared/data when it is beside the checkout (no download needed).
if [ -z "${NAPARI_REDDINO_DATA:-}" ] && [ -d ../shared/data/chula-rbc-12 ]; then
  export NAPARI_REDDINO_DATA="$(cd ../shared/data && pwd)"
fi
if [ -n "${DISPLAY:-}" ]; then
  exec .venv/bin/napari-reddino run --sample --out "$OUT" --view
fi
export QT_QPA_PLATFORM=xcb
exec xvfb-run -a -s "-screen 0 1600x1000x24" .venv/bin/napari-reddino run --sample --out "$OUT" --screenshot
