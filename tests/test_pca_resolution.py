"""The PCA overlay at the resolution of the cells: the enlargement from the cell diameter, an overlay that
stays over its image at any enlargement, and no overlay (one plain line) for an image without cells."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from napari_reddino.progress import run
from napari_reddino.images import InputError
from napari_reddino.pca import NoCellsFound, iter_pca_overlay, overlay_scale_translate, upsample_overlay
from napari_reddino.pca_resolution import (CELL_PATCHES, MAX_FACTOR, MAX_PIXELS, look_for_cells, parse_resolution,
                                           resolve_factor)
from napari_reddino.sample_data import synthetic_smear

P = 14


@pytest.mark.parametrize("diameter,factor", [(40, 2.1), (28, 3.0), (84, 1.0), (120, 1.0), (10, MAX_FACTOR)])
def test_auto_factor_makes_a_red_cell_span_six_patches(diameter, factor):
    got, note = resolve_factor("auto", (480, 640), P, diameter)
    assert got == pytest.approx(factor) and note == ""
    if 1 < got < MAX_FACTOR:
        assert diameter * got == pytest.approx(CELL_PATCHES * P)  # 84 px per cell at patch 14


def test_the_enlarged_image_stays_within_the_pixel_cap():
    side = 4000  # a 40 px cell wants 2.1x; 4000 x 4000 can be enlarged sqrt(64e6 / 16e6) = 2x at most
    factor, note = resolve_factor("auto", (side, side), P, 40)
    assert factor == 2.0 and (side * factor) ** 2 <= MAX_PIXELS and "2.10x" in note
    assert resolve_factor(3, (side, side), P, 40)[0] == 2.0  # an explicit factor is capped too
    assert resolve_factor("auto", (8000, 8000), P, 40) == (1.0, resolve_factor("auto", (8000, 8000), P, 40)[1])
    assert resolve_factor(2.5, (480, 640), P, 40) == (2.5, "")  # a number overrides the cell size


@pytest.mark.parametrize("value,parsed", [("auto", "auto"), (0, "auto"), (None, "auto"), ("off", 1.0), ("1", 1.0),
                                          (2.5, 2.5), ("4", 4.0)])
def test_resolution_values(value, parsed):
    assert parse_resolution(value) == parsed


@pytest.mark.parametrize("value", ["0.5", "5", "fine", -1])
def test_bad_resolution_is_one_line(value):
    with pytest.raises(InputError) as err:
        parse_resolution(value)
    assert "accepted: auto, off, or an enlargement from 1 to 4" in str(err.value)


def disc_smear(rng, shape=(150, 210), centre=(61.0, 97.0), radius=16.0):
    """A grey slide with one red disc: the known structure whose overlay must land on it."""
    image = np.clip(np.full((*shape, 3), 225.0) + rng.normal(0, 2, (*shape, 3)), 0, 255)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    disc = np.hypot(yy - centre[0], xx - centre[1]) <= radius
    image[disc] = (200, 60, 80)
    return image.astype(np.uint8), disc


@pytest.mark.parametrize("resolution", [1, 2, 2.3, 3.5])
def test_the_overlay_lands_on_its_cell_at_any_enlargement(patch_mean_vit, rng, resolution):
    """Foreground patches placed in napari world coordinates (image layer scaled and translated) centre on
    the disc's centre, and the upsampled overlay covers the disc, for whole and fractional factors."""
    image, disc = disc_smear(rng)
    overlay = run(iter_pca_overlay(image, patch_mean_vit, resolution=resolution, background="transparent",
                                   precision="fp32"))
    fy, fx = overlay.factor
    assert fy == pytest.approx(resolution, abs=0.01) and fx == pytest.approx(resolution, abs=0.01)
    assert overlay.rgb.shape[:2] == (math.ceil(round(150 * resolution) / P), math.ceil(round(210 * resolution) / P))
    img_scale, img_translate = np.array([0.5, 2.0]), np.array([3.0, -7.0])
    scale, translate = overlay_scale_translate(overlay.patch, img_scale, img_translate, factor=overlay.factor)
    fg = np.argwhere(overlay.rgb[..., 3] > 0)
    weights = np.array([np.mean(disc[_patch_pixels(i, j, overlay.factor, disc.shape)]) for i, j in fg])
    world = np.asarray(translate) + fg * np.asarray(scale)
    centre_world = img_translate + np.array([61.0, 97.0]) * img_scale
    # each foreground patch weighted by how much of the disc it covers: their centre is the disc's
    got = (world * weights[:, None]).sum(0) / weights.sum()
    np.testing.assert_allclose(got, centre_world, atol=0.1 * np.asarray(scale).max())
    up = upsample_overlay(overlay.rgb, overlay.patch, image.shape, factor=overlay.factor)[..., 3] > 0
    assert up.shape == disc.shape
    inter = (up & disc).sum() / (up | disc).sum()
    assert inter > (0.55 if resolution == 1 else 0.75)  # finer patches follow the outline closer
    np.testing.assert_allclose(np.argwhere(up).mean(0), [61.0, 97.0], atol=0.15 * P / resolution)


