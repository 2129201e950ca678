"""GUI stalls over every step a user runs: the longest gap of napari's event loop per action, on real smears;
writes results_gui_stalls.md.

    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_gui_stalls.py \
        [--label after] [--profile FILE] [--only annotation]

A ``QTimer`` ticks every 10 ms on the main thread; an action's longest gap is the longest time between two
ticks from the click to the end of its work and the repaint after it (the window frozen that long). Each
action is driven as a user drives it: the dock opened from the Plugins menu's entry, its widgets set, its
button clicked (the lasso and box as mouse drags over the UMAP canvas). Smears: a Chula-RBC-12 field
(640x480), a disease smear (1280x960), a 2x2 mosaic of disease smears made in memory (2560x1920); the
UMAP pools the cells of all of them and of four more disease smears. ``--label`` names the column of the
results table this run fills (``before``: the code before the fixes; ``after``); ``--profile`` writes the
main thread's profile of every action with a gap over 0.5 s to FILE (slower: its numbers are not put in
the table); ``--where FILE`` the functions on the main thread's stack during each gap over 0.5 s (sampled). ``--only annotation``: the smears segmented (learned) and embedded, then the annotation loop
only (no threshold segmentation, PCA, re-runs or pipeline); its rows go to a table of their own.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", HERE.parent.parent / "shared" / "data"))
DISEASES = DATA / "chula-rbc-12-diseases"
CHULA = DATA / "chula-rbc-12" / "images" / "1.jpg"
CHULA_MOSAIC = [2, 3, 5, 6, 7, 9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22]  # 4x4 fields: ~2000 cells
MOSAIC = [("thalassemia", 3), ("megaloblastic-anemia", 0), ("he", 0), ("iron-deficiency-anemia", 0)]
POOLED = [("megaloblastic-anemia", 1), ("thalassemia", 1), ("he", 1), ("iron-deficiency-anemia", 1)]  # more cells for the UMAP
SINGLE = ("thalassemia", 2)
RESULTS = HERE / "results_gui_stalls.md"
RAW = HERE / "results_gui_stalls.json"


def disease(folder: str, i: int) -> np.ndarray:
    from napari_reddino.images import read_image

    return read_image(sorted((DISEASES / folder).iterdir())[i])


def mosaic(tiles: list[np.ndarray], n: int) -> np.ndarray:
    h, w = tiles[0].shape[:2]
    tiles = [t[:h, :w] for t in tiles]
    return np.vstack([np.hstack(tiles[r * n:(r + 1) * n]) for r in range(n)])


def chula(i: int) -> np.ndarray:
    from napari_reddino.images import read_image

    return read_image(CHULA.parent / f"{i}.jpg")


class Stopwatch:
    """Event-loop gaps measured by a 10 ms timer; one row per action. ``where``: sample the main thread's stack
    during stalls (``stall_sampler``) and keep, for each gap over 0.5 s, where it was."""

    def __init__(self, profile: bool, where: bool = False):
        from qtpy.QtCore import QTimer

        self.rows, self.gaps, self.last, self.show_s = [], [], time.perf_counter(), 0.0
        self.profile, self.profiles = profile, []
        self.tick_at = [self.last]
        self.sampler = None
        if where:
            from stall_sampler import StallSampler

            self.sampler = StallSampler(self.tick_at)
        self.timer = QTimer()
        self.timer.timeout.connect(self._tick)
        self.timer.start(10)

    def _tick(self):
        now = time.perf_counter()
        self.gaps.append(now - self.last)
        if self.sampler is not None and now - self.last > 0.5:
            self.profiles.append(f"- gap of {1000 * (now - self.last):.0f} ms\n"
                                 f"{self.sampler.report(self.last, now)}")
        self.last = self.tick_at[0] = now

    def pump(self, seconds: float):
        from qtpy.QtWidgets import QApplication

        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.002)

    def measure(self, name: str, action, done=lambda: True, limit: float = 900.0, settle: float = 0.3):
        """Run ``action()`` (a click), let the event loop run until ``done()``, then ``settle`` s more (the
        repaint); record wall time (click to done) and the gaps."""
        from qtpy.QtWidgets import QApplication

        self.pump(0.1)
        prof = cProfile.Profile() if self.profile else None
        self.gaps, self.last, self.show_s = [], time.perf_counter(), 0.0
        self.tick_at[0] = self.last
        if self.sampler is not None:
            self.profiles.append(f"## {name}")
        t0, cpu0 = time.perf_counter(), time.thread_time()  # this (the main) thread's CPU, not the workers'
        if prof:
            prof.enable()
        out = action()
        while not done() and time.perf_counter() - t0 < limit:
            QApplication.processEvents()
            time.sleep(0.002)
        wall = time.perf_counter() - t0
        end = time.perf_counter() + settle
        while time.perf_counter() < end:
            QApplication.processEvents()
            time.sleep(0.002)
        if prof:
            prof.disable()
        gaps = np.asarray(self.gaps + [time.perf_counter() - self.last])
        row = {"action": name, "wall_s": wall, "show_s": self.show_s, "gap_ms": 1000 * gaps.max(), "over_100ms": int((gaps > 0.1).sum()),
               "over_500ms": int((gaps > 0.5).sum()), "cpu_s": time.thread_time() - cpu0}
        self.rows.append(row)
        print(f"{name:60s} {wall:7.2f} s  show {self.show_s:5.2f} s  main CPU {row['cpu_s']:5.2f} s  "
              f"longest gap {row['gap_ms']:6.0f} ms  "
              f">0.1 s: {row['over_100ms']:3d}  >0.5 s: {row['over_500ms']}", flush=True)
        if prof and row["gap_ms"] > 500:
            text = io.StringIO()
            pstats.Stats(prof, stream=text).sort_stats("cumulative").print_stats(45)
            self.profiles.append(f"## {name}: longest gap {row['gap_ms']:.0f} ms\n\n{text.getvalue()}")
        return out


def timed_show(sw, dock):
    """Count the seconds the dock's result display takes on the main thread into the current row (all its
    slices, where ``show`` runs in several turns of the event loop)."""
    for attr in ("_on_returned", "_next_slice"):
        original = getattr(type(dock), attr, None)
        if original is None:  # the code before displays ran in slices
            continue

        def timed(*args, original=original):
            t0 = time.perf_counter()
            try:
                return original(dock, *args)
            finally:
                sw.show_s += time.perf_counter() - t0

        setattr(dock, attr, timed)  # the worker and the slices' timer call the instance's attribute
    return dock


def run_step(sw, name, dock, **values):
    """Set the dock's widgets to ``values`` and press its Run button; measured until the step is shown."""
    for key, value in values.items():
        getattr(dock, key).value = value
    sw.measure(name, lambda: dock.run_button.native.click(), lambda: dock.worker is None)


