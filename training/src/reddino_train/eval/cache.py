"""Content-addressed cache for the slow parts of an evaluation (feature matrices, linear-probe folds), so
re-running with other classes excluded, or for another model of the same architecture, redoes only what
changed. Keys are JSON of what produced the value; results are keyed by the data they were computed on.
Entries are written atomically, and one that cannot be read back (damaged) is recomputed, never fatal."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np

from napari_reddino.atomic import atomic_path


def digest(*parts) -> str:
    h = hashlib.sha1()
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str((p.dtype, p.shape)).encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(json.dumps(p, sort_keys=True, default=str).encode())
    return h.hexdigest()[:20]


def arch_signature(model) -> str:
    """What fixes a random-init model's weights besides the seed: class, tensor names/shapes, input
    geometry and normalisation."""
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    shapes = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return digest(type(model).__name__, shapes, cfg.get("input_size"), cfg.get("mean"), cfg.get("std"))


def weights_signature(model) -> str:
    """Hash of the weights' bytes (a retrained model under the same spec is new). Bytes, not sums: a float
    reduction's order follows the thread count, which other libraries change mid-process."""
    import torch

    h = hashlib.sha1()
    for k, v in model.state_dict().items():
        t = v.detach().cpu().contiguous()
        if t.dtype == torch.bfloat16:
            t = t.view(torch.int16)
        h.update(k.encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:20]


def cached_array(cache_dir, key, compute) -> np.ndarray:
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"features-{digest(key)}.npy"
    try:
        return np.load(path)
    except (OSError, ValueError, EOFError):  # missing, or damaged (an older version killed mid-write): compute
        pass
    X = np.asarray(compute())
    with atomic_path(path) as tmp:
        np.save(tmp, X)
    return X


def cached_result(cache_dir, key, compute) -> dict:
    """``{"folds": [score dicts], "pred": int array}`` as :func:`protocol.run_protocol` gives per classifier."""
    if cache_dir is None:
        return compute()
    path = Path(cache_dir) / f"result-{digest(key)}.npz"
    try:
        with np.load(path) as z:
            return {"folds": json.loads(str(z["folds"])), "pred": z["pred"]}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile):  # missing or damaged: compute
        pass
    res = compute()
    with atomic_path(path) as tmp:
        np.savez(tmp, folds=json.dumps(res["folds"]), pred=res["pred"])
    return res
