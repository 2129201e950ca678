"""Labelled red cells of Chula-RBC-12 as the plugin sees them: each labelled image segmented with the default
(learned) segmenter, each labelled centre matched to the mask that contains it, and the plugin's own features
of that mask (:func:`napari_reddino.morphology.measure_cells` and the model's CLS token on the label's
bounding box, as ``napari-reddino run`` embeds it).

A centre in no mask, or in a mask holding two centres, is dropped (the mask is not that one cell). Every
slow part is cached per image under ``cache_dir`` (written atomically): segmentation, then embeddings per
model weights, so a second run, or a run with other morphology measurements, redoes only what changed.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import IMAGE_SUFFIXES, InputError, read_image
from napari_reddino.chula import CLASSES as CHULA_CLASSES


@dataclass
class LabelledCells:
    cells: pd.DataFrame  # image, label, y (class id), type, centroid, morphology features
    embeddings: np.ndarray | None  # (N, D) float32, rows as ``cells``; None without a model
    classes: list[str]
    matched: dict  # centres: labelled, matched, in no mask, sharing a mask


def labelled_images(root) -> list[tuple[str, Path, np.ndarray]]:
    """(stem, image path, rows (x, y, class)) of every image with a non-empty label file."""
    root = Path(root)
    images, labels = root / "images", root / "labels"
    if not images.is_dir() or not labels.is_dir():
        raise InputError(f"Received --data {root}, which has no images/ and labels/ folders; accepted: the "
                         "Chula-RBC-12 layout (images/<id>.jpg, labels/<id>.txt with 'x y class' lines).")
    by_stem = {p.stem: p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES}
    out = []
    for lab in sorted(labels.glob("*.txt"), key=lambda p: (len(p.stem), p.stem)):
        rows = [ln.split() for ln in lab.read_text().splitlines() if ln.strip()]
        if rows and lab.stem in by_stem:
            out.append((lab.stem, by_stem[lab.stem], np.array(rows, dtype=np.float64)))
    if not out:
        raise InputError(f"Received --data {root} with no labelled image; accepted: the Chula-RBC-12 layout.")
    return out


def match_centres(labels: np.ndarray, xyc: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """(label ids, class ids) of the masks holding exactly one labelled centre, and the counts."""
    h, w = labels.shape
    x = np.clip(np.round(xyc[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.round(xyc[:, 1]).astype(int), 0, h - 1)
    hit = labels[y, x]
    ids, counts = np.unique(hit[hit > 0], return_counts=True)
    shared = set(ids[counts > 1].tolist())
    keep = (hit > 0) & ~np.isin(hit, list(shared))
    n = {"labelled": len(xyc), "matched": int(keep.sum()), "no_mask": int((hit == 0).sum()),
         "shared_mask": int(((hit > 0) & ~keep).sum())}
    return hit[keep].astype(np.int64), xyc[keep, 2].astype(np.int64), n


def _segmented(stem, path, cache: Path):
    """(labels, table) of one image, from the cache when there."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.segment import segment_cells

    f = cache / "segmentation" / f"{stem}.npz"
    try:
        with np.load(f, allow_pickle=False) as z:
            table = pd.DataFrame({k[2:]: z[k] for k in z.files if k.startswith("t_")})
            table.attrs["diameter"] = float(z["diameter"])
            return z["labels"], table
    except (OSError, ValueError, KeyError, EOFError):
        pass
    labels, table = segment_cells(read_image(path))
    f.parent.mkdir(parents=True, exist_ok=True)
    cols = {f"t_{c}": table[c].to_numpy().astype(str if c == "type" else table[c].dtype) for c in table.columns}
    with atomic_path(f) as tmp:
        with open(tmp, "wb") as fh:
            np.savez_compressed(fh, labels=labels, diameter=table.attrs["diameter"], **cols)
    return labels, table


def collect(root, cache_dir, model=None, model_key: str = "", log=sys.stderr) -> LabelledCells:
    """Every matched red cell of ``root`` with its morphology (and embedding when ``model`` is given;
    ``model_key`` names its weights in the cache)."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.embed import embed_cells
    from napari_reddino.morphology import measure_cells

    cache = Path(cache_dir)
    items = labelled_images(root)
    frames, embs = [], []
    counts = {"labelled": 0, "matched": 0, "no_mask": 0, "shared_mask": 0, "not_red_cell": 0}
    for i, (stem, path, xyc) in enumerate(items):
        labels, table = _segmented(stem, path, cache)
        ids, y, n = match_centres(labels, xyc)
        for k, v in n.items():
            counts[k] += v
        types = table.set_index("label").loc[ids, "type"].to_numpy()
        red = types == "rbc"  # what the pipeline classifies
        counts["not_red_cell"] += int((~red).sum())
        counts["matched"] -= int((~red).sum())
        ids, y = ids[red], y[red]
        image = read_image(path)
        m = measure_cells(image, labels, table, label_ids=ids)
        m.insert(0, "image", stem)
        m.insert(2, "y", y)
        frames.append(m)
        if model is not None:
            f = cache / f"embeddings-{model_key}" / f"{stem}.npy"
            try:
                e = np.load(f, allow_pickle=False)
                if len(e) != len(ids):
                    raise ValueError("stale")
            except (OSError, ValueError, EOFError):
                tab, e = embed_cells(image, labels, model, label_ids=ids, batch_size=64, precision="fp32")
                order = {int(v): j for j, v in enumerate(tab["label"])}
                e = e[[order[int(v)] for v in ids]]
                f.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(f) as tmp:
                    with open(tmp, "wb") as fh:
                        np.save(fh, e)
            embs.append(e)
        if log is not None and ((i + 1) % 25 == 0 or i + 1 == len(items)):
            print(f"  {i + 1}/{len(items)} images, {sum(len(f) for f in frames)} cells", file=log, flush=True)
    cells = pd.concat(frames, ignore_index=True)
    return LabelledCells(cells, np.concatenate(embs).astype(np.float32) if embs else None,
                         list(CHULA_CLASSES), counts)
