"""Per-cell tables and crops."""

import numpy as np
import pytest

from napari_reddino.cells import cell_table, check_labels, crop_cells, drop_border_cells, padded_crop
from napari_reddino.images import InputError


@pytest.fixture
def two_cells():
    labels = np.zeros((40, 50), np.int32)
    labels[10:20, 10:30] = 1  # 10 x 20 rectangle
    yy, xx = np.mgrid[:40, :50]
    labels[(yy - 30) ** 2 + (xx - 40) ** 2 <= 16] = 2  # disc of radius 4
    image = np.zeros((40, 50, 3), np.uint8)
    image[labels == 1] = (255, 0, 0)
    image[labels == 2] = (0, 0, 255)
    return image, labels


def test_cell_table_measures_each_cell(two_cells):
    image, labels = two_cells
    t = cell_table(labels, image)
    assert list(t.label) == [1, 2]
    r = t.iloc[0]
    assert (r.centroid_y, r.centroid_x) == pytest.approx((14.5, 19.5))
    assert (r.bbox_y0, r.bbox_x0, r.bbox_y1, r.bbox_x1) == (10, 10, 20, 30)
    assert r.area == 200 and r.mean_r == pytest.approx(1.0) and r.mean_b == pytest.approx(0.0)
    assert t.iloc[1].mean_b == pytest.approx(1.0)
    assert t.iloc[1].eccentricity < 0.3 < r.eccentricity  # disc vs elongated rectangle


def test_cell_table_without_image_has_nan_colour(two_cells):
    t = cell_table(two_cells[1])
    assert t.mean_r.isna().all() and len(t) == 2


def test_labels_must_match_image(two_cells):
    image, labels = two_cells
    with pytest.raises(InputError, match="height and width"):
        cell_table(labels[:-1], image)
    with pytest.raises(InputError, match="2D integer"):
        check_labels(np.zeros((4, 4), np.float32))


def test_drop_border_cells():
    labels = np.zeros((10, 10), np.int32)
    labels[0:3, 0:3] = 1
    labels[4:6, 4:6] = 2
    labels[7:10, 8:10] = 3
    assert set(np.unique(drop_border_cells(labels))) == {0, 2}


def test_crop_cells_bbox_and_square_with_padding(two_cells):
    image, labels = two_cells
    crops = dict(crop_cells(image, labels))
    assert crops[1].shape == (10, 20, 3) and (crops[1][..., 0] == 255).all()
    square = dict(crop_cells(image, labels, pad_square=True, margin=0.5))
    assert square[1].shape[0] == square[1].shape[1] == 40
    # cell 2 sits near the border: the square box leaves the image and is padded with 0
    assert square[2].shape[0] == square[2].shape[1]


def test_crop_cells_masks_neighbours():
    labels = np.zeros((20, 20), np.int32)
    labels[5:15, 5:10] = 1
    labels[5:15, 10:15] = 2
    image = np.full((20, 20, 3), 100, np.uint8)
    crop = dict(crop_cells(image, labels, pad_square=True, margin=0.2, mask_neighbours=True))[1]
    assert (crop == 0).any() and (crop == 100).any()
    unmasked = dict(crop_cells(image, labels, pad_square=True, margin=0.2))[1]
    assert (unmasked == 100).sum() > (crop == 100).sum()


def test_crop_cells_subset_and_missing_labels(two_cells):
    image, labels = two_cells
    assert [lab for lab, _ in crop_cells(image, labels, label_ids=[2, 7])] == [2]


def test_padded_crop_outside_image():
    img = np.arange(16).reshape(4, 4)
    out = padded_crop(img, -1, -1, 2, 2, fill=-5)
    assert out.tolist() == [[-5, -5, -5], [-5, 0, 1], [-5, 4, 5]]


def test_cell_positions_match_the_full_table(two_cells):
    from napari_reddino.cells import cell_positions

    image, labels = two_cells
    full, light = cell_table(labels, image), cell_positions(labels)
    assert list(light.columns) == ["label", "centroid_y", "centroid_x", "bbox_y0", "bbox_x0", "bbox_y1", "bbox_x1"]
    assert (full[light.columns].to_numpy() == light.to_numpy()).all()


def test_eccentricity_matches_skimage_for_every_region():
    from skimage.measure import regionprops_table

    from napari_reddino.cells import eccentricity

    labels = np.zeros((60, 80), np.int32)
    yy, xx = np.indices(labels.shape)
    labels[((yy - 20) / 12) ** 2 + ((xx - 20) / 6) ** 2 <= 1] = 1  # an upright ellipse
    labels[np.hypot(yy - 40, xx - 60) <= 10] = 3  # a disc (id 2 absent)
    labels[50:52, 5:40] = 4  # a thin bar
    labels[5, 70] = 5  # one pixel
    ref = regionprops_table(labels, properties=["label", "eccentricity"])
    np.testing.assert_allclose(eccentricity(labels, ref["label"]), ref["eccentricity"], atol=1e-6)


