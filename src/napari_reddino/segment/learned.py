"""The learned segmenter (``backend="learned"``): the threshold segmenter with its cell markers found by a
small U-Net trained on labelled cell centres.

Most of the threshold segmenter's errors on other labs' crowded fields are merges: two overlapping cells
make one distance-transform peak, or a peak in their overlap. A network that has seen labelled centres puts one
marker in each cell (``benchmarks/results_segment.md`` has both backends side by side).

1. Scale: the image is resized so that a red cell (the threshold module's measured diameter) is
   ``TARGET_DIAMETER`` px across: one network serves 30 to 130 px cells.
2. Stain: the network sees the optical density (OD) against the slide's own background, not RGB, so lamp
   brightness and camera white balance drop out.
3. The network predicts, per pixel, how likely it is a cell's centre (red or white cell); markers are the
   local maxima above ``min_probability``, then :func:`~napari_reddino.segment.threshold.threshold_objects`
   does the rest (its rules hold: an isolated convex cell is never split, a nucleus is one marker); a centre
   on slide recovers its cell (an open central pallor, a pale red cell: :mod:`.at_centres`).

Weights (``segmenter.safetensors`` beside this file, or ``weights=PATH``) are read with safetensors only; the
training recipe is ``reddino-train segmenter`` (the training half of the labelled sources).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_reddino.images import InputError, to_rgb_float

TARGET_DIAMETER = 24.0  # px: the red-cell diameter the network works at
OD_SCALE = 2.0  # network input = OD * OD_SCALE (red cells' green OD is about 0.2-0.5)
CENTRE_SIGMA = 0.12  # of the diameter: the width of a centre's peak in the training target
WEIGHTS = Path(__file__).with_name("segmenter.safetensors")
CHANNELS = (16, 32, 64)


def build_unet(channels=CHANNELS):
    """A U-Net with one level per entry of ``channels`` (the last is the bottom): 3 OD channels in, 1 out
    (the centre logit). Layer names ``enc1.. mid up*/dec* head`` do not depend on the depth."""
    from napari_reddino.runtime import import_torch

    torch = import_torch()
    nn = torch.nn

    def block(cin, cout):
        return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.Conv2d(cout, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    class UNet(nn.Module):
        def __init__(self):
            super().__init__()
            c = tuple(channels)
            self.levels = len(c) - 1
            for i in range(1, len(c)):
                setattr(self, f"enc{i}", block(3 if i == 1 else c[i - 2], c[i - 1]))
                setattr(self, f"up{i}", nn.ConvTranspose2d(c[i], c[i - 1], 2, stride=2))
                setattr(self, f"dec{i}", block(2 * c[i - 1], c[i - 1]))
            self.mid = block(c[-2], c[-1])
            self.head = nn.Conv2d(c[0], 1, 1)

        def forward(self, x):
            skips = []
            for i in range(1, self.levels + 1):
                x = getattr(self, f"enc{i}")(x)
                skips.append(x)
                x = nn.functional.max_pool2d(x, 2)
            x = self.mid(x)
            for i in range(self.levels, 0, -1):
                x = getattr(self, f"dec{i}")(torch.cat([getattr(self, f"up{i}")(x), skips[i - 1]], 1))
            return self.head(x)

    return UNet()


_CACHE: dict = {}


def load_segmenter(weights=None):
    """The U-Net with ``weights`` (default: the shipped file), in eval mode; built once per file."""
    from napari_reddino.runtime import import_torch

    torch = import_torch()  # before safetensors.torch imports torch (triton hidden inside napari)
    from safetensors.torch import load_file

    path = Path(weights) if weights else WEIGHTS
    if not path.is_file():
        raise InputError(f"Received learned-segmenter weights {str(path)!r}, which do not exist; accepted: a "
                         "safetensors file written by `reddino-train segmenter`.")
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _CACHE:
        state = load_file(str(path))
        if state["head.weight"].shape[0] != 1:
            raise InputError(f"Received learned-segmenter weights {str(path)!r} of an older format; accepted: a "
                             "centre network written by `reddino-train segmenter`.")
        levels = sum(1 for k in state if k.startswith("enc") and k.endswith(".0.weight"))
        channels = tuple(int(state[f"enc{i}.0.weight"].shape[0]) for i in range(1, levels + 1))
        net = build_unet(channels + (int(state["mid.0.weight"].shape[0]),))
        net.load_state_dict(state)
        _CACHE.clear()
        # channels-last: oneDNN's convolutions run about a third faster on a CPU in this layout
        _CACHE[key] = fold_batch_norm(net.eval()).to(memory_format=torch.channels_last)
    return _CACHE[key]


def fold_batch_norm(net):
    """``net`` (in eval mode) with each batch norm folded into the convolution before it: the same output,
    about a tenth faster on a CPU."""
    from napari_reddino.runtime import import_torch

    torch = import_torch()
    nn = torch.nn
    with torch.no_grad():
        for block in net.modules():
            if not isinstance(block, nn.Sequential):
                continue
            for i in range(1, len(block)):
                conv, bn = block[i - 1], block[i]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    bias = conv.bias if conv.bias is not None else torch.zeros_like(bn.running_mean)
                    conv.weight.mul_(scale[:, None, None, None])
                    conv.bias = nn.Parameter((bias - bn.running_mean) * scale + bn.bias)
                    block[i] = nn.Identity()
    return net


def to_network_scale(rgb: np.ndarray, diameter: float) -> tuple[np.ndarray, float]:
    """``(rgb resized so a red cell is TARGET_DIAMETER px across, the scale factor)``. The scale is exactly
    the factor (not the rounded size over the width), so a tile of a slide lands on the slide's own grid."""
    import cv2

    s = TARGET_DIAMETER / float(diameter)
    h, w = rgb.shape[:2]
    if min(h, w) * s < 8:  # a tiny image: at least 8 px a side for the network
        size = (max(8, int(round(w * s))), max(8, int(round(h * s))))
        return cv2.resize(rgb.astype(np.float32), size, interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR), s
    small = cv2.resize(rgb.astype(np.float32), None, fx=s, fy=s,
                       interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    return small, s


GRID = 20  # tiles of a slide: the network's scale is a multiple of 1/GRID (see tile_grid)


def tile_grid(diameter: float) -> tuple[float, int]:
    """``(diameter, align)`` for cutting a slide into tiles that the network sees as the whole slide: the
    diameter nudged (under 4% for cells up to 130 px) so the network's scale is a multiple of 1/GRID, and tile
    starts a multiple of ``align`` px, which the scale maps onto whole pooled pixels of the U-Net (its
    stride is 4). Then a tile's centres are the whole slide's."""
    scale = max(1, round(GRID * TARGET_DIAMETER / float(diameter))) / GRID
    return TARGET_DIAMETER / scale, 4 * GRID


def network_input(rgb: np.ndarray, background) -> np.ndarray:
    """(3, H, W) float32 network input: OD against ``background``, scaled."""
    from napari_reddino.segment.threshold import optical_density

    return np.ascontiguousarray((optical_density(rgb, background) * OD_SCALE).transpose(2, 0, 1))


def centre_probability(net, x: np.ndarray) -> np.ndarray:
    """Per-pixel centre probability for a (3, H, W) input (padded to a multiple of the network's stride)."""
    from napari_reddino.runtime import import_torch

    torch = import_torch()
    _, h, w = x.shape
    stride = 2 ** getattr(net, "levels", 2)
    ph, pw = (-h) % stride, (-w) % stride
    x = np.pad(x, ((0, 0), (0, ph), (0, pw)), mode="reflect" if min(h, w) > 4 else "edge")
    with torch.inference_mode():
        x = torch.from_numpy(x)[None].contiguous(memory_format=torch.channels_last)
        out = net(x).contiguous().numpy()[0, 0, :h, :w]
    return 1 / (1 + np.exp(-out))


def peaks(prob: np.ndarray, min_probability: float = 0.3, spacing: float = 0.25) -> np.ndarray:
    """(N, 2) (y, x) local maxima of ``prob`` above ``min_probability``, at least ``spacing`` diameters apart
    (at the network's scale)."""
    import cv2

    from scipy import ndimage

    prob = np.asarray(prob, np.float32)
    k = 2 * max(1, int(round(spacing * TARGET_DIAMETER))) + 1
    top = (prob == cv2.dilate(prob, np.ones((k, k), np.uint8))) & (prob >= min_probability)

    lab, n = ndimage.label(top, structure=np.ones((3, 3)))  # a plateau is one peak
    if n == 0:
        return np.zeros((0, 2))
    return np.asarray(ndimage.center_of_mass(top, lab, np.arange(1, n + 1)), float).reshape(-1, 2)


def predict_centres(rgb, stats, diameter, weights=None, min_probability: float = 0.3) -> np.ndarray:
    """(N, 2) (y, x) cell centres in ``rgb`` (full resolution) found by the network."""
    small, s = to_network_scale(to_rgb_float(rgb), diameter)
    prob = centre_probability(load_segmenter(weights), network_input(small, stats.background))
    return (peaks(prob, min_probability) + 0.5) / s - 0.5


def segment_learned(image, diameter=None, stats=None, weights=None, min_probability: float = 0.3,
                    **threshold_opts) -> np.ndarray:
    """int32 labels of every object (0 = background). ``diameter``: the red-cell diameter in px (None or
    "auto": measured); ``stats``: the image's :class:`StainStats` (measured when None); other options as
    :func:`~napari_reddino.segment.threshold.segment_threshold`."""
    return learned_objects(image, diameter, stats, weights, min_probability, **threshold_opts)[0]


def learned_objects(image, diameter=None, stats=None, weights=None, min_probability: float = 0.3,
                    **threshold_opts) -> tuple[np.ndarray, float]:
    """:func:`segment_learned`, returning ``(labels, diameter)`` (the diameter measured when not given)."""
    from napari_reddino.segment.threshold import is_auto, threshold_objects

    load_segmenter(weights)  # a missing file fails here, before any work

    def centres(rgb, stats, diameter):
        return predict_centres(rgb, stats, diameter, weights, min_probability)

    diameter = None if diameter is None or is_auto(diameter) else float(diameter)
    return threshold_objects(image, diameter, stats, centres=centres, **threshold_opts)