def drag(canvas, path, shift=False):
    """A mouse drag over the UMAP canvas along ``path`` (world (row, col)), event by event as vispy sends
    them, with the event loop running between moves (a real hand moves every ~10 ms)."""
    from qtpy.QtWidgets import QApplication

    ev = SimpleNamespace(type="mouse_press", button=1, modifiers=["Shift"] if shift else [],
                         position=tuple(path[0]), pos=np.asarray(path[0]) * 1000.0)
    gen = canvas._on_drag(canvas.model, ev)
    next(gen)
    for p in path[1:]:
        ev.type, ev.position, ev.pos = "mouse_move", tuple(p), np.asarray(p) * 1000.0
        next(gen)
        QApplication.processEvents()
    ev.type = "mouse_release"
    try:
        next(gen)
    except StopIteration:
        pass


def session(profile: bool, only: str | None = None, where: bool = False) -> tuple[list, dict, list]:
    from qtpy.QtWidgets import QApplication

    import napari
    import napari_reddino.annotate as annotate

    annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp())  # never the user's home
    out = Path(tempfile.mkdtemp())
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1920, 1080)
    sw = Stopwatch(profile, where)
    sw.pump(1.0)
    win = viewer.window

    def open_dock(name):
        return timed_show(sw, sw.measure(f"open dock '{name}'",
                                         lambda: win.add_plugin_dock_widget("napari-reddino", name)[1]))

    smears = [("chula 1", chula(1)), ("thalassemia 0", disease("thalassemia", 0)),
              ("mosaic 2x2", mosaic([disease(f, i) for f, i in MOSAIC], 2)),
              ("chula mosaic 4x4", mosaic([chula(i) for i in CHULA_MOSAIC], 4))]
    info = {"smears": {n: list(im.shape[:2]) for n, im in smears}}
    seg = open_dock("1. Segment cells")
    emb = open_dock("2. Extract RedDino features")
    pca = open_dock("3. PCA overlay")
    for name, image in smears:
        h, w = image.shape[:2]
        tag = f"{name} ({w}x{h})"
        sw.measure(f"open image {tag}", lambda image=image, name=name: viewer.add_image(image, name=name, rgb=True))
        if not only:
            run_step(sw, f"1. Segment, threshold: {tag}", seg, image=viewer.layers[name], backend="threshold")
        run_step(sw, f"1. Segment, learned: {tag}", seg, image=viewer.layers[name], backend="learned")
        info.setdefault("cells", {})[name] = int(len(viewer.layers[f"{name} cells"].features))
        run_step(sw, f"2. Features (demo): {tag}", emb, image=name, labels=f"{name} cells", model_choice="demo")
        if not only:
            run_step(sw, f"3. PCA (demo): {tag}", pca, image=viewer.layers[name], model_spec="demo")
    for folder, i in POOLED:  # more smears for the pooled UMAP: segmented and embedded the same way
        name = f"{folder} {i}"
        viewer.add_image(disease(folder, i), name=name, rgb=True)
        run_step(sw, f"1. Segment, learned: {name} (1280x960)", seg, image=viewer.layers[name], backend="learned")
        run_step(sw, f"2. Features (demo): {name}", emb, image=name, labels=f"{name} cells", model_choice="demo")

    ann = open_dock("4. Embedding & annotation")
    sw.pump(0.5)
    warm = __import__("napari_reddino._widgets._common", fromlist=["x"])._warm_thread
    sw.measure("UMAP warm-up in the background (dock open, user idle)", lambda: None,
               lambda: warm is None or not warm.is_alive())
    sources = ann._embedded_layers()
    ann.project.value = str(out / "project")
    ann.layers.value = sources
    sw.measure(f"4. Compute UMAP: {len(sources)} smears pooled", lambda: ann.run_button.native.click(),
               lambda: ann.state is not None and ann.worker is None)
    info["umap_cells"] = int(len(ann.state.table))
    canvas, pts = ann.canvas, ann.canvas.points
    data = np.asarray(pts.data)
    # the lasso and the box are drawn around a cell in the thick of the map, sized to hold about a fifth and a
    # twentieth of the cells (a map's middle may be empty: UMAP puts smears and kinds of cells apart)
    mid = data[np.argmin(np.linalg.norm(data - np.median(data, 0), axis=1))]
    far = np.linalg.norm(data - mid, axis=1)
    canvas.set_mode("lasso")

    def drawn():  # every smear drawn (the branch draws a smear per turn of the event loop; main: at once)
        return not getattr(ann.state.link, "pending", None)

    t = np.linspace(0, 2 * np.pi, 60)
    radius = np.quantile(far, 0.2)
    circle = np.column_stack([mid[0] + radius * np.sin(t), mid[1] + radius * np.cos(t)])
    sw.measure("lasso select (60 moves)", lambda: drag(canvas, circle), drawn)
    info["lasso_selected"] = len(pts.selected_data)
    if not info["lasso_selected"]:
        raise SystemExit("the lasso selected no cell: the annotation loop's rows would measure nothing")
    sw.measure("assign class (button)", lambda: ann.panel.assign_button.click(), drawn)
    sw.measure("undo", lambda: ann.panel.undo_button.click(), drawn)
    sw.measure("assign class again", lambda: ann.panel.assign_button.click(), drawn)
    canvas.set_mode("select")
    half = np.quantile(far, 0.05)
    box = np.linspace(mid - half, mid + half, 20)
    sw.measure("box select (20 moves)", lambda: drag(canvas, box), drawn)
    ann.panel.class_list.setCurrentRow(3)
    sw.measure("assign another class", lambda: ann.panel.assign_button.click(), drawn)
    smear = viewer.layers["chula 1 cells"]
    cell = np.argwhere(np.asarray(smear.data) == int(smear.features["label"].iloc[5])).mean(0)

    def click_smear():
        ev = SimpleNamespace(type="mouse_press", pos=np.zeros(2), position=tuple(cell), modifiers=[])
        gen = ann.state._on_smear_drag(viewer, ev)
        next(gen)
        ev.type = "mouse_release"
        try:
            next(gen)
        except StopIteration:
            pass

    sw.measure("click a cell on the smear (selects its point)", click_smear, drawn)
    sw.measure("Train & predict (logreg)", lambda: ann.panel.train_button.click(),
               lambda: getattr(ann, "trainer", None) is None and drawn())  # a worker since the fix
    sw.measure("Next to annotate (20)", lambda: ann.panel.next_button.click(), drawn)
    sw.measure("export cell table", lambda: ann.export_cells(out / "cells.csv"))
    exported = []

    def export_report():  # as the button does it: the per-image table now, the graded report in a worker
        worker = ann.export_report_in_background(out / "report.csv")
        worker.finished.connect(lambda: exported.append(True))

    sw.measure("export report", export_report, lambda: bool(exported))
    big = viewer.layers["mosaic 2x2 cells"]
    sw.measure("hide, then show the mosaic's cells", lambda: (setattr(big, "visible", False),
                                                             setattr(big, "visible", True)), drawn)
    if only:
        viewer.window._qt_window.grab().save(str(out / "screenshot.png"))
        info["screenshot"] = str(out / "screenshot.png")
        return sw.rows, info, sw.profiles

    # re-run a step of a smear that is in the UMAP session, then the UMAP
    run_step(sw, "re-run 1. Segment, learned: mosaic 2x2", seg, image=viewer.layers["mosaic 2x2"], backend="learned")
    run_step(sw, "re-run 2. Features (demo): mosaic 2x2", emb, image="mosaic 2x2", labels="mosaic 2x2 cells",
             model_choice="demo")
    sw.measure("re-run 4. Compute UMAP", lambda: ann.run_button.native.click(),
               lambda: ann.state is not None and ann.worker is None)

    pipe = open_dock("Run the whole pipeline")
    folder, i = SINGLE
    name = f"{folder} {i}"
    viewer.add_image(disease(folder, i), name=name, rgb=True)
    run_step(sw, f"Run the whole pipeline: {name} (1280x960)", pipe, image=viewer.layers[name], model="demo")
    run_step(sw, f"re-run the whole pipeline: {name}", pipe, image=viewer.layers[name], model="demo")
    run_step(sw, "Run the whole pipeline: mosaic 2x2 (2560x1920)", pipe, image=viewer.layers["mosaic 2x2"],
             model="demo")
    viewer.window._qt_window.grab().save(str(out / "screenshot.png"))
    info["screenshot"] = str(out / "screenshot.png")
    QApplication.processEvents()
    return sw.rows, info, sw.profiles


