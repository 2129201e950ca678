"""A million cells on the map: UMAP time and memory, its quality against a full UMAP, and the canvas at 10^6
points; writes results_umap_million.md (one section per part, the command beside each).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_umap_million.py time [--cells 1000000]
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_umap_million.py quality [--cells 50000]
    OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_umap_million.py \\
        gui [--cells 1000000] [--select 100000]

Features: every labelled red cell of Chula-RBC-12 (../shared/data) segmented by the plugin and embedded by
the shipped demo model (``reddino_train.classifier.data.collect``, cached under --cache, never in the
repository), then made into N cells by interpolating each real cell towards one of its 10 nearest real
cells (SMOTE-like, uniform 0-1) plus Gaussian noise of 5 % of each feature's spread: cells that lie where
real cells lie, with the real cell's class. Each part writes its own section of the results file.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import resource
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "src"))
sys.path.insert(0, str(HERE.parent / "training" / "src"))
DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", HERE.parent.parent / "shared" / "data"))
RESULTS = HERE / "results_umap_million.md"


def real_cells(cache: Path):
    """(features (N, 192) float32, class ids, image ids) of Chula's labelled red cells, demo model."""
    f = cache / "chula_demo_cells.npz"
    if not f.is_file():
        from napari_reddino.atomic import atomic_path
        from napari_reddino.models import load_model
        from reddino_train.classifier.data import collect

        lc = collect(DATA / "chula-rbc-12", cache, model=load_model("demo"), model_key="demo")
        with atomic_path(f) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, X=lc.embeddings, y=lc.cells["y"].to_numpy(), image=lc.cells["image"].to_numpy().astype(str))
    with np.load(f) as z:
        return z["X"].astype(np.float32), z["y"], z["image"]


def many_cells(X, y, n: int, seed: int = 0):
    """``n`` cells made from the real ones (module docstring), with their classes."""
    from napari_reddino.embedding import exact_knn

    rng = np.random.default_rng(seed)
    nn, _ = exact_knn(X, 11, "cosine")
    spread = X.std(0) * 0.05
    out = np.empty((n, X.shape[1]), np.float32)
    cls = np.empty(n, y.dtype)
    for s in range(0, n, 100_000):
        m = min(100_000, n - s)
        i = rng.integers(0, len(X), m)
        j = nn[i, rng.integers(1, 11, m)]
        t = rng.random((m, 1), dtype=np.float32)
        out[s:s + m] = X[i] + t * (X[j] - X[i]) + rng.normal(size=(m, X.shape[1])).astype(np.float32) * spread
        cls[s:s + m] = y[i]
    return out, cls


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
            "**the CPU was shared with 3 other engineers' work this session** (wall time > CPU time under load)")


def write_section(name: str, text: str) -> None:
    """Replace (or add) the section ``## name ...`` of the results file."""
    old = RESULTS.read_text() if RESULTS.is_file() else "# A million cells on the map\n"
    pattern = re.compile(rf"^## {re.escape(name)}.*?(?=^## |\Z)", re.S | re.M)
    block = f"## {name}\n\n{text.strip()}\n\n"
    new = pattern.sub(lambda _: block, old) if pattern.search(old) else old.rstrip() + "\n\n" + block
    RESULTS.write_text(new)


