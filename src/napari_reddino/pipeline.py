"""The whole chain, headless: segment → per-cell RedDino features → shipped classifier → PCA overlay → UMAP.

Used by ``napari-reddino run`` (and so the README's main job) and by the "Run the whole pipeline" dock.
Each step is the core module's own function; this file only sequences them and writes the results.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.progress import Progress, tagged
from napari_reddino.embedding import MIN_CELLS
from napari_reddino.images import InputError, to_rgb_uint8
from napari_reddino.segment import DEFAULT_BACKEND
from napari_reddino.segment.types import ANALYSED_DEFAULT

STEPS = ("segment", "embed", "pca", "umap")
MIN_PCA_SQUARES = 4  # fit_pca needs 4 of the model's squares (a 15 x 15 image at 14 px, with the partial ones)


@dataclass
class PipelineOptions:
    backend: str = DEFAULT_BACKEND
    diameter: float | None = None
    drop_border: bool = False
    model: str | None = None  # None: models.default_spec() (a cached RedDino, else the shipped demo model)
    precision: str = "auto"
    device: str = "auto"  # cuda, mps or cpu, whichever is available (runtime.resolve_device)
    batch_size: int = 32
    pca_overlap: int = 0
    pca_resolution: float | str = "auto"  # enlargement before the PCA overlay: "auto" (cells ~6 patches), 1 = off
    steps: tuple[str, ...] = STEPS
    seed: int = 0
    cell_types: tuple[str, ...] = ANALYSED_DEFAULT  # the objects embedded and put in the UMAP
    classifier: str = "morphology"  # the shipped classifier (napari_reddino.classifier.FEATURE_SETS)


@dataclass
class SmearResult:
    name: str
    image: np.ndarray  # (H, W, 3) uint8
    labels: np.ndarray | None = None
    table: pd.DataFrame | None = None  # one row per object (cells.cell_table columns, type, border)
    embeddings: np.ndarray | None = None  # (M, D), one row per label of ``embedded``
    embedded: np.ndarray | None = None  # the labels embedded: the objects of the chosen types, in table order
    pca: np.ndarray | None = None  # (gh, gw, 3|4) float overlay on the patch grid ((H, W, 3|4) when upsampled)
    patch: int | None = None
    pca_factor: tuple[float, float] = (1.0, 1.0)  # the enlargement the overlay's grid was computed at (y, x)
    pca_upsampled: bool = False


@dataclass
class PipelineResult:
    smears: list[SmearResult]
    model: str | None = None
    umap: np.ndarray | None = None  # (sum N, 2): the embedded cells of ``umap_images``' smears, in order
    umap_images: list[str] | None = None  # the smears the UMAP pools (None: every smear with embeddings)
    umap_params: dict = field(default_factory=dict)  # n_neighbors, min_dist, metric, seed
    steps: tuple[str, ...] = field(default_factory=tuple)
    # one line per step that could not run on this input (too few cells for a UMAP, an image too small
    # for an overlay): the other steps' results stand, and the dock and the CLI say why
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)  # (name, why) of inputs that could not be read
    classifier_note: str = ""  # the shipped classifier's fallback to morphology alone, said once ('' when none)

    def cells(self) -> pd.DataFrame:
        """Pooled table of every object: image, label, centroid, morphology, type, border; with the
        embedding step ``analysed`` (embedded, so in the UMAP) and UMAP coordinates (NaN for objects left
        out) if computed."""
        tables = [s.table.assign(image=s.name) for s in self.smears if s.table is not None]
        if not tables:
            return pd.DataFrame()
        df = pd.concat(tables, ignore_index=True)
        df = df[["image"] + [c for c in df.columns if c != "image"]]
        if "embed" in self.steps:
            df["analysed"] = np.concatenate([np.isin(s.table["label"], s.embedded if s.embedded is not None
                                                     else []) for s in self.smears if s.table is not None])
            if self.umap is not None:
                df = df.merge(self.umap_table(), on=["image", "label"], how="left")
        return df

    def umap_smears(self) -> list[SmearResult]:
        """The smears whose cells the UMAP's rows are, in the order of its rows."""
        if self.umap_images is None:
            return [s for s in self.smears if s.embeddings is not None and len(s.embeddings)]
        by_name = {s.name: s for s in self.smears}
        return [by_name[name] for name in self.umap_images]

    def umap_table(self) -> pd.DataFrame:
        """``image, label, umap_x, umap_y`` of each UMAP point, one row per row of ``umap``."""
        keys = [(s.name, int(lbl)) for s in self.umap_smears() for lbl in s.embedded]
        if self.umap is None or len(keys) != len(self.umap):
            raise RuntimeError(f"{0 if self.umap is None else len(self.umap)} UMAP points for {len(keys)} cells")
        return pd.DataFrame({"image": [k[0] for k in keys], "label": np.array([k[1] for k in keys], np.int64),
                             "umap_x": self.umap[:, 0], "umap_y": self.umap[:, 1]})

    def summary(self) -> str:
        """One line for the dock and the CLI: objects found, what was analysed, what was left out."""
        n = sum(len(s.table) for s in self.smears if s.table is not None)
        line = f"{len(self.smears)} image(s), {n} objects"
        if "embed" in self.steps:
            m = sum(len(s.embedded) for s in self.smears if s.embedded is not None)
            left = self.left_out()
            line += f"; {m} analysed" + (f" ({left})" if left else "")
        return line + (f", model {self.model}" if self.model else "")

    def left_out(self) -> str:
        """What the embedding step left out, over all images ('' when nothing): ``"left out 2 white
        cells, 1 platelet"``."""
        from napari_reddino.segment.types import left_out_note

        cells = self.cells()
        return left_out_note(cells, cells["analysed"]) if "analysed" in cells.columns else ""