NOTES = """Where the time of a gap goes (main-thread profiles, `--profile FILE`):
- *display* (the dock's `show()`): napari redrawing the cells layer (its outlines, `get_contours` over the
  whole image, and the upload of the image to the screen: about a second per redraw of a 2560x1920 smear here),
  napari making a layer (a vispy visual, the layer list, the active-layer switch: 0.5-2 s each under this
  load, and the plugin makes 3 per smear: cells, objects, legend), and the plugin's own work.
  The fixes took out the plugin's share (see the README's list): redraws 3-5 → 1 per step, int32 labels that
  napari mapped pixel by pixel on every redraw → uint16, the UMAP session's per-smear measurements and
  outlines → the worker, the classifier → a worker, unchanged smears → not redrawn.
- *longest gap - wall*: the repaint after the step, in software OpenGL, of every visible layer (here up to 9
  smears stacked, each with its image, cells, PCA, marks and legend) and of the Qt window (a layer list of
  ~50 rows with thumbnails); not measured on a GPU (none here).
- gaps during a step with *display* near 0 (features, PCA): the load, and probably the worker holding
  Python's lock in long C calls (image crops, ndimage) while the main thread waits (not profiled)."""


ANNOTATION_RUNS = ("main 52a88de", "stalls-annot")  # the --only runs the table shows (all stay in the JSON)
ANNOTATION_NOTES = """*main 52a88de*: the code before this round; *stalls-annot*: after it (the annotation file written by a
background thread, each row's class and prediction kept as codes, the display in more slices: the canvas'
layers one per slice, then the view, the legend and report, and each smear's classes). Run one after the other
(12:29 and 12:58 UTC), the second at a higher load (7.6 against 5.0: untouched *export cell table* took 0.13 and
0.15 s, its main-thread CPU 0.07 and 0.09 s). *Main-thread CPU* is `time.thread_time` of napari's thread over
the action: the plugin's and napari's Python work, not the rasterising of software OpenGL (llvmpipe's own
threads) nor the time the thread waits for a core. On this 2,676-cell map no gain is measurable within this
machine's noise: each action costs the main thread 0.2-0.7 s (napari updating a layer or two and repainting
8 stacked smears), and its longest gap is 1-2.5 s, the rest being the window's repaint in llvmpipe and the load
(the previous round's pair, labels *main* and *branch*, is in the JSON). The codes and the background writer
pay off with many cells: `results_umap_million.md` (10^6 cells: showing the map 18.6 -> 1.9 s longest gap,
6.4 -> 2.5 s main-thread CPU; a class for 100,000 cells 24.2 -> 3.9 s, 6.9 -> 0.7 s CPU). The 0.5 s target is
not met here; napari's own floor at this load, without the plugin's work: an empty layer added 0.35 s CPU,
1.2-2.4 s gap."""


