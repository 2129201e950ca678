"""The learned segmenter (backend "learned"): weights read with safetensors, instances from the network's
maps, the training subcommand; answers checked on generated images."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.segment.learned import WEIGHTS

shipped = pytest.mark.skipif(not WEIGHTS.is_file(), reason="no shipped learned-segmenter weights")


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


def test_instances_split_two_peaks():
    from napari_reddino.segment.learned import instances

    yy, xx = np.indices((40, 60))
    d1 = np.clip(1 - np.hypot(yy - 20, xx - 20) / 12, 0, 1)
    d2 = np.clip(1 - np.hypot(yy - 20, xx - 38) / 12, 0, 1)
    fg = ((d1 > 0) | (d2 > 0)).astype(float)
    labels = instances(fg, np.maximum(d1, d2))
    assert labels.max() == 2 and labels[20, 20] != labels[20, 38]


def test_training_subcommand_writes_loadable_weights(tmp_path):
    from reddino_train.cli import main

    from napari_reddino.segment.learned import load_segmenter, segment_learned

    out = tmp_path / "seg.safetensors"
    assert main(["segmenter", "--synthetic", "--out", str(out), "--steps", "3", "--batch", "2",
                 "--size", "48"]) == 0
    from safetensors.torch import load_file

    assert "head.weight" in load_file(str(out))
    load_segmenter(out)
    labels = segment_learned(smear([(100, 120)], 30), diameter=60, weights=out)
    assert labels.shape == (200, 240) and labels.dtype == np.int32


def test_missing_weights_is_one_line_error(tmp_path):
    from napari_reddino.images import InputError
    from napari_reddino.segment.learned import load_segmenter

    with pytest.raises(InputError, match="reddino-train segmenter"):
        load_segmenter(tmp_path / "absent.safetensors")


@shipped
def test_shipped_weights_load_with_safetensors():
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    assert sum(v.numel() for v in state.values()) < 1_000_000
    assert WEIGHTS.stat().st_size < 5_000_000


@shipped
def test_two_overlapping_discs_are_two_masks():
    from napari_reddino.segment import segment_cells

    labels, table = segment_cells(smear([(100, 90), (100, 140)], 30), "learned")
    assert labels[100, 85] != labels[100, 145] and labels[100, 85] and labels[100, 145]


@shipped
@pytest.mark.parametrize("r", [15, 65])
def test_isolated_cell_is_one_mask_at_any_scale(r):
    from napari_reddino.segment import segment_cells

    shape = (max(200, 4 * r), max(240, 5 * r))
    centres = [(shape[0] // 2, shape[1] // 2)]
    labels, _ = segment_cells(smear(centres, r, shape), "learned", diameter=2 * r)
    assert len(np.unique(labels[labels > 0])) == 1
