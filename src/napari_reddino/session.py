"""A saved session: what the plugin made for a set of images, put back later without computing anything again.

A session folder holds ``session.json`` (the manifest below) and, per image, the files
:func:`pipeline.write_outputs` writes (labels TIFF, cell table CSV, features Parquet, PCA PNG; pooled
``cells.csv`` with the UMAP coordinates; ``umap.png``), plus a TIFF copy of each image that was not opened
from a file (a sample, a layer made in napari). Images opened from a file are referred to by their path. The
annotations stay in their own file (``annotate.py``), which the manifest names, so that annotating after a
reopen goes on in the same file. ``napari-reddino run --out DIR`` writes the same folder, so it opens too.

Manifest (``"version": 1``)::

    {"format": "napari-reddino session", "version": 1, "model": "demo",
     "images": [{"name": "smear", "path": "/data/smear.png" or null, "copy": "smear_image.tif" or null,
                 "scale": [1, 1], "translate": [0, 0], "segmentation": {...},
                 "files": {"labels": ..., "cells": ..., "features": ..., "pca": ...},
                 "pca": {"patch": 14, "upsampled": false} or null}],
     "umap": {"images": ["smear"], "file": "cells.csv", "n_neighbors": 15, "min_dist": 0.1,
              "metric": "cosine", "seed": 0} or null,
     "annotations": {"files": {"smear": "/project/reddino-annotations.csv"}, "annotated": {"smear": 6},
                     "project_folder": ... or null}}

Saving writes every file atomically and the manifest last, after removing an older one, so that a failed
save leaves no session (never a manifest naming half-written or mixed files). Opening reads and checks every
file before anything is shown.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError
from napari_reddino.pipeline import STEPS, PipelineResult, SmearResult

SESSION_FILE = "session.json"
FORMAT = "napari-reddino session"
VERSION = 1
ACCEPTED = (f"a session folder holding {SESSION_FILE} (written by 'Save session…' or 'napari-reddino run "
            "--out')")
IMAGE_COPY_SUFFIX = "_image.tif"
UMAP_PARAMS = ("n_neighbors", "min_dist", "metric", "seed")
# columns the annotation dock writes into a cells layer's features: the class comes back from the
# annotation file (the truth), the prediction from the saved cell table
ANNOTATION_COLUMNS = ("class",)


@dataclass
class SessionImage:
    """Where one image of a session comes from and how its layers are placed."""

    name: str
    path: str | None = None  # the file it was opened from; None: a copy is saved in the session
    scale: tuple = (1.0, 1.0)
    translate: tuple = (0.0, 0.0)
    segmentation: dict = field(default_factory=dict)  # the cells layer's metadata["segmentation"]


@dataclass
class Session:
    result: PipelineResult  # images, cells, features, PCA overlays and the UMAP
    images: list[SessionImage]  # one per ``result.smears``, in order
    annotation_files: dict[str, str] = field(default_factory=dict)  # image name -> its annotation file
    project_folder: str | None = None
    annotated: dict[str, int] = field(default_factory=dict)  # image name -> cells annotated when saved

    def missing_annotations(self) -> dict[str, int]:
        """annotation file -> annotations it held at saving, for the files no longer there."""
        missing: dict[str, int] = {}
        for image, n in self.annotated.items():
            path = self.annotation_files.get(image)
            if n and path and not Path(path).is_file():
                missing[path] = missing.get(path, 0) + int(n)
        return missing


# --- save -------------------------------------------------------------------------------------------------
def save_session(session: Session, folder) -> list[Path]:
    """Write ``session`` into ``folder`` (created if needed); return the files written, manifest last."""
    from napari_reddino.outputs import output_stems
    from napari_reddino.pipeline import write_image_outputs, write_pooled_outputs

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise InputError(f"Received {str(folder)!r}, which is a file; accepted: a folder to save the session in.")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / SESSION_FILE).unlink(missing_ok=True)  # a failure below must not leave an old manifest naming new files
    result = session.result
    stems = output_stems([s.name for s in result.smears])
    written = [p for s, stem in zip(result.smears, stems) for p in write_image_outputs(s, folder, stem)]
    written += write_pooled_outputs(result, folder)
    return written + write_manifest(session, folder)


def write_manifest(session: Session, folder) -> list[Path]:
    """The copies of the images not on disk and ``session.json``, for results already written into ``folder``
    under ``outputs.output_stems`` names (by :func:`save_session`, or by ``napari-reddino run``)."""
    import tifffile

    from napari_reddino.atomic import atomic_path, atomic_write_text
    from napari_reddino.outputs import output_stems
    from napari_reddino.formats import image_files

    folder = Path(folder)
    result = session.result
    if len(session.images) != len(result.smears):
        raise RuntimeError(f"{len(session.images)} image entries for {len(result.smears)} images")
    written, entries = [], []
    for s, info, stem in zip(result.smears, session.images, output_stems([s.name for s in result.smears])):
        paths = image_files(folder, stem)
        copy = None
        if info.path is None:
            copy = stem + IMAGE_COPY_SUFFIX
            with atomic_path(folder / copy) as tmp:
                tifffile.imwrite(tmp, s.image, compression="zlib")
            written.append(folder / copy)
        made = {"labels": s.labels is not None, "cells": s.labels is not None, "features": s.embeddings is not None,
                "pca": s.pca is not None}
        entries.append({"name": s.name, "path": str(Path(info.path).resolve()) if info.path else None,
                        "copy": copy, "scale": [float(v) for v in info.scale],
                        "translate": [float(v) for v in info.translate],
                        "segmentation": _jsonable(info.segmentation or {}),
                        "files": {k: paths[k].name for k, ok in made.items() if ok},
                        "pca": {"patch": int(s.patch), "upsampled": bool(s.pca_upsampled),
                                "factor": [float(f) for f in s.pca_factor]}
                        if s.pca is not None else None})
    umap = None
    if result.umap is not None:
        umap = {"images": [s.name for s in result.umap_smears()], "file": "cells.csv",
                **{k: result.umap_params.get(k) for k in UMAP_PARAMS}}
    manifest = {"format": FORMAT, "version": VERSION, "model": result.model, "images": entries, "umap": umap,
                "annotations": {"files": {k: str(v) for k, v in session.annotation_files.items()},
                                "annotated": {k: int(v) for k, v in session.annotated.items()},
                                "project_folder": str(session.project_folder) if session.project_folder else None}}
    written.append(atomic_write_text(folder / SESSION_FILE, json.dumps(manifest, indent=1)))
    return written


def _jsonable(value):
    """Metadata as JSON can hold it (paths and numpy numbers become plain values)."""
    return json.loads(json.dumps(value, default=lambda v: v.item() if hasattr(v, "item") else str(v)))


# --- open -------------------------------------------------------------------------------------------------
def read_session(folder) -> Session:
    """Read and check a whole session folder; InputError (one line) before anything is returned when it is
    not a session, is from a newer version, or misses a file."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    _check_files(folder, manifest)
    smears, images = [], []
    for entry in manifest["images"]:
        smears.append(_read_smear(folder, entry))
        images.append(SessionImage(entry["name"], entry.get("path"), tuple(entry.get("scale") or (1.0, 1.0)),
                                   tuple(entry.get("translate") or (0.0, 0.0)), entry.get("segmentation") or {}))
    has = lambda attr: any(getattr(s, attr) is not None for s in smears)  # noqa: E731
    steps = tuple(step for step, made in zip(STEPS, (has("labels"), has("embeddings"), has("pca"),
                                                     manifest.get("umap") is not None)) if made)
    result = PipelineResult(smears, model=manifest.get("model"), steps=steps)
    if manifest.get("umap"):
        _read_umap(folder, manifest["umap"], result)
    ann = manifest.get("annotations") or {}
    return Session(result, images, dict(ann.get("files") or {}), ann.get("project_folder"),
                   {k: int(v) for k, v in (ann.get("annotated") or {}).items()})


