"""One evaluation run: cells → feature sets (model, random-init, handcrafted) → protocols → report."""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError
from reddino_train.eval import datasets, features, protocol, report


def _cached(cache_dir, key: dict, compute):
    """Feature matrices are the slow part; keep them by what produced them."""
    if cache_dir is None:
        return compute()
    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    path = cache_dir / (hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16] + ".npy")
    if path.is_file():
        return np.load(path)
    X = compute()
    np.save(path, X)
    return X


def feature_sets(cells, model_spec, baselines=True, batch_size=64, precision="auto", device="cpu",
                 download=False, cache_dir=None, key=None, log=sys.stderr) -> tuple[dict, dict]:
    """``{name: (X, standardise)}`` in report order, and ``{name: seconds}`` spent extracting."""
    key = dict(key or {}, n=len(cells))
    sets, seconds, model = {}, {}, None

    def get_model():
        nonlocal model
        if model is None:
            from napari_reddino.models import load_model

            model = load_model(model_spec, device=device, download=download)
        return model

    def timed(name, compute, standardise):
        t0 = time.perf_counter()
        print(f"{name}: extracting features of {len(cells)} cells", file=log, flush=True)
        sets[name] = (_cached(cache_dir, dict(key, features=name), compute), standardise)
        seconds[name] = time.perf_counter() - t0

    timed(model_spec, lambda: features.model_features(cells.crops, get_model(), batch_size, precision,
                                                      log=log), False)
    if baselines:
        timed("random-init", lambda: features.model_features(
            cells.crops, features.random_init_like(get_model()), batch_size, precision, log=log), False)
        timed("handcrafted", lambda: features.handcrafted_features(cells.crops, cells.thresholds), True)
    return sets, seconds


def evaluate(model_spec: str, dataset_spec: str, out, protocols=("grouped",), exclude=(), crop_size=48,
             limit=None, baselines=True, knn_metric="euclidean", batch_size=64, precision="auto",
             device="cpu", download=False, cache_dir=None, make_umap=True, seed=0, n_splits=5,
             command="", log=sys.stderr) -> list[dict]:
    out, protocols = Path(out), list(protocols)
    out.mkdir(parents=True, exist_ok=True)
    if knn_metric not in ("euclidean", "cosine"):
        raise InputError(f"Received kNN metric {knn_metric!r}; accepted: euclidean or cosine.")
    cells = datasets.load_dataset(dataset_spec, crop_size)
    drop = datasets.resolve_classes(cells, exclude)
    cells = datasets.stratified_limit(cells, limit, seed)
    print(f"{dataset_spec}: {len(cells)} cells from {len(np.unique(cells.groups))} images", file=log)
    if "loso" in protocols and (cells.sources is None or len(np.unique(cells.sources)) < 2):
        if len(protocols) > 1:  # 'all' on a dataset without sources: run what can run
            protocols = [p for p in protocols if p != "loso"]
    key = {"model": model_spec, "dataset": dataset_spec, "crop": crop_size, "limit": limit, "seed": seed,
           "precision": precision}
    sets, seconds = feature_sets(cells, model_spec, baselines, batch_size, precision, device, download,
                                 cache_dir, key, log)
    keep = np.flatnonzero(~np.isin(cells.y, drop))
    cells = cells.subset(keep)
    sets = {k: (X[keep], s) for k, (X, s) in sets.items()}

    rows, preds = [], {}
    for p in protocols:
        splits = protocol.make_splits(p, cells.y, cells.groups, cells.sources, n_splits)
        for name, (X, standardise) in sets.items():
            print(f"{p} / {name}: {X.shape[1]} features, {len(splits)} folds", file=log, flush=True)
            res = protocol.run_protocol(X, cells.y, splits, metric=knn_metric, standardise=standardise, log=log)
            rows += protocol.summarise(name, p, res)
            preds.setdefault(p, {})[name] = res["linear"]["pred"]

    report.write_csv(rows, out)
    counts = ", ".join(f"{c} {n}" for c, n in cells.counts().items())
    header = "\n".join([
        f"# Evaluation of `{model_spec}` on `{dataset_spec}`", "",
        f"Command: `{command}`" if command else "",
        f"Cells: {len(cells)} from {len(np.unique(cells.groups))} images"
        f"{f' (stratified subsample, limit {limit}, seed {seed})' if limit else ''}; crop {crop_size} px "
        f"around the labelled centre; excluded classes: {[cells.classes[i] for i in drop] or 'none'}.",
        f"Per class: {counts}.",
        "Feature extraction: " + ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()) + ".",
        f"Classifiers: linear = LogisticRegression(lbfgs, 1000 it, C = D·K/100); knn1/knn20 = "
        f"KNeighborsClassifier({knn_metric}, uniform). Model and random-init features are the raw CLS "
        f"token; handcrafted features are standardised inside each fold. Values: % mean ± std over folds.",
    ])
    report.write_markdown(rows, out, header, list(protocols))
    first = protocols[0]
    report.plot_confusions([(f"{n} · linear · {first}", cells.y, pr) for n, pr in preds[first].items()],
                           cells.classes, out / "confusion.png")
    if make_umap:
        report.plot_umap([(model_spec, sets[model_spec][0])], cells.y, cells.classes, out / "umap.png", seed)
    return rows
