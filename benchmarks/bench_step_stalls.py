"""The step docks' freezes in a few minutes (bench_gui_stalls.py's step part, without the annotation loop): per
action the longest event-loop gap, the GUI thread's CPU time, the display's slices and where the long gaps fell
(W: while the worker ran, D: during the display and its repaint), and full garbage collections on the GUI thread.

    OMP_NUM_THREADS=1 PYTHONPATH=TREE/src xvfb-run -a -s "-screen 0 1920x1080x24" \
        .venv/bin/python benchmarks/bench_step_stalls.py [--profile FILE] [--floor]

``PYTHONPATH`` picks the code measured (another checkout's ``src`` to compare; the first line printed says which).
Smears: a Chula-RBC-12 field (640x480), a disease smear (1280x960), the 2x2 disease mosaic (2560x1920).
``--floor``: napari's own cost of the layers of a 2560x1920 smear's display, added with no plugin code.
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import threading
import time
from pathlib import Path

import bench_gui_stalls as B

sys.path.remove(str(B.HERE.parent / "src"))  # bench_gui_stalls put this checkout first: PYTHONPATH decides


class Watch(B.Stopwatch):
    """B.Stopwatch with the GUI thread's CPU time, the display's slices, long gaps' places and full collections."""

    def __init__(self, profile: bool):
        self.slices, self.big, self.display_from, self.full_gc = [], [], None, []
        super().__init__(profile)
        gc.callbacks.append(self._gc)
        self._gc_start = 0.0

    def _gc(self, phase, info):
        if threading.current_thread() is threading.main_thread() and info["generation"] == 2:
            if phase == "start":
                self._gc_start = time.perf_counter()
            else:
                self.full_gc.append(time.perf_counter() - self._gc_start)

    def _tick(self):
        now = time.perf_counter()
        if now - self.last > 0.3:
            self.big.append((self.last, now - self.last))
        super()._tick()

    def measure(self, name, action, done=lambda: True, limit=900.0, settle=0.3):
        self.pump(0.1)
        self.slices, self.big, self.display_from, self.full_gc = [], [], None, []
        cpu = time.thread_time()
        out = super().measure(name, action, done, limit, settle)
        cpu = time.thread_time() - cpu
        where = " ".join(f"{1000 * g:.0f}{'W' if self.display_from is None or t < self.display_from else 'D'}"
                         for t, g in self.big)
        print(f"    GUI-thread CPU {cpu:.2f} s; slices ms [{' '.join(f'{1000 * s:.0f}' for s in self.slices)}]; "
              f"gaps >0.3 s [{where}]; full collections ms {[round(1000 * g) for g in self.full_gc]}", flush=True)
        self.rows[-1].update(cpu_s=cpu)
        return out


def timed_show(sw: Watch, dock):
    """Each display slice's time (``_on_returned`` runs the first, ``_next_slice`` the others)."""
    for attr in ("_on_returned", "_next_slice"):
        original = getattr(type(dock), attr)

        def timed(*args, original=original, attr=attr):
            t0 = time.perf_counter()
            if sw.display_from is None:
                sw.display_from = t0
            try:
                return original(dock, *args)
            finally:
                sw.show_s += time.perf_counter() - t0
                if attr == "_next_slice" or not sw.slices:
                    sw.slices.append(time.perf_counter() - t0)

        setattr(dock, attr, timed)
    return dock


