"""The "Extract RedDino features" dock in a real napari viewer, on a locally saved tiny model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.gui


@pytest.fixture(autouse=True)
def _empty_hub_cache(empty_hub_cache):
    return empty_hub_cache


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    from napari_reddino import models

    torch.manual_seed(0)
    vit = models.create_model("vit_small_patch14_dinov2", img_size=56, embed_dim=64, depth=1, num_heads=1)
    return models.save_local_dir(vit.eval(), tmp_path_factory.mktemp("m") / "model")


@pytest.fixture
def viewer_with_cells(make_napari_viewer):
    from napari_reddino.cells import cell_table
    from napari_reddino.sample_data import synthetic_smear

    viewer = make_napari_viewer()
    image, labels, _ = synthetic_smear(0, shape=(160, 200))
    viewer.add_image(image, name="other")
    viewer.add_labels(np.zeros((160, 200), np.int32), name="decoy")
    viewer.add_image(image, name="smear", rgb=True)
    features = cell_table(labels, image)
    features["class"] = "rbc"  # a column from an earlier step that must survive
    viewer.add_labels(labels, name="smear cells", features=features)
    return viewer, image, labels


def test_red_cells_only_by_default_every_object_keeps_its_row(viewer_with_cells, model_dir, qtbot, monkeypatch):
    """Hand-made labels without types are typed from the image; only red cells get features and the
    notification counts what was left out; the layer's table keeps a row for every object."""
    import napari_reddino._widgets.embed as dock
    from napari_reddino.segment.types import typed_table

    viewer, image, labels = viewer_with_cells
    told = []
    monkeypatch.setattr(dock, "show_info", told.append)
    widget = dock.EmbedWidget(viewer)
    widget.model_choice.value = dock.OTHER
    widget.model_path.value = f"local-dir:{model_dir}"
    run_and_wait(widget, qtbot)
    layer = viewer.layers["smear cells"]
    types = typed_table(image, labels)
    red = types.loc[types["type"] == "rbc", "label"].to_numpy()
    assert 0 < len(red) < len(types) and "wbc" in set(types["type"])
    np.testing.assert_array_equal(layer.metadata["reddino"]["labels"], red)
    assert len(layer.metadata["reddino"]["embeddings"]) == len(red)
    assert len(layer.features) == len(types) and list(layer.features["type"]) == list(types["type"])
    assert (layer.features["class"] == "rbc").all()  # the earlier column survives on every row
    assert any(f"{len(red)} cells" in m and "left out 1 white cell, 5 artefacts" in m for m in told)
    # every red cell pre-classified by the shipped classifier (as the pipeline does); other objects are not
    from napari_reddino.classifier import load_classifier

    is_red = layer.features["type"].to_numpy() == "rbc"
    known = set(load_classifier().classes)
    assert set(layer.features["prediction"][is_red]) <= known and layer.features["confidence"][is_red].between(0, 1).all()
    assert (layer.features["prediction"][~is_red] == "").all() and layer.features["confidence"][~is_red].isna().all()


def run_and_wait(widget, qtbot):
    worker = widget.start()
    assert worker is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60000)


def test_defaults_run_store_and_export(viewer_with_cells, model_dir, qtbot, tmp_path):
    from napari_reddino._widgets.embed import OTHER, EmbedWidget
    from napari_reddino.embed import embed_cells
    from napari_reddino.models import load_model
    from napari_reddino.segment.types import OBJECT_TYPES

    viewer, image, labels = viewer_with_cells
    widget = EmbedWidget(viewer)
    assert widget.image.value == "smear" and widget.labels.value == "smear cells"
    widget.model_choice.value = OTHER
    widget.model_path.value = f"local-dir:{model_dir}"
    widget.precision.value = "fp32"
    widget.batch_size.value = 5
    widget.cell_types.value = OBJECT_TYPES  # every object (the default, red cells only, is tested below)
    n_layers = len(viewer.layers)
    run_and_wait(widget, qtbot)

    layer = viewer.layers["smear cells"]
    stored = layer.metadata["reddino"]
    ids = np.unique(labels[labels > 0])
    assert stored["model"] == f"local-dir:{model_dir}" and stored["image"] == "smear"
    np.testing.assert_array_equal(stored["labels"], ids)
    _, expected = embed_cells(image, labels, load_model(f"local-dir:{model_dir}"), precision="fp32")
    np.testing.assert_allclose(stored["embeddings"], expected, atol=1e-6)
    assert len(layer.features) == len(ids) and (layer.features["class"] == "rbc").all()

    run_and_wait(widget, qtbot)  # re-running updates in place
    assert len(viewer.layers) == n_layers and len(layer.features) == len(ids)

    widget.export_path.value = tmp_path / "cells.parquet"
    path = widget.export()
    frame = pd.read_parquet(path)
    assert len(frame) == len(ids) and frame["image"].eq("smear").all()
    np.testing.assert_allclose(frame[[f"emb_{i}" for i in range(64)]].to_numpy(), expected, atol=1e-6)


