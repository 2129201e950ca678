"""The verification gallery with 5,000 cells: filling it, scrolling it top to bottom and back, selecting,
and a key press, each with the longest gap of napari's event loop; writes results_gallery.md.

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_gallery.py [--plain]

``--plain``: the thumbnails and scroll bar as plain widgets, as before they had native windows of their own
(``gallery_view.NATIVE``); its table is appended to the file, to compare with a run without it just before.

Five synthetic 2000x2000 smears (``sample_data.synthetic_smear``, seeds 0-4: about 1,000 cells each, their
true masks), random 384-d features and random map coordinates (no model, no UMAP: the gallery is what is
measured), and a prediction with a confidence for every cell set by hand, as *Train & predict* would.
Gaps: the 10 ms timer of ``bench_gui_stalls.Stopwatch``. Scrolling: the scroll bar moved by a tenth of the
gallery's height every 16 ms (a fast drag of the scroll bar, 60 frames a second), with the event loop
running between moves, so every page is painted from crops made at that moment (the cache holds 1,500).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE))
RESULTS = HERE / "results_gallery.md"
SMEARS = 5
SHAPE = (2000, 2000)


def make_smears(viewer) -> list[str]:
    from napari_reddino.cells import cell_table
    from napari_reddino.sample_data import synthetic_smear
    from napari_reddino.style import cells_layer_name, with_label_index

    names = []
    rng = np.random.default_rng(0)
    for seed in range(SMEARS):
        image, labels, _ = synthetic_smear(seed=seed, shape=SHAPE)
        name = f"smear {seed}"
        viewer.add_image(image, name=name, rgb=True, visible=seed == 0)
        table = cell_table(labels, image)
        layer = viewer.add_labels(labels.astype(np.uint16), name=cells_layer_name(name),
                                  features=with_label_index(table), visible=seed == 0)
        layer.metadata["reddino"] = {"embeddings": rng.normal(size=(len(table), 384)).astype(np.float32),
                                     "labels": table["label"].to_numpy(), "model": "bench", "image": name}
        names.append(layer.name)
    return names


def scroll(view, step_frac: float, up: bool = False) -> int:
    """Move the scroll bar through the whole gallery; returns the number of moves."""
    from qtpy.QtWidgets import QApplication

    bar = view.verticalScrollBar()
    step = max(1, int(step_frac * view.viewport().height()))
    values = list(range(0, bar.maximum() + step, step))
    for v in (values[::-1] if up else values):
        t = time.perf_counter()
        bar.setValue(min(v, bar.maximum()))
        QApplication.processEvents()
        while time.perf_counter() - t < 0.016:
            QApplication.processEvents()
            time.sleep(0.002)
    return len(values)


def settle(view, seconds: float = 1.0, limit: float = 60.0) -> None:
    """Run the event loop until the gallery's (batched) layout is done: its scroll range unchanged for
    ``seconds``."""
    from qtpy.QtWidgets import QApplication

    t0 = last_change = time.perf_counter()
    last = -1
    while time.perf_counter() - last_change < seconds and time.perf_counter() - t0 < limit:
        QApplication.processEvents()
        time.sleep(0.005)
        if view.verticalScrollBar().maximum() != last:
            last, last_change = view.verticalScrollBar().maximum(), time.perf_counter()


def count_gallery_time(gallery, sw) -> None:
    """Add the seconds the gallery's own code takes on the main thread to the current row's ``show_s``
    (outermost calls only)."""
    depth = {"n": 0}
    for name in ("_on_state", "_refreshed", "resort", "_on_points_selection", "_on_view_selection"):
        original = getattr(gallery, name)

        def timed(*args, original=original):
            depth["n"] += 1
            t0 = time.perf_counter()
            try:
                return original(*args)
            finally:
                depth["n"] -= 1
                if not depth["n"]:
                    sw.show_s += time.perf_counter() - t0

        setattr(gallery, name, timed)


def repaint_ms(view) -> str:
    """A synchronous repaint of the docked gallery's thumbnails, then of its scroll bar (paint and flush)."""
    out = []
    for widget in (view.viewport(), view.verticalScrollBar()):
        t = time.perf_counter()
        for _ in range(20):
            widget.repaint()
        out.append(f"{1000 * (time.perf_counter() - t) / 20:.1f}")
    return " and ".join(out)


