"""The first UMAP of a session in the "Embedding & annotation" dock, in a real napari window: seconds from
"Compute UMAP" to the map, and the longest gap of the GUI event loop (a 10 ms timer); writes
results_first_umap.md.

    xvfb-run -a -s "-screen 0 1920x1080x24" .venv/bin/python benchmarks/bench_first_umap.py

Each case is a fresh process (numba compiles once per process): the background warm-up off
(NAPARI_REDDINO_WARM_UMAP=0, as before issue 17), on with "Compute UMAP" pressed at once, and on with
the click after the warm-up ends; each with numba's disk cache as this environment has it, and empty (a
fresh install, or a read-only site-packages: NUMBA_CACHE_DIR pointed at an empty folder).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = [("off", "now"), ("on", "now"), ("on", "after")]


def child(when: str) -> dict:
    import numpy as np
    from qtpy.QtCore import QTimer
    from qtpy.QtWidgets import QApplication

    import napari
    import napari_reddino.annotate as annotate
    from napari_reddino._widgets import _common
    from napari_reddino.cells import cell_table
    from napari_reddino.sample_data import synthetic_smear

    annotate.FALLBACK_FOLDER = Path(tempfile.mkdtemp())  # never the user's home
    viewer = napari.Viewer(show=True)
    image, truth, _ = synthetic_smear(seed=1)
    viewer.add_image(image, name="smear", rgb=True)
    layer = viewer.add_labels(truth, name="smear cells", features=cell_table(truth))
    labels = layer.features["label"].to_numpy()
    rng = np.random.default_rng(0)
    emb = rng.normal(size=(3, 384))[rng.integers(0, 3, len(labels))] + rng.normal(size=(len(labels), 384))
    layer.metadata["reddino"] = {"embeddings": emb.astype(np.float32), "labels": labels, "model": "bench",
                                 "image": "smear"}
    gaps, last = [], [time.perf_counter()]

    def tick():
        now = time.perf_counter()
        gaps.append(now - last[0])
        last[0] = now

    timer = QTimer()
    timer.timeout.connect(tick)
    timer.start(10)

    def pump(until, limit=300):
        t0 = time.perf_counter()
        while not until() and time.perf_counter() - t0 < limit:
            QApplication.processEvents()
            time.sleep(0.005)
        return time.perf_counter() - t0

    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", "4. Embedding & annotation")
    out = {"cells": len(labels)}
    if when == "after":
        warm = _common._warm_thread
        out["warm_up_s"] = pump(lambda: warm is None or not warm.is_alive())
        out["warm_up_gap_ms"] = max(gaps) * 1000
    gaps.clear()
    last[0] = time.perf_counter()
    dock.start()
    out["umap_s"] = pump(lambda: dock.state is not None and dock.worker is None)
    out["gap_ms"] = max(gaps) * 1000
    dock.close_canvas()
    viewer.close()
    return out


def _num(row: dict, key: str, fmt: str) -> str:
    return format(row[key], fmt) if key in row else "–"


def main() -> None:
    rows = []
    for cache in ("as installed", "empty"):
        for warm, when in CASES:
            env = dict(os.environ, NAPARI_REDDINO_WARM_UMAP="1" if warm == "on" else "0", QT_QPA_PLATFORM="xcb")
            with tempfile.TemporaryDirectory() as empty:
                if cache == "empty":
                    env["NUMBA_CACHE_DIR"] = empty
                proc = subprocess.run([sys.executable, __file__, "--child", when], env=env, capture_output=True,
                                      text=True, timeout=600)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            rows.append((cache, warm, when, result))
            print(cache, warm, when, result, flush=True)
    lines = ["# The first UMAP of a session (numba compile): before and after the background warm-up", "",
             "Command: `xvfb-run -a -s \"-screen 0 1920x1080x24\" .venv/bin/python benchmarks/bench_first_umap.py`",
             "", f"Machine: {platform.machine()}, {os.cpu_count()} cores, load average "
             f"{os.getloadavg()[0]:.1f} at the end (shared machine: single runs, expect ±0.5 s).", "",
             f"{rows[0][3]['cells']} cells (a 640 x 480 synthetic smear, 384-d features), a fresh process per row.",
             "", "| numba disk cache | warm-up | Compute UMAP pressed | warm-up took (s) | GUI gap during warm-up "
             "(ms) | Compute UMAP → map (s) | longest GUI gap (ms) |", "|---|---|---|---|---|---|---|"]
    for cache, warm, when, r in rows:
        lines.append(f"| {cache} | {warm} | {'at once' if when == 'now' else 'after the warm-up'} | "
                     f"{_num(r, 'warm_up_s', '.1f')} | {_num(r, 'warm_up_gap_ms', '.0f')} | "
                     f"{r['umap_s']:.1f} | {r['gap_ms']:.0f} |")
    path = Path(__file__).with_name("results_first_umap.md")
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    if "--child" in sys.argv:
        print(json.dumps(child(sys.argv[sys.argv.index("--child") + 1])))
    else:
        main()