def table(runs: dict, labels: list, compact: bool = False) -> list[str]:
    """The markdown table of these runs' rows, one column group per label (``compact``: wall and longest gap
    only, of the annotation loop's actions)."""
    actions = list(dict.fromkeys(r["action"] for lab in labels for r in runs[lab]["rows"]))
    by = {lab: {r["action"]: r for r in runs[lab]["rows"]} for lab in labels}
    if compact:
        first = "4. Compute UMAP: 8 smears pooled"
        actions = actions[actions.index(first):] if first in actions else actions
        lines = ["| action | " + " | ".join(f"{lab}: wall s | {lab}: main-thread CPU s | {lab}: longest gap ms"
                                            for lab in labels) + " |",
                 "|---|" + "---|---|---|" * len(labels)]
        for action in actions:
            cells = []
            for lab in labels:
                r = by[lab].get(action)
                if r is None:
                    cells.append("– | – | –")
                    continue
                bold = "**" if r["gap_ms"] > 500 else ""
                cpu = f"{r['cpu_s']:.2f}" if "cpu_s" in r else "–"
                cells.append(f"{r['wall_s']:.2f} | {cpu} | {bold}{r['gap_ms']:.0f}{bold}")
            lines.append(f"| {action} | " + " | ".join(cells) + " |")
        return lines
    head = "| action | " + " | ".join(f"{lab}: wall s | {lab}: display s | {lab}: longest gap ms | "
                                         f"{lab}: gaps >0.1 s | {lab}: >0.5 s" for lab in labels) + " |"
    lines = [head, "|---|" + "---|---|---|---|---|" * len(labels)]
    for action in actions:
        cells = []
        for lab in labels:
            r = by[lab].get(action)
            cells.append("– | – | – | – | –" if r is None else
                         f"{r['wall_s']:.2f} | {r.get('show_s', 0):.2f} | {'**' if r['gap_ms'] > 500 else ''}{r['gap_ms']:.0f}"
                         f"{'**' if r['gap_ms'] > 500 else ''} | {r['over_100ms']} | {r['over_500ms']}")
        lines.append(f"| {action} | " + " | ".join(cells) + " |")
    return lines


