"""The shipped red-cell morphology classifier: every red cell gets a ``prediction`` and a ``confidence``.

Two classifiers ship here (trained by ``reddino-train classifier``, see ``CARD.md``): ``morphology`` (the
default: :mod:`napari_reddino.morphology`'s measurements, relative to the smear's own cells and slide) and
``embedding+morphology`` (the demo model's CLS token too). The second scores 0.6 points more on Chula's unseen
images but learnt Chula's elliptocyte batch by its bright slide: on a brighter slide it calls normal cells
elliptocytes (measured, tests/test_classifier.py), so it is an option, not the default. It is only valid for
embeddings of the model it was trained with (its weights' SHA-256 is in ``classifier.json`` and checked at
use); features of any other model fall back to ``morphology``, and :func:`choose` says so in one line. Files
are arrays (``.npz`` read with ``allow_pickle=False``) and JSON: no pickle, and inference is numpy only.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.images import InputError

HERE = Path(__file__).resolve().parent
CONFIG = "classifier.json"
FEATURE_SETS = ("morphology", "embedding+morphology")
DEFAULT = "morphology"


@dataclass
class ShippedClassifier:
    name: str
    classes: list[str]
    morphology: list[str]  # morphology feature names, in column order
    embedding: dict | None  # {"spec", "sha256", "dim"} of the model its embedding part expects; None: none
    mean: np.ndarray
    scale: np.ndarray
    layers: list[tuple[np.ndarray, np.ndarray]]  # (W, b); ReLU between them, softmax after the last
    temperature: float = 1.0

    def features(self, morphology: pd.DataFrame, embeddings=None) -> np.ndarray:
        """(N, F) float32 in this classifier's column order; a missing measurement counts as the mean."""
        missing = [c for c in self.morphology if c not in morphology.columns]
        if missing:
            raise InputError(f"Received cell measurements without {missing[:3]}; accepted: "
                             "napari_reddino.morphology.measure_cells' columns.")
        parts = [morphology[self.morphology].to_numpy(np.float32)]
        if self.embedding is not None:
            emb = np.asarray(embeddings, np.float32) if embeddings is not None else None
            if emb is None or emb.ndim != 2 or emb.shape != (len(morphology), self.embedding["dim"]):
                got = "none" if emb is None else f"shape {emb.shape}"
                raise InputError(f"Received embeddings of {got}; accepted: ({len(morphology)}, "
                                 f"{self.embedding['dim']}) from {self.embedding['spec']}.")
            parts.insert(0, emb)
        X = np.concatenate(parts, axis=1)
        return np.where(np.isfinite(X), X, self.mean).astype(np.float32)

    def proba(self, X) -> np.ndarray:
        """(N, K) calibrated class probabilities."""
        h = (np.asarray(X, np.float32) - self.mean) / self.scale
        for i, (W, b) in enumerate(self.layers):
            h = h @ W + b
            if i < len(self.layers) - 1:
                h = np.maximum(h, 0)
        z = h / self.temperature
        z = np.exp(z - z.max(1, keepdims=True))
        return z / z.sum(1, keepdims=True)

    def predict(self, morphology: pd.DataFrame, embeddings=None) -> tuple[np.ndarray, np.ndarray]:
        """(class name per cell (object array), confidence = the calibrated probability of that class)."""
        if len(morphology) == 0:
            return np.zeros(0, object), np.zeros(0, np.float32)
        p = self.proba(self.features(morphology, embeddings))
        best = p.argmax(1)
        return np.asarray(self.classes, object)[best], p[np.arange(len(p)), best].astype(np.float32)


def load_classifier(name: str = DEFAULT, folder=HERE) -> ShippedClassifier:
    """One of the shipped classifiers (or one written by ``reddino-train classifier --out folder``)."""
    folder = Path(folder)
    try:
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"Received classifier folder {folder} without a readable {CONFIG} ({exc}); accepted: "
                         "a folder written by reddino-train classifier.") from None
    spec = config["classifiers"].get(name)
    if spec is None:
        raise InputError(f"Received classifier {name!r}; accepted: {', '.join(config['classifiers'])}.")
    with np.load(folder / spec["file"], allow_pickle=False) as z:
        n = int(z["n_layers"])
        layers = [(z[f"W{i}"].astype(np.float32), z[f"b{i}"].astype(np.float32)) for i in range(n)]
        mean, scale = z["mean"].astype(np.float32), z["scale"].astype(np.float32)
    return ShippedClassifier(name, list(config["classes"]), list(spec["morphology"]), spec.get("embedding"),
                             mean, scale, layers, float(spec.get("temperature", 1.0)))


@lru_cache(maxsize=8)
def _file_sha256(path: str, mtime: float) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def model_sha256(spec) -> str | None:
    """SHA-256 of a local model's weights file (``demo``, ``local-dir:``, a checkpoint); None otherwise."""
    from napari_reddino.models import ModelLoadError, parse_spec

    if spec is None:
        return None
    try:
        kind, target = parse_spec(str(spec))
    except ModelLoadError:
        return None
    path = Path(target) / "model.safetensors" if kind in ("dir", "demo") else Path(target)
    if kind == "hub" or not path.is_file():
        return None
    return _file_sha256(str(path), path.stat().st_mtime)


def choose(model_spec=None, name: str = DEFAULT) -> tuple[ShippedClassifier, str]:
    """The classifier to use for features of ``model_spec`` (None: no embeddings) and a one-line note ('' when
    the requested one applies): the embedding part only with the weights it was trained on."""
    clf = load_classifier(name)
    if clf.embedding is None:
        return clf, ""
    if model_spec is not None and model_sha256(model_spec) == clf.embedding["sha256"]:
        return clf, ""
    fallback = load_classifier("morphology")
    why = (f"the shipped classifier's embedding part was trained on {clf.embedding['spec']}, not {model_spec}"
           if model_spec is not None else "no embeddings")
    return fallback, f"Cells classified from morphology only ({why})."


def classify_smear(image, labels, table: pd.DataFrame, label_ids, embeddings=None, model_spec=None,
                   name: str = DEFAULT, stats=None) -> tuple[pd.DataFrame, str]:
    """``label, prediction, confidence`` for ``label_ids`` (embeddings in that order, or None) with the shipped
    classifier ``name``, and the note of :func:`choose`."""
    from napari_reddino.morphology import measure_cells

    clf, note = choose(model_spec if embeddings is not None else None, name)
    morph = measure_cells(image, labels, table, label_ids=label_ids, stats=stats)
    pred, conf = clf.predict(morph, embeddings if clf.embedding is not None else None)
    return pd.DataFrame({"label": morph["label"].to_numpy(), "prediction": pred, "confidence": conf}), note
