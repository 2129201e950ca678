"""Chula-RBC-12 (Naruenatthanaset et al., 2021; MIT licence): one home for what the plugin and the training
package know about it — its 12 classes + elliptocyte in id order, its label files (``x y class`` per line),
its folder layouts, and the pinned download of the sample images.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from napari_reddino.images import InputError, read_image
from napari_reddino.runtime import is_offline

# class names in id order: the names the annotation dock, the shipped classifier and the evaluation use
CLASSES = ["normal", "macrocyte", "microcyte", "spherocyte", "target", "stomatocyte", "ovalocyte",
           "teardrop", "burr", "schistocyte", "uncategorised", "hypochromia", "elliptocyte"]

COMMIT = "fa130f48135d79bbd69f8e540b533511017d6896"
URL = f"https://raw.githubusercontent.com/Chula-PIC-Lab/Chula-RBC-12-Dataset/{COMMIT}"
# image id -> (sha256 of Dataset/<id>.jpg, sha256 of Label/<id>.txt) at COMMIT
FILES = {
    1: ("2a8efd05b80339985c94bff5f2d6587e1e8093303e7af224a64675b5476c95e6",
        "c4fb2543679d69b534cc460faabc4ea1395d77e7d717a327d1a7e62f275446ab"),
    2: ("e59ea11e432aa318e59e5dc8ecbef1497a962a41a0c9701c1a91c3fd776b0ab2",
        "6a82b83c25469ff795b19c254979d9e562ae7397c9087aa469df867eaa1451a1"),
    3: ("5cec86d9adbe6717409b1a8f0bb1737d260972f45c3508c1452ba39a3e233807",
        "1b11e7ebc39b8d4380841d3f4a7b220e0c25448814ea4f0cc358a1bf52f18e1b"),
    707: ("dbfb05f4c7e92fe2e950ff4238f655482592b950a1633da596cde00c04ec1556",
          "d7f05d1e086bac8a8d8dcc61a497494c8fd71ce3820206bd676b6c100754ca79"),
}


def read_centres(path) -> tuple[np.ndarray, np.ndarray]:
    """A Chula label file (``x y class`` per line) as (centres (N, 2) float (y, x), class ids (N,) int)."""
    rows = []
    if path is not None and Path(path).is_file():
        for line in Path(path).read_text().split("\n"):
            parts = line.split()
            if len(parts) >= 3:
                rows.append((float(parts[1]), float(parts[0]), int(parts[2])))
    arr = np.array(rows, dtype=np.float64).reshape(-1, 3)
    return arr[:, :2], arr[:, 2].astype(np.int64)


def folders(root) -> tuple[Path, Path]:
    """(images, labels) folders of a Chula copy: ``images/`` + ``labels/`` (as in ``shared/data``) or the
    upstream repository's ``Dataset/`` + ``Label/``; the first pair when neither exists."""
    root = Path(root)
    return next(((root / i, root / lab) for i, lab in (("images", "labels"), ("Dataset", "Label"))
                 if (root / i).is_dir() and (root / lab).is_dir()), (root / "images", root / "labels"))




def _fetch(image_id: int) -> tuple[Path, Path]:
    import pooch

    if image_id not in FILES:
        raise InputError(f"Received Chula-RBC-12 image id {image_id}; accepted for download: "
                         f"{sorted(FILES)} (or set NAPARI_REDDINO_DATA to a local copy).")
    cache = Path(pooch.os_cache("napari-reddino")) / "chula-rbc-12"
    paths = []
    for sub, ext, sha in (("Dataset", "jpg", FILES[image_id][0]), ("Label", "txt", FILES[image_id][1])):
        fname = f"{sub.lower()}-{image_id}.{ext}"
        target = cache / fname
        if is_offline() and not target.is_file():
            raise InputError(f"Chula-RBC-12 {sub}/{image_id}.{ext} is not in the cache ({cache}) and downloads "
                             "are off (NAPARI_REDDINO_OFFLINE=1); accepted: network access, or "
                             "NAPARI_REDDINO_DATA naming a folder that holds chula-rbc-12/images.")
        try:
            paths.append(Path(pooch.retrieve(f"{URL}/{sub}/{image_id}.{ext}", known_hash=f"sha256:{sha}",
                                             fname=fname, path=cache, progressbar=False)))
        except Exception as exc:  # noqa: BLE001 - network/hash failures become one line
            raise InputError(f"Could not download Chula-RBC-12 {sub}/{image_id}.{ext} ({type(exc).__name__}); "
                             "accepted: network access to raw.githubusercontent.com, or NAPARI_REDDINO_DATA "
                             "naming a folder that holds chula-rbc-12/images.") from None
    return paths[0], paths[1]


def smear(image_id: int = 1, data_dir=None):
    """A real smear from Chula-RBC-12 with its labelled cell centres.

    Returns ``(image (H, W, 3) uint8, centres (N, 2) float (y, x), class_ids (N,) int)`` (see
    ``CLASSES``). Read from ``data_dir`` or ``$NAPARI_REDDINO_DATA`` (a folder laid out like
    ``shared/data``: ``chula-rbc-12/images/<id>.jpg`` and ``chula-rbc-12/labels/<id>.txt``) when given;
    otherwise downloaded once (pinned commit and sha256) into the user cache.
    """
    data_dir = data_dir or os.environ.get("NAPARI_REDDINO_DATA")
    if data_dir:
        root = Path(data_dir) / "chula-rbc-12"
        image_path, label_path = root / "images" / f"{image_id}.jpg", root / "labels" / f"{image_id}.txt"
        if not image_path.is_file():
            raise InputError(f"Received NAPARI_REDDINO_DATA={str(data_dir)!r} without {image_path.name} in "
                             f"{image_path.parent}; accepted: a folder holding chula-rbc-12/images/<id>.jpg.")
    else:
        image_path, label_path = _fetch(int(image_id))
    centres, class_ids = read_centres(label_path)
    return read_image(image_path), centres, class_ids
