"""The "Segment cells" dock: labels layer with features, aligned, updated in place, cancel, notices."""

from __future__ import annotations

import numpy as np
import pytest

from napari_reddino.cells import TABLE_COLUMNS
from napari_reddino.segment.types import OBJECT_TYPES
from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui

# torch's first import of triton segfaults once napari has loaded Mesa's GL (both bundle LLVM), so the
# cellpose stack (torch, torchvision, triton) is imported before any viewer exists.
pytest.importorskip("cellpose.models")


def run_widget(qtbot, widget):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)


@pytest.fixture(scope="module")
def smear():
    return synthetic_smear(seed=2, shape=(240, 320))


def test_labels_layer_with_features_aligned_and_updated(make_napari_viewer, qtbot, smear, monkeypatch):
    import napari_reddino._widgets.segment as seg_widget

    notes = []
    monkeypatch.setattr(seg_widget, "show_info", notes.append)
    image, gt, classes = smear
    viewer = make_napari_viewer()
    viewer.add_image(image, name="smear", scale=(0.5, 0.5), translate=(10, 20))
    widget = seg_widget.SegmentWidget(viewer)
    assert widget.image.value is viewer.layers["smear"]
    assert not widget.flow_threshold.visible  # cellpose options only for cellpose
    run_widget(qtbot, widget)
    layer = viewer.layers["smear cells"]
    assert type(layer).__name__ == "Labels" and layer.data.shape == image.shape[:2]
    np.testing.assert_allclose(layer.scale, (0.5, 0.5))
    np.testing.assert_allclose(layer.translate, (10, 20))
    table = layer.features
    assert list(table.columns) == ["index"] + TABLE_COLUMNS + ["type", "border"]  # index: napari's hover row
    assert len(table) == layer.data.max() > 20 and set(table["type"]) <= set(OBJECT_TYPES)
    assert (table["type"] == "rbc").sum() >= 15 and table["border"].dtype == bool
    assert layer.metadata["source_image"] == "smear"
    d = layer.metadata["segmentation"]["estimated_diameter"]
    assert 25 < d < 50  # the synthetic red cells are 35-43 px across
    assert notes and "red cells" in notes[-1] and f"about {d:.0f} px" in widget.found.value
    assert widget.minimumSizeHint().width() < 450  # the summary wraps instead of widening the dock
    n_all = len(table)
    names = [la.name for la in viewer.layers]

    widget.drop_border.value = True
    run_widget(qtbot, widget)
    assert [la.name for la in viewer.layers] == names  # updated, not piled up
    layer = viewer.layers["smear cells"]
    edge = np.concatenate([layer.data[0], layer.data[-1], layer.data[:, 0], layer.data[:, -1]])
    assert edge.max() == 0 and 0 < len(layer.features) < n_all
    assert layer.data.max() == len(layer.features)  # relabelled 1..N, rows aligned


def test_empty_image_notifies_zero_cells(make_napari_viewer, qtbot, monkeypatch):
    import napari_reddino._widgets.segment as seg_widget

    notes = []
    monkeypatch.setattr(seg_widget, "show_info", notes.append)
    viewer = make_napari_viewer()
    viewer.add_image(np.full((80, 100, 3), 220, np.uint8), name="blank")
    widget = seg_widget.SegmentWidget(viewer)
    run_widget(qtbot, widget)
    assert viewer.layers["blank cells"].data.max() == 0 and len(viewer.layers["blank cells"].features) == 0
    assert "no cells" in notes[-1]


def test_cancel_adds_nothing(make_napari_viewer, qtbot, smear):
    from napari_reddino._widgets.segment import SegmentWidget

    viewer = make_napari_viewer()
    viewer.add_image(smear[0], name="smear")
    widget = SegmentWidget(viewer)
    worker = widget.start()
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert worker.abort_requested and "smear cells" not in viewer.layers


def test_bad_input_and_missing_weights_are_notified(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    import napari_reddino._widgets._common as common
    from napari_reddino._widgets.segment import SegmentWidget

    errors = []
    monkeypatch.setattr(common, "show_error", errors.append)
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    viewer = make_napari_viewer()
    widget = SegmentWidget(viewer)
    assert widget.start() is None  # no image layer
    viewer.add_image(np.zeros((3, 30, 30)), name="stack", rgb=False)
    widget.image.value = viewer.layers["stack"]
    assert widget.start() is None
    viewer.add_image(np.zeros((40, 40, 3), np.uint8), name="rgb", rgb=True)
    widget.image.value = viewer.layers["rgb"]
    widget.backend.value = "cellpose"
    assert widget.start() is None  # the weights are not there: a notice, no work, no layer
    assert len(errors) == 3 and "CELLPOSE_LOCAL_MODELS_PATH" in errors[-1]
    assert all("\n" not in e for e in errors) and "rgb cells" not in viewer.layers
