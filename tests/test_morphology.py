"""napari_reddino.morphology: sizes relative to the smear's red cells, colour as optical density, pallor."""

import numpy as np
import pytest

from napari_reddino.morphology import FEATURES, measure_cells

BACKGROUND = np.array([0.45, 0.53, 0.58])  # a Chula slide (their camera sees the slide darker than most)
RBC_OD = np.array([0.12, 0.30, 0.17])  # Chula's normal cells: green OD about 0.3, red and blue 0.4 and 0.56 of it


def disc_smear(scale: float = 1.0, small_dense: int = 3, seed: int = 0):
    """A smear of normal-size, slightly oval cells with a central pallor and ``small_dense`` small round ones
    without one and stained denser (spherocyte-like), with soft edges as a microscope blurs them, every
    length times ``scale``. Returns (image uint8, labels, centres, kinds)."""
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    step = int(round(56 * scale))
    h, w = 5 * step, 6 * step
    od = np.zeros((h, w, 3), np.float32)
    labels = np.zeros((h, w), np.int32)
    yy, xx = np.mgrid[0:h, 0:w]
    centres, kinds = [], []
    for i in range(5):
        for j in range(6):
            cy, cx = (i + 0.5) * step + rng.uniform(-2, 2), (j + 0.5) * step + rng.uniform(-2, 2)
            small = len(centres) < small_dense
            r = (14 if small else 20) * scale
            stretch, angle = (1.0 if small else 1.04), rng.uniform(0, np.pi)
            u = (yy - cy) * np.cos(angle) + (xx - cx) * np.sin(angle)
            v = -(yy - cy) * np.sin(angle) + (xx - cx) * np.cos(angle)
            rho = np.hypot(u / stretch, v * stretch) / r
            inside = rho <= 1
            # biconcave: dense rim, pale centre; a spherocyte is uniformly and more densely stained
            density = np.full(rho.shape, 1.3) if small else 0.3 + 0.9 * np.clip(rho / 0.65, 0, 1) ** 2
            od[inside] += (RBC_OD * density[inside, None]).astype(np.float32)
            labels[inside] = len(centres) + 1
            centres.append((cy, cx))
            kinds.append("small dense" if small else "normal")
    od = ndimage.gaussian_filter(od, (1.2 * scale, 1.2 * scale, 0))
    image = BACKGROUND * np.exp(-od) + rng.normal(0, 0.005, od.shape)
    return (np.clip(image, 0, 1) * 255).round().astype(np.uint8), labels, centres, kinds


def test_named_columns_one_row_per_label():
    image, labels, _, _ = disc_smear()
    m = measure_cells(image, labels, diameter=40.0)
    assert list(m.columns) == ["label", *FEATURES]
    assert m["label"].tolist() == list(range(1, labels.max() + 1))
    assert np.isfinite(m[FEATURES].to_numpy()).all()


def test_sizes_do_not_depend_on_magnification():
    """The same smear at 3x the pixels gives the same relative sizes (a Raabin cell is not a macrocyte)."""
    small = measure_cells(*disc_smear(1.0)[:2], diameter=40.0)
    big = measure_cells(*disc_smear(3.0)[:2], diameter=120.0)
    for col in ("size", "size_rel_median", "major", "aspect_ratio", "circularity"):
        np.testing.assert_allclose(big[col], small[col], rtol=0.06, atol=0.02, err_msg=col)


def test_default_diameter_is_the_table_s_or_the_estimate():
    from napari_reddino.cells import cell_table

    image, labels, _, _ = disc_smear()
    table = cell_table(labels, image)
    table.attrs["diameter"] = 80.0  # twice the cells: every size halves against the 40 px estimate
    halved = measure_cells(image, labels, table)
    estimated = measure_cells(image, labels)
    assert halved["size"].median() == pytest.approx(0.5, abs=0.06)
    assert estimated["size"].median() == pytest.approx(1.0, abs=0.15)


def test_pallor_and_density_tell_a_spherocyte_from_a_normal_cell():
    image, labels, _, kinds = disc_smear()
    m = measure_cells(image, labels, diameter=40.0)
    small = np.array(kinds) == "small dense"
    assert m.loc[small, "pallor_depth"].max() < m.loc[~small, "pallor_depth"].min()
    assert m.loc[small, "size_rel_median"].max() < 0.8 < m.loc[~small, "size_rel_median"].min()
    assert m.loc[small, "od_rel_median"].min() > 1.1


def test_only_the_table_s_red_cells_by_default():
    from napari_reddino.cells import cell_table

    image, labels, _, _ = disc_smear()
    table = cell_table(labels, image)
    table["type"] = "rbc"
    table.loc[table["label"] == 2, "type"] = "wbc"
    m = measure_cells(image, labels, table, diameter=40.0)
    assert 2 not in m["label"].tolist() and len(m) == labels.max() - 1


def test_degenerate_objects_give_numbers_not_errors():
    """Speckle a segmenter finds in noise: a pixel, a line, a tiny blob."""
    image = np.full((30, 30, 3), 200, np.uint8)
    labels = np.zeros((30, 30), np.int32)
    labels[2, 2], labels[10, 3:20], labels[20:23, 20:23] = 1, 2, 3
    m = measure_cells(image, labels, diameter=10.0)
    assert len(m) == 3 and np.isfinite(m.loc[1:, "size"]).all()
