"""Classify: train on the annotated cells of a FEATURES table (written by napari-reddino embed) and predict
every cell. The annotations (--annotations) are a CSV with columns image, label, class.

Writes:
- the --out CSV: one row per cell with image, label, centroid_x, centroid_y, class (the annotation), prediction, confidence
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np


def add_parser(sub) -> None:
    p = sub.add_parser("classify", help="train on annotated cells, predict all → CSV", description=__doc__)
    p.add_argument("features", metavar="FEATURES",
                   help="the features table, .parquet or .csv (columns image, label, centroid_x, centroid_y, emb_0 ...)")
    p.add_argument("--annotations", required=True, metavar="CSV", help="the annotations: columns image, label, class")
    p.add_argument("--out", required=True, metavar="CSV", help="the predictions CSV to write")
    p.add_argument("--classifier", choices=["logreg", "knn"], default="logreg")
    p.add_argument("--k", type=int, default=20, help="neighbours for --classifier knn")
    p.set_defaults(func=run)


def run(args) -> int:
    from napari_reddino.annotate import read_annotations
    from napari_reddino.classify import fit_predict
    from napari_reddino.formats import read_features, write_table
    from napari_reddino.images import InputError

    if args.k < 1:
        raise InputError(f"Received --k {args.k}; accepted: a whole number of neighbours >= 1.")
    table, X = read_features(args.features)
    ann_path = Path(args.annotations)
    if not ann_path.is_file():
        raise InputError(f"Received --annotations {args.annotations!r}, which is not a file; accepted: a CSV "
                         "with columns image, label, class.")
    ann = read_annotations(ann_path).drop_duplicates(["image", "label"], keep="last")
    classes = {(str(i), int(lbl)): c for i, lbl, c in ann[["image", "label", "class"]].itertuples(index=False)}
    y = np.array([classes.get((str(i), int(lbl)), "") for i, lbl in zip(table["image"], table["label"])],
                 dtype=object)
    matched = int((y != "").sum())
    if matched < len(ann):
        print(f"napari-reddino classify: {len(ann) - matched} of {len(ann)} annotations match no cell in "
              f"{args.features}", file=sys.stderr)
    pred, conf = fit_predict(X, y, kind=args.classifier, k=args.k)
    out = table[[c for c in ("image", "label", "centroid_x", "centroid_y") if c in table.columns]].copy()
    out["class"], out["prediction"], out["confidence"] = y, pred, conf
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    write_table(out, args.out)  # atomically: a kill leaves the old file or the new one
    print(f"trained {args.classifier} on {matched} cells of {len(set(y[y != '']))} classes; "
          f"predicted {len(out)} cells → {args.out}")
    return 0
