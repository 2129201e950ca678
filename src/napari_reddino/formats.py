"""The tables the plugin, the CLI and ``reddino-train`` write and read, and their column names: one home.

- A cell's position is ``centroid_x, centroid_y`` (pixels) in every table: the cell table, the features
  table, the annotation dock's export. (Files written before 2026-12 name them ``x, y`` in the features
  table: read back under the new names.)
- A cell's place on the UMAP is ``umap_x, umap_y`` everywhere: ``cells.csv`` of ``run``, ``umap.csv`` of
  ``umap``, the report's table. (``umap_1, umap_2`` of older ``umap.csv`` files are read back too.)
- The features table (``embed``'s FEATURES file, ``run``'s ``<image>_features.parquet``): ``image, label,
  centroid_x, centroid_y, emb_0 … emb_{D-1}``, Parquet or CSV.
- A label image (``segment``'s ``<image>_labels.tif``, ``run``'s, a session's): a zlib TIFF, uint16 when the
  labels fit, else uint32; read back from TIFF, PNG or NumPy ``.npy`` (:func:`read_labels`).
- The UMAP plot (``umap.png`` of ``run`` and ``umap``, the HTML report's map, the evaluation's panels):
  :func:`scatter_groups` draws it, one colour per class (the dock's class colours where a class has one).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError

FEATURE_PREFIX = "emb_"
CENTROID_COLUMNS = ["centroid_x", "centroid_y"]
UMAP_COLUMNS = ["umap_x", "umap_y"]
FEATURE_TABLE_COLUMNS = ["image", "label", *CENTROID_COLUMNS]  # then emb_0 … emb_{D-1}
OLD_NAMES = {"x": "centroid_x", "y": "centroid_y", "umap_1": "umap_x", "umap_2": "umap_y"}  # files of before


def with_current_names(table: pd.DataFrame) -> pd.DataFrame:
    """``table`` with the column names of older files renamed to today's (where today's is not there too)."""
    rename = {old: new for old, new in OLD_NAMES.items() if old in table.columns and new not in table.columns}
    return table.rename(columns=rename) if rename else table


# --- the features table ----------------------------------------------------------------------------------
def features_frame(table: pd.DataFrame, embeddings: np.ndarray, image: str = "") -> pd.DataFrame:
    """One row per cell of ``table`` (which has ``label`` and the centroid): ``image, label, centroid_x,
    centroid_y, emb_0 … emb_{D-1}``."""
    emb = np.asarray(embeddings, dtype=np.float32)
    head = pd.DataFrame({"image": str(image), "label": table["label"].to_numpy(),
                         "centroid_x": table["centroid_x"].to_numpy(), "centroid_y": table["centroid_y"].to_numpy()})
    return pd.concat([head, pd.DataFrame(emb, columns=[f"{FEATURE_PREFIX}{i}" for i in range(emb.shape[1])])],
                     axis=1)


def read_features(path) -> tuple[pd.DataFrame, np.ndarray]:
    """A features file (Parquet or CSV) → (its other columns, the (N, D) feature matrix)."""
    from napari_reddino.cells import label_column
    from napari_reddino.embedding import check_embeddings

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Received {str(path)!r}, which is not a file; accepted: a FEATURES .parquet or .csv "
                         "written by 'napari-reddino embed'.")
    try:
        df = pd.read_parquet(path) if path.suffix.lower() in (".parquet", ".pq") else pd.read_csv(path)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"Could not read {str(path)!r} ({type(exc).__name__}); accepted: a FEATURES .parquet "
                         "or .csv file.") from None
    emb_cols = sorted((c for c in df.columns if str(c).startswith(FEATURE_PREFIX) and str(c)[4:].isdigit()),
                      key=lambda c: int(str(c)[4:]))
    missing = [c for c in ("image", "label") if c not in df.columns]
    if missing or len(emb_cols) < 2:
        raise InputError(f"Received {str(path)!r} with columns {list(df.columns)[:8]}; accepted: columns image, "
                         "label, centroid_x, centroid_y, emb_0..emb_{D-1}.")
    table = with_current_names(df[[c for c in df.columns if c not in emb_cols]].reset_index(drop=True))
    table["image"] = table["image"].astype(str)
    table["label"] = label_column(table["label"], repr(str(path)))
    return table, check_embeddings(df[emb_cols].to_numpy())


def features_with_table(table: pd.DataFrame, X: np.ndarray) -> pd.DataFrame:
    """The features table back in one frame (what :func:`read_features` split)."""
    cols = [f"{FEATURE_PREFIX}{j}" for j in range(X.shape[1])]
    return pd.concat([table.reset_index(drop=True), pd.DataFrame(X, columns=cols)], axis=1)


def write_table(frame: pd.DataFrame, path) -> Path:
    """Write ``frame`` as Parquet or CSV according to the suffix (atomically: a kill leaves no half file)."""
    from napari_reddino.atomic import atomic_path

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".parquet", ".csv"):
        raise InputError(f"Received output {str(path)!r}; accepted: a .parquet or .csv file name.")
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False) if suffix == ".parquet" else frame.to_csv(tmp, index=False)
    return path


# --- one image's files in an output folder ---------------------------------------------------------------
IMAGE_FILES = {"labels": "_labels.tif", "cells": "_cells.csv", "features": "_features.parquet", "pca": "_pca.png"}


def image_files(out_dir, stem: str) -> dict[str, Path]:
    """Where one image's results go in ``segment``'s, ``pca``'s and ``run``'s folders: labels, cells, features,
    pca (``stem``: ``outputs.output_stems``)."""
    return {kind: Path(out_dir) / f"{stem}{suffix}" for kind, suffix in IMAGE_FILES.items()}


def stem_of_labels(file_name: str) -> str | None:
    """The image stem of a ``<stem>_labels.tif`` name, None for another name."""
    suffix = IMAGE_FILES["labels"]
    return file_name[:-len(suffix)] if file_name.endswith(suffix) else None


def write_cell_table(table: pd.DataFrame, path) -> Path:
    """The per-image cell table (CSV, atomically)."""
    from napari_reddino.atomic import atomic_path

    with atomic_path(path) as tmp:
        table.to_csv(tmp, index=False)
    return Path(path)


def save_png(picture: np.ndarray, path) -> Path:
    """An overlay or figure (uint8 RGB/RGBA) as a PNG, atomically."""
    from PIL import Image

    from napari_reddino.atomic import atomic_path

    with atomic_path(path) as tmp:
        Image.fromarray(picture).save(tmp, format="PNG")
    return Path(path)


# --- label images ----------------------------------------------------------------------------------------
LABEL_SUFFIXES = (".tif", ".tiff", ".png", ".npy")


def save_labels(labels, path) -> None:
    """Write labels as a compressed TIFF, uint16 when it holds the labels, else uint32 (atomically)."""
    import tifffile

    from napari_reddino.atomic import atomic_path
    from napari_reddino.cells import check_labels

    labels = check_labels(labels)
    dtype = np.uint16 if labels.max(initial=0) <= np.iinfo(np.uint16).max else np.uint32
    with atomic_path(path) as tmp:
        tifffile.imwrite(tmp, labels.astype(dtype), compression="zlib")


def read_labels(path, image_shape=None) -> np.ndarray:
    """A label image (TIFF, PNG or .npy) as int32, checked (against ``image_shape`` (H, W) when given)."""
    from napari_reddino.cells import check_labels

    path = Path(path)
    try:
        if path.suffix.lower() == ".npy":
            data = np.load(path, allow_pickle=False)
        elif path.suffix.lower() in (".tif", ".tiff"):
            import tifffile

            data = tifffile.imread(path)
        else:
            from PIL import Image

            with Image.open(path) as im:
                data = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"Could not read labels {str(path)!r} ({type(exc).__name__}); accepted: a 2D integer "
                         f"label image ({', '.join(LABEL_SUFFIXES)}).") from None
    return check_labels(np.squeeze(data), image_shape).astype(np.int32, copy=False)


# --- the map ---------------------------------------------------------------------------------------------
def umap_xy(table: pd.DataFrame) -> np.ndarray | None:
    """The (N, 2) UMAP coordinates of a table (NaN where a cell has none), None when it has no map."""
    table = with_current_names(table)
    if not set(UMAP_COLUMNS) <= set(table.columns):
        return None
    return table[UMAP_COLUMNS].apply(pd.to_numeric, errors="coerce").to_numpy(float)


def scatter_groups(ax, xy: np.ndarray, groups, colours: dict | None = None, counts: bool = False,
                   none: str = "unannotated", size: float | None = None) -> None:
    """The UMAP scatter on a matplotlib axis: one colour per group (``colours``: name → colour, else tab20),
    the group without a name last and grey, ``none`` its legend name; ``counts`` adds each group's size."""
    import matplotlib.pyplot as plt

    groups = pd.Series(groups).fillna("").astype(str).to_numpy()
    size = size or max(1.0, min(12.0, 4000 / max(len(xy), 1)))
    names = sorted(set(groups), key=lambda n: (n == "", n))
    for i, name in enumerate(names):
        hit = groups == name
        colour = (colours or {}).get(name) or ("#bbbbbb" if name == "" else plt.cm.tab20(i % 20))
        label = (name or none) + (f" ({int(hit.sum())})" if counts else "")
        ax.scatter(xy[hit, 0], xy[hit, 1], s=size, color=colour, label=label, linewidths=0)


def plot_umap(xy: np.ndarray, groups, path, title: str = "", legend_title: str | None = None,
              colours: dict | None = None, counts: bool = True, none: str = "unannotated"):
    """The UMAP plot as a PNG file (``path``: a file name or a binary buffer): :func:`scatter_groups`, the
    legend beside the map when there are at most 30 groups."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    scatter_groups(ax, xy, groups, colours, counts, none)
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2", title=title)
    ax.set_aspect("equal", "datalim")
    if pd.Series(groups).nunique(dropna=False) <= 30:
        ax.legend(title=legend_title, fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5),
                  frameon=False)
    fig.tight_layout()
    save_figure(fig, path)
    return path


def save_figure(fig, path) -> None:
    """A matplotlib figure as PNG into a file (atomically) or a binary buffer; the figure is closed."""
    import matplotlib.pyplot as plt

    if isinstance(path, (str, Path)):
        from napari_reddino.atomic import atomic_path

        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    else:
        fig.savefig(path, format="png")
    plt.close(fig)


def class_colours() -> dict[str, str]:
    """The dock's class colours, so a class looks the same on every map."""
    from napari_reddino.annotate import default_classes

    return {c.name: c.color for c in default_classes()}
