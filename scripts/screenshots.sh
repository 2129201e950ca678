#!/usr/bin/env bash
# Sets up (scripts/setup.sh) and re-takes the README's screenshots of napari with the plugin's docks, at a
# 1920x1080 screen and at a 1366x768 laptop's (docs/screenshot_1920x1080.png, docs/screenshot_1366x768.png):
# the whole pipeline on the real Chula-RBC-12 sample smear, a few cells annotated, under a virtual display.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# The sample smear comes from ../shared/data when it is beside the checkout (else the synthetic smear).
if [ -z "${NAPARI_REDDINO_DATA:-}" ] && [ -d ../shared/data/chula-rbc-12 ]; then
  export NAPARI_REDDINO_DATA="$(cd ../shared/data && pwd)"
fi
export QT_QPA_PLATFORM=xcb NAPARI_REDDINO_OFFLINE=1 HF_HUB_OFFLINE=1
for size in 1920x1080 1366x768; do
  xvfb-run -a -s "-screen 0 ${size}x24" .venv/bin/python scripts/screenshots.py "docs/screenshot_${size}.png"
done
