"""`napari-reddino run` on a folder of 20 Chula smears: wall time with --workers 1 and --workers 2 (the whole
command, start-up included), and the same files from a two-worker dask cluster on 127.0.0.1 (a scheduler and two
workers started with the `dask` command, as on a cluster) as from one process. Writes results_workers.md.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_workers.py
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[0].parent / "shared" / "data" / "chula-rbc-12" / "images"
BIN = Path(sys.executable).parent


def pick_smears(data: Path, n: int) -> list[Path]:
    """``n`` images spread over the folder (every k-th by id), so no acquisition batch dominates."""
    files = sorted(data.glob("*.jpg"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    return files[:: max(1, len(files) // n)][:n]


def napari_reddino(*args) -> tuple[float, float, str]:
    """Wall seconds, CPU seconds (the command and every process it started: its workers) and its output."""
    import resource

    def cpu():
        use = resource.getrusage(resource.RUSAGE_CHILDREN)
        return use.ru_utime + use.ru_stime

    t0, c0 = time.perf_counter(), cpu()
    got = subprocess.run([str(BIN / "napari-reddino"), *args], capture_output=True, text=True)
    if got.returncode != 0:
        raise SystemExit(f"napari-reddino {' '.join(args)} exited {got.returncode}:\n{got.stderr[-3000:]}")
    return time.perf_counter() - t0, cpu() - c0, got.stdout


def load() -> str:
    return " / ".join(f"{x:.2f}" for x in os.getloadavg())


def same_outputs(a: Path, b: Path, stems) -> list[str]:
    """What differs between two run folders (cells.csv, each image's labels, cell table, features)."""
    problems = []
    if not pd.read_csv(a / "cells.csv").equals(pd.read_csv(b / "cells.csv")):
        problems.append("cells.csv")
    for stem in stems:
        if not np.array_equal(np.asarray(Image.open(a / f"{stem}_labels.tif")),
                              np.asarray(Image.open(b / f"{stem}_labels.tif"))):
            problems.append(f"{stem}_labels.tif")
        if not pd.read_csv(a / f"{stem}_cells.csv").equals(pd.read_csv(b / f"{stem}_cells.csv")):
            problems.append(f"{stem}_cells.csv")
        if not pd.read_parquet(a / f"{stem}_features.parquet").equals(pd.read_parquet(b / f"{stem}_features.parquet")):
            problems.append(f"{stem}_features.parquet")
    return problems


PROBE = """
import resource, sys, tempfile
from pathlib import Path
from napari_reddino.runtime import import_torch
import_torch()
from napari_reddino.cli.run import iter_run_image
from napari_reddino.images import read_image
from napari_reddino.models import default_spec
from napari_reddino.pipeline import PipelineOptions
from napari_reddino.progress import run
out, rows, opts = tempfile.mkdtemp(), [], PipelineOptions(model=default_spec())
for i, f in enumerate(sys.argv[1:]):
    before = resource.getrusage(resource.RUSAGE_SELF)
    run(iter_run_image(Path(f).name, read_image(f), opts, out, str(i)))
    after = resource.getrusage(resource.RUSAGE_SELF)
    rows.append((after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime, after.ru_minflt - before.ru_minflt))
print(*[sum(r[k] for r in rows[1:]) / len(rows[1:]) for k in range(3)])  # the first image warms up
"""


def malloc_probe(files) -> dict:
    """One image of `run` in a plain process, with and without the MALLOC_TRIM_THRESHOLD_ dask gives its
    workers: user s, system s, page faults per image (the mean after a first image)."""
    got = {}
    for label, extra in (("glibc default (as --workers)", {}), ("MALLOC_TRIM_THRESHOLD_=65536 (dask's default)",
                                                               {"MALLOC_TRIM_THRESHOLD_": "65536"})):
        env = {k: v for k, v in os.environ.items() if k != "MALLOC_TRIM_THRESHOLD_"} | extra
        out = subprocess.run([sys.executable, "-c", PROBE, *map(str, files)], env=env, capture_output=True,
                             text=True, check=True).stdout.split()
        got[label] = [float(x) for x in out[-3:]]
    return got


def start_cluster(workers: int, log: Path) -> tuple[str, list[subprocess.Popen]]:
    """A dask scheduler on 127.0.0.1 and ``workers`` worker processes (one thread each), as subprocesses."""
    scheduler_file = log.parent / "scheduler.json"
    procs = [subprocess.Popen([str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(scheduler_file)],
                              stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)]
    for _ in range(100):
        if scheduler_file.is_file() and scheduler_file.stat().st_size:
            break
        time.sleep(0.2)
    import json

    address = json.loads(scheduler_file.read_text())["address"]
    procs.append(subprocess.Popen([str(BIN / "dask"), "worker", address, "--nworkers", str(workers),
                                   "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                  stdout=log.open("a"), stderr=subprocess.STDOUT, start_new_session=True))
    from distributed import Client

    with Client(address, timeout=30) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def stop(procs) -> None:
    for p in reversed(procs):
        os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--n", type=int, default=20)
    p.add_argument("--report", type=Path, default=HERE / "results_workers.md")
    args = p.parse_args(argv)
    if not args.data.is_dir():
        print(f"no data at {args.data}; see the README (../shared/data)")
        return 1
    smears = pick_smears(args.data, args.n)
    work = Path(tempfile.mkdtemp(prefix="bench_workers_"))
    folder = work / "smears"
    folder.mkdir()
    for f in smears:  # links, not copies
        (folder / f.name).symlink_to(f)
    stems = [f.stem for f in smears]
    rows, loads = [], []
    try:
        # warms the page cache; and what one process costs before and around the work of its first image
        one = napari_reddino("run", str(folder / smears[0].name), "--out", str(work / "warm"))[:2]
        for workers in (1, 2):
            loads.append(load())
            seconds, cpu, stdout = napari_reddino("run", str(folder), "--out", str(work / f"w{workers}"),
                                                  "--workers", str(workers))
            cells = re.search(r"(\d+) objects; (\d+) analysed", stdout)
            rows.append((workers, seconds, cpu, cells.group(0) if cells else "?", loads[-1], load()))
            print(f"--workers {workers}: {seconds:.1f} s, CPU {cpu:.1f} s ({rows[-1][3]}); load {rows[-1][4]} → "
                  f"{rows[-1][5]}")
        address, procs = start_cluster(2, work / "cluster.log")
        try:
            cluster_s, _, _ = napari_reddino("run", str(folder), "--out", str(work / "cluster"), "--scheduler", address)
        finally:
            stop(procs)
        malloc = malloc_probe(smears[:4])
        differs = same_outputs(work / "w1", work / "cluster", stems)
        differs_w2 = same_outputs(work / "w1", work / "w2", stems)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_report(args.report, smears, rows, one, cluster_s, differs, differs_w2, malloc)
    print(args.report.read_text())
    return 0


def write_report(path: Path, smears, rows, one, cluster_s: float, differs, differs_w2, malloc) -> None:
    (_, t1, cpu1, cells, before1, after1), (_, t2, cpu2, _, before2, after2) = rows
    cpu = f"{os.cpu_count()} cores ({platform.processor() or platform.machine()})"
    lines = [
        "# Many slides: `run --workers 2` against `--workers 1`, and a dask cluster against one process",
        "",
        "Command: `OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_workers.py` (writes this file).",
        "",
        f"Input: {len(smears)} Chula-RBC-12 smears (640x480; every {max(1, 554 // len(smears))}th file in id order: "
        f"{', '.join(f.name for f in smears)}), `napari-reddino run FOLDER --out OUT` with its defaults "
        "(learned segmenter, the default model, PCA overlay, UMAP, report): "
        f"{cells}. Wall time of the whole command, start-up, the pooled UMAP and report included.",
        "",
        f"Machine: {cpu}; the load average (1/5/15 min) before → after each run is in the table: other jobs on "
        "the machine slow the two workers most (a load near 1 before a run: nothing else was running).",
        "",
        "| command | wall time | CPU time (all its processes) | load before → after |",
        "|---|---|---|---|",
        f"| `napari-reddino run FOLDER --out OUT --workers 1` | {t1:.1f} s | {cpu1:.1f} s | {before1} → {after1} |",
        f"| `napari-reddino run FOLDER --out OUT --workers 2` | {t2:.1f} s | {cpu2:.1f} s | {before2} → {after2} |",
        "",
        f"Speed-up of `--workers 2` over `--workers 1`: **{t1 / t2:.2f}x** (wall time). `--workers 2` used "
        f"{cpu2 - cpu1:+.1f} s of CPU more than `--workers 1`; for scale, `napari-reddino run` on one smear alone "
        f"(a process's start, torch and the model, one image, the report) took {one[0]:.1f} s wall, {one[1]:.1f} s "
        "CPU, just before.",
        "",
        "A two-worker `dask.distributed` cluster started on this machine (`dask scheduler --host 127.0.0.1` "
        "and `dask worker ADDRESS --nworkers 2 --nthreads 1`, as subprocesses), then "
        f"`napari-reddino run FOLDER --out OUT --scheduler ADDRESS`: {cluster_s:.1f} s; its cells.csv (with "
        "the UMAP) and every image's labels, cell table and features are "
        + ("**identical** to the one-process run's." if not differs else f"**not** identical: {', '.join(differs)}.")
        + (" The `--workers 2` run's are identical too." if not differs_w2
           else f" The `--workers 2` run differs: {', '.join(differs_w2)}."),
        "",
        "Why `--workers` does not start its processes with Dask's defaults: Dask sets `MALLOC_TRIM_THRESHOLD_` in "
        "every worker, which turns off glibc's adaptive mmap threshold, so each large numpy temporary is mapped "
        "and unmapped again. One image of `run` in a plain process (the mean of images 2-4 of the input, the "
        "first warming up; `PROBE` in the script):",
        "",
        "| malloc | user s / image | system s / image | page faults / image |",
        "|---|---|---|---|",
        *[f"| {label} | {u:.2f} | {sy:.2f} | {int(f):,} |" for label, (u, sy, f) in malloc.items()],
        "",
        "`--workers` leaves the variable out and turns the workers' own profiler and monitors down "
        "(`distribute.connect`); the `dask worker` processes of the cluster above ran with Dask's defaults, as a "
        "cluster would without the README's config file.",
        "",
    ]
    path.write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