def iter_pipeline(images, options: PipelineOptions | None = None, done=None, previous=None):
    """Progress generator over ``images`` = [(name, array or a function that reads it), ...]; returns a
    :class:`PipelineResult`. An input whose function raises ``ReadError`` (a file that cannot be read) is left
    out and named in ``result.failed``; the others go on. ``done(smear)`` is called as each image is finished
    (the CLI writes its files then); ``previous(name)`` may give an image's :class:`SmearResult` from an
    earlier run (the CLI's ``--resume``), which is then not computed again."""
    from napari_reddino.images import ReadError

    opts = options or PipelineOptions()
    unknown = set(opts.steps) - set(STEPS)
    if unknown:
        raise InputError(f"Received steps {sorted(unknown)}; accepted: {', '.join(STEPS)}.")
    images = [(name, data if callable(data) else to_rgb_uint8(data)) for name, data in images]  # bad arrays: now
    skipped: list[str] = []
    failed: list[tuple[str, str]] = []
    if not images:
        raise InputError("Received no images; accepted: one or more images.")
    model, spec = None, None
    if {"embed", "pca"} & set(opts.steps):
        from napari_reddino import models

        spec = opts.model or models.default_spec()
        yield Progress(0, 1, f"Loading model {spec}")
        model = models.load_model(spec, device=opts.device)

    smears: list[SmearResult] = []
    notes: set[str] = set()
    for i, (name, data) in enumerate(images):
        before = previous(name) if previous else None
        if before is not None:
            if "prediction" not in before.table.columns:  # written before the shipped classifier
                notes.add(classify_smear(before, spec, opts.classifier))
            smears.append(before)
            continue
        try:
            s = SmearResult(name, to_rgb_uint8(data()) if callable(data) else data)
        except (ReadError, MemoryError) as exc:
            failed.append((name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__))
            continue
        smears.append(s)
        lines, note = yield from iter_smear(s, model, spec, opts, f"[{i + 1}/{len(images)}] {s.name}")
        skipped += lines
        notes.add(note)
        if done:
            done(s)

    if not smears:
        raise InputError(f"Received {len(images)} image(s), none of which could be read ({failed[0][1]}); "
                         "accepted: image files.")
    result = PipelineResult(smears, model=spec, steps=tuple(opts.steps), skipped=skipped, failed=failed,
                            classifier_note=" ".join(sorted(n for n in notes if n)))
    yield from iter_pooled(result, opts)
    return result


