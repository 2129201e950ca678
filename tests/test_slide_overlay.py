"""The PCA overlay of a whole slide tile by tile (slides/overlay.py)."""

import numpy as np
import pytest

from napari_reddino.images import InputError
from napari_reddino.pca_resolution import NoCellsFound
from napari_reddino.progress import run
from napari_reddino.sample_data import synthetic_smear
from napari_reddino.slides import ngff, overlay, synthetic


@pytest.fixture(scope="module")
def model():
    from napari_reddino.models import load_model

    return load_model("demo")


@pytest.fixture(scope="module")
def slide():
    return synthetic.mosaic([synthetic_smear(s, shape=(240, 320))[0] for s in range(2)], (330, 470), 128).compute()


def _plan(model, shape, q, tile_windows):
    from napari_reddino.patch_features import model_patch_size, model_square_input

    return overlay.OverlayPlan(shape, q, model_patch_size(model), model_square_input(model), tile_windows)


def test_tile_by_tile_is_the_one_piece_overlay(model, slide):
    """Every tile enlarged and cut on the slide's grid: no seams, the same patch features as one piece (in full
    precision: on a CPU with native bf16, "auto" computes in bf16, whose rounding depends on how many windows
    go through the model at once, ~0.01 here)."""
    one_piece = _plan(model, slide.shape[:2], 7, 100)
    tiled = _plan(model, slide.shape[:2], 7, 1)
    assert one_piece.tiles() == [(0, 0)] and len(tiled.tiles()) > 4
    whole = overlay.tile_grid(slide, one_piece, 0, 0, model, precision="fp32")
    stitched = np.zeros_like(whole)
    ey, ex = tiled.edges(0), tiled.edges(1)
    for r, c in tiled.tiles():
        stitched[ey[r]:ey[r + 1], ex[c]:ex[c + 1]] = overlay.tile_grid(slide, tiled, r, c, model, precision="fp32")
    np.testing.assert_array_equal(stitched, whole)
    assert min(b - a for a, b in zip(ey, ey[1:])) >= tiled.window // tiled.patch  # no tile under one window


def test_enlargement_is_bilinear_and_periodic():
    import cv2

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (70, 84, 3), dtype=np.uint8)
    mine = overlay.enlarge_exact(image, 7, 14)
    theirs = cv2.resize(image, (168, 140), interpolation=cv2.INTER_LINEAR)
    assert mine.shape == theirs.shape
    assert np.abs(mine[2:-2, 2:-2].astype(int) - theirs[2:-2, 2:-2]).max() <= 1
    np.testing.assert_array_equal(overlay.enlarge_exact(image[14:42], 7, 14)[2:-2], mine[28:84][2:-2])


def test_plan_follows_the_cell_size():
    small = overlay.plan_overlay((1000, 1000), 14, 224, diameter=40)  # 6 patches a cell: 84 px, ~2x
    assert small.q == 7 and small.factor == 2
    big = overlay.plan_overlay((1000, 1000), 14, 224, diameter=120)  # cells already 8.6 patches: no enlargement
    assert big.q == 14
    tiny = overlay.plan_overlay((1000, 1000), 14, 224, diameter=5)  # at most 4x
    assert tiny.q == 4
    assert overlay.plan_overlay((1000, 1000), 14, 224, 40, resolution=1).q == 14


def test_slide_overlay_written_placed_and_resumed(tmp_path, model, slide):
    path = ngff.write_image(tmp_path / "slide.zarr", slide, chunk=128)
    source = overlay.Source(str(path), 0)
    target = run(overlay.iter_slide_overlay(source, "demo", tmp_path, "slide", tile_windows=1, chunk=16))
    ms = ngff.read_multiscales(target)
    settings = overlay.plan_overlay(slide.shape[:2], 14, 112, diameter=_diameter(slide))
    q = settings.q
    rgb = ms.yx(0).compute()
    assert rgb.shape == (-(-330 // q), -(-470 // q), 3) and len(ms.levels) > 1
    assert ms.scales[0][1:] == (q, q) and ms.translations[0][1:] == ((q - 1) / 2, (q - 1) / 2)
    assert (rgb.sum(-1) == 0).mean() > 0.2 and (rgb.sum(-1) > 0).mean() > 0.2  # background black, cells coloured
    tiles = sorted((tmp_path / "slide.pca_tiles").glob("*.npz"))
    first = {p.name: p.read_bytes() for p in tiles}
    stamps = {p.name: p.stat().st_mtime_ns for p in tiles}
    # a job killed midway: some tiles missing; the re-run makes only those, and the same overlay
    for p in tiles[::3]:
        p.unlink()
    again = run(overlay.iter_slide_overlay(source, "demo", tmp_path, "slide", tile_windows=1, chunk=16))
    np.testing.assert_array_equal(ngff.read_multiscales(again).yx(0).compute(), rgb)
    assert {p.name: p.read_bytes() for p in tiles} == first
    kept = [p for p in tiles if p not in tiles[::3]]
    assert all(p.stat().st_mtime_ns == stamps[p.name] for p in kept)
    with pytest.raises(InputError, match="other settings"):
        run(overlay.iter_slide_overlay(source, "demo", tmp_path, "slide", tile_windows=2))


def _diameter(slide):
    from napari_reddino.pca_resolution import look_for_cells

    return look_for_cells(slide).diameter


def test_blank_slide_gives_the_notice(tmp_path):
    blank = np.full((300, 300, 3), 235, np.uint8)
    with pytest.raises(NoCellsFound, match="no cells found"):
        run(overlay.iter_slide_overlay(overlay.Source(array=blank), "demo", tmp_path, "blank"))
    assert not (tmp_path / "blank_pca.zarr").exists()


def test_a_failed_tile_is_reported_and_redone_alone(tmp_path, model, slide, monkeypatch):
    source = overlay.Source(array=slide)
    real = overlay.tile_grid

    def broken(image, plan, row, col, *args, **kwargs):
        if (row, col) == (1, 1) and (tmp_path / "s_pca_fit.npz").exists():  # the tile's unit, not the fit
            raise OSError("disk went away")
        return real(image, plan, row, col, *args, **kwargs)

    monkeypatch.setattr(overlay, "tile_grid", broken)
    with pytest.raises(InputError, match=r"1 of \d+ tiles failed \(overlay tile 1,1: disk went away\)"):
        run(overlay.iter_slide_overlay(source, "demo", tmp_path, "s", tile_windows=1))
    tiles = tmp_path / "s.pca_tiles"
    assert not (tiles / "1_1.npz").exists() and (tiles / "0_0.npz").exists() and (tiles / "2_2.npz").exists()
    monkeypatch.setattr(overlay, "tile_grid", real)
    target = run(overlay.iter_slide_overlay(source, "demo", tmp_path, "s", tile_windows=1))
    assert (tiles / "1_1.npz").exists() and ngff.read_multiscales(target).yx(0).shape[-1] == 3


@pytest.mark.slow
def test_two_workers_give_the_same_overlay(tmp_path, slide):
    path = str(ngff.write_image(tmp_path / "slide.zarr", slide, chunk=128))
    one = run(overlay.iter_slide_overlay(overlay.Source(path), "demo", tmp_path / "one", "s", tile_windows=2))
    two = run(overlay.iter_slide_overlay(overlay.Source(path), "demo", tmp_path / "two", "s", tile_windows=2,
                                         workers=2))
    np.testing.assert_array_equal(ngff.read_multiscales(one).yx(0).compute(),
                                  ngff.read_multiscales(two).yx(0).compute())
