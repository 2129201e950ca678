"""Slides opened lazily (slides/read.py): each format's levels and pixels, reads bounded by the slice, refusals;
and what images.py does with OME-Zarr folders and big TIFFs."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino import images
from napari_reddino.images import InputError, ReadError, to_rgb_uint8
from napari_reddino.slides import ngff, synthetic
from napari_reddino.slides.read import choose_level, open_slide

tifffile = pytest.importorskip("tifffile")


@pytest.fixture
def fields():
    rng = np.random.default_rng(0)
    return [rng.integers(0, 255, (30, 40, 3), dtype=np.uint8) for _ in range(3)]


def _count_gets(monkeypatch, cls):
    """Record the keys ``cls.get`` (an async zarr store method) is asked for."""
    keys, real = [], cls.get

    async def get(self, key, *args, **kwargs):
        keys.append(key)
        return await real(self, key, *args, **kwargs)

    monkeypatch.setattr(cls, "get", get)
    return keys


def _write_pyramid(path, image, tile=64, pixel_um=None):
    levels = [image, image[::2, ::2], image[::4, ::4]]
    meta = {"PhysicalSizeX": pixel_um, "PhysicalSizeY": pixel_um} if pixel_um else {}
    with tifffile.TiffWriter(path, ome=True) as tw:
        tw.write(levels[0], subifds=2, tile=(tile, tile), photometric="rgb", metadata=meta)
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(tile, tile), photometric="rgb")
    return levels


def test_ome_zarr_levels_pixels_and_pixel_size(tmp_path, fields):
    image = synthetic.mosaic(fields, (300, 250), chunk=64).compute()
    path = ngff.write_image(tmp_path / "slide.ome.zarr", image, chunk=64, pixel_size_um=0.25)
    written = ngff.read_multiscales(path)
    slide = open_slide(path)
    assert slide.name == "slide" and slide.format == "ome-zarr" and slide.partial
    assert [lv.shape for lv in slide.levels] == [(300, 250, 3), (150, 125, 3), (75, 63, 3), (38, 32, 3)]
    assert all(lv.dtype == np.uint8 for lv in slide.levels)
    for k in range(len(slide.levels)):
        np.testing.assert_array_equal(slide.levels[k].compute(), written.yx(k).compute())
    np.testing.assert_array_equal(slide.data.compute(), image)
    assert slide.pixel_size(0) == pytest.approx(0.25) and slide.pixel_size(2) == pytest.approx(0.25 * 250 / 63)
    at2 = open_slide(path, level=2)
    assert at2.level == 2 and at2.data.shape == (75, 63, 3)


def test_pyramidal_ome_tiff_one_level_per_series_level(tmp_path, fields):
    image = synthetic.mosaic(fields, (256, 320), chunk=64).compute()
    levels = _write_pyramid(tmp_path / "scan.ome.tif", image, pixel_um=0.5)
    with open_slide(tmp_path / "scan.ome.tif") as slide:
        assert slide.format == "ome-tiff" and slide.name == "scan"
        assert len(slide.levels) == 3 and slide.pixel_size(1) == pytest.approx(1.0)
        for got, want in zip(slide.levels, levels):
            np.testing.assert_array_equal(got.compute(), want)
        assert slide.data.chunksize[:2] == (64, 64)  # the TIFF's tiles


@pytest.mark.parametrize("layout", [{"tile": (32, 32)}, {"rowsperstrip": 16}])
def test_plain_tiff_tiles_or_strips_converted_as_read_image_does(tmp_path, layout):
    rng = np.random.default_rng(1)
    gray16 = rng.integers(0, 4000, (120, 96), dtype=np.uint16)  # a 12-bit camera: scaled by 65535, as read_image
    tifffile.imwrite(tmp_path / "g.tif", gray16, **layout)
    slide = open_slide(tmp_path / "g.tif")
    assert slide.format == "tiff" and len(slide.levels) == 1 and slide.pixel_size() is None
    got = slide.data.compute()
    np.testing.assert_array_equal(got, to_rgb_uint8(gray16))
    np.testing.assert_array_equal(got, images.read_image(tmp_path / "g.tif"))
    rgba = rng.random((64, 80, 4)).astype(np.float32) * 3  # float in 0..3: read as 0..255, alpha dropped
    tifffile.imwrite(tmp_path / "f.tif", rgba, photometric="rgb", **layout)
    np.testing.assert_array_equal(open_slide(tmp_path / "f.tif").data.compute(), to_rgb_uint8(rgba))


def test_png_and_jpeg_are_one_lazy_chunk(tmp_path, fields):
    from PIL import Image

    image = synthetic.mosaic(fields, (90, 120), chunk=64).compute()
    Image.fromarray(image).save(tmp_path / "f.png")
    Image.fromarray(image[..., 0]).save(tmp_path / "gray.jpg")
    png = open_slide(tmp_path / "f.png")
    assert png.format == "png" and not png.partial and png.data.numblocks == (1, 1, 1)
    np.testing.assert_array_equal(png.data[10:20, 5:9].compute(), image[10:20, 5:9])
    jpg = open_slide(tmp_path / "gray.jpg").data.compute()
    assert jpg.shape == (90, 120, 3) and (jpg[..., 0] == jpg[..., 2]).all()


def test_a_tile_of_a_chunked_ome_zarr_reads_only_the_chunks_under_it(tmp_path, fields, monkeypatch):
    from zarr.storage import LocalStore

    path = synthetic.compose_slide(tmp_path / "big.zarr", fields, 1024, chunk=128)  # 8 x 8 chunks x 3 colours
    slide = open_slide(path)
    keys = _count_gets(monkeypatch, LocalStore)
    tile = slide.data[260:380, 500:600].compute()  # inside chunk row 2, columns 3 and 4
    chunks = sorted(k for k in keys if k.startswith("0/"))
    assert chunks == sorted(f"0/{c}/2/{x}" for c in range(3) for x in (3, 4))
    np.testing.assert_array_equal(tile, synthetic.mosaic(fields, (1024, 1024), 128)[260:380, 500:600].compute())


def test_a_tile_of_a_tiled_tiff_reads_only_its_tiles(tmp_path, fields, monkeypatch):
    from tifffile.zarr import ZarrTiffStore

    image = synthetic.mosaic(fields, (512, 512), chunk=64).compute()
    _write_pyramid(tmp_path / "scan.ome.tif", image)
    slide = open_slide(tmp_path / "scan.ome.tif")
    keys = _count_gets(monkeypatch, ZarrTiffStore)
    np.testing.assert_array_equal(slide.data[70:120, 130:140].compute(), image[70:120, 130:140])
    assert sorted(k for k in keys if not k.endswith((".zarray", ".zattrs", ".zgroup"))) == ["0/1.2.0"]


def test_choose_level_is_the_finest_under_the_budget(tmp_path, fields):
    path = ngff.write_image(tmp_path / "s.zarr", synthetic.mosaic(fields, (300, 250), chunk=64), chunk=64)
    slide = open_slide(path)
    assert choose_level(slide, 300 * 250) == 0
    assert choose_level(slide, 300 * 250 - 1) == 1
    assert choose_level(slide, 150 * 125) == 1
    assert choose_level(slide, 10) == 3  # none fits: the coarsest


def test_refusals_are_one_line(tmp_path, fields):
    ngff.write_label_image(tmp_path / "cells.zarr", np.ones((40, 40), np.uint16), chunk=32)
    tifffile.imwrite(tmp_path / "stack.tif", np.zeros((5, 40, 40), np.uint8))
    tifffile.imwrite(tmp_path / "two.tif", np.zeros((40, 40, 2), np.uint8), photometric="minisblack",
                     planarconfig="contig")
    (tmp_path / "notes.txt").write_text("x")
    (tmp_path / "empty.zarr").mkdir()
    ngff.write_image(tmp_path / "s.zarr", synthetic.mosaic(fields, (100, 100), chunk=64), chunk=64)
    cases = {"missing.tif": "does not exist", "empty.zarr": "not an OME-Zarr image", "cells.zarr": "label image",
             "stack.tif": "stack of 5 planes", "two.tif": "2 channels", "notes.txt": "a .txt file"}
    for name, words in cases.items():
        with pytest.raises(InputError, match=words) as err:
            open_slide(tmp_path / name)
        assert "\n" not in str(err.value) and "accepted:" in str(err.value)
    with pytest.raises(InputError, match="levels 0 to 1"):
        open_slide(tmp_path / "s.zarr", level=5)


def test_expand_inputs_lists_an_ome_zarr_folder_as_one_image(tmp_path, fields):
    from PIL import Image

    image = synthetic.mosaic(fields, (100, 90), chunk=64).compute()
    ngff.write_image(tmp_path / "in" / "a.zarr", image, chunk=32)  # 4 x 3 chunk files per level
    Image.fromarray(image).save(tmp_path / "in" / "b.png")
    (tmp_path / "in" / "a.zarr" / "0" / "stray.png").write_bytes(b"")  # inside the zarr: not an image
    assert images.expand_inputs([tmp_path / "in"]) == [tmp_path / "in" / "a.zarr", tmp_path / "in" / "b.png"]
    assert images.expand_inputs([tmp_path / "in" / "a.zarr"]) == [tmp_path / "in" / "a.zarr"]
    np.testing.assert_array_equal(images.read_image(tmp_path / "in" / "a.zarr"), image)


def test_read_image_refuses_a_slide_over_the_limit(tmp_path, fields, monkeypatch):
    image = synthetic.mosaic(fields, (100, 90), chunk=64).compute()
    ngff.write_image(tmp_path / "a.zarr", image, chunk=32)
    _write_pyramid(tmp_path / "p.ome.tif", image)
    monkeypatch.setattr(images, "WHOLE_PIXELS", 100 * 90 - 1)
    for name in ("a.zarr", "p.ome.tif"):
        with pytest.raises(ReadError, match="90 x 100 pixels.*napari-reddino slide") as err:
            images.read_image(tmp_path / name)
        assert "\n" not in str(err.value)
    monkeypatch.setattr(images, "WHOLE_PIXELS", 100 * 90)
    np.testing.assert_array_equal(images.read_image(tmp_path / "p.ome.tif"), image)


def test_a_slide_travels_to_another_process(tmp_path, fields):
    """What a Dask worker gets (cloudpickle, as dask.distributed sends tasks): the levels, not open files."""
    cloudpickle = pytest.importorskip("cloudpickle")
    image = synthetic.mosaic(fields, (256, 192), chunk=64).compute()
    _write_pyramid(tmp_path / "scan.ome.tif", image)
    ngff.write_image(tmp_path / "s.zarr", image, chunk=64)
    for name in ("scan.ome.tif", "s.zarr"):
        with open_slide(tmp_path / name) as slide:
            tile = slide.data[60:130, 10:70]
            sent = cloudpickle.dumps(tile)
        np.testing.assert_array_equal(cloudpickle.loads(sent).compute(), image[60:130, 10:70])  # reopened there
