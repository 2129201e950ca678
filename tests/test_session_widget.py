"""Save session… / Open session… in the docks: the pipeline's layers and the annotation state saved from one
napari and put back in a new one — same layers, labels, features, overlay, map, classes on the same cells —
with segmentation, the model, UMAP and the classifier made to raise; annotating goes on in the same file."""

import json

import numpy as np
import pandas as pd
import pytest

from napari_reddino.sample_data import synthetic_smear

pytestmark = pytest.mark.gui


def forbid_recomputing(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed on reopen")

    for target in ("napari_reddino.segment.iter_segment_cells", "napari_reddino.models.load_model",
                   "napari_reddino.embed.iter_embed_cells", "napari_reddino.patch_features.iter_patch_features",
                   "napari_reddino.embedding.umap_embed", "napari_reddino.embedding.iter_umap_embed",
                   "napari_reddino._widgets.annotation_state.fit_on_top", "napari_reddino.pipeline.classify_smear"):
        monkeypatch.setattr(target, refuse)


def annotation_dock(viewer):
    from napari_reddino._widgets.session import annotation_dock

    return annotation_dock(viewer)


def wait_for(qtbot, buttons):
    qtbot.waitUntil(lambda: buttons.worker is None, timeout=60_000)


def test_save_then_open_in_a_new_viewer_puts_everything_back_without_recomputing(
        make_napari_viewer, qtbot, tiny_model_dir, tmp_path, monkeypatch):
    import imageio.v3 as iio

    from napari_reddino._widgets.pipeline import PipelineWidget

    monkeypatch.setattr("napari_reddino.annotate.FALLBACK_FOLDER", tmp_path / "home")  # never the user's home
    image, _, _ = synthetic_smear(seed=1, shape=(180, 240), n_white=1)
    iio.imwrite(tmp_path / "smear.png", image)
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "smear.png"), plugin="napari")  # from a file: the session refers to it
    viewer.layers["smear"].scale = (0.5, 0.5)
    made = viewer.add_image(image[::2, ::2].copy(), name="made here")  # a layer not on disk: saved in the session
    w = PipelineWidget(viewer)
    w.model.value = f"local-dir:{tiny_model_dir}"
    for layer in (viewer.layers["smear"], made):
        w.image.value = layer
        w.start()
        qtbot.waitUntil(lambda: w.worker is None, timeout=180_000)
    ann = annotation_dock(viewer)
    ann.reset_choices_to(["smear cells", "made here cells"])  # one map of both smears
    ann.start()
    qtbot.waitUntil(lambda: ann.worker is None and ann.state is not None, timeout=180_000)
    table = ann.state.table
    ann.canvas.select(np.arange(0, 6))
    ann.assign("spherocyte")
    ann.canvas.select(np.flatnonzero(table["image"] == "made here")[:4])
    ann.assign("target")
    ann.train("knn")
    _, gallery = viewer.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
    confirmed = int(np.flatnonzero((table["image"] == "made here").to_numpy() & (ann.state.class_column() == ""))[0])
    ann.canvas.select([confirmed])
    gallery.verify()  # a prediction confirmed: a row with its class, verified
    verified, order = ann.state.verified_column().copy(), gallery.model.rows.copy()
    assert verified.sum() == 11
    before = {name: viewer.layers[name] for name in ("smear", "smear cells", "smear PCA", "made here",
                                                     "made here cells", "made here PCA")}
    classes = dict(zip(zip(table["image"], table["label"]), ann.state.class_column()))
    points, prediction = ann.canvas.points.data.copy(), ann.state.prediction.copy()
    annotation_file = ann.state.store.path_of("smear")
    assert annotation_file == tmp_path / "home" / "reddino-annotations.csv"  # "made here" has no file
    saved_rows = pd.read_csv(annotation_file)

    folder = tmp_path / "session"
    wait_for(qtbot, w.session_buttons) if w.session_buttons.save(folder) else pytest.fail("save refused")
    assert (folder / "session.json").is_file() and (folder / "made here_image.tif").is_file()
    assert not (folder / "smear_image.tif").exists()  # on disk already: referred to by its path
    manifest = json.loads((folder / "session.json").read_text())
    assert manifest["annotations"]["annotated"] == {"smear": 6, "made here": 5}
    ann.close_canvas()

    forbid_recomputing(monkeypatch)
    viewer2 = make_napari_viewer()
    w2 = PipelineWidget(viewer2)
    w2.session_buttons.open(folder)
    wait_for(qtbot, w2.session_buttons)
    ann2 = annotation_dock(viewer2)
    try:
        for name, old in before.items():
            new = viewer2.layers[name]
            np.testing.assert_array_equal(np.asarray(new.data), np.asarray(old.data))
            assert tuple(new.scale) == tuple(old.scale) and tuple(new.translate) == tuple(old.translate)
        for name in ("smear cells", "made here cells"):
            old, new = before[name], viewer2.layers[name]
            np.testing.assert_array_equal(new.metadata["reddino"]["embeddings"], old.metadata["reddino"]["embeddings"])
            np.testing.assert_array_equal(new.metadata["reddino"]["labels"], old.metadata["reddino"]["labels"])
            pd.testing.assert_frame_equal(new.features, old.features, check_dtype=False)  # with class, prediction
            assert new.metadata["segmentation"] == old.metadata["segmentation"]
        np.testing.assert_array_equal(ann2.canvas.points.data, points)  # the same map
        t2 = ann2.state.table
        assert dict(zip(zip(t2["image"], t2["label"]), ann2.state.class_column())) == classes  # same cells
        np.testing.assert_array_equal(ann2.state.prediction, prediction)  # the classifier's, not retrained
        assert sum(ann2.state.store.restored.values()) == (saved_rows["class"] != "").sum()
        _, gallery2 = viewer2.window.add_plugin_dock_widget("napari-reddino", "5. Verification gallery")
        np.testing.assert_array_equal(ann2.state.verified_column(), verified)  # the same gallery comes back
        np.testing.assert_array_equal(gallery2.model.rows, order)

        # annotating after the reopen goes on in the same file, and nothing earlier moves
        ann2.canvas.select([int(np.flatnonzero(ann2.state.class_column() == "")[0])])
        ann2.assign("burr")
        rows = pd.read_csv(annotation_file)
        assert len(rows) == len(saved_rows) + 1 and (rows["class"] == "burr").sum() == 1
        pd.testing.assert_frame_equal(rows[rows["class"] != "burr"].reset_index(drop=True), saved_rows)
        assert {p.name for p in (tmp_path / "home").iterdir()} == {"reddino-annotations.csv"}

        # opened again into the same viewer: refused in one line, nothing added or replaced
        seen = []
        monkeypatch.setattr("napari_reddino._widgets.session.show_error", seen.append)
        qtbot.waitUntil(lambda: not ann2.state.link.pending)  # the selected cell's smear outline: a later turn
        n_layers = len(viewer2.layers)
        w2.session_buttons.open(folder)
        wait_for(qtbot, w2.session_buttons)
        assert len(seen) == 1 and "already has layers named 'smear'" in seen[0] and len(viewer2.layers) == n_layers
    finally:
        ann2.close_canvas()


