"""Contact sheet of augmented samples: denormalisation and the `reddino-train augment-sheet` command."""

from __future__ import annotations

import numpy as np
from PIL import Image

from napari_reddino.progress import run
from reddino_train.cli import main
from reddino_train.config import resolve_augmentation
from reddino_train.data.augment import build_augmentation
from reddino_train.data.contact_sheet import PAD, contact_sheet, denormalize
from reddino_train.data.prepare import iter_prepare


def _smear(tmp_path, n=3):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:120, :120]
    for k in range(n):
        img = np.full((120, 120, 3), 228, np.uint8)
        for cy, cx in rng.uniform(10, 110, (10, 2)):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 < 120] = (190, 100, 130)
        Image.fromarray(img).save(tmp_path / f"{k}.png")
    run(iter_prepare([tmp_path], tmp_path / "set", patch_size=56))
    return tmp_path / "set"


def test_denormalize_inverts_the_pipeline_normalisation():
    plain = {"global_crops": {"resize": {"interpolation": "nearest"}, "crop": {"scale": [1.0, 1.0], "ratio": [1.0, 1.0]},
                              "transforms": []}}
    img = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    crop = build_augmentation(plain, n_global=1, global_size=16)(img)["global_crops"][0]
    np.testing.assert_array_equal(denormalize(crop), img)


def test_sheet_has_one_row_per_sample_and_a_column_per_crop():
    aug = build_augmentation(resolve_augmentation("dinov2"), n_global=2, n_local=2, global_size=112,
                             local_size=48, seed=0)
    images = [np.full((80, 90, 3), c, np.uint8) for c in (60, 200)]
    sheet = contact_sheet(aug, images)
    cell = 224  # 112 px crops shown at 2x
    assert sheet.dtype == np.uint8 and sheet.shape[1] == 5 * (cell + PAD) + PAD
    assert sheet.shape[0] > 2 * (cell + PAD)
    tile = sheet[PAD:PAD + cell, PAD + cell + PAD:PAD + 2 * cell + PAD]  # row 1, global crop 1
    assert tile.std() < 40 and abs(int(np.median(tile)) - 60) < 40  # a crop of a flat dark image


def test_cli_writes_the_png(tmp_path, capsys):
    data = _smear(tmp_path)
    out = tmp_path / "sheet.png"
    assert main(["augment-sheet", "--augmentation", "reddino", "--data", str(data), "--out", str(out),
                 "--n", "2", "--global-size", "56"]) == 0
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size[0] == 3 * (224 + PAD) + PAD
    assert "wrote" in capsys.readouterr().out
    assert main(["augment-sheet", "--augmentation", "nope", "--data", str(data), "--out", str(out)]) == 2
    assert main(["augment-sheet", "--config", "cpu_tiny", "--data", str(data), "--out", str(out), "--n", "1"]) == 0
    with Image.open(out) as im:  # cpu_tiny: 112 px crops shown at 2x, no local crops
        assert im.size[0] == 3 * (224 + PAD) + PAD