def read_manifest(folder: Path) -> dict:
    if not folder.is_dir():
        raise InputError(f"Received {str(folder)!r}, which is not a folder; accepted: {ACCEPTED}.")
    path = folder / SESSION_FILE
    if not path.is_file():
        raise InputError(f"Received {str(folder)!r}, which holds no {SESSION_FILE}; accepted: {ACCEPTED}.")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"Could not read {str(path)!r} ({type(exc).__name__}); accepted: {ACCEPTED}.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise InputError(f"Received {str(path)!r}, which is not a napari-reddino session manifest; accepted: "
                         f"{ACCEPTED}.")
    version = manifest.get("version")
    if not isinstance(version, int) or version > VERSION:
        raise InputError(f"Received a session of format version {version} in {str(folder)!r}, written by a newer "
                         f"napari-reddino; accepted: version {VERSION} or older (update napari-reddino to open it).")
    if not manifest.get("images"):
        raise InputError(f"Received {str(path)!r} naming no images; accepted: {ACCEPTED}.")
    return manifest


def _check_files(folder: Path, manifest: dict) -> None:
    """Every file the session needs exists, else one line naming all the missing ones."""
    missing = []
    for entry in manifest["images"]:
        if entry.get("copy"):
            if not (folder / entry["copy"]).is_file():
                missing.append(entry["copy"])
        elif not entry.get("path") or not Path(entry["path"]).is_file():
            missing.append(f"the image {entry.get('path') or entry.get('name')!r}")
        missing += [name for name in (entry.get("files") or {}).values() if not (folder / name).is_file()]
    umap = manifest.get("umap")
    if umap and not (folder / umap.get("file", "cells.csv")).is_file():
        missing.append(umap.get("file", "cells.csv"))
    if missing:
        raise InputError(f"Session {str(folder)!r} is missing {', '.join(missing)}; accepted: a session folder "
                         "with every file it names (images opened from a file must still be at their path).")