def test_bad_inputs_and_offline_download_notify(viewer_with_cells, qtbot, monkeypatch):
    import napari_reddino._widgets._common as common
    import napari_reddino._widgets.embed as embed_widget

    errors = []
    monkeypatch.setattr(common, "show_error", errors.append)
    monkeypatch.setattr(embed_widget, "show_error", errors.append)
    viewer, *_ = viewer_with_cells
    widget = embed_widget.EmbedWidget(viewer)
    widget.labels.value = "decoy"
    viewer.layers["decoy"].data = np.zeros((10, 10), np.int32)
    assert widget.start() is None and "height and width" in errors[-1]

    widget.labels.value = "smear cells"
    assert widget.export() is None and "press Run first" in errors[-1]

    widget.model_choice.value = "hf-hub:Snarcy/RedDino-small"
    shown = {spec: text for text, spec in widget._model_choices()}
    assert shown["hf-hub:Snarcy/RedDino-small"].endswith("(not downloaded)")
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "1")
    worker = widget.download()
    qtbot.waitUntil(lambda: widget._downloader is None, timeout=20000)
    assert worker is not None and "offline" in errors[-1]
    assert widget.download_button.enabled


def test_the_dock_runs_the_model_on_the_gpu_when_there_is_one(viewer_with_cells, model_dir, qtbot, monkeypatch):
    """The features dock asks for device auto (cuda, mps or cpu, whichever is there), as the PCA dock and
    the pipeline do: on a GPU machine the cells are described on the GPU."""
    import napari_reddino._widgets.embed as dock
    from napari_reddino import models

    real, asked = models.load_model, []
    monkeypatch.setattr(models, "load_model", lambda spec, device="cpu", **k: asked.append(device) or real(
        spec, device="cpu", **k))
    viewer, _, _ = viewer_with_cells
    widget = dock.EmbedWidget(viewer)
    widget.model_choice.value = dock.OTHER
    widget.model_path.value = f"local-dir:{model_dir}"
    run_and_wait(widget, qtbot)
    assert asked == ["auto"] and viewer.layers["smear cells"].metadata.get("reddino")


def test_the_smear_shows_the_predictions_once_the_features_are_made(viewer_with_cells, model_dir, qtbot):
    """A smear drawn by the segment dock: after the features (and the shipped classifier's predictions) its red
    cells' outlines take their predicted class's faded colour, as after the pipeline."""
    import napari_reddino._widgets.embed as dock
    from napari_reddino._widgets.smear_link import draw_cells, outline_colours
    from napari_reddino.annotate import default_classes

    viewer, _, _ = viewer_with_cells
    layer = viewer.layers["smear cells"]
    draw_cells(viewer, layer)  # as the segment dock leaves it
    widget = dock.EmbedWidget(viewer)
    widget.model_choice.value = dock.OTHER
    widget.model_path.value = f"local-dir:{model_dir}"
    run_and_wait(widget, qtbot)
    features = layer.features
    red = features.loc[features["prediction"].fillna("") != "", "label"].to_numpy()
    assert len(red)
    want = outline_colours(features, default_classes())
    got = np.array([layer.colormap.map(np.array([lbl]))[0] for lbl in red])
    np.testing.assert_allclose(got, np.array([want[lbl] for lbl in red]), atol=1e-3)
