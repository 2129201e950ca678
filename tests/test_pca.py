"""Headless PCA overlay: stitching, alignment, foreground threshold, scaling, shared fits, shapes."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.images import InputError
from napari_reddino.pca import (PatchPCA, fit_pca, iter_pca_overlay, overlay_scale_translate, patch_features,
                                pca_overlay, upsample_overlay)
from napari_reddino.progress import Progress, run

P = 14


def block_means(image: np.ndarray) -> np.ndarray:
    """Mean colour of each 14 x 14 patch of the image reflected out to whole patches."""
    h, w = image.shape[:2]
    gh, gw = -(-h // P), -(-w // P)
    padded = np.pad(image.astype(np.float64) / 255, ((0, gh * P - h), (0, gw * P - w), (0, 0)), mode="reflect")
    return padded.reshape(gh, P, gw, P, 3).mean(axis=(1, 3))


@pytest.mark.parametrize("tile,overlap", [(None, 0), (None, 1), (None, 3), (112, 2), (42, 0)])
def test_stitched_grid_holds_each_patch_at_its_place(patch_mean_vit, rng, tile, overlap):
    image = rng.integers(0, 256, size=(101, 157, 3), dtype=np.uint8)  # neither side a multiple of 14
    feats = patch_features(image, patch_mean_vit, tile=tile, overlap=overlap, batch_size=3, precision="fp32",
                           dtype=np.float32)
    assert feats.shape == (8, 12, 3)
    np.testing.assert_allclose(feats, block_means(image), atol=1e-5)
    assert not patch_mean_vit.dynamic_img_size and patch_mean_vit.patch_embed.strict_img_size  # restored


def test_grid_equals_the_model_on_one_window(tiny_vit, rng):
    import torch

    image = rng.integers(0, 256, size=(56, 56, 3), dtype=np.uint8)
    feats = patch_features(image, tiny_vit, precision="fp32", dtype=np.float32)
    x = (torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255 - torch.tensor([0.485, 0.456, 0.406])
         .view(1, 3, 1, 1)) / torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        ref = tiny_vit.forward_features(x)[0, 1:].reshape(4, 4, -1).numpy()
    np.testing.assert_allclose(feats, ref, atol=1e-4)


def test_batch_size_does_not_change_features(tiny_vit, rng):
    image = rng.integers(0, 256, size=(130, 90, 3), dtype=np.uint8)
    a = patch_features(image, tiny_vit, batch_size=1, precision="fp32", dtype=np.float32)
    b = patch_features(image, tiny_vit, batch_size=16, precision="fp32", dtype=np.float32)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_progress_counts_every_window(tiny_vit, rng):
    image = rng.integers(0, 256, size=(112, 168, 3), dtype=np.uint8)  # 2 x 3 windows of 56
    seen: list[Progress] = []
    run(iter_patch_features_gen(image, tiny_vit), callback=seen.append)
    assert seen[0].done == 0 and seen[-1].done == seen[-1].total == 6


def iter_patch_features_gen(image, model):
    from napari_reddino.pca import iter_patch_features

    return iter_patch_features(image, model, batch_size=4)


def test_overlay_pixel_lies_over_its_patch(patch_mean_vit, rng):
    """Red blobs on a noisy grey smear: every foreground overlay pixel, placed in napari world
    coordinates with the helper's scale/translate, must land on a red image pixel — for an image layer
    that is itself scaled and translated."""
    image = np.full((97, 131, 3), 200, dtype=np.uint8)
    image = np.clip(image + rng.normal(0, 3, image.shape), 0, 255).astype(np.uint8)
    red = [(1, 2), (1, 3), (2, 2), (2, 3), (4, 6), (4, 7), (5, 6), (5, 7), (6, 1), (6, 2)]
    for i, j in red:
        image[i * P:(i + 1) * P, j * P:(j + 1) * P] = (220, 30, 40)
    overlay = run(iter_pca_overlay(image, patch_mean_vit, precision="fp32", background="transparent",
                                   resolution="off"))  # the model's own scale (enlarged: test_pca_resolution)
    mask = overlay.rgb[..., 3] > 0
    assert sorted(zip(*np.nonzero(mask))) == sorted(red)

    img_scale, img_translate = np.array([0.5, 2.0]), np.array([3.0, -7.0])
    scale, translate = overlay_scale_translate(overlay.patch, img_scale, img_translate)
    for i, j in zip(*np.nonzero(mask)):
        world = np.asarray(translate) + np.array([i, j]) * np.asarray(scale)
        y, x = np.round((world - img_translate) / img_scale).astype(int)  # image pixel under that point
        assert (i * P <= y < (i + 1) * P) and (j * P <= x < (j + 1) * P)
        assert tuple(image[y, x]) == (220, 30, 40)
    # the upsampled overlay has the image's geometry: foreground exactly where the image is red
    up = upsample_overlay(overlay.rgb, overlay.patch, image.shape)
    assert up.shape[:2] == image.shape[:2]
    np.testing.assert_array_equal(up[..., 3] > 0, (image == (220, 30, 40)).all(axis=-1))
    assert overlay_scale_translate(P, img_scale, img_translate, upsampled=True) == ((0.5, 2.0), (3.0, -7.0))


def known_first_component(rng, sign: float):
    """Features whose first principal direction is e0: +-1 along it inside a disc, 0 outside."""
    gh, gw, d = 30, 40, 16
    yy, xx = np.mgrid[:gh, :gw]
    disc = (yy - 14) ** 2 + (xx - 21) ** 2 < 9 ** 2
    feats = rng.normal(0, 0.05, (gh, gw, d)).astype(np.float32)
    feats[..., 0] += sign * disc
    feats[..., 1:4] += rng.normal(0, 0.3, (gh, gw, 3)) * disc[..., None]  # structure inside the cells
    return feats.astype(np.float16), disc


@pytest.mark.parametrize("sign", [1.0, -1.0])
def test_foreground_threshold_finds_the_disc_whatever_the_sign(rng, sign):
    feats, disc = known_first_component(rng, sign)
    fit = fit_pca(feats)
    np.testing.assert_array_equal(fit.foreground(feats), disc)
    assert abs(abs(fit.fg_axis[0]) - 1) < 0.05 and np.sign(fit.fg_axis[0]) == sign
    assert 0.1 < fit.fg_threshold < 0.9  # between background (0) and the disc (1) along the oriented axis
    rgb = fit.transform(feats)
    assert rgb.shape == (30, 40, 3) and (rgb[~disc] == 0).all() and rgb[disc].any(axis=-1).mean() > 0.95
    rgba = fit.transform(feats, background="transparent")
    np.testing.assert_array_equal(rgba[..., 3], disc.astype(np.float32))
    np.testing.assert_array_equal(rgba[..., :3][disc], rgb[disc])
    assert fit_pca(feats, foreground=False).foreground(feats).all()


def test_each_component_is_robustly_scaled(rng):
    feats, disc = known_first_component(rng, 1.0)
    feats[3, 3, 5] = 1e3  # one wild background patch must not squash the colours
    rgb = fit_pca(feats).transform(feats)[disc]
    assert rgb.min() == 0 and rgb.max() == 1
    for c in range(3):
        assert 0.005 < (rgb[:, c] == 0).mean() < 0.05 and 0.005 < (rgb[:, c] == 1).mean() < 0.05
        assert 0.2 < np.median(rgb[:, c]) < 0.8


def test_joint_fit_gives_the_same_colour_across_images_and_survives_saving(rng, tmp_path):
    a, _ = known_first_component(rng, 1.0)
    b, _ = known_first_component(rng, 1.0)
    b[5, 20] = a[14, 21]  # the same patch in both slides
    fit = fit_pca([a, b])
    np.testing.assert_allclose(fit.transform(a)[14, 21], fit.transform(b)[5, 20], atol=1e-6)
    fit.save(tmp_path / "fit.npz")
    again = PatchPCA.load(tmp_path / "fit.npz")
    np.testing.assert_allclose(again.transform(b), fit.transform(b))
    assert again.meta["n_images"] == 2
    with pytest.raises(InputError):
        again.transform(a[..., :8])  # features of another model


@pytest.mark.parametrize("shape,grid", [((57, 101, 3), (5, 8)), ((43, 29), (4, 3)), ((3, 30, 20), (3, 2)),
                                        ((140, 71, 4), (10, 6))])
def test_shapes_for_odd_images(tiny_vit, rng, shape, grid):
    image = rng.integers(0, 256, size=shape, dtype=np.uint8)
    hw = shape[1:] if shape[0] == 3 else shape[:2]
    noise = dict(resolution=1, require_cells=False)  # noise has no cells: it would get no overlay
    assert pca_overlay(image, tiny_vit, **noise).shape == (*grid, 3)
    assert pca_overlay(image, tiny_vit, background="transparent", upsample=True, **noise).shape == (*hw, 4)
    assert pca_overlay(image, tiny_vit, upsample="bilinear", overlap=2, **noise).shape == (*hw, 3)
    assert pca_overlay(image, tiny_vit, upsample=True, resolution=2.5, require_cells=False).shape == (*hw, 3)


def test_bad_input_is_one_line_input_error(tiny_vit, rng):
    image = rng.integers(0, 256, size=(60, 60, 3), dtype=np.uint8)
    for kwargs in (dict(tile=50), dict(overlap=4), dict(batch_size=0), dict(background="white"),
                   dict(resolution=5), dict(resolution="fine")):
        with pytest.raises(InputError) as err:
            pca_overlay(image, tiny_vit, require_cells=False, **kwargs)
        assert "\n" not in str(err.value) and "accepted" in str(err.value)
    with pytest.raises(InputError):
        pca_overlay(np.zeros((5, 5, 5, 5)), tiny_vit)


@pytest.mark.parametrize("content", ["missing key", "not a zip", "extra key"])
def test_a_malformed_saved_fit_is_one_line(rng, tmp_path, content):
    """A fit file without its threshold, a truncated file, or one with other arrays were tracebacks."""
    from napari_reddino.images import InputError
    from napari_reddino.pca import PatchPCA, fit_pca

    path = tmp_path / "fit.npz"
    fit_pca(rng.normal(size=(6, 6, 8)).astype(np.float32)).save(path)
    with np.load(path) as z:
        arrays = dict(z)
    if content == "missing key":
        arrays.pop("fg_threshold")
        np.savez(path, **arrays)
    elif content == "extra key":
        np.savez(path, **arrays, something=np.zeros(2))
    else:
        path.write_bytes(path.read_bytes()[:200])
    with pytest.raises(InputError, match="Could not read a PCA fit") as err:
        PatchPCA.load(path)
    assert "\n" not in str(err.value)


@pytest.mark.skipif(__import__("os").name != "posix", reason="SIGKILL")
def test_a_kill_while_saving_a_fit_leaves_the_previous_fit(rng, tmp_path, run_killed):
    """``--save-fit`` over an earlier fit: a kill mid-write left a truncated .npz that every later
    ``--load-fit`` refused; now the earlier fit stays whole."""
    path = tmp_path / "fit.npz"
    fit_pca([rng.normal(size=(6, 6, 8)).astype(np.float32)]).save(path)
    before = PatchPCA.load(path)
    code = """
        import numpy as np
        from napari_reddino.pca import fit_pca
        real = np.savez
        def savez_then_die(fh, **arrays):
            real(fh, **arrays)
            fh.flush()
            die()
        np.savez = savez_then_die
        fit_pca([np.random.default_rng(1).normal(size=(6, 6, 8)).astype(np.float32)]).save(path)
    """
    assert run_killed(code, path=path) == -9
    np.testing.assert_array_equal(PatchPCA.load(path).components, before.components)
