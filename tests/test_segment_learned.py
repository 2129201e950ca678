"""The learned segmenter (backend "learned"): the threshold pipeline with markers at the centres a U-Net
finds; weights read with safetensors; answers checked on generated images (its training subcommand:
training/tests/test_segmenter.py)."""

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


def test_peaks_are_one_per_centre():
    from napari_reddino.segment.learned import peaks

    yy, xx = np.indices((40, 60))
    prob = np.maximum(np.exp(-((yy - 20) ** 2 + (xx - 18) ** 2) / 18), np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 18))
    found = peaks(prob * 0.9)
    assert len(found) == 2 and np.allclose(sorted(found[:, 1]), [18, 40], atol=0.5)
    assert len(peaks(prob * 0.2)) == 0  # below the least probability: no centre


def test_given_centres_split_overlapping_discs_and_never_an_isolated_convex_cell():
    from napari_reddino.segment.threshold import threshold_objects

    pair = smear([(100, 95), (100, 135)], 25)
    labels, _ = threshold_objects(pair, 50, centres=lambda rgb, stats, d: np.array([(100, 95), (100, 135)]))
    assert labels[100, 85] and labels[100, 145] and labels[100, 85] != labels[100, 145]
    one = smear([(100, 120)], 25)
    labels, _ = threshold_objects(one, 50, centres=lambda rgb, stats, d: np.array([(100, 108), (100, 132)]))
    assert len(np.unique(labels[labels > 0])) == 1


def test_centres_come_back_at_full_resolution(monkeypatch):
    from napari_reddino.segment import learned
    from napari_reddino.segment.threshold import stain_stats

    rgb = smear([(60, 80)], 30, (160, 200)) / 255.0

    def fake_probability(net, x):  # a peak where the network input is darkest (the cell)
        g = x[1]
        return (g == g.max()).astype(float) * 0.9

    monkeypatch.setattr(learned, "load_segmenter", lambda weights=None: None)
    monkeypatch.setattr(learned, "centre_probability", fake_probability)
    found = learned.predict_centres(rgb, stain_stats(rgb), diameter=60)
    assert len(found) >= 1 and np.all(np.abs(found - (60, 80)) < 30)


def test_missing_weights_is_one_line_error(tmp_path):
    from napari_reddino.images import InputError
    from napari_reddino.segment.learned import load_segmenter

    with pytest.raises(InputError, match="reddino-train segmenter"):
        load_segmenter(tmp_path / "absent.safetensors")


@shipped
def test_shipped_weights_load_with_safetensors():
    from safetensors.torch import load_file

    state = load_file(str(WEIGHTS))
    assert state["head.weight"].shape[0] == 1
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


def test_two_centres_split_a_convex_pair_of_heavily_overlapping_cells():
    """Two cells a third of a diameter apart make a convex blob of 1.4 cells' area: the distance-transform
    rule keeps it whole (it could be one large cell), two learned centres split it."""
    from napari_reddino.segment.threshold import threshold_objects

    pair = smear([(100, 112), (100, 128)], 25)
    labels, _ = threshold_objects(pair, 50)
    assert labels[100, 100] == labels[100, 140]
    labels, _ = threshold_objects(pair, 50, centres=lambda rgb, stats, d: np.array([(100, 112), (100, 128)]))
    assert labels[100, 100] and labels[100, 140] and labels[100, 100] != labels[100, 140]


def test_a_smaller_overlapping_cell_keeps_its_own_outline():
    """A small cell lying over a large one's rim: the distance transform of the pair slopes from the small
    cell's centre up to the large one's, so a watershed on it alone let the large cell take a quarter of
    the small one's free part; the split follows the distance to the centres too."""
    from napari_reddino.segment.threshold import threshold_objects

    centres = np.array([(100, 100), (100, 122)])
    yy, xx = np.indices((200, 240))
    big, small = np.hypot(yy - 100, xx - 100) <= 32, np.hypot(yy - 100, xx - 122) <= 14
    od = 0.4 * big + 0.4 * small
    rgb = np.array([0.9, 0.88, 0.85]) * np.exp(-od[..., None] * np.array([0.1, 1.0, 0.6]))
    labels, _ = threshold_objects((rgb * 255).astype(np.uint8), 55, centres=lambda rgb, stats, d: centres)
    own, other = labels[100, 122], labels[100, 100]
    assert own and other and own != other
    assert (labels[small & ~big] == own).mean() > 0.9  # the small cell's part outside the large one


