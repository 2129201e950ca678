"""The "Run the whole pipeline" dock: one click on the current image gives every step's layer, linked to
the annotation dock, and the main job's screenshot of the real window."""

import numpy as np
import pytest

from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def model_spec(tiny_model_dir):
    return f"local-dir:{tiny_model_dir}"


def test_one_click_runs_the_chain_and_feeds_the_annotation_dock(make_napari_viewer, qtbot, model_spec,
                                                                  tmp_path, monkeypatch):
    from napari_reddino._widgets.pipeline import PipelineWidget

    monkeypatch.setattr("napari_reddino.annotate.FALLBACK_FOLDER", tmp_path)  # never the user's home

    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=1, shape=(180, 240), n_white=0)
    viewer.add_image(image, name="smear", rgb=True, scale=(0.5, 0.5))
    w = PipelineWidget(viewer)
    assert w.image.value is viewer.layers["smear"]  # defaults to the current image
    w.model.value = model_spec
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    cells, pca = viewer.layers["smear cells"], viewer.layers["smear PCA"]
    assert cells.data.shape == image.shape[:2] and tuple(cells.scale) == (0.5, 0.5)
    red = cells.metadata["reddino"]
    assert red["embeddings"].shape == (len(cells.features), 48)
    assert list(red["labels"]) == list(cells.features["label"])
    fy, fx = pca.metadata["reddino_pca"]["factor"]  # enlarged so a red cell spans about 6 patches
    assert fy > 1.5 and pca.opacity == 0.5
    # the same record as the PCA dock's layer (_widgets/layers.put_pca_layer): the background was left out
    assert pca.metadata["reddino_pca"]["background"] == "black" and pca.metadata["reddino_pca"]["image"] == "smear"
    np.testing.assert_allclose(pca.scale, (0.5 * 14 / fy, 0.5 * 14 / fx))
    np.testing.assert_allclose(pca.translate, (0.5 * (14 / fy - 1) / 2, 0.5 * (14 / fx - 1) / 2))
    # the UMAP went to the annotation dock, one point per cell, and annotation works on it
    ann = next(d for d in viewer.window.dock_widgets.values() if hasattr(d, "show_embedding"))
    try:
        assert len(ann.canvas.points.data) == len(cells.features)
        # every cell came with the shipped classifier's prediction, which training builds on
        state = ann.state
        assert (state.prediction != "").all() and np.isfinite(state.confidence).all() and state.prior is not None
        assert "prediction" in cells.features.columns
        ann.canvas.select([0, 1])
        assert ann.assign(3) == 2
        assert (tmp_path / "reddino-annotations.csv").is_file()  # saved on the change
        cls = state.class_column()[0]
        pred, conf = ann.train()  # one annotated class is enough on top of the shipped predictions
        assert len(pred) == len(state.table) and (pred != "").all() and np.isfinite(conf).all()
        assert list(state.class_column()[:2]) == [cls, cls]
    finally:
        ann.close_canvas()
    # re-running updates the layers in place
    n_layers = len(viewer.layers)
    w.do_umap.value = False
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    assert len(viewer.layers) == n_layers


def test_no_image_gives_a_notification_not_a_run(make_napari_viewer, monkeypatch):
    from napari_reddino._widgets.pipeline import PipelineWidget

    seen = []
    monkeypatch.setattr("napari_reddino._widgets._common.show_error", seen.append)
    w = PipelineWidget(make_napari_viewer())
    assert w.start() is None and len(seen) == 1 and "Received no image layer" in seen[0]


def test_main_job_screenshot_shows_the_window(make_napari_viewer, tmp_path, model_spec):
    from napari_reddino.progress import run
    from napari_reddino._widgets.pipeline import add_result_layers
    from napari_reddino._widgets.window import save_screenshot
    from napari_reddino.pipeline import PipelineOptions, iter_pipeline

    image, _, _ = synthetic_smear(seed=2, shape=(160, 200), n_white=0)
    result = run(iter_pipeline([("s.png", image)], PipelineOptions(model=model_spec)))
    viewer = make_napari_viewer(show=True)
    dock = add_result_layers(viewer, result, project_folder=tmp_path)
    try:
        written = save_screenshot(viewer, dock, tmp_path / "screenshot.png")
    finally:
        dock.close_canvas()
    from PIL import Image

    shot = np.asarray(Image.open(written[0]))
    umap = np.asarray(Image.open(written[1]))
    assert shot.shape[0] > 500 and shot.shape[1] > 800  # the whole window, not just the canvas
    assert umap.std() > 0  # the UMAP canvas rendered something


