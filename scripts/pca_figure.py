"""The PCA overlay before (1x, the model's own scale) and after (auto cell resolution), made by driving the
real docks in napari: segment a real Chula-RBC-12 smear and a TXL-PBC (PBC) field, run the PCA dock at 1x
and at auto, and take the window and the canvas each time.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python scripts/pca_figure.py [--size 1920x1080]
        [--out pca-shots] [--figure docs/pca_cell_resolution.png]

Reads ../shared/data (never copied). Writes the screenshots to --out and, with --figure, the Chula field's
image | 1x overlay | auto overlay side by side (the README's figure).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / ".." / "shared" / "data"


def pbc_field() -> Path:
    from napari_reddino.images import read_image

    return next(p for p in sorted((DATA / "txl-pbc" / "images").glob("*.jpg")) if read_image(p).shape[:2] == (363, 360))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", default="1920x1080")
    ap.add_argument("--out", default="pca-shots")
    ap.add_argument("--figure", default=None)
    ap.add_argument("--model", default="demo")
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import napari
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    from napari_reddino.images import read_image

    def pump(n=30):
        for _ in range(n):
            QApplication.processEvents()

    def finish(widget):
        widget.start()
        while widget.worker is not None:
            QApplication.processEvents()
            time.sleep(0.05)
        pump()

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(width, height)
    _, seg = viewer.window.add_plugin_dock_widget("napari-reddino", "1. Segment cells")
    _, pca = viewer.window.add_plugin_dock_widget("napari-reddino", "3. PCA overlay")
    pca.model_spec.value = args.model
    canvases = {}
    for tag, path in (("chula", DATA / "chula-rbc-12" / "images" / "1.jpg"), ("pbc", pbc_field())):
        for layer in list(viewer.layers):
            viewer.layers.remove(layer)
        viewer.add_image(read_image(path), name=tag, rgb=True)
        seg.image.value = viewer.layers[tag]
        finish(seg)
        for when, resolution in (("before", 1), ("after", 0)):
            pca.image.value = viewer.layers[tag]
            pca.resolution.value = resolution
            finish(pca)
            layer = viewer.layers[f"{tag} PCA"]
            print(f"{tag} {when}: grid {layer.data.shape[:2]}, enlarged {layer.metadata['reddino_pca']['factor']}")
            viewer.reset_view()
            pump()
            Image.fromarray(viewer.screenshot(canvas_only=False, flash=False)).save(out / f"{tag}_{when}_{args.size}.png")
            for name in (f"{tag} cells", f"{tag} cells objects"):  # the overlay alone, fully opaque
                viewer.layers[name].visible = False
            layer.opacity = 1.0
            pump()
            canvases[tag, when] = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
            Image.fromarray(canvases[tag, when]).save(out / f"{tag}_{when}_{args.size}_overlay.png")
            layer.opacity = 0.5
            for name in (f"{tag} cells", f"{tag} cells objects"):
                viewer.layers[name].visible = True
        if tag == "chula":
            layer.visible = False
            pump()
            canvases[tag, "image"] = viewer.screenshot(canvas_only=True, flash=False)[..., :3]
            layer.visible = True
    viewer.close()
    if args.figure:
        panels = [canvases["chula", k] for k in ("image", "before", "after")]
        shown = panels[1].sum(-1) > 0
        ys, xs = np.nonzero(shown | (panels[2].sum(-1) > 0))
        cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
        half_h, half_w = (ys.max() - ys.min()) // 4, (xs.max() - xs.min()) // 4  # the middle quarter, zoomed
        crops = [p[cy - half_h:cy + half_h, cx - half_w:cx + half_w] for p in panels]
        gap = np.full((crops[0].shape[0], 8, 3), 255, np.uint8)
        row = np.concatenate([crops[0], gap, crops[1], gap, crops[2]], axis=1)
        fig = Image.fromarray(row)
        fig = fig.resize((1200, round(fig.height * 1200 / fig.width)), Image.LANCZOS)
        fig.save(args.figure, optimize=True)
        print(f"wrote {args.figure} ({fig.width} x {fig.height})")


if __name__ == "__main__":
    main()
