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

    viewer = make_napari_viewer()
    viewer.add_image(rng.integers(0, 256, (70, 90, 3), dtype=np.uint8), name="smear", scale=(2, 2),
                     translate=(5, 0))
    widget = PCAWidget(viewer)
    widget.model_spec.value = tiny_spec
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

    viewer.add_image(rng.integers(0, 256, (60, 60), dtype=np.uint8), name="other")
    widget.image.value = viewer.layers["other"]
    widget.fit_mode.value = FIT_REUSE
    widget.upsample.value = False
    run_widget(qtbot, widget)
    assert viewer.layers["other PCA"].data.shape == (5, 5, 4)
    assert widget.last_fit[1] is not first_fit  # the second run fitted; the third reused it
    assert widget._job["fit"] is widget.last_fit[1]


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
