"""The docks on a multiscale slide as napari opens it: the level offered, processed at its full resolution, and the
results placed over the slide (levels.py)."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui
pytest.importorskip("napari_ome_zarr")
pytest.importorskip("cellpose.models")  # torch before any viewer (see test_segment_widget)


@pytest.fixture(scope="module")
def slide(tmp_path_factory):
    """A 600 x 700 RGB OME-Zarr slide, 0.5 um per pixel, levels 600x700, 300x350, 150x175, 75x88."""
    from napari_reddino.sample_data import synthetic_smear
    from napari_reddino.slides import synthetic

    field = synthetic_smear(seed=2, shape=(240, 320))[0]
    return synthetic.compose_slide(tmp_path_factory.mktemp("slides") / "slide.zarr", [field], (600, 700),
                                   chunk=128, pixel_size_um=0.5)


def edges(layer):
    """The world box a 2-D layer covers, pixel edges included: (y0, x0), (y1, x1)."""
    shape = np.asarray((layer.data[0] if layer.multiscale else layer.data).shape[:2], float)
    scale, translate = np.asarray(layer.scale[-2:]), np.asarray(layer.translate[-2:])
    return np.stack([translate - scale / 2, translate + (shape - 0.5) * scale])


def shown(widget) -> bool:
    """Not hidden by the dock (``visible`` also needs the dock on screen)."""
    return not widget.native.isHidden()


def run_widget(qtbot, widget):
    assert widget.start() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)


def test_segment_dock_at_level_1_puts_the_cells_over_the_slide(make_napari_viewer, qtbot, slide):
    segment_at_level_1(make_napari_viewer, qtbot, slide)


def segment_at_level_1(make_napari_viewer, qtbot, slide):
    """The slide opened by napari-ome-zarr, segmented at level 1 by the dock; returns the viewer and level 1."""
    from napari_reddino._widgets.levels import ColourLayers
    from napari_reddino._widgets.segment import SegmentWidget
    from napari_reddino.segment import segment_cells
    from napari_reddino.slides.read import open_slide

    viewer = make_napari_viewer()
    channels = viewer.open(str(slide), plugin="napari-ome-zarr")
    # what napari-ome-zarr really gives: one gray multiscale layer per colour, at the file's pixel size
    assert [la.name for la in channels] == ["slide: red", "slide: green", "slide: blue"]
    assert all(la.multiscale and not la.rgb for la in channels)
    np.testing.assert_allclose(channels[0].scale, (0.5, 0.5))
    widget = SegmentWidget(viewer)
    assert [image.name for image in widget.image.choices if image is not None] == ["slide"]  # one, not three
    assert isinstance(widget.image.value, ColourLayers)
    assert shown(widget.level.combo) and widget.level.value == 0  # 0.4 Mpx: under the default budget
    assert widget.level.combo.choices == (0, 1, 2, 3)
    widget.level.combo.value = 1
    assert widget.level.combo.current_choice == "1: 350 x 300 px (2x coarser, 0.1 Mpx)"
    widget.backend.value = "threshold"
    run_widget(qtbot, widget)
    cells = viewer.layers["slide cells"]
    level1 = open_slide(slide, level=1).data.compute()
    assert cells.data.shape == (300, 350)  # level 1's full resolution was segmented
    np.testing.assert_array_equal(cells.data, segment_cells(level1, "threshold")[0])
    np.testing.assert_allclose(cells.scale, (1.0, 1.0))  # 2 x the slide's 0.5 um
    np.testing.assert_allclose(edges(cells), edges(channels[0]))  # lies exactly over the slide
    np.testing.assert_allclose(edges(cells), channels[0]._extent_world_augmented)
    assert cells.metadata["source_level"] == 1
    return viewer, level1


def test_features_and_session_use_the_level_of_the_cells(make_napari_viewer, qtbot, slide, tiny_model_dir,
                                                         tmp_path):
    from napari_reddino._widgets.embed import OTHER, EmbedWidget
    from napari_reddino._widgets.levels import image_pixels
    from napari_reddino._widgets.session import viewer_session
    from napari_reddino.session import read_session, save_session

    viewer, level1 = segment_at_level_1(make_napari_viewer, qtbot, slide)
    cells = viewer.layers["slide cells"]
    widget = EmbedWidget(viewer)
    assert widget.image.value == "slide" and widget.labels.value == "slide cells"
    assert shown(widget.level.combo) and widget.level.value == 1  # the cells layer's level, not the default 0
    widget.model_choice.value = OTHER
    widget.model_path.value = f"local-dir:{tiny_model_dir}"
    run_widget(qtbot, widget)
    stored = cells.metadata["reddino"]
    assert stored["image"] == "slide" and len(stored["embeddings"]) == (cells.features["type"] == "rbc").sum() > 5
    np.testing.assert_array_equal(np.asarray(image_pixels(viewer, "slide", cells.data.shape)), level1)
    (smear,), (info,) = (s := viewer_session(viewer)).result.smears, s.images
    np.testing.assert_array_equal(smear.image, level1)  # saved at the cells' level, reopened where they lie
    assert info.scale == tuple(cells.scale) and info.translate == tuple(cells.translate)
    assert info.path is None  # copied: the slide's file would give its level 0
    save_session(s, tmp_path / "session")
    (back,) = read_session(tmp_path / "session").result.smears
    np.testing.assert_array_equal(back.image, level1)
    np.testing.assert_array_equal(back.labels, cells.data)


def test_level_combo_only_for_a_multiscale_image_and_its_default_under_the_budget(make_napari_viewer, slide,
                                                                                  monkeypatch):
    from napari_reddino._widgets import levels
    from napari_reddino._widgets.embed import EmbedWidget
    from napari_reddino._widgets.pca import PCAWidget
    from napari_reddino._widgets.pipeline import PipelineWidget
    from napari_reddino._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(np.zeros((40, 50, 3), np.uint8), name="plain")
    docks = [SegmentWidget(viewer), PCAWidget(viewer), PipelineWidget(viewer), EmbedWidget(viewer)]
    for dock in docks:
        assert not shown(dock.level.combo) and dock.level.value == 0, type(dock).__name__
    monkeypatch.setattr(levels, "DOCK_PIXELS", 30_000)  # level 2 (150 x 175) is the finest under it
    viewer.open(str(slide), plugin="napari-ome-zarr")
    for dock in docks:  # choosing the slide shows its levels, the default chosen
        dock.image.value = next(c for c in dock.image.choices if getattr(c, "name", c) == "slide")
        assert shown(dock.level.combo) and dock.level.value == 2, type(dock).__name__
    docks[0].image.value = viewer.layers["plain"]
    assert not shown(docks[0].level.combo)


def test_the_builtin_readers_channel_first_layer_is_read_as_colour(make_napari_viewer, slide):
    from napari_reddino._widgets._common import image_layer_data
    from napari_reddino._widgets.levels import level_placement
    from napari_reddino.slides.read import open_slide

    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(slide), plugin="napari")
    assert layer.multiscale and layer.ndim == 3 and layer.data[0].shape == (3, 600, 700)  # gray, c slider
    np.testing.assert_array_equal(np.asarray(image_layer_data(layer, 2)), open_slide(slide, level=2).data)
    scale, translate = level_placement(layer, 1)
    assert scale == (2.0, 2.0) and translate == (0.5, 0.5)  # its level 0 is at 1 px per unit


def test_pca_overlay_of_a_level_lies_over_the_slide(make_napari_viewer, qtbot, slide, tiny_model_dir):
    from napari_reddino._widgets.pca import PCAWidget

    viewer = make_napari_viewer()
    channels = viewer.open(str(slide), plugin="napari-ome-zarr")
    widget = PCAWidget(viewer)
    widget.model_spec.value = f"local-dir:{tiny_model_dir}"
    widget.resolution.value = 1
    widget.upsample.value = True  # the overlay at the level's own pixels: its edges are the level's
    widget.level.combo.value = 2
    run_widget(qtbot, widget)
    overlay = viewer.layers["slide PCA"]
    assert overlay.data.shape[:2] == (150, 175)
    np.testing.assert_allclose(edges(overlay), edges(channels[0]))


def test_an_ome_zarr_without_colour_names_is_still_one_image(make_napari_viewer, slide, tmp_path):
    import json
    import shutil

    from napari_reddino._widgets._common import image_layer_choices, image_layer_data
    from napari_reddino.slides.read import open_slide

    plain = shutil.copytree(slide, tmp_path / "plain.zarr")
    attrs = json.loads((plain / ".zattrs").read_text())
    attrs.pop("omero")  # no channel colours: napari gives the three layers its own colormaps
    (plain / ".zattrs").write_text(json.dumps(attrs))
    viewer = make_napari_viewer()
    viewer.open(str(plain), plugin="napari-ome-zarr")
    ((name, image),) = image_layer_choices(viewer)
    assert name == "plain" and len(image.layers) == 3
    np.testing.assert_array_equal(np.asarray(image_layer_data(image, 3)), open_slide(plain, level=3).data)


def test_a_pyramidal_tiff_opens_as_one_multiscale_layer_the_docks_work_on(make_napari_viewer, qtbot, slide, tmp_path):
    import tifffile

    from napari_reddino._widgets.segment import SegmentWidget
    from napari_reddino.slides.napari_reader import get_reader
    from napari_reddino.slides.read import open_slide

    levels = [np.asarray(level) for level in open_slide(slide).levels[:3]]
    with tifffile.TiffWriter(tmp_path / "scan.ome.tif", ome=True) as tw:
        tw.write(levels[0], subifds=2, tile=(128, 128), photometric="rgb",
                 metadata={"PhysicalSizeX": 0.25, "PhysicalSizeY": 0.25})
        for level in levels[1:]:
            tw.write(level, subfiletype=1, tile=(128, 128), photometric="rgb")
    assert get_reader(str(tmp_path / "a.png")) is None
    viewer = make_napari_viewer()
    (layer,) = viewer.open(str(tmp_path / "scan.ome.tif"), plugin="napari-reddino")
    assert layer.name == "scan" and layer.multiscale and layer.rgb and len(layer.data) == 3
    np.testing.assert_allclose(layer.scale, (0.25, 0.25))
    widget = SegmentWidget(viewer)
    assert shown(widget.level.combo) and widget.level.value == 0
    widget.level.combo.value = 2
    widget.backend.value = "threshold"
    run_widget(qtbot, widget)
    cells = viewer.layers["scan cells"]
    assert cells.data.shape == levels[2].shape[:2]
    np.testing.assert_allclose(edges(cells), edges(layer))


def test_the_pipeline_dock_on_a_level_puts_its_layers_over_the_slide(make_napari_viewer, qtbot, slide):
    from napari_reddino._widgets.pipeline import PipelineWidget

    viewer = make_napari_viewer()
    channels = viewer.open(str(slide), plugin="napari-ome-zarr")
    widget = PipelineWidget(viewer)
    widget.model.value = "demo"
    widget.backend.value = "threshold"
    widget.do_umap.value = False
    widget.level.combo.value = 1
    run_widget(qtbot, widget)
    assert [la.name for la in viewer.layers[:3]] == [la.name for la in channels]  # no image layer added
    cells, pca = viewer.layers["slide cells"], viewer.layers["slide PCA"]
    assert cells.data.shape == (300, 350) and cells.metadata["source_level"] == 1
    np.testing.assert_allclose(edges(cells), edges(channels[0]))
    top_left = edges(pca)[0]
    np.testing.assert_allclose(top_left, edges(channels[0])[0])  # the overlay's grid starts at the slide's corner


def test_a_level_too_large_for_a_dock_is_refused_before_it_is_read(make_napari_viewer, qtbot, slide, monkeypatch):
    """Level 0 of a whole slide held in memory would get napari killed, the session lost: refused with a message."""
    from napari_reddino._widgets import _common, levels
    from napari_reddino._widgets.segment import SegmentWidget

    monkeypatch.setattr(levels, "MAX_DOCK_PIXELS", 200_000)  # level 0 (600 x 700) over it, level 1 under
    said = []
    monkeypatch.setattr(_common, "show_error", said.append)
    viewer = make_napari_viewer()
    viewer.open(str(slide), plugin="napari-ome-zarr")
    widget = SegmentWidget(viewer)
    widget.backend.value = "threshold"
    widget.level.combo.value = 0
    assert widget.level.combo.current_choice.endswith("too large for a dock: napari-reddino slide")
    assert "too large" not in dict((k, c) for c, k in levels.level_choices(widget.image.value))[1]
    widget.start()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert "slide cells" not in viewer.layers
    assert len(said) == 1 and "700 x 600 pixels" in said[0] and "napari-reddino slide" in said[0]
    widget.level.combo.value = 1
    run_widget(qtbot, widget)
    assert viewer.layers["slide cells"].data.shape == (300, 350)