# --- time ---------------------------------------------------------------------------------------------
def bench_time(args) -> None:
    from napari_reddino.embedding import SAMPLE_CELLS, iter_umap_embed, umap_embed
    from napari_reddino.progress import run

    X0, y0, _ = real_cells(Path(args.cache))
    X, y = many_cells(X0, y0, args.cells)
    del X0
    base = peak_rss_mb()
    umap_embed(X[:2000], seed=0, sample=500)  # numba's compile, on the same code paths (not timed)
    phases, last, now_in = {}, [time.perf_counter()], ["checking the features"]

    def tick(p):
        now = time.perf_counter()
        phases[now_in[0]] = phases.get(now_in[0], 0) + now - last[0]
        last[0], now_in[0] = now, p.message

    t, c = time.perf_counter(), time.process_time()
    Y = run(iter_umap_embed(X, seed=0), callback=tick)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    np.savez(Path(args.cache) / f"map_{args.cells}.npz", Y=Y, y=y)  # the GUI part's map
    t = time.perf_counter()
    same = np.array_equal(run(iter_umap_embed(X, seed=0)), Y) if args.repeat else None
    again = time.perf_counter() - t
    rows = "\n".join(f"| {k} | {v:.1f} |" for k, v in phases.items())
    text = f"""Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_umap_million.py time --cells {args.cells}{' --repeat' if args.repeat else ''}`

Machine: {machine()}.

{args.cells:,} cells of 192 features (demo model; module docstring), `umap_embed(X, seed=0)`: PCA 50, UMAP
(exact cosine 15-NN, min_dist 0.1) fitted on a seeded sample of {SAMPLE_CELLS:,} cells, the others placed.

| | value |
|---|---|
| wall time | **{wall:.0f} s** (target ≤ 300 s) |
| CPU time | {cpu:.0f} s |
| peak RSS, whole process | {peak_rss_mb():.0f} MB |
| peak RSS before the map (features in memory, {X.nbytes / 2**20:.0f} MB) | {base:.0f} MB |
| same map on a second run (seed 0) | {'not run' if same is None else f'{same} ({again:.0f} s)'} |

Time per phase (s; each phase ends at the next progress message):

| phase | s |
|---|---|
{rows}
"""
    write_section(f"Time and memory: {args.cells:,} cells", text)
    print(text)


def knn_overlap(Z, Y, queries, k=15, metric="cosine") -> float:
    """Mean share of each query's k nearest cells in ``Z`` (features) that are among its k nearest on the map."""
    from napari_reddino.embedding import _unit_rows

    P = _unit_rows(Z, metric)
    hits = []
    for s in range(0, len(queries), 500):
        q = queries[s:s + 500]
        d_feat = -(P[q] @ P.T)
        d_map = ((Y[q, None, :] - Y[None, :, :]) ** 2).sum(-1)
        for dist in (d_feat, d_map):
            dist[np.arange(len(q)), q] = np.inf  # not itself
        a = np.argpartition(d_feat, k, axis=1)[:, :k]
        b = np.argpartition(d_map, k, axis=1)[:, :k]
        hits += [len(np.intersect1d(x, z)) / k for x, z in zip(a, b)]
    return float(np.mean(hits))


def one_nn_agreement(Y, y) -> float:
    """Leave-one-out 1-NN class agreement (share of cells whose nearest other cell has their class)."""
    from sklearn.neighbors import NearestNeighbors

    _, idx = NearestNeighbors(n_neighbors=2).fit(Y).kneighbors(Y)
    return float((y[idx[:, 1]] == y).mean())


def placed_by(X, Y, fitted, weights: str, k=15, seed=0):
    """The map with the cells outside ``fitted`` placed again with other weights (the placing's choice):
    'idw' (inverse distance), 'nearest' (the nearest fitted cell's position)."""
    from napari_reddino.embedding import NearestSample, _reduce

    Z_fit, pca = _reduce(X[fitted], 50, seed)
    rest = np.setdiff1d(np.arange(len(X)), fitted)
    idx, dist = NearestSample(Z_fit, "cosine", seed).query(pca.transform(X[rest]).astype(np.float32), k)
    out = Y.copy()
    if weights == "nearest":
        out[rest] = Y[fitted][idx[:, 0]]
    else:
        w = 1 / np.maximum(dist, 1e-6)
        out[rest] = (w[..., None] * Y[fitted][idx]).sum(1) / w.sum(1, keepdims=True)
    return out