def test_too_few_cells_for_a_umap_keeps_the_other_layers_and_says_why(make_napari_viewer, qtbot, model_spec,
                                                                       monkeypatch):
    """A smear where segmentation finds 3 red cells: the UMAP cannot be made, but the segmentation and the
    PCA overlay must stay, with one notification that says why in plain words (it failed the whole run)."""
    import napari_reddino._widgets._common as common
    import napari_reddino._widgets.pipeline as pipeline_dock
    from napari_reddino._widgets.pipeline import PipelineWidget

    said = []
    for module in (pipeline_dock, common):
        for name in ("show_info", "show_warning", "show_error"):
            if hasattr(module, name):
                monkeypatch.setattr(module, name, lambda msg, name=name: said.append((name, msg)))
    from napari.utils.notifications import notification_manager

    monkeypatch.setattr(notification_manager, "receive_error", lambda *a, **k: said.append(("error", str(a[1]))))
    viewer = make_napari_viewer()
    image, _, _ = synthetic_smear(seed=4, shape=(160, 200), n_cells=3, n_white=0, n_platelets=0,
                                  touching_fraction=0.0)
    viewer.add_image(image, name="few", rgb=True)
    w = PipelineWidget(viewer)
    w.model.value = model_spec
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    cells = viewer.layers["few cells"]
    assert (cells.features["type"] == "rbc").sum() == 3
    assert "few PCA" in viewer.layers
    assert not any(hasattr(d, "show_embedding") for d in viewer.window.dock_widgets.values())
    assert len(said) == 1, said
    kind, message = said[0]
    assert kind == "show_warning" and "\n" not in message
    assert message.startswith("3 red cells found: too few for a UMAP map (it needs at least 4)")
    assert "segmentation and the PCA overlay are kept" in message
    assert "Received" not in message and "accepted" not in message


def test_an_image_without_cells_keeps_the_other_layers_and_gets_no_overlay(make_napari_viewer, qtbot, model_spec,
                                                                          monkeypatch):
    """Noise (where the segmenter finds speckle "cells"): no PCA layer, one plain notice; the segmentation
    layer is made as before."""
    import napari_reddino._widgets.pipeline as pipeline_dock
    from napari_reddino._widgets.pipeline import PipelineWidget

    said = []
    for name in ("show_info", "show_warning"):
        monkeypatch.setattr(pipeline_dock, name, lambda msg, name=name: said.append((name, msg)))
    viewer = make_napari_viewer()
    noise = np.random.default_rng(0).integers(0, 256, (150, 200, 3), dtype=np.uint8)
    viewer.add_image(noise, name="noise", rgb=True)
    w = PipelineWidget(viewer)
    w.model.value = model_spec
    w.do_umap.value = False
    w.start()
    qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    assert "noise cells" in viewer.layers and "noise PCA" not in viewer.layers
    assert len(said) == 1 and said[0][0] == "show_warning", said
    assert said[0][1].startswith("no cells found in 'noise': no overlay made (")


def test_pipeline_result_is_readable_outlines_over_a_hidden_pca_and_updated_in_place(make_napari_viewer,
                                                                                       tmp_path, model_spec):
    """The pipeline stacked random-colour labels, the PCA overlay (on top, shown) and a classes layer: now
    the cells are outlines above the overlay, which is made hidden, white cells are ringed and named, and
    adding the result again updates every layer without a duplicate."""
    from napari_reddino import style
    from napari_reddino.progress import run
    from napari_reddino._widgets.pipeline import add_result_layers
    from napari_reddino.pipeline import PipelineOptions, iter_pipeline

    image, _, _ = synthetic_smear(seed=2, shape=(240, 320), n_white=2)
    result = run(iter_pipeline([("s", image)], PipelineOptions(model=model_spec)))
    viewer = make_napari_viewer()
    dock = add_result_layers(viewer, result, project_folder=tmp_path)
    try:
        names = [la.name for la in viewer.layers]
        cells, pca = viewer.layers["s cells"], viewer.layers["s PCA"]
        assert names.index("s PCA") < names.index("s cells")  # the overlay under the outlines
        assert not pca.visible and pca.opacity == style.PCA_OPACITY
        assert cells.contour == style.CONTOUR_WIDTH and viewer.layers.selection.active is cells
        assert "white cell" in set(viewer.layers["s cells objects"].text.values)
        assert "s cells legend" in viewer.layers and "s cells classes" not in viewer.layers
        dock.canvas.select([0, 1, 2])
        dock.assign("burr")
        names = [la.name for la in viewer.layers]  # with the selection's layer, made by the first selection
        pca.visible = True  # the user's choice survives a re-run
        dock.close_canvas()
        dock = add_result_layers(viewer, result, project_folder=tmp_path)
        assert [la.name for la in viewer.layers] == names and viewer.layers["s PCA"].visible
        assert "burr 3" in set(viewer.layers["s cells legend"].text.values)  # restored on the same cells
    finally:
        dock.close_canvas()
