"""A napari window opened from the command line (``run --view``/``--screenshot``, ``view``): the results put
into it as the docks put them, and its screenshot. The CLI reaches the GUI only through here (and
``session.show_session`` for a saved session)."""

from __future__ import annotations

from pathlib import Path


def show_result(result, out: Path, screenshot: bool) -> list[Path]:
    """``run --view``: the results in a new napari window (annotations saved in ``out``); with ``screenshot``
    the window is saved as ``out/screenshot.png`` and closed instead of shown."""
    import napari

    from napari_reddino._widgets.pipeline import add_result_layers

    viewer = napari.Viewer(title="napari-reddino", show=True)
    dock = add_result_layers(viewer, result, project_folder=out.resolve())
    if not screenshot:
        napari.run()
        return []
    written = save_screenshot(viewer, dock, out / "screenshot.png")
    viewer.close()
    return written


def save_screenshot(viewer, annotation_dock, path: Path, size=(1700, 1050)) -> list[Path]:
    """Screenshot of the whole napari window at ``size`` (width, height). Qt grabs the UMAP's embedded GL
    canvas as black, so that canvas is rendered on its own (also saved as ``screenshot_umap.png``) and
    pasted in its place."""
    from PIL import Image
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QApplication, QWidget

    window = viewer.window._qt_window
    window.resize(*size)
    for _ in range(30):
        QApplication.processEvents()
    for toast in window.findChildren(QWidget):  # transient pop-ups would cover the smear (napari's class is private)
        if type(toast).__name__ == "NapariQtNotification":
            toast.close()
    viewer.reset_view()
    QApplication.processEvents()
    full = viewer.screenshot(canvas_only=False, flash=False)
    written = [path]
    canvas = getattr(annotation_dock, "canvas", None)
    if canvas is not None:
        umap = canvas.qt_viewer.screenshot(flash=False)
        umap_path = path.with_name(path.stem + "_umap.png")
        Image.fromarray(umap).save(umap_path)
        written.append(umap_path)
        native = canvas.qt_viewer.canvas.native
        pos = native.mapTo(window, QPoint(0, 0))
        ratio = full.shape[1] / max(window.width(), 1)
        y, x = int(pos.y() * ratio), int(pos.x() * ratio)
        h, w = min(umap.shape[0], full.shape[0] - y), min(umap.shape[1], full.shape[1] - x)
        if h > 0 and w > 0:
            full[y:y + h, x:x + w] = umap[:h, :w]
    Image.fromarray(full).save(path)
    return written
