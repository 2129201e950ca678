"""Per-cell RedDino embeddings: crop each cell, preprocess exactly as published, batch through the ViT.

Preprocessing (RedDino's usage notebook): RGB crop of the label's bounding box → squash-resize to the
model input (224 for RedDino) → ``ToTensor`` (/255) → ImageNet mean/std → ``model(x)`` = CLS token after
the final norm. The resize is PIL's bilinear filter on the uint8 crop, which is what torchvision's
``Resize`` does to the PIL image in that notebook (its tensor path antialiases differently), so the batched
result equals the reference loop. Crops are cut and resized in a background thread while the model runs.
"""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Sized

import numpy as np

from napari_reddino.progress import Progress, run
from napari_reddino.cells import cell_positions, check_labels, crop_cells
from napari_reddino.images import InputError, channel_axis, to_rgb_uint8
from napari_reddino.models import model_input_size, model_mean_std
from napari_reddino.runtime import resolve_precision

_DONE = object()


def resize_crop(crop, size: tuple[int, int]) -> np.ndarray:
    """(H, W, 3) uint8: ``crop`` squash-resized with PIL bilinear (as ``transforms.Resize`` on a PIL image)."""
    from PIL import Image

    if isinstance(crop, Image.Image):
        crop = np.asarray(crop.convert("RGB"))
    crop = np.asarray(crop)
    if crop.dtype != np.uint8 or crop.ndim != 3 or crop.shape[-1] != 3:
        crop = to_rgb_uint8(crop)
    h, w = size
    if crop.shape[:2] == (h, w):
        return np.ascontiguousarray(crop)
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((w, h), Image.BILINEAR))


def _model_device(model):
    return next(model.parameters()).device


def to_model_input(batch_uint8, model, device=None):
    """(B, H, W, 3) uint8 array or tensor → normalised (B, 3, H, W) float32 tensor on ``device``
    (``ToTensor`` then ``Normalize``, in the same arithmetic order)."""
    import torch

    device = device or _model_device(model)
    x = torch.as_tensor(batch_uint8).to(device, non_blocking=True)
    x = x.permute(0, 3, 1, 2).contiguous().float().div(255)
    mean, std = model_mean_std(model)
    mean = torch.tensor(mean, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    std = torch.tensor(std, dtype=x.dtype, device=device).view(1, -1, 1, 1)
    return x.sub_(mean).div_(std)


def preprocess(crops, model):
    """Crops (uint8 RGB arrays or PIL images, any size) → the model's normalised input batch."""
    size = model_input_size(model)
    return to_model_input(np.stack([resize_crop(c, size) for c in crops]), model)


def _produce(crops, size, batch_size, out: queue.Queue, stop: threading.Event, pin: bool):
    """Background thread: resize crops and hand over uint8 batches (pinned for fast GPU copies)."""
    def put(item):
        while not stop.is_set():
            try:
                out.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    try:
        batch = []
        for crop in crops:
            batch.append(resize_crop(crop, size))
            if len(batch) == batch_size:
                if not put(_pack(batch, pin)):
                    return
                batch = []
        if batch and not put(_pack(batch, pin)):
            return
        put(_DONE)
    except BaseException as exc:  # noqa: BLE001 - re-raised in the consuming thread
        put(exc)


def _pack(batch, pin: bool):
    import torch

    t = torch.from_numpy(np.stack(batch))
    return t.pin_memory() if pin else t


def iter_embed_crops(crops: Iterable, model, batch_size: int = 64, precision="auto", total: int | None = None):
    """Progress generator embedding ``crops``; returns float32 (N, D) CLS embeddings."""
    import torch

    if int(batch_size) < 1:
        raise InputError(f"Received batch size {batch_size}; accepted: an integer >= 1.")
    device = _model_device(model)
    dtype = resolve_precision(precision, device.type)
    total = total if total is not None else (len(crops) if isinstance(crops, Sized) else 0)
    q: queue.Queue = queue.Queue(maxsize=3)
    stop = threading.Event()
    worker = threading.Thread(target=_produce, daemon=True, name="reddino-crops",
                              args=(crops, model_input_size(model), int(batch_size), q, stop,
                                    device.type == "cuda"))
    worker.start()
    outputs, done = [], 0
    try:
        yield Progress(0, total, "Embedding cells")
        while (item := q.get()) is not _DONE:
            if isinstance(item, BaseException):
                raise item
            x = to_model_input(item, model, device)
            with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                out = model(x)
            outputs.append(out.float().cpu().numpy())
            done += len(item)
            yield Progress(done, max(total, done), "Embedding cells")
    finally:
        stop.set()
        worker.join(timeout=5)
    if not outputs:
        return np.zeros((0, model.num_features), dtype=np.float32)
    return np.concatenate(outputs).astype(np.float32, copy=False)


def embed_crops(crops, model, batch_size: int = 64, precision="auto") -> np.ndarray:
    """float32 (N, D) CLS embeddings of a list of crops (the evaluation code's entry point)."""
    return run(iter_embed_crops(crops, model, batch_size=batch_size, precision=precision))


def iter_embed_cells(image, labels, model, batch_size: int = 64, precision="auto", pad_square: bool = False,
                     margin: float = 0.1, mask_neighbours: bool = False, label_ids=None):
    """Progress generator; returns ``(table, embeddings)``: :func:`cells.cell_positions` (one row per label,
    sorted by label; only ``label_ids`` when given) and float32 (N, D) embeddings in the same row order.
    Default crop = the label's bounding box, as published; ``pad_square``/``mask_neighbours`` are the
    options of ``crop_cells``."""
    hw = image.shape[1:3] if channel_axis(image) == 0 else image.shape[:2]
    table = cell_positions(check_labels(labels, hw))  # bad shapes are refused before any work
    if label_ids is not None:
        table = table[table["label"].isin(np.asarray(label_ids, np.int64))]
    crops = (crop for _, crop in crop_cells(image, labels, label_ids=table["label"].to_numpy(),
                                            pad_square=pad_square, margin=margin,
                                            mask_neighbours=mask_neighbours))
    emb = yield from iter_embed_crops(crops, model, batch_size=batch_size, precision=precision,
                                      total=len(table))
    if len(emb) != len(table):  # pragma: no cover - crop_cells yields every label of the table
        raise RuntimeError(f"embedded {len(emb)} cells for a table of {len(table)}")
    return table.reset_index(drop=True), emb


def embed_cells(image, labels, model, **kwargs):
    """Non-generator :func:`iter_embed_cells`."""
    return run(iter_embed_cells(image, labels, model, **kwargs))
