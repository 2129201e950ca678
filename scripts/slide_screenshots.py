"""Screenshot of napari with a whole slide (OME-Zarr, opened by napari-ome-zarr) and the Segment dock run on one
of its levels, at the size of this X display (README "Whole slides"):

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/slide_screenshots.py docs/slide_1920x1080.png

The slide is composed (slides.synthetic) from four smears of ../shared/data/chula-rbc-12-diseases/he (the synthetic
smear when that is absent) into a scratch folder; ``--level`` picks the level segmented (default: the dock's).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from screenshots import wait  # noqa: E402  (the same wait as the main screenshots)


def fields() -> list[np.ndarray]:
    from napari_reddino.images import read_image
    from napari_reddino.sample_data import synthetic_smear

    data = Path(os.environ.get("NAPARI_REDDINO_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))
    found = sorted((data / "chula-rbc-12-diseases" / "he").glob("*"))[:4]
    images = [read_image(p) for p in found]
    images = [im for im in images if im.shape == (960, 1280, 3)]
    if not images:
        print("slide_screenshots: no Chula disease smears found; using the synthetic smear", file=sys.stderr)
        images = [synthetic_smear(seed=s, shape=(960, 1280))[0] for s in range(4)]
    return images


def grab(window, out: str) -> None:
    from PIL import Image

    shot = window.grab().toImage()
    width, height = shot.width(), shot.height()
    rgba = np.frombuffer(shot.convertToFormat(shot.Format.Format_RGBA8888).constBits().asstring(
        width * height * 4), np.uint8).reshape(height, width, 4)
    Image.fromarray(rgba[..., :3]).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out, optimize=True)
    print(f"{out}: {width}x{height}, {Path(out).stat().st_size // 1024} KB")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--level", type=int, default=None)
    args = parser.parse_args()
    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from qtpy.QtWidgets import QApplication

    from napari_reddino.slides import synthetic

    path = synthetic.compose_slide(Path(tempfile.mkdtemp(prefix="reddino-slide-")) / "slide.zarr", fields(),
                                   (1920, 2560), pixel_size_um=0.1)
    viewer = napari.Viewer(title="napari-reddino", show=True)
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.setGeometry(window.screen().availableGeometry())  # maximised (no window manager under Xvfb)
    viewer.open(str(path), plugin="napari-ome-zarr")
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", "1. Segment cells")
    dock.image.value = next(c for c in dock.image.choices if getattr(c, "name", None) == "slide")
    if args.level is not None:
        dock.level.combo.value = args.level
    start = time.monotonic()
    dock.start()
    wait(app, lambda: dock.worker is None, timeout=900.0)
    print(f"segmented level {dock.level.value} ({dock.level.combo.current_choice}) in "
          f"{time.monotonic() - start:.0f} s: {dock.found.value}")
    for toast in window.findChildren(NapariQtNotification):  # transient pop-ups would cover the slide
        toast.close()
    viewer.reset_view()
    viewer.camera.zoom *= 2.5  # the middle of the slide: its cells with their outlines
    viewer.camera.center = tuple(np.mean(viewer.layers["slide: red"].extent.world, axis=0))
    for _ in range(100):
        app.processEvents()
        time.sleep(0.01)
    grab(window, args.out)
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