def test_a_cell_cut_by_the_border_is_not_merged_into_its_neighbour():
    """A cell cut by the image edge and the cell overlapping it make a convex blob about one cell's area:
    the rule that keeps an isolated convex cell whole must not join them."""
    from napari_reddino.segment.threshold import threshold_objects

    field = smear([(100, 2), (100, 20)], 25)
    labels, _ = threshold_objects(field, 50, centres=lambda rgb, stats, d: np.array([(100, 2), (100, 20)]))
    assert labels[100, 1] and labels[100, 35] and labels[100, 1] != labels[100, 35]


def test_a_cell_cut_by_the_border_keeps_its_pallor_and_its_area():
    """A cell cut through its pallor by the image edge, under another cell: the pallor is open to the edge
    (no hole to fill) and the centre sits on the rim beside it. The pallor was left as slide, the
    distance transform put the centre next to slide, and the neighbour took most of the cell."""
    from napari_reddino.segment.threshold import threshold_objects

    yy, xx = np.indices((200, 240))
    od = np.zeros((200, 240))
    for y in (150, 200):
        rr = np.hypot(yy - y, xx - 120)
        od += np.where(rr < 0.45 * 25, 0.0, 0.4) * (rr <= 25)  # an open (unstained) pallor
    rgb = np.array([0.9, 0.88, 0.85]) * np.exp(-od[..., None] * np.array([0.1, 1.0, 0.6]))
    field = (rgb * 255).astype(np.uint8)
    labels, _ = threshold_objects(field, 50, centres=lambda rgb, stats, d: np.array([(150, 120), (194, 132)]))
    own = labels[194, 132]
    assert own and own != labels[150, 120]
    cut = (np.hypot(yy - 200, xx - 120) <= 25) & (np.hypot(yy - 150, xx - 120) > 25)
    assert (labels[cut] == own).mean() > 0.8
    assert labels[199, 120] == own  # its pallor, at the edge


def test_network_depth_is_read_from_the_weights(tmp_path):
    """A deeper centre network (``reddino-train segmenter --channels 8,16,32,64``) loads from its file alone
    and takes any image size (padded to its stride of 8)."""
    from safetensors.torch import save_file

    from napari_reddino.segment.learned import build_unet, centre_probability, load_segmenter

    path = tmp_path / "deep.safetensors"
    save_file({k: v.contiguous() for k, v in build_unet((8, 16, 32, 64)).state_dict().items()}, str(path))
    net = load_segmenter(path)
    assert net.levels == 3 and net.enc3[0].out_channels == 32 and net.mid[0].out_channels == 64
    prob = centre_probability(net, np.zeros((3, 37, 50), np.float32))
    assert prob.shape == (37, 50) and np.all((prob >= 0) & (prob <= 1))


def test_folding_batch_norm_keeps_the_output():
    """load_segmenter folds each batch norm into its convolution (faster on a CPU): the centre probability
    must not change."""
    import torch

    from napari_reddino.segment.learned import build_unet, centre_probability, fold_batch_norm

    torch.manual_seed(0)
    net = build_unet((8, 16, 32))
    for m in net.modules():  # running statistics and affine terms away from their initial values
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    x = np.random.default_rng(0).uniform(0, 1, (3, 40, 52)).astype(np.float32)
    before = centre_probability(net.eval(), x)
    folded = fold_batch_norm(net)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    np.testing.assert_allclose(centre_probability(folded, x), before, atol=1e-5)