def _patch_pixels(i, j, factor, shape):
    """Image pixels whose centres fall in enlarged patch (i, j)."""
    fy, fx = factor
    ys = np.arange(shape[0])[np.floor((np.arange(shape[0]) + 0.5) * fy / P).astype(int) == i]
    xs = np.arange(shape[1])[np.floor((np.arange(shape[1]) + 0.5) * fx / P).astype(int) == j]
    return np.ix_(ys, xs)


def test_auto_enlarges_from_the_measured_cell_size(patch_mean_vit, rng):
    image, _, _ = synthetic_smear(seed=2, shape=(160, 200))
    seen = look_for_cells(image)
    assert seen.found and 26 <= seen.diameter <= 48  # the synthetic red cells' size
    overlay = run(iter_pca_overlay(image, patch_mean_vit, precision="fp32"))
    assert overlay.factor[0] == pytest.approx(CELL_PATCHES * P / seen.diameter, abs=0.02)
    table = pd.DataFrame({"type": ["rbc"]})
    table.attrs["diameter"] = 21.0  # the segmentation's measure wins over the image's
    overlay = run(iter_pca_overlay(image, patch_mean_vit, precision="fp32", cells=table))
    assert overlay.factor[0] == pytest.approx(4.0, abs=0.01)


def blank_images(rng):
    shape = (240, 320, 3)
    return {
        "a uniform colour": np.full(shape, (200, 60, 80), np.uint8),
        "white": np.full(shape, 255, np.uint8),
        "a bare slide": np.clip(rng.normal((225, 215, 220), 3, shape), 0, 255).astype(np.uint8),
        "pure noise": rng.integers(0, 256, shape, dtype=np.uint8),
        "pinkish noise": np.clip(rng.normal((200, 120, 150), 30, shape), 0, 255).astype(np.uint8),
    }


def test_blank_images_have_no_cells_and_smears_have(rng):
    for what, image in blank_images(rng).items():
        seen = look_for_cells(image)
        assert not seen.found and seen.reason, what
    for seed in range(3):
        assert look_for_cells(synthetic_smear(seed=seed, shape=(200, 260))[0]).found
    one_cell, _ = disc_smear(rng)  # a single cell on a bare slide is a cell
    assert look_for_cells(one_cell).found


def test_a_segmentation_without_cells_means_no_cells(rng):
    image, _, _ = synthetic_smear(seed=0, shape=(160, 200))
    only_debris = pd.DataFrame({"type": ["artefact", "platelet"]})
    assert not look_for_cells(image, only_debris).found
    assert look_for_cells(image, pd.DataFrame({"type": ["artefact", "rbc"]})).found


def test_a_blank_image_gives_no_overlay_and_one_plain_line(patch_mean_vit, rng):
    for what, image in blank_images(rng).items():
        with pytest.raises(NoCellsFound) as err:
            run(iter_pca_overlay(image, patch_mean_vit, name="slide 7.png"))
        line = str(err.value)
        assert line.startswith("no cells found in 'slide 7.png': no overlay made (") and "\n" not in line, what
        assert "patch" not in line and "PCA" not in line


@pytest.mark.data
def test_real_smears_have_cells_and_get_their_enlargement(shared_data, rng):
    from napari_reddino.images import read_image

    chula = sorted((shared_data / "chula-rbc-12" / "images").glob("*.jpg"))[:5]
    for path in chula:
        seen = look_for_cells(read_image(path))
        assert seen.found and 32 <= seen.diameter <= 48, path.name  # Chula cells are 35-45 px
        assert 1.7 <= resolve_factor("auto", (480, 640), P, seen.diameter)[0] <= 2.7
    pbc = [p for p in sorted((shared_data / "txl-pbc" / "images").glob("*.jpg"))[:20]
           if read_image(p).shape[:2] == (363, 360)][:3]
    for path in pbc:
        seen = look_for_cells(read_image(path))
        assert seen.found and 60 <= seen.diameter <= 90, path.name  # PBC cells are about 70 px
    # the same field with its pixels shuffled (its stain and colours, no cells left) has none
    image = read_image(chula[0])
    shuffled = rng.permutation(image.reshape(-1, 3)).reshape(image.shape)
    seen = look_for_cells(shuffled)
    assert not seen.found and "noise" in seen.reason
