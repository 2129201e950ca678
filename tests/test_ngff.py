"""OME-Zarr written and read lazily (slides/ngff.py), and the composed test slide (slides/synthetic.py)."""

import json

import numpy as np
import pytest

from napari_reddino.images import InputError
from napari_reddino.slides import ngff, synthetic


@pytest.fixture
def fields():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(3)]


def test_image_round_trip_with_halving_levels(tmp_path, fields):
    image = synthetic.mosaic(fields, (300, 250), chunk=64).compute()
    path = ngff.write_image(tmp_path / "slide.zarr", image, chunk=64, pixel_size_um=0.25)
    ms = ngff.read_multiscales(path)
    assert ms.axes == "cyx"
    assert [tuple(level.shape) for level in ms.levels] == [(3, 300, 250), (3, 150, 125), (3, 75, 63), (3, 38, 32)]
    np.testing.assert_array_equal(ms.yx(0).compute(), image)
    # level 1 is the 2 x 2 mean
    expected = image[:300, :250].reshape(150, 2, 125, 2, 3).astype(float).mean(axis=(1, 3))
    assert np.abs(ms.yx(1).compute().astype(float) - expected).max() <= 0.5 + 1e-6
    assert ms.scales[0] == (1.0, 0.25, 0.25) and ms.scales[2] == (1.0, 1.0, 1.0)  # 0.25 um, 4 times at level 2
    assert ms.pixel_size(0) == pytest.approx(0.25) and ms.pixel_size(2) == pytest.approx(1.0)
    meta = json.loads((path / ".zattrs").read_text())["multiscales"][0]
    assert meta["version"] == "0.4" and [a["name"] for a in meta["axes"]] == ["c", "y", "x"]
    assert not (tmp_path / "slide.zarr.partial").exists()


def test_gray_image_and_chunks_bound_the_reads(tmp_path):
    gray = np.arange(200 * 130, dtype=np.uint16).reshape(200, 130)
    ms = ngff.read_multiscales(ngff.write_image(tmp_path / "g.zarr", gray, chunk=64))
    assert ms.axes == "yx" and ms.yx(0).shape == (200, 130)
    assert ms.levels[0].chunksize == (64, 64)  # a tile reads only the chunks under it
    np.testing.assert_array_equal(ms.yx(0)[70:90, 10:20].compute(), gray[70:90, 10:20])


def test_labels_beside_the_image_keep_their_values(tmp_path, fields):
    image = synthetic.mosaic(fields, (130, 150), chunk=64)
    path = ngff.write_image(tmp_path / "s.zarr", image, chunk=64)
    labels = np.zeros((130, 150), np.int32)
    labels[10:20, 10:30] = 70000  # more than uint16
    labels[100:129, 140:150] = 3
    ngff.write_labels(path, "cells", labels, chunk=64)
    ngff.write_labels(path, "cells", labels, chunk=64)  # again: replaced, listed once
    ms = ngff.read_multiscales(path)
    assert ms.labels == ["cells"]
    lab = ngff.read_multiscales(path / "labels" / "cells")
    assert ngff.is_label_image(lab) and lab.axes == "yx"
    np.testing.assert_array_equal(lab.yx(0).compute(), labels)
    assert set(np.unique(lab.yx(1).compute())) <= {0, 3, 70000}  # every second pixel: no invented label
    with pytest.raises(InputError, match="the image's own size"):
        ngff.write_labels(path, "bad", labels[:100])


def test_label_image_alone_and_refusals(tmp_path):
    labels = np.zeros((50, 60), np.int32)
    labels[5:9, 5:9] = 2
    lab = ngff.read_multiscales(ngff.write_label_image(tmp_path / "l.zarr", labels, chunk=32))
    assert ngff.is_label_image(lab)
    np.testing.assert_array_equal(lab.yx(0).compute(), labels)
    (tmp_path / "plain").mkdir()
    with pytest.raises(InputError, match="not an OME-Zarr image"):
        ngff.read_multiscales(tmp_path / "plain")
    with pytest.raises(InputError, match="accepted"):
        ngff.write_image(tmp_path / "x.zarr", np.zeros((2, 3, 4, 5), np.uint8))


def test_ome_zarr_05_and_singleton_axes(tmp_path):
    """An NGFF 0.5 image (zarr 3, metadata under "ome") with t, c, z, y, x axes reads as (y, x, c)."""
    import zarr

    data = np.random.default_rng(1).integers(0, 255, (1, 3, 1, 40, 50), dtype=np.uint8)
    group = zarr.open_group(str(tmp_path / "v5.zarr"), mode="w", zarr_format=3)
    group.create_array("0", data=data, chunks=(1, 1, 1, 16, 16))
    axes = [{"name": n, "type": t} for n, t in zip("tczyx", ["time", "channel", "space", "space", "space"])]
    group.attrs.update({"ome": {"version": "0.5", "multiscales": [{"axes": axes, "datasets": [
        {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1, 1, 1, 1]}]}]}]}})
    ms = ngff.read_multiscales(tmp_path / "v5.zarr")
    np.testing.assert_array_equal(ms.yx(0).compute(), np.moveaxis(data[0, :, 0], 0, -1))
    stack = np.zeros((2, 3, 1, 40, 50), np.uint8)
    with pytest.raises(InputError, match="time points"):
        ngff.as_yxc(stack, "tczyx")


def test_mosaic_is_deterministic_and_made_of_the_fields(fields):
    a = synthetic.mosaic(fields, (95, 130), chunk=32, seed=3).compute()
    b = synthetic.mosaic(fields, (95, 130), chunk=50, seed=3).compute()  # chunking does not change it
    np.testing.assert_array_equal(a, b)
    first = a[:30, :40]
    assert any(np.array_equal(first, f) for f in fields)
    assert any(np.array_equal(a[:30, 40:80], f[:, ::-1]) for f in fields)  # every second field mirrored
