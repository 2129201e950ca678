"""Multi-crop augmentation: pinned RedDino config, SomeOf picks exactly 4, shapes, normalisation, seeds."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_reddino.images import InputError
from reddino_train.config import resolve_augmentation
from reddino_train.data.augment import IMAGENET_MEAN, IMAGENET_STD, build_augmentation, measure_throughput

FLIPS = {"HorizontalFlip", "VerticalFlip", "RandomRotate90"}


@pytest.fixture(scope="module")
def reddino():
    return resolve_augmentation("reddino")


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(0)
    img = np.full((120, 160, 3), 225, np.uint8)
    yy, xx = np.mgrid[:120, :160]
    for cy, cx in rng.uniform(10, 110, (12, 2)):
        img[(yy - cy) ** 2 + (xx - cx * 1.3) ** 2 < 150] = (200, 110, 140)
    return img


def test_config_pins_the_33_transforms_and_the_flips(reddino):
    some_of = reddino["global_crops"]["transforms"][0]["SomeOf"]
    names = [next(iter(t)) for t in some_of["transforms"]]
    assert some_of["n"] == 4 and some_of["replace"] is False and len(names) == len(set(names)) == 33
    assert all(next(iter(t.values()))["p"] == 1.0 for t in some_of["transforms"])
    assert [t for t in reddino["global_crops"]["transforms"][1:]] == [{n: {"p": 0.85}} for n in
                                                                      ("HorizontalFlip", "VerticalFlip", "RandomRotate90")]
    assert reddino["global_crops"]["crop"]["scale"] == [0.32, 1.0] and reddino["global_crops"]["resize"]


def test_mild_variant_is_a_cell_preserving_subset_applied_two_at_a_time(reddino, image):
    mild = resolve_augmentation("reddino_mild")
    full = {next(iter(t)) for t in reddino["global_crops"]["transforms"][0]["SomeOf"]["transforms"]}
    some_of = mild["global_crops"]["transforms"][0]["SomeOf"]
    names = {next(iter(t)) for t in some_of["transforms"]}
    assert some_of["n"] == 2 and names < full and not names & {"InvertImg", "ChannelShuffle", "Solarize"}
    assert mild["global_crops"]["transforms"][1:] == reddino["global_crops"]["transforms"][1:]  # same flips
    assert mild["global_crops"]["crop"]["scale"] == [0.7, 1.0] and mild["global_crops"]["crop"]["ratio"] == [1.0, 1.0]
    aug = build_augmentation(mild, n_global=2, global_size=28, seed=0)
    for _ in range(20):
        for applied in aug.applied(image)["global_applied"]:
            assert len([n for n in applied if n not in FLIPS]) == 2


def test_some_of_applies_exactly_four_distinct_and_flips_fire_independently(reddino, image):
    aug = build_augmentation(reddino, n_global=2, global_size=28, seed=0)
    picked, flips = [], []
    for _ in range(60):
        for names in aug.applied(image)["global_applied"]:
            colour = [n for n in names if n not in FLIPS]
            assert len(colour) == len(set(colour)) == 4
            picked += colour
            flips.append([f in names for f in sorted(FLIPS)])
    flips = np.array(flips)
    assert 0.7 < flips.mean() < 0.97  # p = 0.85 each
    assert flips.all(axis=1).mean() < 0.8  # independent (0.61), not one shared draw (0.85)
    assert len(set(picked)) > 25  # the choice spreads over the list


def test_shapes_dtype_and_normalisation(reddino, image):
    out = build_augmentation(reddino, n_global=2, n_local=3, global_size=56, local_size=28, seed=0)(image)
    assert [tuple(t.shape) for t in out["global_crops"]] == [(3, 56, 56)] * 2
    assert [tuple(t.shape) for t in out["local_crops"]] == [(3, 28, 28)] * 3
    assert all(t.dtype == torch.float32 for t in out["global_crops"] + out["local_crops"])
    plain = {"global_crops": {"resize": None, "crop": {"scale": [0.5, 1.0]}, "transforms": []}}
    colour = np.array([200, 100, 50], np.uint8)
    crop = build_augmentation(plain, n_global=1, global_size=32)(np.tile(colour, (64, 64, 1)))["global_crops"][0]
    expected = (colour / 255.0 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(crop.mean(dim=(1, 2)).numpy(), expected, atol=1e-5)
    assert out["global_crops"][0].abs().max() < 3.0  # ImageNet-normalised range, not 0-255


def test_same_seed_same_crops_other_seed_other_crops(reddino, image):
    a, b, c = (build_augmentation(reddino, global_size=32, seed=s) for s in (5, 5, 6))
    for _ in range(3):
        x, y, z = a(image), b(image), c(image)
        assert all(torch.equal(p, q) for p, q in zip(x["global_crops"], y["global_crops"]))
        assert not torch.equal(x["global_crops"][0], z["global_crops"][0])
    assert not torch.equal(x["global_crops"][0], x["global_crops"][1])


class _Repeat(torch.utils.data.Dataset):
    def __init__(self, image, aug, reseed=False):
        self.image, self.aug, self.reseed = image, aug, reseed

    def __len__(self):
        return 4

    def __getitem__(self, i):
        if self.reseed:
            self.aug.reseed(100 + i)
        return self.aug(self.image)["global_crops"][0]


def test_dataloader_workers_do_not_repeat_each_other(reddino, image):
    import cv2

    big = np.zeros((2000, 2000, 3), np.uint8)
    for _ in range(3):  # start OpenCV's thread pool in this process: the workers are forked from it
        cv2.dilate(cv2.resize(big, (1000, 1000), interpolation=cv2.INTER_AREA), np.ones((15, 15), np.uint8))
    torch.manual_seed(0)
    aug = build_augmentation(reddino, n_global=1, global_size=24, seed=1)
    loader = torch.utils.data.DataLoader(_Repeat(image, aug), batch_size=1, num_workers=2, timeout=60)
    crops = [b[0] for b in loader]  # items 0 and 1 are each worker's first call
    assert not torch.equal(crops[0], crops[1])
    # an explicit per-sample seed wins over the worker's own: same crops as in the main process
    loader = torch.utils.data.DataLoader(_Repeat(image, aug, reseed=True), batch_size=1, num_workers=2, timeout=60)
    here = [_Repeat(image, aug, reseed=True)[i] for i in range(4)]
    assert all(torch.equal(b[0], h) for b, h in zip(loader, here))


def test_dinov2_pipeline_differs_between_the_two_global_crops(image):
    cfg = resolve_augmentation("dinov2")
    aug = build_augmentation(cfg, n_global=2, n_local=2, global_size=32, local_size=16, seed=0)
    seen = [set(), set()]
    for _ in range(40):
        res = aug.applied(image)
        for k in range(2):
            seen[k] |= set(res["global_applied"][k])
        assert [tuple(t.shape) for t in res["local_crops"]] == [(3, 16, 16)] * 2
    assert "GaussianBlur" in seen[0] and "Solarize" not in seen[0] and "Solarize" in seen[1]


def test_bad_configs_are_refused_with_one_line(image):
    base = {"resize": None, "crop": {"scale": [0.5, 1.0]}}
    for bad, match in [({"global_crops": {**base, "transforms": [{"NoSuchBlur": {}}]}}, "transform name"),
                       ({"global_crops": {**base, "transforms": [{"Blur": {"radius": 3}}]}}, "Blur"),
                       ({"global_crops": {**base, "transforms": ["Blur"]}}, "one-key"),
                       ({"crops": {}}, "global_crops")]:
        with pytest.raises(InputError, match=match) as info:
            build_augmentation(bad)
        assert "\n" not in str(info.value)
    with pytest.raises(InputError, match="local_crops"):
        build_augmentation({"global_crops": {**base, "transforms": []}}, n_local=2)


def test_measure_throughput(reddino, image):
    rate = measure_throughput(build_augmentation(reddino, global_size=32, seed=0), [image], seconds=0.3)
    assert rate > 1.0