def _read_smear(folder: Path, entry: dict) -> SmearResult:
    import tifffile

    from napari_reddino.formats import read_features, read_labels
    from napari_reddino.images import read_image

    name, files = entry["name"], entry.get("files") or {}
    try:
        image = tifffile.imread(folder / entry["copy"]) if entry.get("copy") else read_image(entry["path"])
        s = SmearResult(name, np.asarray(image))
        if files.get("labels"):
            s.labels = read_labels(folder / files["labels"])
            s.table = pd.read_csv(folder / files["cells"])
            for col in ANNOTATION_COLUMNS + ("prediction",):  # text columns; a class comes from its file only
                if col in s.table.columns:
                    s.table[col] = "" if col in ANNOTATION_COLUMNS else s.table[col].fillna("").astype(str)
        if files.get("features"):
            table, s.embeddings = read_features(folder / files["features"])
            s.embedded = table["label"].to_numpy(np.int64)
        if files.get("pca"):
            from PIL import Image

            with Image.open(folder / files["pca"]) as im:
                full = np.asarray(im)
            pca = entry.get("pca") or {}
            s.patch, s.pca_upsampled = int(pca.get("patch", 14)), bool(pca.get("upsampled", False))
            s.pca_factor = tuple(float(f) for f in pca.get("factor", (1.0, 1.0)))
            # the PNG is the overlay repeated over each square's pixels: the pixel at a square's centre gives it back
            s.pca = (full if s.pca_upsampled else _grid_from_png(full, s.patch, s.pca_factor)).astype(np.float32) / 255
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - a damaged file is bad input, said in one line
        raise InputError(f"Could not read the files of {name!r} in session {str(folder)!r} "
                         f"({type(exc).__name__}: {exc}); accepted: {ACCEPTED}.") from None
    hw = s.image.shape[:2] if s.image.ndim == 3 and s.image.shape[-1] in (3, 4) else s.image.shape[-2:]
    if s.labels is not None and s.labels.shape != tuple(hw):
        raise InputError(f"Received the image {entry.get('path') or entry.get('copy')!r} of {hw[1]} x {hw[0]} "
                         f"pixels for cells found on {s.labels.shape[1]} x {s.labels.shape[0]}; accepted: the image "
                         "the session was saved with.")
    return s


def _read_umap(folder: Path, umap: dict, result: PipelineResult) -> None:
    names = {s.name for s in result.smears}
    if any(name not in names for name in umap["images"]):
        raise InputError(f"Received a UMAP of images {umap['images']} in {str(folder)!r} whose images are not "
                         f"all in the session; accepted: {ACCEPTED}.")
    result.umap_images = list(umap["images"])
    result.umap_params = {k: umap.get(k) for k in UMAP_PARAMS if umap.get(k) is not None}
    cells = pd.read_csv(folder / umap.get("file", "cells.csv"), dtype={"image": str})
    if not {"image", "label", "umap_x", "umap_y"} <= set(cells.columns):
        raise InputError(f"Received {umap.get('file', 'cells.csv')!r} without UMAP coordinates in "
                         f"{str(folder)!r}; accepted: {ACCEPTED}.")
    xy = cells.dropna(subset=["umap_x", "umap_y"]).set_index(["image", "label"])[["umap_x", "umap_y"]]
    keys = pd.MultiIndex.from_tuples([(s.name, int(lbl)) for s in result.umap_smears()
                                      for lbl in (s.embedded if s.embedded is not None else [])])
    found = keys.isin(xy.index)
    if not found.all() or not len(keys):
        raise InputError(f"Received UMAP coordinates for {int(found.sum())} of the {len(keys)} cells in "
                         f"{str(folder)!r}; accepted: {ACCEPTED}.")
    result.umap = xy.loc[keys].to_numpy(np.float32)


def _grid_from_png(full: np.ndarray, patch: int, factor) -> np.ndarray:
    """The patch grid back from its PNG at image resolution: the image pixel nearest each patch's centre
    (a patch of the image enlarged ``factor`` times covers ``patch / factor`` image pixels)."""
    picks = []
    for n, f in zip(full.shape[:2], factor):
        q = patch / f
        count = -(-round(n * f) // patch)
        picks.append(np.clip(np.round(np.arange(count) * q + (q - 1) / 2).astype(int), 0, n - 1))
    return full[picks[0]][:, picks[1]]
