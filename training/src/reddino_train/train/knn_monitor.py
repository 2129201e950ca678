"""Optional kNN monitor: every N steps, 20-NN accuracy of the teacher's CLS features on a labelled prepared
folder (``class`` ≥ 0 in its manifest, e.g. ``reddino-train prepare --cells`` on Chula), folds grouped by image."""

from __future__ import annotations

import numpy as np
import torch

from napari_reddino.images import InputError


class KNNMonitor:
    def __init__(self, root, img_size: int, max_samples: int = 2000, k: int = 20, seed: int = 0):
        from ..data.dataset import SmearDataset

        ds = SmearDataset(root)
        table = ds.table
        if "class" not in table.columns or (table["class"] >= 0).sum() < 10:
            raise InputError(f"Received train.knn_data {str(root)!r} without labelled samples; accepted: a prepared "
                             "folder whose manifest has a class >= 0 for at least 10 samples.")
        idx = np.flatnonzero(table["class"].to_numpy() >= 0)
        if len(idx) > max_samples:
            idx = np.sort(np.random.default_rng(seed).choice(idx, max_samples, replace=False))
        self.ds, self.idx, self.k, self.size = ds, idx, k, img_size
        self.y = table["class"].to_numpy()[idx]
        self.groups = table["image"].astype(str).to_numpy()[idx] if "image" in table.columns else idx
        self._x = None

    def _images(self, device) -> torch.Tensor:
        if self._x is None:
            import torch.nn.functional as F

            mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
            std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
            batch = [torch.from_numpy(self.ds[int(i)]).permute(2, 0, 1)[None].float() / 255 for i in self.idx]
            x = torch.cat([F.interpolate(b, size=(self.size, self.size), mode="bilinear", antialias=True)
                           for b in batch])
            self._x = (x - mean) / std
        return self._x.to(device)

    @torch.no_grad()
    def __call__(self, backbone) -> float:
        from sklearn.model_selection import GroupKFold, cross_val_score
        from sklearn.neighbors import KNeighborsClassifier

        was_training = backbone.training
        backbone.eval()
        x = self._images(next(backbone.parameters()).device)
        feats = torch.cat([backbone.forward_features(b)[:, 0].float().cpu() for b in x.split(64)]).numpy()
        backbone.train(was_training)
        n_folds = min(5, len(np.unique(self.groups)))
        folds = list(GroupKFold(n_folds).split(feats, self.y, self.groups))
        k = max(1, min(self.k, min(len(train) for train, _ in folds)))
        scores = cross_val_score(KNeighborsClassifier(n_neighbors=k), feats, self.y, cv=folds, error_score="raise")
        return float(scores.mean())