def test_a_bad_folder_is_one_notification_and_nothing_is_loaded(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    from napari_reddino._widgets.annotate import AnnotationWidget

    seen = []
    monkeypatch.setattr("napari_reddino._widgets.session.show_error", seen.append)
    viewer = make_napari_viewer()
    dock = AnnotationWidget(viewer)
    (tmp_path / "not a session").mkdir()
    (tmp_path / "not a session" / "smear_labels.tif").write_bytes(b"")
    dock.session_buttons.open(tmp_path / "not a session")
    wait_for(qtbot, dock.session_buttons)
    assert len(seen) == 1 and "holds no session.json" in seen[0] and "\n" not in seen[0]
    assert len(viewer.layers) == 0
    dock.session_buttons.save(tmp_path / "out")  # nothing made yet: nothing to save, said once
    assert len(seen) == 2 and "no cells or PCA overlay" in seen[1] and not (tmp_path / "out").exists()


def test_view_opens_a_run_output_folder_in_napari(make_napari_viewer, tiny_model_dir, tmp_path, monkeypatch):
    import napari
    from PIL import Image

    from napari_reddino.cli import main

    out = tmp_path / "out"
    assert main(["run", "--sample", "synthetic", "--out", str(out), "--model", f"local-dir:{tiny_model_dir}"]) == 0
    forbid_recomputing(monkeypatch)
    monkeypatch.setattr(napari, "Viewer", make_napari_viewer)  # the fixture's viewer: cleaned up after the test
    assert main(["view", str(out), "--screenshot", str(tmp_path / "shot.png")]) == 0
    shot = np.asarray(Image.open(tmp_path / "shot.png"))
    umap = np.asarray(Image.open(tmp_path / "shot_umap.png"))
    assert shot.shape[0] > 500 and shot.std() > 10  # the window with the smear, not a blank grab
    assert (umap.max(axis=-1) > 100).sum() > 50  # the map's points were drawn


def test_a_map_made_before_a_resegmentation_is_not_saved_as_if_current(make_napari_viewer, qtbot, tmp_path,
                                                                         monkeypatch):
    from test_annotate_widget import CLUSTERS, add_embedded_smear

    from napari_reddino._widgets.annotate import AnnotationWidget

    seen = []
    monkeypatch.setattr("napari_reddino._widgets.session.show_error", seen.append)
    viewer = make_napari_viewer()
    layer = add_embedded_smear(viewer, "s1", CLUSTERS["s1"], seed=0)
    layer.metadata["source_image"] = "s1"
    dock = AnnotationWidget(viewer)
    dock.project.value = str(tmp_path / "proj")
    dock.n_neighbors.value = 5
    dock.start()
    qtbot.waitUntil(lambda: dock.worker is None and dock.state is not None, timeout=180_000)
    try:
        layer.data = np.roll(np.asarray(layer.data), 3, axis=1)  # segmented again: the numbers mean other cells
        assert dock.session_buttons.save(tmp_path / "session") is None
        assert len(seen) == 1 and "segmented again" in seen[0] and not (tmp_path / "session").exists()
    finally:
        dock.close_canvas()
