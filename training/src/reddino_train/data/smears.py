"""The labelled smear sources in ``../shared/data`` and how to read their labels: one home for the
benchmark (``benchmarks/bench_segment.py`` scores the even-index images) and the learned segmenter's
training (the odd-index images), so neither sees the other's half.

Each item is ``(image path, centres, boxes)``: Chula gives labelled red-cell centres ``{"rbc": (N, 2) (y, x)}``
and no boxes; BCCD and TXL-PBC give boxes ``{"rbc" | "wbc" | "platelet": [(y0, x0, y1, x1), ...]}`` and no
centres. BCCD's red-cell boxes are incomplete (not every red cell has one).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from napari_reddino.chula import read_centres

SOURCES = ("chula", "bccd", "pbc", "raabin")
TXL_CLASSES = ("wbc", "rbc", "platelet")


def chula_items(root: Path):
    for lf in sorted((root / "labels").glob("*.txt"), key=lambda p: int(p.stem)):
        centres, _ = read_centres(lf)
        if len(centres):
            yield root / "images" / f"{lf.stem}.jpg", {"rbc": centres}, None


def bccd_items(root: Path):
    for xml in sorted((root / "Annotations").glob("*.xml")):
        boxes = {"rbc": [], "wbc": [], "platelet": []}
        tree = ET.parse(xml).getroot()
        for obj in tree.iter("object"):
            b = obj.find("bndbox")
            x0, y0, x1, y1 = (float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax"))
            kind = {"RBC": "rbc", "WBC": "wbc", "Platelets": "platelet"}[obj.find("name").text.strip()]
            boxes[kind].append((y0, x0, y1, x1))
        yield root / "JPEGImages" / f"{xml.stem}.jpg", None, boxes


def txl_items(root: Path, raabin: bool):
    """TXL-PBC's PBC fields (360x363) or, with ``raabin``, its Raabin-WBC fields (575x575)."""
    from PIL import Image

    for image in sorted((root / "images").glob("*.jpg")):
        with Image.open(image) as im:
            w, h = im.size
        if (w == 575) != raabin:
            continue
        boxes = {"rbc": [], "wbc": [], "platelet": []}
        lf = root / "labels" / f"{image.stem}.txt"
        for line in (lf.read_text().splitlines() if lf.exists() else []):
            if line.strip():
                c, cx, cy, bw, bh = line.split()
                cx, cy, bw, bh = float(cx) * w, float(cy) * h, float(bw) * w, float(bh) * h
                boxes[TXL_CLASSES[int(c)]].append((cy - bh / 2, cx - bw / 2, cy + bh / 2, cx + bw / 2))
        yield image, None, boxes


def source_items(data, source: str):
    """The items of one source under the data folder ``data``, in a fixed order."""
    data = Path(data)
    if source == "chula":
        return chula_items(data / "chula-rbc-12")
    if source == "bccd":
        return bccd_items(data / "bccd")
    if source in ("pbc", "raabin"):
        return txl_items(data / "txl-pbc", source == "raabin")
    raise ValueError(f"Received source {source!r}; accepted: {', '.join(SOURCES)}.")


def training_half(items):
    """The odd-index items: the benchmark scores the even ones (``i % step == 0`` for an even step)."""
    return [it for i, it in enumerate(items) if i % 2 == 1]