def describe(lab: str, i: dict) -> str:
    return (f"- **{lab}**: {i.get('when', '')}, load average {i.get('load', '?')} at the start; "
            f"smears {i['smears']}, cells (learned) {i.get('cells')}, UMAP of {i.get('umap_cells')} cells "
            f"pooled from 8 smears; lasso selected {i.get('lasso_selected')}.")


def write_table(label: str, rows: list, info: dict) -> None:
    """Put this run's rows into results_gui_stalls.md beside the other label's (kept in RAW); runs of a subset
    (``--only``) get a table of their own under the whole runs' one."""
    runs = json.loads(RAW.read_text()) if RAW.exists() else {}
    runs[label] = {"rows": rows, "info": info}
    RAW.write_text(json.dumps(runs, indent=1) + "\n")
    subset = [x for x in runs if runs[x]["info"].get("only") and x in ANNOTATION_RUNS]
    runs_all = {k: v for k, v in runs.items() if not v["info"].get("only")}
    labels = [x for x in ("before", "after") if x in runs_all] + [x for x in runs_all if x not in ("before", "after")]
    cmd = ('OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python '
           "benchmarks/bench_gui_stalls.py --label LABEL")
    lines = ["# GUI stalls over every step: the longest event-loop gap per action", "",
             f"Command: `{cmd}` (LABEL: {', '.join(labels)}; raw numbers in `results_gui_stalls.json`)", "",
             "A 10 ms `QTimer` on napari's main thread; *longest gap*: the longest time between two ticks from "
             "the click to the end of the step's display and its repaint (the window is frozen that long). "
             "*Wall*: click to the step's end (its display included); *display*: the part of it spent in the dock's "
             "`show()` on the main thread (steps run in a worker). Target: no gap over 0.5 s.", ""]
    lines += [describe(lab, runs[lab]["info"]) for lab in labels]
    lines += ["", *table(runs, labels)]
    lines += ["", f"Machine: {platform.machine()}, {os.cpu_count()} cores shared with other developers' jobs, "
              "no GPU, software OpenGL (llvmpipe) under Xvfb at 1920x1080; `OMP_NUM_THREADS=1`. Single runs: "
              "at a load average of 8-19 on 2 cores the main thread gets a fraction of a core, so every "
              "figure here is several times what an idle machine shows (a first run of the code before the "
              "fixes at load 1-4, on fewer cells: Compute UMAP 8.7 s, assign 3.6-4.1 s, Train 4.8 s, lasso "
              "0.9 s, a learned segmentation's display 0.6-2.7 s); compare the columns, not the absolute "
              "values.", "", NOTES]
    if subset:
        lines += ["", "## The annotation loop, re-measured in one sitting (`--only annotation --label LABEL`)", "",
                  ANNOTATION_NOTES, "", *[describe(lab, runs[lab]["info"]) for lab in subset], "",
                  *table(runs, subset, compact=True)]
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", default="after")
    parser.add_argument("--profile", metavar="FILE", help="write the main thread's profiles here instead")
    parser.add_argument("--where", metavar="FILE", help="write where the main thread was during each gap over "
                        "0.5 s here instead (stall_sampler.py)")
    parser.add_argument("--only", choices=["annotation"], help="the annotation loop only (its own table)")
    args = parser.parse_args()
    os.environ.setdefault("NAPARI_REDDINO_OFFLINE", "1")
    load = os.getloadavg()
    rows, info, profiles = session(bool(args.profile), args.only, bool(args.where))
    info["only"] = args.only
    info["load"] = f"{load[0]:.1f} (1 min), {load[1]:.1f} (5 min)"
    info["when"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    if args.profile or args.where:
        Path(args.profile or args.where).write_text("\n\n".join(profiles))
        print(f"wrote {args.profile or args.where}")
    else:
        write_table(args.label, rows, info)


if __name__ == "__main__":
    main()