def test_solidity_matches_skimage_for_every_region():
    from skimage.measure import regionprops_table

    from napari_reddino.cells import solidity

    labels = np.zeros((70, 90), np.int32)
    yy, xx = np.indices(labels.shape)
    labels[((yy - 20) / 12) ** 2 + ((xx - 20) / 7) ** 2 <= 1] = 1  # an ellipse
    ring = (np.hypot(yy - 40, xx - 60) <= 14) & ~((np.abs(yy - 40) < 4) & (xx > 56))
    labels[ring] = 3  # a C shape (id 2 absent)
    labels[(np.hypot(yy - 40, xx - 60) <= 5) & ring] = 6  # a part inside it
    labels[60:63, 5:40] = 4  # a thin bar
    labels[5, 80] = 5  # one pixel
    labels[65:68, 60:63] = 7
    labels[60:62, 80:85] = 7  # one id, two pieces
    ref = regionprops_table(labels, properties=["label", "area", "solidity"])
    np.testing.assert_allclose(solidity(labels, ref["label"], ref["area"]), ref["solidity"], atol=1e-12)


def test_cell_table_matches_skimage_for_touching_regions_and_the_border():
    """The table's measures are computed for every label at once; they must be regionprops' own, also where
    regions touch each other (another label is an edge) and the image border."""
    from skimage.measure import regionprops_table

    from napari_reddino.cells import cell_table

    rng = np.random.default_rng(1)
    labels = np.zeros((70, 90), np.int32)
    yy, xx = np.indices(labels.shape)
    labels[np.hypot(yy - 30, xx - 30) <= 15] = 2
    labels[np.hypot(yy - 30, xx - 52) <= 12] = 3  # overlaps 2: they touch along a line
    labels[np.hypot(yy - 65, xx - 85) <= 9] = 5  # cut by the border
    labels[((yy - 55) / 8) ** 2 + ((xx - 20) / 14) ** 2 <= 1] = 7
    labels[55, 20] = 0  # a one-pixel hole
    labels[2, 2] = 8
    labels[60:62, 50:56] = 9
    labels[64:66, 58:61] = 9  # one id, two pieces
    image = rng.uniform(0, 1, labels.shape + (3,))
    ours = cell_table(labels, image)
    ref = regionprops_table(labels, intensity_image=image, properties=[
        "label", "centroid", "bbox", "area", "perimeter", "equivalent_diameter_area", "intensity_mean"])
    for col, key in [("label", "label"), ("centroid_y", "centroid-0"), ("centroid_x", "centroid-1"),
                     ("bbox_y0", "bbox-0"), ("bbox_x0", "bbox-1"), ("bbox_y1", "bbox-2"), ("bbox_x1", "bbox-3"),
                     ("area", "area"), ("perimeter", "perimeter"), ("equivalent_diameter", "equivalent_diameter_area"),
                     ("mean_r", "intensity_mean-0"), ("mean_g", "intensity_mean-1"), ("mean_b", "intensity_mean-2")]:
        np.testing.assert_allclose(ours[col].to_numpy(float), ref[key], atol=1e-9, err_msg=col)


def test_hull_pixel_count_equals_skimage_for_random_regions():
    """solidity counts the pixels inside every cell's hull at once (row by row): equal to skimage's
    grid_points_in_poly on thousands of random pixel sets, including one-pixel and one-row regions."""
    import cv2
    from skimage.measure import grid_points_in_poly

    from napari_reddino.cells import points_in_convex_polygons

    rng = np.random.default_rng(1)
    mid = np.array([(-0.5, 0), (0.5, 0), (0, -0.5), (0, 0.5)], np.float32)
    shapes, hulls, expected = [], [], []
    for _ in range(2000):
        shape = (int(rng.integers(1, 22)), int(rng.integers(1, 22)))
        mask = rng.random(shape) < rng.random()
        mask.flat[rng.integers(mask.size)] = True
        points = (np.argwhere(mask).astype(np.float32)[:, None] + mid).reshape(-1, 2)
        hull = cv2.convexHull(np.ascontiguousarray(points[:, ::-1]))[:, 0, ::-1]
        shapes.append(shape)
        hulls.append(hull)
        expected.append(int(grid_points_in_poly(shape, hull.astype(float)).sum()))
    assert points_in_convex_polygons(shapes, hulls).tolist() == expected
    assert len(points_in_convex_polygons([], [])) == 0


def test_solidity_of_many_cells_in_chunks_equals_one_by_one():
    """Thousands of cells are counted in chunks (memory stays bounded): the same values as one call per cell."""
    from napari_reddino.cells import solidity

    rng = np.random.default_rng(2)
    labels = np.zeros((400, 400), np.int32)
    for i in range(1, 2501):
        y, x = rng.integers(0, 392, 2)
        labels[y:y + rng.integers(1, 8), x:x + rng.integers(1, 8)] = i
    ids = np.unique(labels)[1:]
    area = np.bincount(labels.ravel())[ids]
    one_by_one = [solidity(labels, [i], [a])[0] for i, a in zip(ids[:50], area[:50])]
    np.testing.assert_allclose(solidity(labels, ids, area)[:50], one_by_one)
