"""One evaluation run: cells → feature sets (model, random-init, handcrafted) → protocols → report."""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError
from reddino_train.eval import cache, datasets, features, protocol, report


def feature_sets(cells, model_spec, baselines=True, batch_size=64, precision="auto", device="cpu",
                 download=False, cache_dir=None, key=None, seed=0, log=sys.stderr) -> tuple[dict, dict]:
    """``{name: (X, standardise)}`` in report order, and ``{name: seconds}`` spent extracting (None: cached)."""
    from napari_reddino.models import load_model

    key = dict(key or {}, n=len(cells), cells=cache.digest(cells.y, cells.groups))
    model = load_model(model_spec, device=device, download=download)
    sets, seconds = {}, {}

    def timed(name, k, compute, standardise):
        t0, computed = time.perf_counter(), []
        print(f"{name}: features of {len(cells)} cells", file=log, flush=True)
        sets[name] = (cache.cached_array(cache_dir, dict(k, features=name),
                                         lambda: computed.append(True) or compute()), standardise)
        seconds[name] = time.perf_counter() - t0 if computed else None

    timed(model_spec, dict(key, model=model_spec, weights=cache.weights_signature(model)), lambda: features.model_features(
        cells.crops, model, batch_size, precision, log=log), False)
    if baselines:
        # random weights depend on the architecture and seed only: shared by every model of that shape
        timed("random-init", dict(key, arch=cache.arch_signature(model), seed=seed), lambda: features.model_features(
            cells.crops, features.random_init_like(model, seed), batch_size, precision, log=log), False)
        timed("handcrafted", {k: v for k, v in key.items() if k != "precision"},
              lambda: features.handcrafted_features(cells.crops, cells.thresholds), True)
    return sets, seconds


def evaluate(model_spec: str, dataset_spec: str, out, protocols=("grouped",), exclude=(), crop_size=48,
             limit=None, baselines=True, knn_metric="euclidean", batch_size=64, precision="auto",
             device="cpu", download=False, cache_dir=None, make_umap=True, seed=0, n_splits=5,
             folds=None, classifiers=protocol.CLASSIFIERS, command="", log=sys.stderr) -> list[dict]:
    """``folds``: score only the first N folds of each protocol (quick comparisons between checkpoints; the
    report says so). ``classifiers``: a subset of linear, knn1, knn20."""
    out, protocols, classifiers = Path(out), list(protocols), list(classifiers)
    if knn_metric not in ("euclidean", "cosine"):
        raise InputError(f"Received kNN metric {knn_metric!r}; accepted: euclidean or cosine.")
    bad = [c for c in classifiers if c not in protocol.CLASSIFIERS]
    if bad or not classifiers:
        raise InputError(f"Received classifiers {classifiers}; accepted: one or more of "
                         f"{', '.join(protocol.CLASSIFIERS)}.")
    if folds is not None and not 1 <= folds <= n_splits:
        raise InputError(f"Received --folds {folds}; accepted: 1 to {n_splits}.")
    out.mkdir(parents=True, exist_ok=True)
    cells = datasets.load_dataset(dataset_spec, crop_size)
    drop = datasets.resolve_classes(cells, exclude)
    cells = datasets.stratified_limit(cells, limit, seed)
    print(f"{dataset_spec}: {len(cells)} cells from {len(np.unique(cells.groups))} images", file=log)
    no_sources = cells.sources is None or len(np.unique(cells.sources)) < 2
    if "loso" in protocols and no_sources and len(protocols) > 1:  # 'all' without sources: run what can run
        protocols = [p for p in protocols if p != "loso"]
    key = {"dataset": dataset_spec, "crop": crop_size, "limit": limit, "precision": precision}
    sets, seconds = feature_sets(cells, model_spec, baselines, batch_size, precision, device, download,
                                 cache_dir, key, seed, log)
    keep = np.flatnonzero(~np.isin(cells.y, drop))
    cells = cells.subset(keep)
    sets = {k: (X[keep], s) for k, (X, s) in sets.items()}

    rows, preds = [], {}
    for p in protocols:
        splits = protocol.make_splits(p, cells.y, cells.groups, cells.sources, n_splits)[:folds]
        for name, (X, standardise) in sets.items():
            print(f"{p} / {name}: {X.shape[1]} features, {len(splits)} folds", file=log, flush=True)
            res = {}
            for clf in classifiers:
                rkey = [cache.digest(X, cells.y, *[te for _, te in splits]), clf, knn_metric, standardise]
                fit = partial(protocol.run_protocol, X, cells.y, splits, [clf], knn_metric, standardise, log)
                res[clf] = cache.cached_result(cache_dir, rkey, lambda fit=fit, clf=clf: fit()[clf])
            rows += protocol.summarise(name, p, res)
            preds.setdefault(p, {})[name] = res[classifiers[0]]["pred"]

    report.write_csv(rows, out)
    counts = ", ".join(f"{c} {n}" for c, n in cells.counts().items())
    paragraphs = [
        f"# Evaluation of `{model_spec}` on `{dataset_spec}`",
        f"Command: `{command}`" if command else "",
        (f"Cells: {len(cells)} from {len(np.unique(cells.groups))} images"
        f"{f' (stratified subsample, limit {limit}, seed {seed})' if limit else ''}; crop {crop_size} px "
        f"around the labelled centre; excluded classes: {[cells.classes[i] for i in drop] or 'none'}."),
        f"Per class: {counts}.",
        (f"Folds scored: the first {folds} of each protocol's split (a quick comparison, not the full "
         "protocol)." if folds else ""),
        "Feature extraction: " + ", ".join(f"{k} {v:.0f} s" if v is not None else f"{k} read from the cache"
                                           for k, v in seconds.items()) + ".",
        ("Classifiers: linear = LogisticRegression(lbfgs, 1000 it, C = D·K/100); knn1/knn20 = "
         f"KNeighborsClassifier({knn_metric}, uniform). Model and random-init features are the raw CLS "
         "token; handcrafted features are standardised inside each fold. Values: % mean ± std over folds."),
    ]
    header = "\n\n".join(p for p in paragraphs if p)  # one Markdown paragraph per line; absent ones leave no gap
    report.write_markdown(rows, out, header, list(protocols))
    first = protocols[0]
    report.plot_confusions([(f"{n} · {classifiers[0]} · {first}", cells.y, pr) for n, pr in preds[first].items()],
                           cells.classes, out / "confusion.png")
    if make_umap:
        report.plot_umap([(model_spec, sets[model_spec][0])], cells.y, cells.classes, out / "umap.png", seed)
    return rows
