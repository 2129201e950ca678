"""Optional kNN monitor: every N steps, 20-NN accuracy and weighted F1 of the teacher's CLS features on labelled
cells, folds grouped by image. The cells are either a prepared folder (``class`` ≥ 0 in its manifest, e.g.
``reddino-train prepare --cells`` on Chula) or an evaluation dataset spec (``chula:PATH``, ``folder:PATH``,
``csv:FILE``) read and cropped exactly as ``reddino-train eval`` does, so the column predicts the evaluation."""

from __future__ import annotations

import numpy as np
import torch

from napari_reddino.images import InputError

EVAL_SPECS = ("chula:", "folder:", "csv:")


def _prepared_cells(root, max_samples: int, seed: int):
    from ..data.dataset import SmearDataset

    ds = SmearDataset(root)
    table = ds.table
    if "class" not in table.columns or (table["class"] >= 0).sum() < 10:
        raise InputError(f"Received train.knn_data {str(root)!r} without labelled samples; accepted: a prepared "
                         "folder whose manifest has a class >= 0 for at least 10 samples, or chula:PATH, "
                         "folder:PATH or csv:FILE.")
    idx = np.flatnonzero(table["class"].to_numpy() >= 0)
    if len(idx) > max_samples:
        idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
    groups = table["image"].astype(str).to_numpy()[idx] if "image" in table.columns else idx
    return [ds[int(i)] for i in idx], table["class"].to_numpy()[idx], groups


def _eval_cells(spec: str, max_samples: int, seed: int, crop_size: int):
    from ..eval.datasets import load_dataset, stratified_limit

    cells = stratified_limit(load_dataset(spec, crop_size), max_samples, seed)
    return list(cells.crops), cells.y, cells.groups


class KNNMonitor:
    def __init__(self, source, img_size: int, max_samples: int = 2000, k: int = 20, seed: int = 0,
                 crop_size: int = 48):
        from napari_reddino.embed import resize_crop

        from ..eval.protocol import make_splits

        if str(source).startswith(EVAL_SPECS):
            crops, self.y, self.groups = _eval_cells(str(source), max_samples, seed, crop_size)
        else:
            crops, self.y, self.groups = _prepared_cells(source, max_samples, seed)
        if len(np.unique(self.groups)) < 2:
            raise InputError(f"Received train.knn_data {str(source)!r} with cells from one image; accepted: "
                             "labelled cells from at least two images (the folds are grouped by image).")
        # resized once, like the evaluation (PIL bilinear squash to the model's input), and kept as uint8 (a
        # quarter of float32: 2,000 cells at 224 px are 0.3 GB, on every rank when the teacher is sharded);
        # normalised batch by batch in __call__, by the evaluation's own to_model_input
        self._x = torch.from_numpy(np.stack([resize_crop(c, (img_size, img_size)) for c in crops]))
        # the evaluation's grouped folds (fewer when there are fewer than 5 images), fixed for the whole run
        self.folds = make_splits("grouped", self.y, self.groups, n_splits=min(5, len(np.unique(self.groups))))
        self.k = k

    @torch.no_grad()
    def __call__(self, backbone) -> dict[str, float]:
        """``{"knn_acc", "knn_wf1"}``: 20-NN (fewer when a fold has fewer training cells) mean over folds."""
        from sklearn.neighbors import KNeighborsClassifier

        from napari_reddino.embed import to_model_input

        from ..eval.protocol import score

        was_training = backbone.training
        backbone.eval()
        feats = torch.cat([backbone.forward_features(to_model_input(b, backbone))[:, 0].float().cpu()
                           for b in self._x.split(64)]).numpy()
        backbone.train(was_training)
        scores = []
        for tr, te in self.folds:
            clf = KNeighborsClassifier(n_neighbors=max(1, min(self.k, len(tr)))).fit(feats[tr], self.y[tr])
            scores.append(score(self.y[te], clf.predict(feats[te])))
        return {"knn_acc": float(np.mean([s["acc"] for s in scores])),
                "knn_wf1": float(np.mean([s["wf1"] for s in scores]))}
