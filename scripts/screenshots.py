"""Take the README's screenshot of napari at the size of this X display (run by scripts/screenshots.sh under
xvfb-run at 1920x1080 and 1366x768).

As a user would: the real Chula-RBC-12 sample smear (NAPARI_REDDINO_DATA; the synthetic smear when it is not
there), the "Run the whole pipeline" dock with the shipped demo model, a few cells annotated with the class a
haematologist gave them (the Chula labels; the synthetic smear's own ground truth), the classifier trained,
then napari's whole window grabbed.

    python scripts/screenshots.py docs/screenshot_1920x1080.png
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CELLS_PER_CLASS = 6  # annotated from the labels, at most, per class


def labelled_smear():
    """(name, image, [(y, x, class name)]) of the sample smear with its labelled cells."""
    from napari_reddino.images import InputError
    from napari_reddino.chula import CLASSES as CHULA_CLASSES
    from napari_reddino.chula import smear as chula_smear
    from napari_reddino.sample_data import synthetic_smear

    try:
        image, centres, class_ids = chula_smear(1)
        marks = [(y, x, CHULA_CLASSES[c]) for (y, x), c in zip(centres, class_ids) if 0 <= c < len(CHULA_CLASSES)]
        return "chula-rbc-12 1", image, marks
    except InputError as exc:
        print(f"screenshots: {exc}; using the synthetic smear instead", file=sys.stderr)
    from scipy import ndimage

    image, truth, kinds = synthetic_smear(seed=0)
    labels = sorted(kinds)
    centres = ndimage.center_of_mass(truth > 0, truth, labels)
    return "synthetic smear", image, [(y, x, kinds[k]) for (y, x), k in zip(centres, labels)]


def wait(app, until, timeout=600.0):
    start = time.monotonic()
    while not until():
        if time.monotonic() - start > timeout:
            raise TimeoutError("the pipeline did not finish")
        app.processEvents()
        time.sleep(0.02)


def annotate_labelled(ann, cells_layer, marks) -> int:
    """Give up to CELLS_PER_CLASS cells of each labelled class that class; returns how many were given."""
    known = {c.name for c in ann.classes}
    points = ann.canvas.points.features
    row_of = {int(label): i for i, label in enumerate(points["label"])}
    chosen: dict[str, list[int]] = {}
    for y, x, name in marks:
        label = int(cells_layer.data[int(round(y)), int(round(x))])
        rows = chosen.setdefault(name, [])
        if name in known and label in row_of and len(rows) < CELLS_PER_CLASS and row_of[label] not in rows:
            rows.append(row_of[label])
    given = 0
    for name, rows in chosen.items():
        if rows:
            ann.canvas.select(rows)
            given += ann.assign(name)
    ann.canvas.select([])
    return given


def layout_figures(viewer, ann) -> str:
    """What the window gives each part, in screen pixels (the README's layout figures)."""
    def size(widget):
        return f"{widget.width()}x{widget.height()}"

    classes, report = ann.panel.class_list, ann.panel.report
    shown = classes.viewport().height() / max(classes.sizeHintForRow(0), 1)
    report_rows = report.viewport().height() / max(report.verticalHeader().defaultSectionSize(), 1)
    return (f"smear canvas {size(viewer.window._qt_viewer.canvas.native)}, UMAP canvas "
            f"{size(ann.canvas.qt_viewer.canvas.native)}, RedDino panel {size(ann)}, classes shown "
            f"{min(shown, classes.count()):.1f} of {classes.count()}, report rows shown {report_rows:.1f}")


def main(out: str) -> int:
    import napari
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    from PIL import Image
    from qtpy.QtWidgets import QApplication

    import napari_reddino.annotate
    from napari_reddino.style import cells_layer_name

    # annotations of this run go to a scratch folder, never into the user's own
    napari_reddino.annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp(prefix="reddino-screenshots-"))
    name, image, marks = labelled_smear()
    viewer = napari.Viewer(title="napari-reddino", show=True)
    app = QApplication.instance()
    window = viewer.window._qt_window
    window.setGeometry(window.screen().availableGeometry())  # maximised (no window manager under Xvfb)
    viewer.add_image(image, name=name, rgb=True)
    _, pipeline = viewer.window.add_plugin_dock_widget("napari-reddino", "Run the whole pipeline")
    pipeline.model.value = "demo"
    pipeline.start()
    wait(app, lambda: pipeline.worker is None)
    ann = next(d for d in viewer.window.dock_widgets.values() if hasattr(d, "show_embedding"))
    given = annotate_labelled(ann, viewer.layers[cells_layer_name(name)], marks)
    if len({c for c in ann.state.class_column() if c}) >= 2:
        ann.train("logreg")
    for _ in range(50):
        app.processEvents()
    for toast in window.findChildren(NapariQtNotification):  # transient pop-ups would cover the smear
        toast.close()
    viewer.reset_view()
    ann.canvas.frame_points()
    for _ in range(50):
        app.processEvents()
        time.sleep(0.01)
    shot = window.grab().toImage()
    width, height = shot.width(), shot.height()
    rgba = np.frombuffer(shot.convertToFormat(shot.Format.Format_RGBA8888).constBits().asstring(
        width * height * 4), np.uint8).reshape(height, width, 4)
    # 256 colours: a quarter of the size; octree keeps the class colours of the few swatches (median cut
    # merged them into the smear's pinks)
    Image.fromarray(rgba[..., :3]).quantize(256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(
        out, optimize=True)
    print(f"{out}: {width}x{height}, {Path(out).stat().st_size // 1024} KB; {given} cells annotated on {name}")
    print("  " + layout_figures(viewer, ann))
    viewer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
