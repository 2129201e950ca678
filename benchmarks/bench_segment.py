"""Segmentation accuracy and speed per source (Chula, BCCD, TXL-PBC's PBC and Raabin fields), written to
results_segment.md.

Chula (labelled red-cell centres): hit = a centre inside a red-cell (``rbc``) mask that holds no other
centre; merge = a centre in a mask holding two or more centres (or typed ``cluster``); miss = anything else.
Images without a label file or with an empty one are skipped.
Box sources: the same for each red-cell box centre, skipping boxes that touch the image border (all red-cell
centres count when deciding whether a mask holds two); a white-cell box is typed right when an object typed
``wbc`` covers its centre; a platelet box is right when its centre is not inside an ``rbc`` mask. BCCD's
red-cell boxes are incomplete, so only its labelled cells are scored. The outline column compares the bounding
box of each mask hit once with its labelled box (a mask that took part of a neighbour overlaps it less). The
diameter column is the segmenter's
estimate over the median side of the image's (non-border) red-cell boxes, a check of the scale found.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment.py [--step N] [--data ../shared/data]
        [--backend threshold,learned]

``--backend`` takes a comma-separated list; each backend is measured on the same images, one row per
source and backend. ``learned=WEIGHTS`` measures the learned segmenter with other weights (a network from
``reddino-train segmenter``) beside the shipped one.

It also draws a contact sheet of the outlines on the disease smears (results_segment_diseases.jpg).
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np

from napari_reddino.images import read_image
from napari_reddino.segment import segment_cells
from reddino_train.data.smears import source_items

HERE = Path(__file__).resolve().parent


def _at(labels, yx):
    yx = np.round(np.asarray(yx, float)).astype(int).reshape(-1, 2)
    yx[:, 0] = yx[:, 0].clip(0, labels.shape[0] - 1)
    yx[:, 1] = yx[:, 1].clip(0, labels.shape[1] - 1)
    return labels[yx[:, 0], yx[:, 1]]


def score(labels, types: dict, centres, scored=None) -> dict:
    """Red-cell centres (y, x): hit / merge / miss over the ``scored`` subset (default all)."""
    m = _at(labels, centres)
    counts = np.bincount(m.ravel(), minlength=int(labels.max()) + 1)
    scored = np.ones(len(m), bool) if scored is None else np.asarray(scored, bool)
    kind = np.array([types.get(int(v), "") for v in m], dtype=object)
    merged = (m > 0) & ((counts[m] >= 2) | (kind == "cluster"))
    hit = (m > 0) & ~merged & (kind == "rbc")
    return {"centres": int(scored.sum()), "hit": int((hit & scored).sum()), "merge": int((merged & scored).sum())}


def box_overlap(labels, types, boxes, centres, scored) -> tuple[float, int, int]:
    """Outline check for the red cells hit once: IoU of each mask's bounding box with its labelled box
    (a mask that took part of a neighbour, or lost part of its cell, overlaps its box less). Returns the IoU
    sum, the count, and how many reach 0.75, over the ``scored`` boxes."""
    from scipy import ndimage

    m = _at(labels, centres)
    counts = np.bincount(m, minlength=int(labels.max()) + 1)
    slices = ndimage.find_objects(labels)
    total, n, good = 0.0, 0, 0
    for (y0, x0, y1, x1), lab, keep in zip(boxes, m, scored):
        if not keep or lab == 0 or counts[lab] != 1 or types.get(int(lab)) != "rbc":
            continue
        sy, sx = slices[lab - 1]
        iy = max(0.0, min(y1, sy.stop) - max(y0, sy.start))
        ix = max(0.0, min(x1, sx.stop) - max(x0, sx.start))
        inter = iy * ix
        iou = inter / ((y1 - y0) * (x1 - x0) + (sy.stop - sy.start) * (sx.stop - sx.start) - inter)
        total, n, good = total + iou, n + 1, good + (iou >= 0.75)
    return total, n, good


def score_boxes(labels, types, boxes) -> dict:
    h, w = labels.shape
    rbc = np.asarray(boxes["rbc"], float).reshape(-1, 4)
    centres = np.stack([(rbc[:, 0] + rbc[:, 2]) / 2, (rbc[:, 1] + rbc[:, 3]) / 2], 1)
    inside = (rbc[:, 0] > 1) & (rbc[:, 1] > 1) & (rbc[:, 2] < h - 2) & (rbc[:, 3] < w - 2)
    s = score(labels, types, centres, inside) if len(rbc) else {"centres": 0, "hit": 0, "merge": 0}
    s["iou_sum"], s["iou_n"], s["iou_good"] = box_overlap(labels, types, rbc, centres, inside)
    for kind, want in (("wbc", lambda t: t == "wbc"), ("platelet", lambda t: t != "rbc")):
        b = np.asarray(boxes[kind], float).reshape(-1, 4)
        c = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], 1)
        got = [want(types.get(int(v), "")) for v in _at(labels, c)] if len(b) else []
        s[f"{kind}_n"], s[f"{kind}_ok"] = len(b), int(sum(got))
    side = np.sqrt((rbc[inside, 2] - rbc[inside, 0]) * (rbc[inside, 3] - rbc[inside, 1]))
    s["box_side"] = float(np.median(side)) if len(side) else np.nan
    return s


def run_source(name, items, step, backend="threshold", offset=0):
    totals, times, cpu, ratios, n = {}, [], [], [], 0
    for i, (path, labelled, boxes) in enumerate(items):
        if i % step != offset:
            continue
        image = read_image(path)
        t0, c0 = time.perf_counter(), time.process_time()
        name_, _, weights = backend.partition("=")
        labels, table = segment_cells(image, name_, **({"weights": weights} if weights else {}))
        times.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        types = dict(zip(table["label"].astype(int), table["type"]))
        s = score(labels, types, labelled["rbc"]) if labelled else score_boxes(labels, types, boxes)
        if not labelled and np.isfinite(s.pop("box_side")) and boxes["rbc"]:
            side = score_boxes(labels, types, boxes)["box_side"]
            if np.isfinite(side):
                ratios.append(table.attrs["diameter"] / side)
        for k, v in s.items():
            totals[k] = totals.get(k, 0) + v
        n += 1
    return name, n, totals, times, cpu, ratios


TYPE_COLOURS = {"rbc": (0, 230, 0), "wbc": (255, 0, 255), "platelet": (255, 220, 0), "cluster": (255, 0, 0),
                "artefact": (0, 200, 255)}


def contact_sheet(root: Path, out: Path, per_folder: int = 2, width: int = 640) -> list[str]:
    """Outlines coloured by type on the first images of each disease folder, two per row; returns the
    per-image summaries."""
    from PIL import Image
    from skimage.segmentation import find_boundaries

    from napari_reddino.segment.types import segmentation_summary

    tiles, notes = [], []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.jpg"))[:per_folder]:
            image = read_image(path)
            labels, table = segment_cells(image)
            lut = np.zeros((labels.max() + 1, 3), np.uint8)
            for lab, kind in zip(table["label"], table["type"]):
                lut[lab] = TYPE_COLOURS[kind]
            edge = find_boundaries(labels, mode="inner")
            edge = np.maximum(edge, np.roll(edge, 1, 0) & (labels > 0))  # two pixels wide, visible when shrunk
            shown = image.copy()
            shown[edge] = lut[labels[edge]]
            im = Image.fromarray(shown)
            im.thumbnail((width, width))
            tiles.append(np.asarray(im))
            notes.append(f"{folder.name}/{path.name}: {segmentation_summary(table, path.name)}")
    h = max(t.shape[0] for t in tiles)
    tiles = [np.pad(t, ((0, h - t.shape[0]), (0, width - t.shape[1]), (0, 0))) for t in tiles]
    if len(tiles) % 2:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + 2], 1) for i in range(0, len(tiles), 2)]
    Image.fromarray(np.concatenate(rows, 0)).save(out, quality=80)
    return notes


def pct(a, b):
    return f"{a / b:.1%}" if b else "–"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent / ".." / "shared" / "data"))
    parser.add_argument("--step", type=int, default=1, help="every N-th image of each source (1 = all)")
    parser.add_argument("--offset", type=int, default=0,
                        help="start at this image (with --step 2: 0 = the even images, the learned segmenter's "
                             "test half; 1 = the odd ones it was trained and tuned on)")
    parser.add_argument("--sources", default="chula,bccd,pbc,raabin")
    parser.add_argument("--backend", default="threshold",
                        help="comma-separated backends (threshold, learned, learned=WEIGHTS for other weights)")
    parser.add_argument("--out", default=str(HERE / "results_segment.md"))
    parser.add_argument("--no-contact-sheet", dest="contact_sheet", action="store_false",
                        help="skip the contact sheet of the disease smears")
    args = parser.parse_args()
    data = Path(args.data)
    rows = [
        f"# Segmentation benchmark: `{args.backend}` backend(s), default settings, per source",
        "",
        "Command (from the repository root):",
        "",
        f"    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_segment.py --step {args.step}"
        + (f" --offset {args.offset}" if args.offset else "")
        + (f" --backend {args.backend}" if args.backend != "threshold" else "")
        + ("" if args.contact_sheet else " --no-contact-sheet")
        + (f" --sources {args.sources}" if args.sources != "chula,bccd,pbc,raabin" else ""),
        "",
        f"Data in `../shared/data` ({'all images' if args.step == 1 else f'every {args.step}-th image of each source, from image {args.offset}'}):"
        " Chula-RBC-12 (Naruenatthanaset et al., arXiv:2012.01321; labelled red-cell centres, 640x480), BCCD "
        "(Shenggan/BCCD_Dataset; boxes, 640x480), TXL-PBC (lugan113/TXL-PBC_Dataset; boxes) split into its PBC "
        "fields (360x363, Acevedo et al.) and Raabin-WBC fields (575x575). Machine: "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, single-threaded "
        "(OMP_NUM_THREADS=1). Time: `segment_cells(image)` (segmentation, types and the cell table; image "
        "already decoded), wall clock and CPU time of the process (the machine is shared: wall clock grows with "
        "other jobs, CPU time much less). Targets: red cells hit ≥ 92% (Chula ≥ 97%), merged ≤ 4%, white cells "
        "typed `wbc` ≥ 90%, ≤ 0.3 s median per 640x480 image.",
        "",
        "| source | backend | images | red cells scored | hit | merged | white cells typed wbc | platelets not in an rbc "
        "| mask box / labelled box, IoU (mean; share ≥ 0.75) | diameter / box side (median, 10-90%) "
        "| s per image (median, 90%) | CPU s per image (median, 90%) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for key, backend in [(k, b) for k in args.sources.split(",") for b in args.backend.split(",")]:
        name, n, t, times, cpu, ratios = run_source(key, source_items(data, key), args.step, backend, args.offset)
        c = t.get("centres", 0)
        ratio = (f"{np.median(ratios):.2f} ({np.percentile(ratios, 10):.2f}-{np.percentile(ratios, 90):.2f})"
                 if ratios else "–")
        iou = (f"{t['iou_sum'] / t['iou_n']:.3f}; {pct(t['iou_good'], t['iou_n'])}" if t.get("iou_n") else "–")
        rows.append(
            f"| {name} | {backend} | {n} | {c} | {pct(t.get('hit', 0), c)} | {pct(t.get('merge', 0), c)} | "
            f"{pct(t.get('wbc_ok', 0), t.get('wbc_n', 0))} ({t.get('wbc_n', 0)}) | "
            f"{pct(t.get('platelet_ok', 0), t.get('platelet_n', 0))} ({t.get('platelet_n', 0)}) | {iou} | {ratio} | "
            f"{np.median(times):.3f}, {np.percentile(times, 90):.3f} | "
            f"{np.median(cpu):.3f}, {np.percentile(cpu, 90):.3f} |")
        print(rows[-1], flush=True)
    if args.contact_sheet:
        sheet = Path(args.out).with_name("results_segment_diseases.jpg")
        notes = contact_sheet(data / "chula-rbc-12-diseases", sheet)
        rows += ["", f"Contact sheet: [`{sheet.name}`]({sheet.name}), the first two 1280x960 smears of each "
                 "folder of `chula-rbc-12-diseases` (he, hs, iron deficiency, megaloblastic, thalassemia), outlines "
                 "coloured by type: rbc green, wbc magenta, platelet yellow, cluster red, artefact cyan.", ""]
        rows += [f"- {n}" for n in notes]
    rows.append("")
    Path(args.out).write_text("\n".join(rows))
    print("\n".join(rows))


if __name__ == "__main__":
    main()
