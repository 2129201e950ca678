"""UMAP: a 2-D map of the cells of a FEATURES table (written by napari-reddino embed).

Writes, into the --out folder:
- umap.csv: the table's columns other than the features, with umap_x, umap_y
- umap.png: the map, coloured by --color-by
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("umap", help="UMAP of per-cell features → embedding CSV + PNG plot", description=__doc__)
    p.add_argument("features", metavar="FEATURES",
                   help="the features table, .parquet or .csv (columns image, label, centroid_x, centroid_y, emb_0 ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--color-by", default=None,
                   help="column to colour the plot by (default: class if present, else image)")
    p.add_argument("--n-neighbors", type=int, default=15)
    p.add_argument("--min-dist", type=float, default=0.1)
    p.add_argument("--metric", default="cosine")
    p.add_argument("--seed", type=int, default=0, help="random seed; -1 for none (parallel, faster)")
    p.add_argument("--pca-dims", type=int, default=50, help="PCA to this many dimensions first (0: off)")
    p.add_argument("--sample", type=int, default=50_000,
                   help="above this many cells, fit the map on a seeded sample of this many and place the others "
                        "beside their nearest sample cells (a million cells in minutes; 0: never sample)")
    p.set_defaults(func=run)


def plot_embedding(Y: np.ndarray, values, column: str, path: Path) -> None:
    """The map coloured by ``values``: viridis for a numeric column with many values, else one colour per
    category (``formats.plot_umap``, the plot every map of the project uses)."""
    import pandas as pd

    values = pd.Series(values)
    if not (pd.api.types.is_numeric_dtype(values) and values.nunique() > 20):
        from napari_reddino.formats import class_colours, plot_umap

        plot_umap(Y, values, path, legend_title=column, colours=class_colours(), counts=False, none="(none)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_reddino.formats import save_figure

    fig, ax = plt.subplots(figsize=(7, 6), dpi=120)
    size = max(1.0, min(12.0, 4000 / max(len(Y), 1)))
    sc = ax.scatter(Y[:, 0], Y[:, 1], c=values, s=size, cmap="viridis", linewidths=0)
    fig.colorbar(sc, ax=ax, label=column)
    ax.set(xlabel="UMAP 1", ylabel="UMAP 2")
    ax.set_aspect("equal", "datalim")
    fig.tight_layout()
    save_figure(fig, path)


def run(args) -> int:
    from napari_reddino.progress import run as drive
    from napari_reddino.embedding import iter_umap_embed
    from napari_reddino.formats import read_features, write_table
    from napari_reddino.images import InputError

    table, X = read_features(args.features)
    column = args.color_by or ("class" if "class" in table.columns else "image")
    if column not in table.columns:  # a column name of before 2026-12 (x, y): today's name
        from napari_reddino.formats import OLD_NAMES

        column = OLD_NAMES.get(column, column)
    if column not in table.columns:
        raise InputError(f"Received --color-by {column!r}; accepted: one of the columns "
                         f"{', '.join(map(str, table.columns))}.")
    seed = None if args.seed is not None and args.seed < 0 else args.seed
    Y = drive(iter_umap_embed(X, args.n_neighbors, args.min_dist, args.metric, seed, args.pca_dims or None,
                              args.sample or None), bar=sys.stderr.isatty())
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = table.copy()
    result["umap_x"], result["umap_y"] = Y[:, 0], Y[:, 1]
    write_table(result, out / "umap.csv")
    plot_embedding(Y, table[column].to_numpy(), column, out / "umap.png")
    print(f"{len(Y)} cells → {out / 'umap.csv'}, {out / 'umap.png'} (coloured by {column})")
    return 0
