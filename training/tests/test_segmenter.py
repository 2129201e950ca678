"""`reddino-train segmenter`: the learned segmenter's training targets, the subcommand and its one-line errors;
what it writes loads in the plugin (napari_reddino.segment.learned)."""

from __future__ import annotations

import numpy as np


def smear(centres, r, shape=(200, 240)):
    """Pale red discs with a pallor on a bright slide (OD adds where they overlap)."""
    yy, xx = np.indices(shape)
    od = np.zeros(shape)
    for cy, cx in centres:
        rr = np.hypot(yy - cy, xx - cx)
        od += np.where(rr < 0.45 * r, 0.2, 0.4) * (rr <= r)
    bg = np.array([0.9, 0.88, 0.85])
    rgb = bg * np.exp(-od[..., None] * np.array([0.1, 1.0, 0.6]))
    return (rgb * 255).astype(np.uint8)


def test_labelled_field_knows_only_labelled_cells_and_slide():
    from reddino_train.segmenter.fields import labelled_field

    from napari_reddino.segment.learned import TARGET_DIAMETER

    rgb = smear([(60, 60), (60, 160), (140, 110)], 22, (200, 240))
    boxes = {"rbc": [(38, 38, 82, 82)], "wbc": [], "platelet": []}  # the other two cells have no box
    field = labelled_field(rgb, boxes=boxes)
    s = field["scale"]
    assert abs(s - TARGET_DIAMETER / 44) < 0.25 * s  # measured diameter: 44 px
    heat, weight = field["heat"].astype(float), field["weight"]
    assert heat[int(60 * s), int(60 * s)] > 0.9 and weight[int(60 * s), int(60 * s)] == 1
    assert weight[int(60 * s), int(160 * s)] == 0  # an unlabelled cell: neither centre nor not
    assert weight[2, 2] == 1 and heat[2, 2] < 0.01  # bare slide: no centre


def test_training_subcommand_writes_loadable_weights(tmp_path):
    from reddino_train.cli import main

    from napari_reddino.segment.learned import load_segmenter, segment_learned

    out = tmp_path / "seg.safetensors"
    assert main(["segmenter", "--synthetic", "--out", str(out), "--steps", "3", "--batch", "2",
                 "--size", "48"]) == 0
    from safetensors.torch import load_file

    assert load_file(str(out))["head.weight"].shape[0] == 1
    load_segmenter(out)
    labels = segment_learned(smear([(100, 120)], 30), diameter=60, weights=out)
    assert labels.shape == (200, 240) and labels.dtype == np.int32


def test_training_without_data_is_one_line_error(tmp_path, capsys):
    from reddino_train.cli import main

    assert main(["segmenter", "--data", str(tmp_path / "absent"), "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "data folder" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_bad_channels_option_is_one_line_error(tmp_path, capsys):
    from reddino_train.cli import main

    assert main(["segmenter", "--synthetic", "--channels", "16", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--channels" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert main(["segmenter", "--synthetic", "--centre-weight", "0", "--out", str(tmp_path / "x.safetensors")]) == 2
    err = capsys.readouterr().err
    assert "--centre-weight" in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_centre_weight_reaches_the_loss(tmp_path):
    """``reddino-train segmenter --centre-weight`` sets how much a labelled centre counts: the same seed and
    crops give a different loss."""
    from reddino_train.segmenter.fields import labelled_field, synthetic_field
    from reddino_train.segmenter.train import train_segmenter

    rng = np.random.default_rng(0)
    fields = {"synthetic": [labelled_field(*synthetic_field(rng)) for _ in range(2)]}
    kw = dict(steps=2, batch=2, size=48, log_every=0, channels=(4, 8, 16))
    plain = train_segmenter(fields, tmp_path / "a.safetensors", centre_weight=1.0, **kw)
    again = train_segmenter(fields, tmp_path / "b.safetensors", centre_weight=1.0, **kw)
    centres = train_segmenter(fields, tmp_path / "c.safetensors", centre_weight=5.0, **kw)
    assert plain == again and centres != plain