def main(plain: bool = False) -> None:
    import napari
    import napari_reddino.annotate as annotate
    from bench_gui_stalls import Stopwatch
    from qtpy.QtCore import QItemSelectionModel
    from napari_reddino._widgets import gallery_view as gallery_module

    os.environ.setdefault("NAPARI_REDDINO_OFFLINE", "1")
    gallery_module.NATIVE = not plain
    annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp())  # never the user's home
    load = os.getloadavg()
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    sw = Stopwatch(False)
    names = make_smears(viewer)
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", "4. Embedding & annotation")
    dock.project.value = tempfile.mkdtemp()
    sw.pump(1.0)
    _, gallery = sw.measure("open the gallery dock",
                            lambda: viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery"))
    count_gallery_time(gallery, sw)
    n = sum(len(viewer.layers[nm].metadata["reddino"]["labels"]) for nm in names)
    Y = np.random.default_rng(1).normal(size=(n, 2)).astype(np.float32)
    sw.measure(f"show a map of {n} cells (the gallery fills)", lambda: dock.show_embedding(names, Y))
    rng = np.random.default_rng(2)
    classes = np.array([c.name for c in dock.classes[:6]], dtype=object)
    pred, conf = classes[rng.integers(0, 6, n)], rng.uniform(0.3, 1.0, n).astype(np.float32)
    sw.measure("predictions set (the gallery regroups and sorts)", lambda: dock.state.set_predictions(pred, conf))
    gallery.parentWidget().raise_()
    settle(gallery.view)
    repaint = repaint_ms(gallery.view)
    made = {"n": 0}
    original = gallery_module.CellModel.thumbnail

    def counted(self, row):
        if row not in self._cache:
            made["n"] += 1
        return original(self, row)

    gallery_module.CellModel.thumbnail = counted
    view = gallery.view
    per_row = max(1, view.viewport().width() // (gallery_module.THUMB + 2 * gallery_module.PAD + 2))
    rows_seen = view.viewport().height() / (gallery_module.THUMB + 2 * gallery_module.PAD + 2)
    moves = {}
    passes = (("scroll top to bottom", 0.1, False), ("scroll bottom to top", 0.1, True),
              ("scroll top to bottom, a page per frame", 1.0, False),
              ("floating gallery: scroll top to bottom", 0.1, False))
    for label, frac, up in passes:
        if label.startswith("floating"):
            gallery.parentWidget().setFloating(True)
            gallery.parentWidget().resize(460, 900)
            settle(view)
        made["n"] = 0
        moves[label] = sw.measure(label, lambda frac=frac, up=up: scroll(view, frac, up))
        sw.rows[-1]["thumbnails_made"] = made["n"]
        sw.rows[-1]["moves"] = moves[label]
    gallery.parentWidget().setFloating(False)
    view.verticalScrollBar().setValue(0)
    settle(view)
    sw.measure("click a thumbnail (selected on the map and the smear)",
               lambda: view.selectionModel().select(gallery.model.index(4),
                                                    QItemSelectionModel.SelectionFlag.ClearAndSelect))
    lasso = np.flatnonzero(Y[:, 0] > 0.5)
    sw.measure(f"select {len(lasso)} cells on the map (the gallery selects them)",
               lambda: dock.canvas.select(lasso))
    view.selectionModel().select(gallery.model.index(4), QItemSelectionModel.SelectionFlag.ClearAndSelect)
    sw.pump(0.5)
    sw.measure("key 4 on one cell (assign, save, redraw its smear)", lambda: gallery.assign(3))
    sw.measure("key V on one cell (verify, save)", lambda: gallery.verify())
    sw.measure("Next uncertain", lambda: gallery.next_uncertain())
    info = {"cells": n, "load": f"{load[0]:.1f} (1 min), {load[1]:.1f} (5 min)",
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "viewport": f"{view.viewport().width()}x{view.viewport().height()} px, {per_row} thumbnails a row, "
                        f"{rows_seen:.1f} rows in view", "repaint": repaint,
            "native": "plain widgets (`--plain`)" if plain else "native windows of their own"}
    write(sw.rows, info, append=plain)
    dock.close_canvas()
    viewer.close()


def write(rows, info, append: bool = False) -> None:
    head = (["", "## Before: plain widgets (`--plain`)"] if append else
            ["# The verification gallery with 5,000 cells: longest event-loop gap per action"])
    lines = head + ["", "Command: `OMP_NUM_THREADS=1 xvfb-run -a -s \"-screen 0 1920x1080x24\" .venv/bin/python "
             f"benchmarks/bench_gallery.py{' --plain' if append else ''}`", "",
             f"{info['when']}, load average {info['load']} at the start, software OpenGL under Xvfb, "
             f"napari at 1920x1080; {info['cells']} cells on {SMEARS} synthetic {SHAPE[1]}x{SHAPE[0]} smears; "
             f"gallery viewport {info['viewport']}; thumbnails and scroll bar: {info['native']}, one repaint "
             f"of each docked: {info['repaint']} ms.", "",
             "*gallery s*: the part of the wall time spent in the gallery's own code (filling, sorting, "
             "selecting; painting not included).", "",
             "| action | wall s | gallery s | longest gap ms | gaps >0.1 s | >0.5 s | scroll moves | thumbnails made |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['action']} | {r['wall_s']:.2f} | {r['show_s']:.2f} | {r['gap_ms']:.0f} | {r['over_100ms']} | "
                     f"{r['over_500ms']} | {r.get('moves', '')} | {r.get('thumbnails_made', '')} |")
    text = "\n".join(lines) + "\n"
    RESULTS.write_text(RESULTS.read_text() + text if append else text)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main(plain="--plain" in sys.argv[1:])