def bench_quality(args) -> None:
    from sklearn.manifold import trustworthiness

    from napari_reddino.embedding import _reduce, sample_rows, umap_embed

    X0, y0, _ = real_cells(Path(args.cache))
    rng = np.random.default_rng(0)
    lines = []
    for name, X, y, samples in ((f"{args.cells:,} cells made from Chula's", *many_cells(X0, y0, args.cells),
                                 (args.cells // 5, args.cells // 20)),
                                (f"Chula's {len(X0):,} labelled cells (real)", X0, y0, (len(X0) // 4, len(X0) // 20))):
        Z, _ = _reduce(X, 50, 0)  # the space UMAP sees
        queries = np.sort(rng.choice(len(X), 2000, replace=False))
        runs = []
        t = time.perf_counter()
        runs.append(("full UMAP", umap_embed(X, seed=0, sample=None), time.perf_counter() - t, None))
        for s in samples:
            t = time.perf_counter()
            Y = umap_embed(X, seed=0, sample=s)
            runs.append((f"sample {s:,} ({100 * s / len(X):.0f} %), placed (shipped: umap's weights)", Y,
                         time.perf_counter() - t, s))
            fitted = sample_rows(len(X), s, 0)
            for how in ("idw", "nearest"):
                runs.append((f"sample {s:,}, placed by {'inverse distance' if how == 'idw' else 'the nearest cell'}",
                             placed_by(X, Y, fitted, how), None, s))
        for label, Y, secs, _ in runs:
            tw = trustworthiness(Z[queries], Y[queries], n_neighbors=15, metric="cosine")
            lines.append(f"| {name} | {label} | {'' if secs is None else f'{secs:.0f}'} | "
                         f"{knn_overlap(Z, Y, queries):.3f} | {tw:.3f} | {one_nn_agreement(Y, y):.3f} |")
            print(lines[-1], flush=True)
        lines.append(f"| {name} | (the features themselves, 50-d PCA) | | 1 | 1 | {one_nn_agreement(Z, y):.3f} |")
    text = f"""Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_umap_million.py quality --cells {args.cells}`

Machine: {machine()}.

Against a full UMAP of the same cells (seed 0, PCA 50, cosine 15-NN, min_dist 0.1). Columns: wall seconds of
the map; **15-NN kept**: the share of a cell's 15 nearest cells in the 50-d features (cosine) that are among
its 15 nearest on the map (2,000 seeded query cells against all cells); **trustworthiness** (scikit-learn,
15 neighbours, on the same 2,000 cells); **1-NN class agreement**: the share of cells whose nearest other
cell on the map has their class (Chula's labels; made cells carry their real cell's class). The rows
"placed by" re-place the same sample's other cells with other weights: the choice of the shipped weights.

| cells | map | s | 15-NN kept | trustworthiness | 1-NN class agreement |
|---|---|---|---|---|---|
""" + "\n".join(lines)
    write_section("Quality against a full UMAP", text)
    print(text)


def smear_mosaic(cache: Path, n: int = 4):
    """A 2560x1920 smear: n x n Chula fields (640x480) with the plugin's segmentation of each, cached by
    the features' ``collect`` (labels made unique over the mosaic)."""
    from napari_reddino.images import read_image

    stems = sorted((p.stem for p in (cache / "segmentation").glob("*.npz")), key=int)[:n * n]
    rows, lrows, offset = [], [], 0
    for r in range(n):
        tiles, ltiles = [], []
        for c in range(n):
            stem = stems[r * n + c]
            with np.load(cache / "segmentation" / f"{stem}.npz") as z:
                lab = z["labels"].astype(np.int32)
            tiles.append(read_image(DATA / "chula-rbc-12" / "images" / f"{stem}.jpg")[:480, :640])
            ltiles.append(np.where(lab > 0, lab + offset, 0)[:480, :640])
            offset = int(ltiles[-1].max())
        rows.append(np.hstack(tiles))
        lrows.append(np.hstack(ltiles))
    return np.vstack(rows), np.vstack(lrows)


def bench_gui(args) -> None:
    """The annotation dock shows a map of ``args.cells`` cells (the ``time`` part's map): 100 slides of which
    one, a 2560x1920 smear, is open; a lasso over ``args.select`` points, a zoom, a class for them."""
    import tempfile

    import napari
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from bench_gui_stalls import Stopwatch, drag

    import napari_reddino.annotate as annotate
    from napari_reddino._widgets._common import display_labels
    from napari_reddino._widgets.annotate import AnnotationWidget
    from napari_reddino._widgets.smear_link import draw_cells, smear_geometry
    from napari_reddino.cells import cell_table
    from napari_reddino.chula import CLASSES

    f = Path(args.cache) / f"map_{args.cells}.npz"
    if not f.is_file():
        sys.exit(f"no map at {f}: run the 'time' part with --cells {args.cells} first")
    with np.load(f) as z:
        Y, y = z["Y"], z["y"]
    n = len(Y)
    image, labels = smear_mosaic(Path(args.cache))
    annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp())
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(*(int(v) for v in args.window.split("x")))
    sw = Stopwatch(bool(args.profile))
    viewer.add_image(image, name="smear")
    # as the segment dock leaves it: uint16 labels drawn as outlines coloured by type
    cells = viewer.add_labels(display_labels(labels), name="smear cells", features=cell_table(labels, image))
    draw_cells(viewer, cells)
    slides = 100
    image_of = np.array([f"slide {k}" for k in range(slides)], dtype=object)[np.arange(n) * slides // n]
    label = np.arange(n) - np.searchsorted(np.arange(n) * slides // n, np.arange(n) * slides // n) + 1
    ids = cells.features["label"].to_numpy()
    mine = np.sort(np.random.default_rng(0).choice(n, len(ids), replace=False))  # the open smear's cells
    image_of[mine], label[mine] = "smear", ids
    table = pd.DataFrame({"image": image_of, "label": label, "centroid_x": np.nan, "centroid_y": np.nan,
                          "prediction": np.asarray(CLASSES, dtype=object)[y], "confidence": 0.9})
    sources = ["smear cells"] + [f"slide {k} cells" for k in range(slides)]
    images = ["smear"] + [f"slide {k}" for k in range(slides)]
    table = table.assign(_order=pd.Categorical(table["image"], images).codes).sort_values(
        ["_order", "label"], kind="stable").drop(columns="_order")  # pooled order: image by image
    order = table.index.to_numpy()
    table = table.reset_index(drop=True)
    Y = Y[order]
    dock = AnnotationWidget(viewer)
    # what the dock's worker hands its display (``AnnotationWidget.work``): the open smear's outlines, and the
    # rows as codes where the code has them
    result = {"table": table, "X": Y.copy(), "Y": Y, "sources": sources, "images": images,
              "params": {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": 0},
              "geometry": {"smear cells": smear_geometry(cells.data, image)}}
    try:
        from napari_reddino._widgets.annotation_state import RowIndex

        result["index"] = RowIndex(table, dock.classes)
    except ImportError:  # the code before it
        pass
    dock.project.value = tempfile.mkdtemp()
    viewer.window.add_dock_widget(dock, name="annotate")
    sw.pump(2.0)
    sw.measure(f"show the map of {n:,} cells (canvas made)", lambda: dock._on_returned(result),
               lambda: dock.state is not None and dock._slices is None)
    canvas = dock.canvas
    centre = np.median(canvas.data, axis=0)
    d = np.linalg.norm(canvas.data - centre, axis=1)
    radius = np.partition(d, args.select)[args.select]
    angle = np.linspace(0, 2 * np.pi, 80)
    lasso = centre + radius * np.c_[np.sin(angle), np.cos(angle)]
    canvas.set_mode("lasso")
    sw.pump(2.0)  # the view drawn after the show has settled
    sw.measure(f"lasso over {args.select:,} points -> selection -> smear outline (first: makes the "
               "smear's selection layer)", lambda: drag(canvas, lasso), lambda: not dock.state.link.pending)
    selected = len(dock.state.selected_rows())
    outlined = np.unique(labels[viewer.layers["smear cells selection"].data > 0]).size
    canvas.select([])
    sw.pump(1.0)
    sw.measure("the same lasso again", lambda: drag(canvas, lasso), lambda: not dock.state.link.pending)
    shot = Path(args.screenshot or Path(tempfile.mkdtemp()) / "million.png")
    napari.utils.io.imsave(str(shot), viewer.screenshot(canvas_only=False))
    sw.measure("zoom the map in 40x (real points where the view has < 50,000)",
               lambda: setattr(canvas.camera, "zoom", canvas.camera.zoom * 40),
               lambda: not canvas._view_timer.isActive(), settle=0.5)
    near = len(canvas._near_rows)
    sw.measure("click a point", lambda: canvas.select([canvas.point_at(canvas.camera.center)]),
               lambda: not dock.state.link.pending)
    canvas.frame_points()
    sw.pump(1.0)
    canvas.select_in_polygon(lasso)
    sw.pump(1.0)
    sw.measure(f"class 'target' for the {selected:,} selected cells", lambda: dock.assign("target"),
               lambda: not dock.state.link.pending)
    # napari's own floor, without the plugin's work: what the rows above cannot go under on this machine
    from napari.components import ViewerModel
    from napari.qt import QtViewer

    made = []
    sw.measure("napari alone: an embedded viewer made (what the map's canvas is)",
               lambda: made.append(QtViewer(ViewerModel(), show_welcome_screen=False)))
    sw.measure("napari alone: an empty Points layer added to the window's viewer",
               lambda: viewer.add_points(np.zeros((0, 2)), name="floor"))
    sw.measure("napari alone: the window repainted, nothing changed", lambda: viewer.window._qt_window.repaint())
    for qt_viewer in made:
        qt_viewer.close()
    rows = "\n".join(f"| {r['action']} | {r['wall_s']:.2f} | {r['cpu_s']:.2f} | {r['gap_ms']:.0f} | {r['over_100ms']} |"
                      for r in sw.rows)
    text = f"""Command: `OMP_NUM_THREADS=1 xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_umap_million.py gui --cells {args.cells} --select {args.select}`

Machine: {machine()}; software OpenGL under Xvfb, window 1920x1080.

The annotation dock shows the `time` part's map of {n:,} cells as pooled from 100 slides, one of them open:
a 2560x1920 smear (4x4 Chula fields, segmented by the plugin; {len(ids)} cells, rows spread over the map),
its cells layer as the segment dock leaves it (uint16, outlined), and what the dock's worker prepares (the smear's
outlines; the rows as codes) made before the show, as the worker does.
Each action's longest gap of the event loop (`bench_gui_stalls.Stopwatch`: a 10 ms timer; the window is
frozen that long), its wall time from the action until its work and repaint are done, and the main thread's CPU
time over it (`time.thread_time`: the plugin's and napari's work and the repaint, not the writer's or the
other jobs' on this machine). The lasso is an
80-vertex circle dragged over the canvas move by move; it selected {selected:,} cells, {outlined} of them
outlined on the open smear. After the zoom {near:,} real points were drawn.

| action | wall s | main-thread CPU s | longest gap ms | gaps > 100 ms |
|---|---|---|---|---|
{rows}
"""
    if args.profile or args.window != "1920x1080":
        if args.profile:
            Path(args.profile).write_text("\n\n".join(sw.profiles))
        print(text)
        return
    write_section(f"The canvas at {n:,} points", text)
    print(text)
    print("screenshot:", shot)
    dock.close_canvas()
    viewer.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("part", choices=["time", "quality", "gui"])
    p.add_argument("--cells", type=int, default=None)
    p.add_argument("--select", type=int, default=100_000)
    p.add_argument("--profile", default=None, help="gui: write the profile of each action over 0.5 s here "
                   "(slower; the table is not written)")
    p.add_argument("--window", default="1920x1080", help="gui: the window's size (the table: 1920x1080 only)")
    p.add_argument("--screenshot", default=None, help="gui: where to save the window after the lasso (PNG)")
    p.add_argument("--repeat", action="store_true", help="time: run the map twice and check it is the same")
    p.add_argument("--cache", default="/tmp/reddino-umap-million", help="features cache (outside the repository)")
    args = p.parse_args()
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    if args.part == "time":
        args.cells = args.cells or 1_000_000
        bench_time(args)
    elif args.part == "quality":
        args.cells = args.cells or 50_000
        bench_quality(args)
    else:
        args.cells = args.cells or 1_000_000
        bench_gui(args)


if __name__ == "__main__":
    main()
