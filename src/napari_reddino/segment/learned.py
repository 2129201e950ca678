"""A small learned segmenter (``backend="learned"``): a U-Net on stain optical density at a fixed cell scale.

1. Scale: the red-cell diameter is measured by the threshold module (:func:`estimate_image_diameter`) and the
   image is resized so that a red cell is ``TARGET_DIAMETER`` px across: one network serves 30 to 130 px cells.
2. Stain: the network sees the optical density (OD) against the slide's own background, not RGB, so lamp
   brightness and camera white balance drop out.
3. The network predicts a foreground probability and, per pixel, the distance to its own cell's edge
   divided by that cell's largest such distance (1 at every cell's centre, 0 at its boundary, also where two
   cells overlap). Instances: one marker per connected region of high distance, a watershed on the distance
   inside the foreground, labels resized back to the image.

Weights (``segmenter.safetensors`` beside this file, or ``weights=PATH``) are read with safetensors only; the
training recipe (synthetic fields composed from the threshold segmenter's isolated cells, no labels) is
``reddino-train segmenter``. Object types come afterwards from :mod:`napari_reddino.segment.types`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_reddino.images import InputError, to_rgb_float

TARGET_DIAMETER = 24.0  # px: the red-cell diameter the network works at
OD_SCALE = 2.0  # network input = OD * OD_SCALE (red cells' green OD is about 0.2-0.5)
WEIGHTS = Path(__file__).with_name("segmenter.safetensors")
CHANNELS = (16, 32, 64)


def build_unet(channels=CHANNELS):
    """A three-level U-Net: 3 OD channels in, 2 out (foreground logit, distance logit)."""
    from napari_reddino._torch_runtime import import_torch

    torch = import_torch()
    nn = torch.nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            c1, c2, c3 = channels
            self.enc1, self.enc2, self.mid = block(3, c1), block(c1, c2), block(c2, c3)
            self.up2, self.dec2 = nn.ConvTranspose2d(c3, c2, 2, stride=2), block(2 * c2, c2)
            self.up1, self.dec1 = nn.ConvTranspose2d(c2, c1, 2, stride=2), block(2 * c1, c1)
            self.head = nn.Conv2d(c1, 2, 1)

        def forward(self, x):
            e1 = self.enc1(x)
            e2 = self.enc2(nn.functional.max_pool2d(e1, 2))
            m = self.mid(nn.functional.max_pool2d(e2, 2))
            d2 = self.dec2(torch.cat([self.up2(m), e2], 1))
            d1 = self.dec1(torch.cat([self.up1(d2), e1], 1))
            return self.head(d1)

    return UNet()


_CACHE: dict = {}


def load_segmenter(weights=None):
    """The U-Net with ``weights`` (default: the shipped file), in eval mode; built once per file."""
    from safetensors.torch import load_file

    path = Path(weights) if weights else WEIGHTS
    if not path.is_file():
        raise InputError(f"Received learned-segmenter weights {str(path)!r}, which do not exist; accepted: a "
                         "safetensors file written by `reddino-train segmenter`.")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _CACHE:
        state = load_file(str(path))
        channels = tuple(int(state[f"{k}.0.weight"].shape[0]) for k in ("enc1", "enc2", "mid"))
        net = build_unet(channels)
        net.load_state_dict(state)
        _CACHE.clear()
        _CACHE[key] = net.eval()
    return _CACHE[key]


def network_input(rgb: np.ndarray, background) -> np.ndarray:
    """(3, H, W) float32 network input: OD against ``background``, scaled."""
    from napari_reddino.segment.threshold import optical_density

    return np.ascontiguousarray((optical_density(rgb, background) * OD_SCALE).transpose(2, 0, 1))


def predict(net, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and normalised distance for a (3, H, W) input (padded to a multiple of 4)."""
    from napari_reddino._torch_runtime import import_torch

    torch = import_torch()
    _, h, w = x.shape
    ph, pw = (-h) % 4, (-w) % 4
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 4 else "edge")
    with torch.inference_mode():
        out = net(torch.from_numpy(x)[None]).numpy()[0, :, :h, :w]
    return 1 / (1 + np.exp(-out[0])), 1 / (1 + np.exp(-out[1]))


def instances(fg: np.ndarray, dist: np.ndarray, fg_threshold=0.5, marker_threshold=0.5) -> np.ndarray:
    """Labels from the two maps: markers where the distance is high, watershed on -distance in the
    foreground; a foreground region without a marker is one object."""
    from scipy import ndimage
    from skimage.segmentation import watershed

    mask = fg > fg_threshold
    markers, n = ndimage.label(mask & (dist > marker_threshold))
    labels = watershed(-dist, markers, mask=mask) if n else np.zeros(fg.shape, np.int32)
    rest, _ = ndimage.label(mask & (labels == 0))
    labels = np.where(rest > 0, rest + labels.max(), labels)
    return labels.astype(np.int32)


def segment_learned(image, diameter=None, stats=None, weights=None, min_area: float = 0.04,
                    fg_threshold: float = 0.5, marker_threshold: float = 0.5) -> np.ndarray:
    """int32 labels of every object (0 = background). ``diameter``: the red-cell diameter in px (None or
    "auto": measured); ``stats``: the image's :class:`StainStats` (measured when None)."""
    import cv2

    from napari_reddino.segment.threshold import estimate_image_diameter, is_auto, relabel, stain_stats

    rgb = to_rgb_float(image)
    h, w = rgb.shape[:2]
    if diameter is None or is_auto(diameter):
        stats, diameter = estimate_image_diameter(rgb)
    stats = stats or stain_stats(rgb)
    if not np.isfinite(stats.threshold):
        return np.zeros((h, w), np.int32)
    s = TARGET_DIAMETER / float(diameter)
    size = (max(8, int(round(w * s))), max(8, int(round(h * s))))
    small = cv2.resize(rgb.astype(np.float32), size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    fg, dist = predict(load_segmenter(weights), network_input(small, stats.background))
    labels = instances(fg, dist, fg_threshold, marker_threshold)
    labels = cv2.resize(labels.astype(np.float32), (w, h), interpolation=cv2.INTER_NEAREST).astype(np.int32)
    cell_area = np.pi * (float(diameter) / 2) ** 2
    sizes = np.bincount(labels.ravel())
    labels[sizes[labels] < min_area * cell_area] = 0
    return relabel(labels)
