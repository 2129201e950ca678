"""Threshold backend (and the default learned one, which shares its pipeline) and the segment() entry point,
checked against synthetic ground truth."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_reddino.progress import Progress, run
from napari_reddino.images import InputError
from napari_reddino.sample_data import synthetic_smear
from napari_reddino.segment import iter_segment, segment, tile_starts
from napari_reddino.segment.threshold import fill_holes
from napari_reddino.segment.types import object_types


def score(labels, gt, classes, kinds=("normal", "spherocyte", "target", "elliptocyte")):
    """Fraction of ground-truth cell centres that fall in exactly one mask holding no other centre."""
    ids = [k for k, v in classes.items() if v in kinds]
    cents = np.array(ndimage.center_of_mass(np.ones_like(gt), gt, ids)).round().astype(int)
    m = labels[cents[:, 0], cents[:, 1]]
    counts = np.bincount(m, minlength=labels.max() + 1)
    return ((m > 0) & (counts[m] == 1)).mean(), ((m > 0) & (counts[m] >= 2)).mean()


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear(seed=2)


@pytest.mark.parametrize("backend", ["learned", "threshold"])
def test_threshold_finds_each_red_cell_once(smear, backend):
    image, gt, classes = smear
    labels = segment(image, backend)
    assert labels.dtype == np.int32 and labels.shape == gt.shape
    assert set(np.unique(labels)) == set(range(labels.max() + 1))  # consecutive ids
    hits, merged = score(labels, gt, classes)
    assert hits >= 0.95 and merged <= 0.03
    # platelets are objects of their own, never part of a red cell
    types = object_types(image, labels)
    rbc = np.isin(labels, types["label"][types["type"] == "rbc"])
    platelets = np.isin(gt, [k for k, v in classes.items() if v == "platelet"])
    assert (rbc[platelets]).mean() < 0.2


@pytest.mark.parametrize("backend", ["learned", "threshold"])
def test_touching_cells_are_split(smear, backend):
    image, gt, classes = smear
    labels = segment(image, backend)
    a, b = gt[:, :-1], gt[:, 1:]
    pairs = {(p, q) for p, q in zip(a[(a != b) & (a > 0) & (b > 0)], b[(a != b) & (a > 0) & (b > 0)])
             if classes[p] != "platelet" and classes[q] != "platelet"}
    assert len(pairs) >= 5
    split = 0
    for p, q in pairs:
        cp = np.round(ndimage.center_of_mass(gt == p)).astype(int)
        cq = np.round(ndimage.center_of_mass(gt == q)).astype(int)
        lp, lq = labels[tuple(cp)], labels[tuple(cq)]
        split += lp > 0 and lq > 0 and lp != lq
    assert split >= 0.8 * len(pairs)


@pytest.mark.parametrize("backend", ["learned", "threshold"])
def test_white_cells_typed_wbc(smear, backend):
    image, gt, classes = smear
    labels = segment(image, backend)
    types = object_types(image, labels)
    assert list(types["label"]) == list(range(1, labels.max() + 1))
    wbc_ids = types["label"][types["type"] == "wbc"].to_numpy()
    white_ids = [k for k, v in classes.items() if v == "white_cell"]
    typed = np.isin(labels, wbc_ids)
    assert all((typed & (gt == k)).sum() > 100 for k in white_ids)  # every white cell is typed wbc
    assert (typed & ~np.isin(gt, white_ids)).sum() < 0.15 * typed.sum()  # and hardly any red cell
    assert len(object_types(image, labels, label_ids=[])) == 0


def test_diameter_option_changes_splitting(smear):
    image, gt, classes = smear
    assert segment(image, diameter=120).max() < segment(image, diameter=38).max()


@pytest.mark.parametrize("make", [
    lambda: np.full((200, 300, 3), 210, np.uint8),
    lambda: np.random.default_rng(0).normal(200, 4, (200, 300, 3)).clip(0, 255).astype(np.uint8),
    lambda: np.zeros((64, 64), np.float32),
])
def test_empty_image_gives_no_cells(make):
    labels = segment(make())
    assert labels.shape == make().shape[:2] and labels.max() == 0


def test_progress_generator_and_bad_input(smear):
    image = smear[0][:200, :200]
    seen = []
    labels = run(iter_segment(image), callback=seen.append)
    assert labels.max() > 0 and all(isinstance(p, Progress) for p in seen) and seen[-1].done == seen[-1].total
    with pytest.raises(InputError, match="accepted: learned, threshold, cellpose"):
        segment(image, backend="magic")
    with pytest.raises(InputError, match="accepted"):
        segment(np.zeros((5, 5, 7)))


def test_large_image_in_tiles_matches_whole():
    image, gt, classes = synthetic_smear(seed=5, shape=(900, 1300))
    whole = segment(image)
    seen = []
    tiled = run(iter_segment(image, tile_size=500), callback=seen.append)
    assert seen[-1].total > 4 and seen[-1].done == seen[-1].total and "tile" in seen[-1].message  # one per tile
    hits_whole, merged_whole = score(whole, gt, classes)
    hits_tiled, merged_tiled = score(tiled, gt, classes)
    assert hits_whole > 0.9 and hits_tiled >= hits_whole - 0.02 and merged_tiled <= merged_whole + 0.02
    assert abs(int(tiled.max()) - int(whole.max())) <= 0.03 * whole.max()
    # channel-first input takes the same path
    assert segment(np.moveaxis(image, -1, 0), tile_size=500).max() == tiled.max()


def test_tile_starts_cover_everything():
    for length, tile, overlap in [(100, 200, 50), (1000, 300, 60), (2049, 2048, 100)]:
        starts = tile_starts(length, tile, overlap)
        covered = np.zeros(length, bool)
        for s in starts:
            covered[s:s + tile] = True
        assert covered.all() and starts[-1] + min(tile, length) == length
        assert all(b - a <= tile - overlap for a, b in zip(starts, starts[1:]))


def test_fill_holes_keeps_border_background():
    mask = np.zeros((20, 20), bool)
    mask[5:15, 5:15] = True
    mask[8:12, 8:12] = False  # a pallor
    mask[0:3, 0:3] = True
    filled = fill_holes(mask)
    assert filled[8:12, 8:12].all() and not filled[18, 18] and filled.sum() == 100 + 9


def _od_image(od_green, ratios, shape):
    """RGB uint8 of a slide whose green optical density is ``od_green`` and the other channels ``ratios``."""
    bg = np.array([0.92, 0.9, 0.88])
    od = od_green[..., None] * np.asarray(ratios, float)
    return (bg * np.exp(-od) * 255).astype(np.uint8)


def test_white_cell_filling_the_field_does_not_set_the_threshold():
    """A high-magnification field (PBC, Raabin-WBC): a white cell's dense, non-purple cytoplasm covers a tenth
    of it; Otsu over the whole field then falls between that cell and everything else."""
    from napari_reddino.segment.threshold import stain_stats

    h, w = 360, 360
    yy, xx = np.indices((h, w))
    g = np.zeros((h, w))
    ratios = np.ones((h, w, 3)) * np.array([0.1, 1.0, 0.6])
    centres = [(y, x) for y in (45, 135, 225, 315) for x in (45, 135, 225, 315) if abs(y - 180) + abs(x - 180) > 100]
    for cy, cx in centres:
        g[np.hypot(yy - cy, xx - cx) <= 30] = 0.18  # pale red cells
    wbc = np.hypot(yy - 180, xx - 180) <= 65
    g[wbc] = 0.6
    ratios[wbc] = (0.5, 1.0, 0.9)  # cytoplasm absorbs blue too: not purple
    rgb = (np.array([0.92, 0.9, 0.88]) * np.exp(-g[..., None] * ratios) * 255).astype(np.uint8)
    stats = stain_stats(rgb / 255.0)
    assert stats.threshold < 0.15  # below the red cells' density, so they are foreground
    labels = segment(rgb, "threshold")
    found = {int(labels[cy, cx]) for cy, cx in centres}
    assert 0 not in found and len(found) == len(centres)


def _open_ring(side, pallor_radius):
    """A red cell 40 px in radius at the centre of a square slide, its pallor open to the right."""
    c = side // 2
    yy, xx = np.indices((side, side))
    rr = np.hypot(yy - c, xx - c)
    g = np.where((rr <= 40) & (rr > pallor_radius), 0.35, 0.0)
    g[(np.abs(yy - c) < 5) & (xx > c)] = 0.0
    return _od_image(g, (0.1, 1.0, 0.6), (side, side))


def test_centre_on_an_open_pallor_is_inside_its_cell():
    """A red cell whose pale centre opens to the slide on one side: fill_holes cannot fill it; a cell centre
    found there (the learned segmenter's) puts it inside the cell's mask."""
    from napari_reddino.segment.threshold import threshold_objects

    rgb = _open_ring(200, 16)
    without, _ = threshold_objects(rgb, 80)
    assert without[100, 100] == 0  # the pallor stays slide
    labels, _ = threshold_objects(rgb, 80, centres=lambda rgb, stats, d: np.array([(100.0, 100.0)]))
    assert labels[100, 100] > 0 and labels[100, 100] == labels[100, 70]


def test_centre_in_a_pallor_wider_than_the_measured_diameter_fills_it_and_no_further():
    """BCCD's cells are up to 1.3 of the measured diameter across: their open pallor reaches beyond the
    ring a fixed fraction of the diameter would look at. The rays from the centre find the rim."""
    from napari_reddino.segment.threshold import threshold_objects

    rgb = _open_ring(220, 27)
    labels, _ = threshold_objects(rgb, 60, centres=lambda rgb, stats, d: np.array([(110.0, 110.0)]))
    assert labels[110, 110] > 0 and labels[110, 110] == labels[110, 76] == labels[90, 110]
    assert labels[110, 160] == 0 and labels[110, 200] == 0  # the gap is bridged, the slide beyond is not filled


def _pale_field():
    """A normal red cell (green OD 0.3), a pale one (0.06, below the 0.1 threshold) and one pale except for a
    crescent of its rim at 0.15, on a 240x360 slide."""
    h, w = 240, 360
    yy, xx = np.indices((h, w))
    g = np.zeros((h, w))
    g[np.hypot(yy - 120, xx - 60) <= 30] = 0.3
    g[np.hypot(yy - 120, xx - 170) <= 30] = 0.06
    pale = np.hypot(yy - 120, xx - 280) <= 30
    g[pale] = 0.06
    g[pale & (xx < 262)] = 0.15
    return _od_image(g, (0.1, 1.0, 0.6), (h, w))


def test_pale_cell_at_a_centre_is_found_whole():
    """A pale red cell (BCCD) below the foreground threshold, or with only a crescent of its rim above it:
    where the learned segmenter found its centre it is one object of about its size; a centre on bare slide
    adds nothing."""
    from napari_reddino.segment.threshold import StainStats, threshold_objects

    rgb = _pale_field()
    stats = StainStats(background=np.array([0.92, 0.9, 0.88]), threshold=0.1)
    without, _ = threshold_objects(rgb, 60, stats)
    assert without[120, 170] == 0 and without[120, 280] == 0 and without[120, 255] > 0
    centres = np.array([(120.0, 60.0), (120.0, 170.0), (120.0, 280.0), (40.0, 170.0)])
    labels, _ = threshold_objects(rgb, 60, stats, centres=lambda rgb, s, d: centres)
    a, b, c = labels[120, 60], labels[120, 170], labels[120, 280]
    assert a and b and c and len({a, b, c}) == 3
    assert labels[120, 255] == c  # the crescent and the rest of its cell are one object
    disc = np.pi * 30 ** 2
    assert 0.7 * disc < (labels == b).sum() < 1.3 * disc and 0.7 * disc < (labels == c).sum() < 1.3 * disc
    assert labels[40, 170] == 0 and len(np.unique(labels[labels > 0])) == 3


def test_diameter_of_a_crowded_field_is_not_set_by_its_specks():
    """A crowded field (BCCD) whose only free blobs are platelets and specks of dust: the red cells' size
    comes from the clumps, not from the specks."""
    from napari_reddino.segment.threshold import estimate_image_diameter

    h, w = 480, 640
    yy, xx = np.indices((h, w))
    g = np.zeros((h, w))
    for cy in (75, 240, 405):
        for cx in range(40, 640, 62):
            g[np.hypot(yy - cy, xx - cx) <= 40] = 0.3
    for cx in range(50, 640, 80):
        g[np.hypot(yy - 158, xx - cx) <= 6] = 0.3
        g[np.hypot(yy - 322, xx - cx - 40) <= 6] = 0.3
    _, d = estimate_image_diameter(_od_image(g, (0.1, 1.0, 0.6), (h, w)))
    assert 60 < d < 100


def test_diameter_of_an_elliptocytosis_smear_comes_from_its_cells():
    """Elongated cells are not "isolated" by the distance-transform test (their peak is low for their area),
    so the few round ones hold a small part of the stain; the field is still not crowded, and its cells'
    size (area-equivalent diameter 56 px) is measured from them, not from outline curvature."""
    from napari_reddino.segment.threshold import estimate_image_diameter

    h, w = 960, 1280
    yy, xx = np.indices((h, w))
    g = np.zeros((h, w))
    for k, (cy, cx) in enumerate((y, x) for y in range(70, h - 60, 130) for x in range(80, w - 60, 150)):
        if k < 5:
            g[np.hypot(yy - cy, xx - cx) <= 28] = 0.3
        else:
            g[((yy - cy) / 19) ** 2 + ((xx - cx) / 42) ** 2 <= 1] = 0.3
    _, d = estimate_image_diameter(_od_image(g, (0.1, 1.0, 0.6), (h, w)))
    assert 50 < d < 63
