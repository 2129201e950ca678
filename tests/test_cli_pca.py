"""``napari-reddino pca``: PNGs at image resolution, side-by-side views, joint / saved fits, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from napari_reddino.cli import main


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory, tiny_vit):
    from napari_reddino.models import save_local_dir

    return f"local-dir:{save_local_dir(tiny_vit, tmp_path_factory.mktemp('models') / 'tiny')}"


@pytest.fixture
def smears(tmp_path):
    from napari_reddino.sample_data import synthetic_smear

    paths = []
    for name, shape, seed in (("a.png", (61, 75), 0), ("b.png", (45, 50), 1)):
        Image.fromarray(synthetic_smear(seed=seed, shape=shape, n_cells=2, n_white=0)[0]).save(tmp_path / name)
        paths.append(tmp_path / name)
    return paths


def read(path):
    return np.asarray(Image.open(path))


def test_writes_overlay_and_side_by_side_at_image_resolution(tmp_path, smears, tiny_spec):
    out = tmp_path / "out"
    assert main(["pca", *map(str, smears), "--model", tiny_spec, "--out", str(out), "--overlap", "1"]) == 0
    for path in smears:
        image = read(path)
        overlay = read(out / f"{path.stem}_pca.png")
        side = read(out / f"{path.stem}_pca_side.png")
        assert overlay.shape == image.shape
        assert side.shape == (image.shape[0], 2 * image.shape[1] + 8, 3)
        np.testing.assert_array_equal(side[:, :image.shape[1]], image)
        np.testing.assert_array_equal(side[:, -image.shape[1]:], overlay)
        assert (overlay == 0).all(axis=-1).any() and overlay.any()  # black background and coloured cells


def test_a_saved_joint_fit_colours_a_later_image_the_same(tmp_path, smears, tiny_spec):
    joint, later, alone = tmp_path / "joint", tmp_path / "later", tmp_path / "alone"
    fit = tmp_path / "fit"
    args = ["--model", tiny_spec, "--background", "transparent"]
    assert main(["pca", *map(str, smears), *args, "--out", str(joint), "--save-fit", str(fit)]) == 0
    assert main(["pca", str(smears[1]), *args, "--out", str(later), "--load-fit", str(fit)]) == 0
    assert main(["pca", str(smears[1]), *args, "--out", str(alone), "--fit", "each"]) == 0
    b_joint, b_later = read(joint / "b_pca.png"), read(later / "b_pca.png")
    assert b_joint.shape == (45, 50, 4)  # transparent background: RGBA
    np.testing.assert_array_equal(b_joint, b_later)
    assert not np.array_equal(b_joint, read(alone / "b_pca.png"))  # its own fit colours it differently


def test_an_image_without_cells_gets_a_line_and_no_files(tmp_path, smears, tiny_spec, rng, capsys):
    Image.fromarray(np.full((60, 80, 3), 240, np.uint8)).save(tmp_path / "blank.png")
    Image.fromarray(rng.integers(0, 256, (60, 80, 3), dtype=np.uint8)).save(tmp_path / "noise.png")
    out = tmp_path / "out"
    inputs = [tmp_path / "blank.png", smears[0], tmp_path / "noise.png", smears[1]]
    for fit in ("joint", "each"):
        assert main(["pca", *map(str, inputs), "--model", tiny_spec, "--out", str(out), "--fit", fit]) == 0
        printed = capsys.readouterr().out
        assert "no cells found in 'blank.png': no overlay made (" in printed
        assert "no cells found in 'noise.png': no overlay made (" in printed
        assert sorted(p.name for p in out.iterdir()) == ["a_pca.png", "a_pca_side.png", "b_pca.png",
                                                         "b_pca_side.png"]


def test_cell_resolution_option(tmp_path, smears, tiny_spec, capsys):
    for value, factor in (("off", None), ("2", "2.00x"), ("auto", "x")):
        out = tmp_path / value
        assert main(["pca", str(smears[0]), "--model", tiny_spec, "--out", str(out), "--cell-resolution",
                     value]) == 0
        printed = capsys.readouterr().out
        assert ("enlarged" not in printed) if factor is None else (f"enlarged {factor}" in printed
                                                                   if factor != "x" else "enlarged" in printed)
        assert read(out / "a_pca.png").shape == read(smears[0]).shape  # at image resolution whatever the factor
    with pytest.raises(SystemExit) as exit_:  # argparse's own exit for a bad value
        main(["pca", str(smears[0]), "--model", tiny_spec, "--out", str(tmp_path), "--cell-resolution", "9"])
    assert exit_.value.code == 2
    assert "accepted: auto, off, or an enlargement from 1 to 4" in capsys.readouterr().err


@pytest.mark.parametrize("extra", [["--tile", "50"], ["--load-fit", "missing.npz"], []])
def test_bad_input_exits_2_with_one_line(tmp_path, smears, tiny_spec, capsys, extra):
    target = [str(tmp_path / "nope.png")] if not extra else [str(smears[0])]
    assert main(["pca", *target, "--model", tiny_spec, "--out", str(tmp_path / "o"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-reddino pca: error:") and "\n" not in err and "accepted" in err


@pytest.mark.data
def test_runs_on_a_real_smear(tmp_path, shared_data, tiny_spec):
    from napari_reddino.images import read_image

    path = sorted((shared_data / "chula-rbc-12").rglob("*.jpg"))[0]
    assert main(["pca", str(path), "--model", tiny_spec, "--out", str(tmp_path), "--smooth"]) == 0
    image = read_image(path)
    overlay = read(tmp_path / f"{path.stem}_pca.png")
    assert overlay.shape == image.shape
    fg = overlay.any(axis=-1).mean()
    assert 0.05 < fg < 0.95  # a split into foreground and background, not all or nothing