def iter_smear(s: SmearResult, model, spec, opts: PipelineOptions, tag: str = ""):
    """Progress generator: one image's steps into ``s`` (segment, features, the shipped classifier, the PCA
    overlay; ``model`` loaded from ``spec`` when the steps need it). Returns (lines saying what could not be
    made, the classifier's note). ``iter_pipeline`` runs it in turn, ``napari-reddino run`` as one unit each."""
    from napari_reddino.segment import iter_segment_cells

    tag = tag or s.name
    skipped: list[str] = []
    seg_opts = {"diameter": opts.diameter} if opts.diameter else {}
    s.labels, s.table = yield from tagged(
        iter_segment_cells(s.image, opts.backend, opts.drop_border, **seg_opts), tag)
    if "embed" in opts.steps:
        from napari_reddino.embed import iter_embed_cells
        from napari_reddino.segment.types import select_cells

        s.embedded = s.table["label"].to_numpy()[select_cells(s.table, opts.cell_types)]
        if len(s.embedded):
            table, emb = yield from tagged(iter_embed_cells(
                s.image, s.labels, model, batch_size=opts.batch_size, precision=opts.precision,
                label_ids=s.embedded), tag)
            s.embeddings = emb[_order(table["label"].to_numpy(), s.embedded)]
    yield Progress(0, 1, f"{tag}: classifying red cells")
    note = classify_smear(s, spec, opts.classifier)
    if "pca" in opts.steps:
        from napari_reddino.patch_features import model_patch_size
        from napari_reddino.pca import fit_pca
        from napari_reddino.pca_resolution import NoCellsFound, iter_cell_features

        patch = model_patch_size(model)
        h, w = s.image.shape[:2]
        if math.ceil(h / patch) * math.ceil(w / patch) < MIN_PCA_SQUARES:
            skipped.append(f"{s.name} is {w} x {h} pixels: too small for a PCA overlay (it needs at least "
                           f"{patch + 1} x {patch + 1})")
        else:
            try:
                found = yield from tagged(iter_cell_features(
                    s.image, model, opts.pca_resolution, table=s.table, name=s.name,
                    overlap=opts.pca_overlap, precision=opts.precision), tag)
            except NoCellsFound as exc:  # the other steps' results stand
                skipped.append(str(exc))
            else:
                s.pca, s.patch, s.pca_factor = fit_pca(found.grid).transform(found.grid), patch, found.factor
    return skipped, note


