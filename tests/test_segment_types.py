"""The threshold segmenter on generated smears with known answers: scale, overlap, object types."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_reddino.sample_data import synthetic_smear
from napari_reddino.segment import segment_cells
from napari_reddino.segment.threshold import estimate_image_diameter

BACKGROUND = np.array([0.93, 0.90, 0.86])
RBC_OD = np.array([0.14, 0.62, 0.48])  # eosin-pink, as the synthetic smear
NUCLEUS_OD = np.array([0.95, 1.35, 0.45])


def render(od, noise=0.004, seed=0):
    """OD image (H, W, 3) → uint8 RGB on a pale slide (Beer-Lambert), with a little camera noise."""
    rng = np.random.default_rng(seed)
    rgb = BACKGROUND * np.exp(-od) + rng.normal(0, noise, od.shape)
    return np.round(np.clip(rgb, 0, 1) * 255).astype(np.uint8)


def disc(shape, cy, cx, r, od, pallor=True):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    rho = np.hypot(yy - cy, xx - cx) / r
    inside = np.clip((1 - rho) * r + 0.5, 0, 1)
    thick = 1.0 - (0.45 * np.exp(-(rho / 0.45) ** 2) if pallor else 0 * rho)
    return inside[..., None] * thick[..., None] * od


def types_at(labels, table, points):
    t = dict(zip(table["label"], table["type"]))
    return [t.get(int(labels[y, x]), "background") for y, x in points]


@pytest.mark.parametrize("d", [30, 45, 70, 100, 130])
def test_isolated_cell_is_one_mask_at_any_scale(d):
    size = int(4 * d)
    od = np.zeros((size, size, 3))
    centres = [(size // 4, size // 4), (size // 4, 3 * size // 4), (3 * size // 4, size // 4),
               (3 * size // 4, 3 * size // 4), (size // 2, size // 2)]
    for cy, cx in centres:
        od += disc(od.shape, cy, cx, d / 2, RBC_OD)
    image = render(od)
    labels, table = segment_cells(image)
    assert abs(table.attrs["diameter"] - d) < 0.15 * d  # the scale is found from the image
    assert len(table) == 5 and types_at(labels, table, centres) == ["rbc"] * 5
    assert len(set(int(labels[y, x]) for y, x in centres)) == 5
    # a number overrides the estimate
    assert segment_cells(image, diameter=d * 1.1)[1].attrs["diameter"] == pytest.approx(d * 1.1)


@pytest.mark.parametrize("d", [40, 110])
def test_two_overlapping_discs_become_two_masks(d):
    size = int(5 * d)
    od = np.zeros((size, size, 3))
    a, b = (size // 2, size // 2 - int(0.4 * d)), (size // 2, size // 2 + int(0.4 * d))  # centres 0.8 d apart
    od += disc(od.shape, *a, d / 2, RBC_OD) + disc(od.shape, *b, d / 2, RBC_OD)
    for cy, cx in [(d, d), (d, size - d), (size - d, d), (size - d, size - d)]:  # isolated cells set the scale
        od += disc(od.shape, cy, cx, d / 2, RBC_OD)
    labels, table = segment_cells(render(od))
    assert labels[a] > 0 and labels[b] > 0 and labels[a] != labels[b]
    assert types_at(labels, table, [a, b]) == ["rbc", "rbc"]


def test_white_cell_beside_red_cells_is_wbc():
    shape = (300, 400, 3)
    od = np.zeros(shape)
    reds = [(60, 60), (60, 340), (240, 60), (240, 340), (150, 270)]
    for cy, cx in reds:
        od += disc(shape, cy, cx, 20, RBC_OD)
    od += disc(shape, 150, 170, 34, np.array([0.12, 0.16, 0.06]), pallor=False)  # cytoplasm
    od += disc(shape, 150, 170, 22, NUCLEUS_OD, pallor=False)
    labels, table = segment_cells(render(od))
    assert types_at(labels, table, [(150, 170)]) == ["wbc"]
    assert types_at(labels, table, reds) == ["rbc"] * 5


def test_lobed_white_cell_is_one_wbc():
    """A neutrophil: an oval of pale cytoplasm with three nuclear lobes 0.28 diameters apart, each smaller
    than the least nucleus. The cell is one object typed wbc, the cytoplasm between the lobes included
    (the oval has two distance-transform peaks of its own, which must not become red cells)."""
    d = 80
    shape = (5 * d, 6 * d, 3)
    od = np.zeros(shape)
    reds = [(d, d), (d, 5 * d), (4 * d, d), (4 * d, 5 * d), (d, 3 * d)]
    for cy, cx in reds:
        od += disc(shape, cy, cx, d / 2, RBC_OD)
    cy, cx = int(2.6 * d), 3 * d
    cytoplasm = np.array([0.2, 0.3, 0.08])
    od += np.maximum(disc(shape, cy, cx - 0.2 * d, 0.5 * d, cytoplasm, pallor=False),
                     disc(shape, cy, cx + 0.2 * d, 0.5 * d, cytoplasm, pallor=False))
    lobes = [(cy, int(cx + k * 0.52 * d)) for k in (-1, 0, 1)]
    for ly, lx in lobes:
        od += disc(shape, ly, lx, 0.12 * d, NUCLEUS_OD, pallor=False)
    labels, table = segment_cells(render(od))
    between = [(cy, int(cx - 0.26 * d)), (cy, int(cx + 0.26 * d))]
    assert types_at(labels, table, lobes + between) == ["wbc"] * 5
    assert len({int(labels[y, x]) for y, x in lobes + between}) == 1
    assert types_at(labels, table, reds) == ["rbc"] * 5


def test_scale_bar_and_text_are_artefacts():
    image, _, _ = synthetic_smear(seed=3)
    image = image.copy()
    image[395:460, 430:630] = np.median(image.reshape(-1, 3), axis=0)  # a clear patch of slide for the bar
    blue = np.array([40, 90, 200], np.uint8)
    image[440:444, 450:610] = blue  # a scale bar
    for i, x in enumerate(range(470, 590, 20)):  # "50.00"-like glyphs: thin strokes
        image[415:433, x:x + 2] = blue
        image[415:417, x:x + 10] = blue
        if i % 2:
            image[431:433, x:x + 10] = blue
    labels, table = segment_cells(image)
    assert set(types_at(labels, table, [(442, 460), (442, 530), (442, 600)])) == {"artefact"}
    glyphs = types_at(labels, table, [(424, x) for x in range(470, 590, 20)])
    assert all(t in ("artefact", "background") for t in glyphs)


@pytest.mark.parametrize("backend", ["learned", "threshold"])
def test_same_smear_resized_gives_the_same_count(backend):
    from PIL import Image

    image, _, _ = synthetic_smear(seed=4)
    labels, table = segment_cells(image, backend)
    n = int((table["type"] == "rbc").sum())
    assert n > 50
    for factor in (0.5, 2, 3):
        h, w = image.shape[:2]
        resized = np.asarray(Image.fromarray(image).resize((int(w * factor), int(h * factor)), Image.BILINEAR))
        _, t = segment_cells(resized, backend)
        assert abs(int((t["type"] == "rbc").sum()) - n) <= 0.05 * n, factor
        assert t.attrs["diameter"] == pytest.approx(table.attrs["diameter"] * factor, rel=0.1)


def test_blank_slide_measures_nothing():
    stats, d = estimate_image_diameter(np.full((100, 120, 3), 220, np.uint8))
    assert stats.threshold == np.inf and d > 0


def test_crowded_purple_tinted_cells_keep_their_scale_and_type():
    """Raabin-WBC's stain: up to a quarter of a red cell reads purple (little blue absorption),
    yet far paler than a nucleus. In a packed field (no isolated cell to measure) the scale still comes out right, and
    the cells are red cells, not white cells."""
    d, rng = 110, np.random.default_rng(3)
    size = int(4.6 * d)
    od = np.zeros((size, size, 3))
    # rows of touching cells (no isolated cell, no slide enclosed between cells)
    centres = [(int(0.7 * d + i * 1.15 * d), int(0.6 * d + j * 0.85 * d)) for i in range(4) for j in range(5)]
    for cy, cx in centres:
        od = np.maximum(od, disc(od.shape, cy, cx, d / 2, RBC_OD))
    cells = od[..., 1] > 0.2
    patches = ndimage.gaussian_filter(rng.random(cells.shape), 4)
    tinted = cells & (patches > np.quantile(patches, 0.75))  # patches over about a quarter of the cells
    od[tinted] = od[tinted] * np.array([1.5, 1.25, 0.3])  # a little darker, little blue: reads purple
    image = render(od)
    labels, table = segment_cells(image)
    assert abs(table.attrs["diameter"] - d) < 0.2 * d
    inner = [(cy, cx) for cy, cx in centres if d / 2 < cy < size - d / 2 and d / 2 < cx < size - d / 2]
    assert types_at(labels, table, inner).count("rbc") >= 0.8 * len(inner)
    assert "wbc" not in set(table["type"])


def test_specks_outnumbering_cells_do_not_set_the_scale():
    """BCCD slides carry more specks of debris (about 10 px) than isolated red cells: the scale is the
    cells', not the specks' (the old median of blob sizes gave 10 px on 12 such slides, and no cell)."""
    d, rng = 90, np.random.default_rng(5)
    od = np.zeros((480, 640, 3))
    for cy, cx in [(80, 90), (80, 330), (240, 210), (380, 90), (380, 470), (200, 540)]:
        od = np.maximum(od, disc(od.shape, cy, cx, d / 2, RBC_OD))
    for _ in range(25):
        cy, cx = rng.integers(10, 470), rng.integers(10, 630)
        if od[cy, cx, 1] == 0:
            od = np.maximum(od, disc(od.shape, cy, cx, 5, 1.5 * RBC_OD, pallor=False))
    _, table = segment_cells(render(od))
    assert abs(table.attrs["diameter"] - d) < 0.15 * d
    assert (table["type"] == "rbc").sum() == 6


def test_clump_of_overlapping_cells_keeps_its_scale():
    """A field that is one clump of overlapping cells, no cell isolated: its outline is arcs of the cells,
    while its distance-transform peaks sit where cells overlap (the old estimate came out 3.7x)."""
    d, step = 80, 0.8 * 80  # neighbours overlap by a fifth of a diameter
    od = np.zeros((520, 560, 3))
    centres = [(int(110 + i * step), int(100 + j * step + (i % 2) * step / 2)) for i in range(5) for j in range(5)]
    for cy, cx in centres:
        od = np.maximum(od, disc(od.shape, cy, cx, d / 2, RBC_OD))
    _, table = segment_cells(render(od))
    assert abs(table.attrs["diameter"] - d) < 0.15 * d


def test_inner_boundaries_equal_skimage_find_boundaries():
    from skimage.segmentation import find_boundaries

    from napari_reddino.segment.types import inner_boundaries

    rng = np.random.default_rng(0)
    for _ in range(100):
        labels = rng.integers(0, 4, (int(rng.integers(1, 30)), int(rng.integers(1, 30))))
        assert ((inner_boundaries(labels) & (labels != 0)) == find_boundaries(labels, mode="inner")).all()


def test_relabel_equals_skimage_relabel_sequential():
    from skimage.segmentation import relabel_sequential

    from napari_reddino.segment.threshold import relabel

    rng = np.random.default_rng(0)
    for _ in range(50):
        labels = rng.choice([0, 3, 7, 100, 2**20], size=(int(rng.integers(1, 30)), int(rng.integers(1, 30))))
        assert (relabel(labels.astype(np.int32)) == relabel_sequential(labels.astype(np.int32))[0]).all()


@pytest.mark.parametrize("backend", ["threshold", "learned"])
def test_one_image_measures_its_stain_once(backend, monkeypatch):
    """An image (not tiled) has its stain statistics measured once for segmentation and types (they were
    measured three times: a fifth of the segmenter's time), and the same masks and diameter come out as
    when the scale is given."""
    from napari_reddino.segment import segment_cells
    from napari_reddino.segment import threshold

    image = _smear_for_stain_count()
    calls = []
    real = threshold.stain_stats
    monkeypatch.setattr(threshold, "stain_stats", lambda *a, **k: calls.append(1) or real(*a, **k))
    labels, table = segment_cells(image, backend=backend)
    assert len(calls) == 1
    again, _ = segment_cells(image, backend=backend, diameter=table.attrs["diameter"])
    assert (labels == again).all() and labels.max() >= 3


def _smear_for_stain_count():
    rng = np.random.default_rng(3)
    image = np.full((240, 320, 3), (235, 225, 230), np.uint8)
    yy, xx = np.indices(image.shape[:2])
    for cy, cx in [(60, 60), (60, 160), (150, 100), (170, 240), (80, 260)]:
        image[np.hypot(yy - cy, xx - cx) <= 18] = (200, 120, 140)
    return np.clip(image + rng.normal(0, 2, image.shape), 0, 255).astype(np.uint8)
