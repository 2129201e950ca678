"""``reddino-train classifier``'s work: collect the labelled cells, score each feature set with 5 folds grouped
by image (with and without class 12, elliptocyte: all of them come from one acquisition batch), fit on all
cells and write the plugin's files (``classifier.json``, one ``.npz`` per feature set, ``CARD.md``)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_reddino.atomic import atomic_path
from napari_reddino.morphology import FEATURES
from reddino_train.classifier.fit import cross_validate, fit_export, scores

ELLIPTOCYTE = 12


def feature_matrix(lc, feature_set: str) -> np.ndarray:
    morph = lc.cells[FEATURES].to_numpy(np.float32)
    morph = np.where(np.isfinite(morph), morph, np.nanmean(morph, 0))
    if feature_set == "morphology":
        return morph
    if feature_set == "embedding":
        return lc.embeddings
    return np.concatenate([lc.embeddings, morph], axis=1)


def evaluate(lc, feature_sets, n_splits=5, seed=0, log=sys.stderr, **fit_kw) -> dict:
    """``{feature set: {"all": scores, "without_12": scores}}``."""
    y, groups = lc.cells["y"].to_numpy(), lc.cells["image"].to_numpy()
    K = len(lc.classes)
    out = {}
    for fs in feature_sets:
        X = feature_matrix(lc, fs)
        out[fs] = {}
        for part, keep in (("all", np.ones(len(y), bool)), ("without_12", y != ELLIPTOCYTE)):
            t0 = time.perf_counter()
            cv = cross_validate(X[keep], y[keep], groups[keep], K, n_splits, seed, **fit_kw)
            out[fs][part] = scores(cv, y[keep], K)
            s = out[fs][part]
            if log is not None:
                print(f"  {fs:<22} {part:<10} weighted F1 {100 * s['wf1_mean']:.1f} ± {100 * s['wf1_std']:.1f} "
                      f"(balanced acc {100 * s['balanced_accuracy']:.1f}, {time.perf_counter() - t0:.0f} s)",
                      file=log, flush=True)
    return out


def write_classifier(out_dir, lc, model_info: dict | None, results: dict, fit_kw: dict, names: dict,
                     command: str = "") -> list[Path]:
    """Fit each shipped feature set on every cell; write the arrays, ``classifier.json`` and ``CARD.md``."""
    from napari_reddino.classifier import CONFIG

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    y = lc.cells["y"].to_numpy()
    config = {"classes": names["classes"], "trained_on": names["data"], "command": command,
              "fit": fit_kw, "classifiers": {}}
    written = []
    for fs in results:
        if fs == "embedding":
            continue  # scored for the card, not shipped
        e = fit_export(feature_matrix(lc, fs), y, len(lc.classes), **fit_kw)
        arrays = {"mean": e.mean, "scale": e.scale, "n_layers": np.array(len(e.layers))}
        for i, (W, b) in enumerate(e.layers):
            arrays[f"W{i}"], arrays[f"b{i}"] = W.astype(np.float32), b.astype(np.float32)
        path = out / f"{fs}.npz"
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrays)
        written.append(path)
        config["classifiers"][fs] = {
            "file": path.name, "morphology": list(FEATURES),
            "embedding": model_info if fs != "morphology" else None,
            "temperature": results[fs]["all"]["temperature"],
            "cv_weighted_f1": round(results[fs]["all"]["wf1_mean"], 4)}
    with atomic_path(out / CONFIG) as tmp:
        tmp.write_text(json.dumps(config, indent=1) + "\n")
    with atomic_path(out / "cv.json") as tmp:
        tmp.write_text(json.dumps(results, indent=1) + "\n")
    from reddino_train.classifier.card import card_text

    with atomic_path(out / "CARD.md") as tmp:
        tmp.write_text(card_text(results, lc, model_info, fit_kw, names, command))
    return written + [out / CONFIG, out / "cv.json", out / "CARD.md"]
