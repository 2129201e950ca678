"""The "PCA overlay" dock: layer out, aligned, re-run updates it, fits reused, bad input notified."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def tiny_spec(tmp_path_factory, tiny_vit):
    from napari_reddino.models import save_local_dir

    folder = save_local_dir(tiny_vit, tmp_path_factory.mktemp("models") / "tiny")
    return f"local-dir:{folder}"


def run_widget(qtbot, widget):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)  # set back by the finished handler


def test_overlay_layer_is_added_aligned_and_updated(make_napari_viewer, qtbot, tiny_spec, rng):
    from napari_reddino._widgets.pca import FIT_REUSE, PCAWidget

    from napari_reddino.sample_data import synthetic_smear

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_smear(seed=0, shape=(70, 90), n_cells=3)[0], name="smear", scale=(2, 2),
                     translate=(5, 0))
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    widget.resolution.value = 1  # the model's own scale (auto: the next test)
    assert widget.image.value is viewer.layers["smear"]
    run_widget(qtbot, widget)
    layer = viewer.layers["smear PCA"]
    assert layer.rgb and layer.data.shape == (5, 7, 3) and layer.opacity == 0.5
    np.testing.assert_allclose(layer.scale, (28, 28))
    np.testing.assert_allclose(layer.translate, (5 + 2 * 6.5, 2 * 6.5))  # patch centres over the image
    first_fit = widget.last_fit[1]

    widget.background.value = "transparent"
    widget.upsample.value = True
    run_widget(qtbot, widget)
    assert len(viewer.layers) == 2  # updated, not piled up
    layer = viewer.layers["smear PCA"]
    assert layer.data.shape == (70, 90, 4)
    np.testing.assert_allclose(layer.scale, (2, 2))
    np.testing.assert_allclose(layer.translate, (5, 0))

    viewer.add_image(synthetic_smear(seed=1, shape=(60, 60), n_cells=2)[0].mean(-1).astype(np.uint8), name="other")
    widget.image.value = viewer.layers["other"]
    widget.fit_mode.value = FIT_REUSE
    widget.upsample.value = False
    run_widget(qtbot, widget)
    assert viewer.layers["other PCA"].data.shape == (5, 5, 4)
    assert widget.last_fit[1] is not first_fit  # the second run fitted; the third reused it
    assert widget._job["fit"] is widget.last_fit[1]


def test_auto_resolution_follows_the_cells_layer_and_stays_aligned(make_napari_viewer, qtbot, tiny_spec):
    """Default auto: the image is enlarged so a red cell of the diameter the segmentation measured spans 6
    patches (84 px); the layer's scale and translate put each patch back over the image pixels it saw."""
    from napari_reddino._widgets.pca import PCAWidget
    from napari_reddino.sample_data import synthetic_smear

    viewer = make_napari_viewer()
    image, labels, _ = synthetic_smear(seed=0, shape=(80, 100), n_cells=4)
    viewer.add_image(image, name="smear", scale=(2, 2), translate=(5, 0))
    viewer.add_labels(labels, name="smear cells", metadata={"segmentation": {"estimated_diameter": 28.0}})
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    assert widget.resolution.value == 0  # auto
    run_widget(qtbot, widget)
    layer = viewer.layers["smear PCA"]
    assert layer.metadata["reddino_pca"]["factor"] == (3.0, 3.0)  # 84 / 28
    assert layer.data.shape[:2] == (-(-240 // 14), -(-300 // 14))
    np.testing.assert_allclose(layer.scale, (2 * 14 / 3, 2 * 14 / 3))
    np.testing.assert_allclose(layer.translate, (5 + 2 * (14 / 3 - 1) / 2, 2 * (14 / 3 - 1) / 2))
    viewer.layers.remove("smear cells")  # without a segmentation the diameter is measured from the image
    run_widget(qtbot, widget)
    assert 84 / 48 <= layer.metadata["reddino_pca"]["factor"][0] <= 84 / 26


def test_an_image_without_cells_gets_a_notice_and_no_layer(make_napari_viewer, qtbot, tiny_spec, rng,
                                                            monkeypatch):
    import napari_reddino._widgets.pca as pca_dock
    from napari_reddino._widgets.pca import PCAWidget

    said = []
    for name in ("show_info", "show_warning"):
        monkeypatch.setattr(pca_dock, name, lambda msg, name=name: said.append((name, msg)))
    viewer = make_napari_viewer()
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    for name, image in (("slide", np.clip(rng.normal((225, 215, 220), 3, (90, 120, 3)), 0, 255)),
                        ("noise", rng.integers(0, 256, (90, 120, 3))), ("flat", np.full((90, 120, 3), 128))):
        viewer.add_image(image.astype(np.uint8), name=name)
        widget.image.value = viewer.layers[name]
        run_widget(qtbot, widget)
        assert f"{name} PCA" not in viewer.layers
        assert said[-1][0] == "show_warning" and said[-1][1].startswith(f"no cells found in {name!r}: no overlay made")
    assert len(said) == 3


def test_bad_input_is_notified_not_run(make_napari_viewer, tiny_spec, monkeypatch):
    import napari_reddino._widgets._common as common
    from napari_reddino._widgets.pca import PCAWidget

    errors = []
    monkeypatch.setattr(common, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    assert widget.start() is None  # no image layer
    viewer.add_image(np.zeros((4, 30, 30)), name="stack")
    widget.image.value = viewer.layers["stack"]
    assert widget.start() is None
    assert len(errors) == 2 and all("accepted" in e and "\n" not in e for e in errors)
    assert len(viewer.layers) == 1


def test_the_dock_runs_the_model_on_the_gpu_when_there_is_one(make_napari_viewer, qtbot, tiny_spec, monkeypatch):
    """The PCA dock loaded its model without a device (the CPU, on a GPU machine too): it asks for auto."""
    from napari_reddino import models
    from napari_reddino._widgets.pca import PCAWidget
    from napari_reddino.sample_data import synthetic_smear

    real, asked = models.load_model, []
    monkeypatch.setattr(models, "load_model", lambda spec, device="cpu", **k: asked.append(device) or real(
        spec, device="cpu", **k))
    viewer = make_napari_viewer()
    viewer.add_image(synthetic_smear(seed=0, shape=(70, 90), n_cells=3)[0], name="smear")
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    widget.resolution.value = 1
    run_widget(qtbot, widget)
    assert asked == ["auto"] and "smear PCA" in viewer.layers


def test_a_new_overlay_is_made_hidden_and_shown_a_turn_of_the_event_loop_later(make_napari_viewer, qtbot,
                                                                              tiny_spec):
    """Making a napari layer and its first draw (its texture sent to the screen) are each a few tenths of a
    second of the GUI thread on a loaded host: a new overlay's display takes two slices; a re-run keeps the
    overlay's visibility as the user left it."""
    from napari_reddino._widgets.pca import PCAWidget
    from napari_reddino.sample_data import synthetic_smear

    from napari_reddino import progress

    viewer = make_napari_viewer()
    viewer.add_image(synthetic_smear(seed=0, shape=(70, 90), n_cells=3)[0], name="smear")
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
    widget.resolution.value = 1
    widget.prepare()
    result = progress.run(widget.work())  # the worker's part, here on the test's thread
    shown = widget.show(result)
    next(shown)
    assert not viewer.layers["smear PCA"].visible  # made, not drawn yet
    with pytest.raises(StopIteration):
        next(shown)
    assert viewer.layers["smear PCA"].visible
    viewer.layers["smear PCA"].visible = False  # the user hides it: a re-run leaves it hidden
    run_widget(qtbot, widget)
    assert not viewer.layers["smear PCA"].visible
