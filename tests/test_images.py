"""Input validation: every image napari can hold becomes RGB float, anything else a one-line refusal."""

import numpy as np
import pytest

from napari_reddino.images import InputError, expand_inputs, read_image, to_rgb_float, to_rgb_uint8


@pytest.mark.parametrize(
    "data, expected_max",
    [
        (np.full((5, 6), 255, np.uint8), 1.0),
        (np.full((5, 6, 3), 128, np.uint8), 128 / 255),
        (np.full((5, 6, 4), 255, np.uint8), 1.0),
        (np.full((5, 6), 65535, np.uint16), 1.0),
        (np.full((5, 6, 3), 0.5, np.float32), 0.5),
        (np.full((5, 6, 3), 200.0, np.float64), 200 / 255),
        (np.ones((5, 6), bool), 1.0),
    ],
)
def test_accepted_images_become_rgb_float(data, expected_max):
    out = to_rgb_float(data)
    assert out.shape == (5, 6, 3) and out.dtype == np.float32
    assert out.max() == pytest.approx(expected_max, abs=1e-6)
    assert out.min() >= 0


def test_channel_first_stack_and_alpha_dropped():
    chw = np.zeros((3, 10, 12), np.uint8)
    chw[0] = 255  # red channel
    out = to_rgb_float(chw)
    assert out.shape == (10, 12, 3)
    assert (out[..., 0] == 1).all() and (out[..., 1] == 0).all()
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., 3] = 255  # opaque black: alpha must not leak into blue
    assert to_rgb_float(rgba).max() == 0


def test_gray_replicated_to_three_channels():
    gray = np.arange(20, dtype=np.uint8).reshape(4, 5)
    out = to_rgb_uint8(gray)
    assert (out[..., 0] == gray).all() and (out[..., 2] == gray).all()


def test_float_outside_unit_range_rescaled_and_nan_cleaned():
    data = np.array([[-1.0, 0.0], [1.0, np.nan]] * 2)
    out = to_rgb_float(data)
    assert np.isfinite(out).all() and out.min() == 0 and out.max() == 1


@pytest.mark.parametrize(
    "data",
    [np.zeros((2, 3, 4, 5)), np.zeros((5, 6, 7)), np.zeros((0, 4, 3)), np.array([["a", "b"], ["c", "d"]]), None],
)
def test_refused_with_one_line_naming_received_and_accepted(data):
    with pytest.raises(InputError) as err:
        to_rgb_float(data)
    msg = str(err.value)
    assert "\n" not in msg
    assert "Received" in msg and "accepted" in msg


def test_read_image_by_content_not_suffix(tmp_path):
    from PIL import Image

    img = np.zeros((8, 9, 3), np.uint8)
    img[..., 1] = 200
    path = tmp_path / "really_png.jpg"  # a PNG named .jpg, like some Chula images
    Image.fromarray(img).save(path, format="PNG")
    assert (read_image(path) == img).all()


def test_read_image_bad_files(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    with pytest.raises(InputError, match="Could not read"):
        read_image(bad)
    with pytest.raises(InputError, match="not a file"):
        read_image(tmp_path / "missing.png")


def test_expand_inputs_folders_sorted_and_empty_refused(tmp_path):
    from PIL import Image

    for name in ["b.png", "a.png", "c.txt"]:
        if name.endswith(".png"):
            Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / name)
        else:
            (tmp_path / name).write_text("x")
    assert [p.name for p in expand_inputs([tmp_path])] == ["a.png", "b.png"]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(InputError, match="Found no images"):
        expand_inputs([empty])


def test_exif_rotation_is_applied(tmp_path):
    """A phone or camera stores the turn in EXIF: read without it, the smear came out lying on its side."""
    from PIL import Image

    img = np.zeros((20, 40, 3), np.uint8)
    img[:, :10] = 255  # a white band on the left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display"
    Image.fromarray(img).save(tmp_path / "phone.jpg", exif=exif, quality=95)
    shown = read_image(tmp_path / "phone.jpg")
    assert shown.shape == (40, 20, 3)
    assert shown[:10].mean() > 200 and shown[-10:].mean() < 50  # the band is now on top


def test_a_stack_of_grey_planes_is_not_read_as_colour(tmp_path):
    import tifffile

    planes = np.random.default_rng(0).integers(0, 255, (3, 20, 30), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "stack.tif", planes, photometric="minisblack")
    with pytest.raises(InputError, match="a stack of 3 grey images") as err:
        read_image(tmp_path / "stack.tif")
    assert "\n" not in str(err.value)
    tifffile.imwrite(tmp_path / "planar.tif", planes, photometric="rgb", planarconfig="separate")
    assert (read_image(tmp_path / "planar.tif") == np.moveaxis(planes, 0, -1)).all()  # colour planes: colour


def test_one_pixel_high_image_is_too_small_not_empty():
    with pytest.raises(InputError, match="40 x 1 pixels, too small"):
        to_rgb_float(np.zeros((1, 40, 3), np.uint8))


def test_too_many_pixels_says_the_size_not_the_format(tmp_path, monkeypatch):
    from PIL import Image

    Image.fromarray(np.zeros((1000, 1200, 3), np.uint8)).save(tmp_path / "slide.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200_000)  # refused above twice this, as a 20,000² slide is
    with pytest.raises(InputError, match="of 1.2 megapixels, more than") as err:
        read_image(tmp_path / "slide.png")
    assert "accepted: smaller fields" in str(err.value) and "Could not read" not in str(err.value)
