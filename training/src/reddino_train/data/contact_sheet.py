"""A contact sheet of augmented samples (denormalised) so a person can look at what the model sees.

One row per sample: the input as read, then each global crop, then each local crop, at their own pixel size
(enlarged by a whole factor when small, nearest neighbour), each captioned with the transforms that fired.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reddino_train.data.augment import IMAGENET_MEAN, IMAGENET_STD

PAD, CAPTION_LINES, BACKGROUND = 6, 3, (40, 40, 40)


def denormalize(tensor, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """A normalised (3, H, W) tensor or array → (H, W, 3) uint8 RGB."""
    arr = np.asarray(tensor, dtype=np.float32).transpose(1, 2, 0)
    arr = arr * np.asarray(std, np.float32) + np.asarray(mean, np.float32)
    return np.clip(np.round(arr * 255), 0, 255).astype(np.uint8)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType: fixed bitmap font
        return ImageFont.load_default()


def _wrap(words: list[str], width_chars: int) -> list[str]:
    lines, line = [], ""
    for w in words:
        if line and len(line) + 1 + len(w) > width_chars:
            lines.append(line)
            line = w
        else:
            line = f"{line} {w}".strip()
    return (lines + [line])[:CAPTION_LINES] if line or lines else ["(none)"]


def _thumb(image: np.ndarray, cell: int) -> np.ndarray:
    from PIL import Image

    h, w = image.shape[:2]
    s = cell / max(h, w)
    return np.asarray(Image.fromarray(image).resize((max(1, round(w * s)), max(1, round(h * s))), Image.BILINEAR))


def contact_sheet(aug, images, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> np.ndarray:
    """(H, W, 3) uint8 sheet for ``images`` (list of RGB uint8 arrays) through a MultiCropAugmentation."""
    from PIL import Image, ImageDraw

    rows = []
    for image in images:
        res = aug.applied(image)
        crops = ([denormalize(t, mean, std) for t in res["global_crops"]]
                 + [denormalize(t, mean, std) for t in res["local_crops"]])
        names = res["global_applied"] + res["local_applied"]
        titles = [f"global {i + 1}" for i in range(len(res["global_crops"]))] + \
                 [f"local {i + 1}" for i in range(len(res["local_crops"]))]
        rows.append((image, crops, names, titles))
    size = max(max(c.shape[0] for c in r[1]) for r in rows)
    zoom = max(1, 224 // size)
    cell = size * zoom
    font_px = 11
    caption_h = (CAPTION_LINES + 1) * (font_px + 2)
    n_cols = 1 + max(len(r[1]) for r in rows)
    sheet = Image.new("RGB", (n_cols * (cell + PAD) + PAD, len(rows) * (cell + caption_h + PAD) + PAD), BACKGROUND)
    draw, font = ImageDraw.Draw(sheet), _font(font_px)
    chars = max(8, cell // 6)
    for r, (image, crops, names, titles) in enumerate(rows):
        y = PAD + r * (cell + caption_h + PAD)
        tiles = [_thumb(image, cell)] + [np.kron(c, np.ones((zoom, zoom, 1), np.uint8)) for c in crops]
        captions = [[f"input {image.shape[1]}x{image.shape[0]}"]] + [
            [f"{t} ({c.shape[1]} px)"] + _wrap(n, chars) for t, c, n in zip(titles, crops, names)]
        for col, (tile, lines) in enumerate(zip(tiles, captions)):
            x = PAD + col * (cell + PAD)
            sheet.paste(Image.fromarray(tile), (x, y))
            for k, line in enumerate(lines[:CAPTION_LINES + 1]):
                draw.text((x, y + cell + 1 + k * (font_px + 2)), line, fill=(230, 230, 230), font=font)
    return np.asarray(sheet)


def write_contact_sheet(aug, images, out, mean=IMAGENET_MEAN, std=IMAGENET_STD) -> Path:
    from PIL import Image

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(contact_sheet(aug, images, mean, std)).save(out)
    return out