def floor() -> None:
    """napari's own cost, no plugin code: the layers a 2560x1920 smear's display makes, added to a bare viewer
    (twice: the second with the first's layers under it), each call's GUI-thread CPU and wall, then the repaint."""
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_reddino._widgets.smear_link import cells_look
    from napari_reddino.progress import run
    from napari_reddino.segment import iter_segment_cells
    from napari_reddino.style import object_marks, with_label_index

    image = B.mosaic([B.disease(f, i) for f, i in B.MOSAIC], 2)
    labels, table = run(iter_segment_cells(image, "learned", False, diameter="auto"))
    labels = labels.astype("uint16")
    features = with_label_index(table)
    look, marks = cells_look(features, dtype=labels.dtype), object_marks(features)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    sw = B.Stopwatch(False)
    sw.pump(1.0)

    def step(name, fn):
        sw.pump(0.3)
        t0, c0 = time.perf_counter(), time.thread_time()
        out = fn()
        wall, cpu = time.perf_counter() - t0, time.thread_time() - c0
        QApplication.processEvents()  # the repaint after it
        print(f"{name:32s} call {1000 * wall:5.0f} ms (GUI-thread CPU {1000 * cpu:4.0f}); with the repaint "
              f"{1000 * (time.perf_counter() - t0):5.0f} ms (CPU {1000 * (time.thread_time() - c0):4.0f})", flush=True)
        return out

    for rep in range(2):
        step("add_image 2560x1920 RGB", lambda rep=rep: viewer.add_image(image, name=f"image {rep}", rgb=True))
        cells = step("add_labels, hidden", lambda rep=rep: viewer.add_labels(
            labels, name=f"cells {rep}", visible=False, features=features, colormap=look["colormap"]))
        step("contour, then shown", lambda cells=cells: (setattr(cells, "contour", look["contour"]),
                                                         setattr(cells, "visible", True)))
        step("add_points, named rings", lambda rep=rep: viewer.add_points(
            marks[["y", "x"]].to_numpy(), name=f"rings {rep}", features=marks[["name"]], face_color="transparent",
            size=marks["size"].to_numpy(), border_color=marks["color"].tolist(),
            text={"string": "{name}", "size": 10, "anchor": "upper_left"}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", metavar="FILE", help="the GUI thread's profile of each action over 0.5 s")
    parser.add_argument("--floor", action="store_true", help="napari's own cost of a smear's layers, no plugin")
    args = parser.parse_args()
    if args.floor:
        return floor()
    import napari

    import napari_reddino
    import napari_reddino.annotate as annotate

    print("code:", napari_reddino.__file__, flush=True)
    annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp())  # never the user's home
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    sw = Watch(bool(args.profile))
    sw.pump(1.0)

    def open_dock(name):
        return timed_show(sw, sw.measure(f"open dock {name!r}",
                                         lambda: viewer.window.add_plugin_dock_widget("napari-reddino", name)[1]))

    seg, pca = open_dock("1. Segment cells"), open_dock("3. PCA overlay")
    smears = [("chula 1", B.chula(1)), ("thalassemia 0", B.disease("thalassemia", 0)),
              ("mosaic 2x2", B.mosaic([B.disease(f, i) for f, i in B.MOSAIC], 2))]
    for name, image in smears:
        sw.measure(f"open image {name}", lambda image=image, name=name: viewer.add_image(image, name=name, rgb=True))
        B.run_step(sw, f"segment, threshold: {name}", seg, image=viewer.layers[name], backend="threshold")
        B.run_step(sw, f"segment, learned: {name}", seg, image=viewer.layers[name], backend="learned")
        if name != "mosaic 2x2":
            B.run_step(sw, f"PCA (demo): {name}", pca, image=viewer.layers[name], model_spec="demo")
    B.run_step(sw, "re-run segment, learned: mosaic 2x2", seg, image=viewer.layers["mosaic 2x2"], backend="learned")
    pipe = open_dock("Run the whole pipeline")
    name = "thalassemia 2"
    sw.measure(f"open image {name}", lambda: viewer.add_image(B.disease("thalassemia", 2), name=name, rgb=True))
    B.run_step(sw, f"pipeline: {name}", pipe, image=viewer.layers[name], model="demo")
    B.run_step(sw, f"re-run pipeline: {name}", pipe, image=viewer.layers[name], model="demo")
    if args.profile:
        Path(args.profile).write_text("\n\n".join(sw.profiles))


if __name__ == "__main__":
    main()