def iter_pooled(result: PipelineResult, opts: PipelineOptions):
    """Progress generator: the step over all images of ``result`` (the UMAP), or the line saying why not."""
    smears = result.smears
    with_emb = [s.embeddings for s in smears if s.embeddings is not None and len(s.embeddings)]
    n_cells = sum(len(e) for e in with_emb)
    if "umap" in opts.steps and "embed" in opts.steps and n_cells < MIN_CELLS:
        what = "red cells" if tuple(opts.cell_types) == tuple(ANALYSED_DEFAULT) else "cells"
        found = f"{n_cells} {what} found" if n_cells != 1 else f"1 {what[:-1]} found"
        kept = ("the segmentation and the PCA overlay are" if any(s.pca is not None for s in smears)
                else "the segmentation is")
        result.skipped.append(f"{found}: too few for a UMAP map (it needs at least {MIN_CELLS}); {kept} kept")
    elif "umap" in opts.steps and with_emb:
        from napari_reddino.embedding import umap_embed

        yield Progress(0, 1, "UMAP")
        result.umap_params = {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": opts.seed}
        result.umap = umap_embed(np.concatenate(with_emb), **result.umap_params)
        yield Progress(1, 1, "UMAP")


def classify_smear(s: SmearResult, spec=None, name: str = "morphology") -> str:
    """:func:`predict_cells` on one smear of the pipeline."""
    return predict_cells(s.image, s.labels, s.table, s.embeddings, s.embedded, spec, name)


def predict_cells(image, labels, table: pd.DataFrame, embeddings=None, embedded=None, spec=None,
                  name: str = "morphology") -> str:
    """Put the shipped classifier's ``prediction`` and ``confidence`` of every red cell into ``table`` (''
    and NaN for other objects); with the embeddings (rows of the labels ``embedded``) when they are of the
    model it was trained on, else from morphology alone. Returns :func:`napari_reddino.classifier.choose`'s
    note. The pipeline and the features dock both call it."""
    from napari_reddino.classifier import classify_smear as classify

    red = table["label"].to_numpy()[table["type"].to_numpy() == "rbc"] if "type" in table.columns \
        else table["label"].to_numpy()
    emb = None
    if embeddings is not None and embedded is not None and np.isin(red, embedded).all():
        emb = embeddings[_order(embedded, red)]
    got, note = classify(image, labels, table, red, emb, spec if emb is not None else None, name)
    by_label = got.set_index("label")
    hit = table["label"].isin(by_label.index).to_numpy()
    table["prediction"] = ""
    table["confidence"] = np.float32(np.nan)
    table.loc[hit, "prediction"] = by_label.loc[table["label"][hit], "prediction"].to_numpy()
    table.loc[hit, "confidence"] = by_label.loc[table["label"][hit], "confidence"].to_numpy()
    return note


def _order(source_labels, wanted_labels) -> np.ndarray:
    """Row indices into ``source_labels`` giving ``wanted_labels`` in order."""
    index = {int(v): i for i, v in enumerate(source_labels)}
    missing = [int(v) for v in wanted_labels if int(v) not in index]
    if missing:
        raise RuntimeError(f"embedding rows missing for labels {missing[:5]}")
    return np.array([index[int(v)] for v in wanted_labels], dtype=int)


def write_outputs(result: PipelineResult, out_dir) -> list[Path]:
    """Write what a person takes away: per image the labels TIFF, cell table, features and PCA overlay
    (PNG at image resolution); for all images the pooled cell table and the UMAP plot."""
    from napari_reddino.outputs import output_stems

    stems = output_stems([s.name for s in result.smears])
    written = [p for s, stem in zip(result.smears, stems) for p in write_image_outputs(s, out_dir, stem)]
    return written + write_pooled_outputs(result, out_dir)


def write_image_outputs(s: SmearResult, out_dir, stem: str) -> list[Path]:
    """One image's files (each written atomically): what it has of labels, cell table, features, overlay."""
    from napari_reddino.formats import features_frame, image_files, save_labels, save_png, write_cell_table, write_table

    paths = image_files(out_dir, stem)
    written: list[Path] = []
    if s.labels is not None:
        save_labels(s.labels, paths["labels"])
        written += [paths["labels"], write_cell_table(s.table, paths["cells"])]
    if s.embeddings is not None:
        rows = s.table.set_index("label").loc[s.embedded].reset_index()
        written.append(write_table(features_frame(rows, s.embeddings, s.name), paths["features"]))
    if s.pca is not None:
        written.append(save_png(pca_png(s), paths["pca"]))
    return written


def pca_png(s: SmearResult) -> np.ndarray:
    """The PCA overlay at image resolution as uint8 (rounded as the layer's colours are); RGBA kept."""
    from napari_reddino.pca import upsample_overlay

    full = s.pca if s.pca_upsampled else upsample_overlay(s.pca, s.patch, s.image.shape,
                                                                           factor=s.pca_factor)
    return np.round(np.clip(full, 0, 1) * 255).astype(np.uint8)


def read_image_outputs(name: str, image, out_dir, stem: str, steps) -> SmearResult | None:
    """One image's results from an earlier run into ``out_dir`` (``--resume``), or None when any file the
    ``steps`` make is missing (the image is then done again)."""

    from napari_reddino.formats import image_files, read_features, read_labels

    paths = image_files(out_dir, stem)
    wanted = ["labels", "cells"] + (["features"] if "embed" in steps else []) + (["pca"] if "pca" in steps else [])
    if not all(paths[k].is_file() for k in wanted):
        return None
    s = SmearResult(name, image() if callable(image) else image)
    s.labels = read_labels(paths["labels"])
    s.table = pd.read_csv(paths["cells"])
    if "embed" in steps:
        table, X = read_features(paths["features"])
        s.embedded, s.embeddings = table["label"].to_numpy(), X
    if "pca" in steps:  # the PNG is the overlay at image resolution: it comes back as an upsampled overlay
        from PIL import Image

        with Image.open(paths["pca"]) as im:
            s.pca = np.asarray(im).astype(np.float32) / 255
        s.pca_upsampled, s.pca_factor, s.patch = True, (1.0, 1.0), 1  # one image pixel per square
    return s


def write_pooled_outputs(result: PipelineResult, out_dir) -> list[Path]:
    """The pooled cell table of all images and the UMAP plot (written atomically), and the files other
    programs open (``exports.py``: ``cells.h5ad``, per image ``_cells.geojson`` and ``_cells.parquet``)."""
    from napari_reddino.atomic import atomic_path
    from napari_reddino.exports import write_result_exports

    out = Path(out_dir)
    written: list[Path] = []
    cells = result.cells()
    if len(cells):
        with atomic_path(out / "cells.csv") as tmp:
            cells.to_csv(tmp, index=False)
        written.append(out / "cells.csv")
    if result.umap is not None:
        from napari_reddino.formats import UMAP_COLUMNS, class_colours, plot_umap
        from napari_reddino.report import final_class

        points = result.umap_table().merge(cells.drop(columns=UMAP_COLUMNS, errors="ignore"),
                                           on=["image", "label"], how="left")
        by_class = (final_class(points) != "").any()  # the classes (annotated, else predicted), else the images
        with atomic_path(out / "umap.png") as tmp:
            plot_umap(points[UMAP_COLUMNS].to_numpy(), final_class(points) if by_class else points["image"], tmp,
                      title=f"RedDino cell embedding ({len(points)} cells)", colours=class_colours(),
                      none="not classified" if by_class else "")
        written.append(out / "umap.png")
    return written + write_result_exports(result, cells, out)
