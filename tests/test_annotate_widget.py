"""The Embedding & annotation dock, driven programmatically under Xvfb: UMAP in a worker, linking both
ways, box / shift-click / lasso selection, assignment by button and key, undo, classifier, restart."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from napari_reddino.images import InputError

pytestmark = pytest.mark.gui

GRID = (3, 4)  # cells per image: 12 squares of 10 px
CELL = 10


def fabricated_labels(offset=0):
    labels = np.zeros((GRID[0] * 2 * CELL, GRID[1] * 2 * CELL), np.int32)
    lab = 1
    for r in range(GRID[0]):
        for c in range(GRID[1]):
            labels[2 * r * CELL + 2:2 * r * CELL + CELL + 2, 2 * c * CELL + 2:2 * c * CELL + CELL + 2] = lab
            lab += 1
    return labels


def add_embedded_smear(viewer, name, clusters, seed):
    """An image + Labels layer carrying metadata['reddino'] like the embed step writes (Gaussian clusters)."""
    from napari_reddino.cells import cell_table

    rng = np.random.default_rng(seed)
    labels = fabricated_labels()
    centres = np.random.default_rng(42).normal(size=(3, 32)) * 5
    emb = (centres[clusters] + rng.normal(size=(len(clusters), 32))).astype(np.float32)
    viewer.add_image(np.zeros(labels.shape + (3,), np.uint8), name=name)
    layer = viewer.add_labels(labels, name=f"{name} cells", features=cell_table(labels))
    layer.metadata["reddino"] = {"embeddings": emb, "labels": np.arange(1, 13), "model": "test", "image": name}
    return layer


CLUSTERS = {"s1": np.repeat([0, 1, 2], 4), "s2": np.tile([0, 1, 2], 4)}


@pytest.fixture
def dock(make_napari_viewer, qtbot, tmp_path):
    from napari_reddino._widgets.annotate import AnnotationWidget

    viewer = make_napari_viewer()
    for i, (name, cl) in enumerate(CLUSTERS.items()):
        add_embedded_smear(viewer, name, cl, seed=i)
    made = []

    def make(project=tmp_path / "proj"):
        w = AnnotationWidget(viewer)
        w.project.value = str(project)
        w.n_neighbors.value = 5
        made.append(w)
        worker = w.start()
        assert worker is not None
        qtbot.waitUntil(lambda: w.state is not None and w.worker is None, timeout=180_000)
        return w

    yield viewer, make
    for w in made:
        w.close_canvas()
        w.deleteLater()
    qtbot.wait(20)


def outline_colours(layer):
    """How many different colours the cells of a Labels layer are drawn in."""
    labels = [int(v) for v in np.unique(layer.data) if v > 0]
    return len({tuple(np.round(layer.colormap.map(v), 3)) for v in labels})


def truth(w):
    t = w.state.table
    return np.concatenate([CLUSTERS[i][t["label"].to_numpy()[t["image"] == i] - 1] for i in ("s1", "s2")])


def drag(canvas, path, modifiers=()):
    """Drive the canvas' mouse callback along ``path`` (world (row, col) points) like vispy would."""
    scale = 1000.0  # canvas pixels per world unit: any drag is longer than the click threshold
    ev = SimpleNamespace(type="mouse_press", button=1, modifiers=list(modifiers), position=tuple(path[0]),
                         pos=np.asarray(path[0]) * scale)
    gen = canvas._on_drag(canvas.model, ev)
    next(gen)
    for p in path[1:]:
        ev.type, ev.position, ev.pos = "mouse_move", tuple(p), np.asarray(p) * scale
        next(gen)
    ev.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)


def test_umap_points_layer_and_linking_both_ways(dock, qtbot):
    viewer, make = dock
    w = make()
    pts = w.canvas.points
    assert pts.name == "s1 cells + s2 cells UMAP" and len(pts.data) == 24
    assert list(pts.features.columns) == ["image", "label", "class", "prediction", "confidence"]
    assert set(pts.features["image"]) == {"s1", "s2"}
    rows = np.flatnonzero(pts.features["image"] == "s2")[:3]
    w.canvas.select(rows)
    qtbot.waitUntil(lambda: not w.state.link.pending)  # a smear's first selection layer: on the next turn
    lit = viewer.layers["s2 cells"].data[viewer.layers["s2 cells selection"].data > 0]
    assert set(np.unique(lit)) == set(pts.features["label"].to_numpy()[rows])
    assert "s1 cells selection" not in viewer.layers  # made only once one of its cells is selected
    # click on cell 7 of s1 on the smear selects its point
    cell7 = np.argwhere(viewer.layers["s1 cells"].data == 7).mean(0)
    ev = SimpleNamespace(type="mouse_press", pos=np.zeros(2), position=tuple(cell7), modifiers=[])
    gen = w.state._on_smear_drag(viewer, ev)
    next(gen)
    ev.type = "mouse_release"
    with pytest.raises(StopIteration):
        next(gen)
    [row] = list(pts.selected_data)
    assert (pts.features["image"][row], pts.features["label"][row]) == ("s1", 7)
    qtbot.waitUntil(lambda: not w.state.link.pending)
    lit = viewer.layers["s1 cells"].data[viewer.layers["s1 cells selection"].data > 0]
    assert set(np.unique(lit)) == {7}
    assert not viewer.layers["s2 cells selection"].data.any()
    # a hidden smear is outlined when it is shown again
    viewer.layers["s2 cells"].visible = False
    w.canvas.select(rows)
    assert not viewer.layers["s2 cells selection"].data.any()
    viewer.layers["s2 cells"].visible = True
    assert viewer.layers["s2 cells selection"].data.any()


def test_a_map_over_the_point_budget_selects_annotates_and_outlines_on_the_smear(dock, monkeypatch, qtbot):
    """Above the canvas' point budget (a million cells; 10 here) the map is a density image and the
    selection the canvas' own: a lasso still outlines its cells on the smear, a class still colours them."""
    import napari_reddino._widgets.umap_canvas as umap_canvas
    from napari_reddino._widgets.umap_canvas import points_in_polygon

    monkeypatch.setattr(umap_canvas, "POINT_BUDGET", 10)
    viewer, make = dock
    w = make()
    c = w.canvas
    assert c.big and c.density.visible and not c.points.visible and len(c.data) == len(c.features) == 24
    assert len(c.points.data) == 0  # napari's Points layer holds none of them (seconds to make for 10^6)
    s2 = np.flatnonzero(w.state.table["image"] == "s2")
    lo, hi = c.data[s2].min(0) - 0.01, c.data[s2].max(0) + 0.01
    box = np.array([lo, [lo[0], hi[1]], hi, [hi[0], lo[1]], lo])
    c.set_mode("lasso")
    drag(c, box)
    rows = w.state.selected_rows()
    assert np.array_equal(rows, points_in_polygon(c.data, box)) and set(s2) <= set(rows)
    qtbot.waitUntil(lambda: not w.state.link.pending, timeout=5000)  # a second smear: on the next turn
    for name in ("s1", "s2"):  # each smear outlines exactly its selected cells
        mine = rows[w.state.table["image"].to_numpy()[rows] == name]
        lit = viewer.layers[f"{name} cells"].data[viewer.layers[f"{name} cells selection"].data > 0] \
            if f"{name} cells selection" in viewer.layers else np.zeros(0)
        assert set(np.unique(lit)) == set(w.state.table["label"].to_numpy()[mine])
    before = c.density.data.copy()
    assert w.assign("target") == len(rows)
    assert (c.features["class"].to_numpy()[rows] == "target").all()
    assert not np.array_equal(c.density.data, before)  # the density image took the class' colour


def test_box_shift_click_lasso_and_points_do_not_move(dock):
    _, make = dock
    w = make()
    c, pts = w.canvas, w.canvas.points
    before = pts.data.copy()
    y = truth(w)
    inside = pts.data[y == 0]
    lo, hi = inside.min(0) - 0.01, inside.max(0) + 0.01
    drag(c, [lo, (lo + hi) / 2, hi])  # box
    box_sel = set(pts.selected_data)
    assert box_sel >= set(np.flatnonzero(y == 0)) and len(box_sel) < 24
    one = int(np.flatnonzero(y == 1)[0])
    drag(c, [pts.data[one], pts.data[one]], modifiers=["Shift"])  # shift-click adds
    assert set(pts.selected_data) == box_sel | {one}
    drag(c, [pts.data[one], pts.data[one]], modifiers=["Shift"])  # and removes
    assert set(pts.selected_data) == box_sel
    c.set_mode("lasso")
    centre = pts.data[y == 2].mean(0)
    r = np.linalg.norm(pts.data[y == 2] - centre, axis=1).max() + 0.01
    ring = [centre + r * np.array([np.sin(a), np.cos(a)]) for a in np.linspace(0, 2 * np.pi, 40)]
    drag(c, ring)
    lasso = set(pts.selected_data)
    assert lasso >= set(np.flatnonzero(y == 2)) and len(lasso) < 24
    np.testing.assert_array_equal(pts.data, before)
    pts.mode = "select"  # e.g. a napari shortcut: napari's select mode would drag points
    assert pts.mode == "pan_zoom" and c.mode == "lasso"


def test_assign_by_button_and_key_undo_and_restart(dock, tmp_path, qtbot):
    from app_model.types import KeyBinding

    viewer, make = dock
    w = make()
    y = truth(w)
    assert "nothing saved yet" in w.panel.status.text()  # no "saved to" before a file exists
    w.canvas.select(np.flatnonzero(y == 0))
    w.panel.class_list.setCurrentRow(3)  # spherocyte
    w.panel.assign_button.click()
    w.canvas.select(np.flatnonzero(y == 1)[:2])
    w.canvas.points.keymap[KeyBinding.from_str("5")](w.canvas.points)  # key 5 = 5th class: target
    f = w.canvas.points.features
    assert (f["class"][y == 0] == "spherocyte").all() and (f["class"] == "target").sum() == 2
    saved = pd.read_csv(tmp_path / "proj" / "reddino-annotations.csv")
    assert w.panel.status.text().endswith(f"saved to {tmp_path / 'proj' / 'reddino-annotations.csv'}")
    assert len(saved) == 10 and set(saved["class"]) == {"spherocyte", "target"}
    assert w.canvas.points.face_color[np.flatnonzero(y == 0)[0], 3] == 1.0
    assert outline_colours(viewer.layers["s1 cells"]) == 3  # unannotated + 2 classes on the smear's outlines
    w.undo()
    assert (w.canvas.points.features["class"] == "target").sum() == 0
    qtbot.waitUntil(lambda: not w.state.link.pending)  # the second smear is drawn on the next turn
    # a hidden smear gets its class colours when it is shown again
    viewer.layers["s2 cells"].visible = False
    s2_row = int(np.flatnonzero((w.state.table["image"] == "s2").to_numpy() & (y == 2))[0])
    w.canvas.select([s2_row])
    w.assign("burr")
    n_before = outline_colours(viewer.layers["s2 cells"])
    viewer.layers["s2 cells"].visible = True
    assert outline_colours(viewer.layers["s2 cells"]) == n_before + 1
    w.undo()
    assert len(pd.read_csv(tmp_path / "proj" / "reddino-annotations.csv")) == 8
    w.close_canvas()
    w2 = make()  # simulated restart: a new dock, same project folder
    f2 = w2.canvas.points.features
    assert (f2["class"][truth(w2) == 0] == "spherocyte").all() and (f2["class"] != "").sum() == 8


def test_classifier_next_to_annotate_report_and_export(dock, tmp_path, qtbot):
    _, make = dock
    w = make()
    y = truth(w)
    first = w.next_to_annotate(3)  # before any prediction: representative cells, one per cluster
    assert len(first) == 3 and len(set(y[first])) == 3 and set(w.canvas.points.selected_data) == set(first)
    for k, name in enumerate(["normal", "target", "burr"]):
        w.canvas.select(np.flatnonzero(y == k)[:2])
        w.assign(name)
    pred, conf = w.train("logreg")
    names = np.array(["normal", "target", "burr"])
    assert (pred == names[y]).mean() > 0.9 and np.isfinite(conf).all()
    rows = w.next_to_annotate(5)
    assert len(rows) == 5 and not set(rows) & set(np.flatnonzero(w.canvas.points.features["class"] != ""))
    assert set(w.canvas.points.selected_data) == set(rows)
    assert w.panel.report.rowCount() == len(w.state.report()) >= 2
    w.export_cells(tmp_path / "cells.csv")
    w.export_report(tmp_path / "report.csv")
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert len(cells) == 24 and {"centroid_x", "prediction", "confidence"} <= set(cells.columns)
    rep = pd.read_csv(tmp_path / "report.csv")
    assert rep.groupby("image")["count"].sum().tolist() == [12, 12]
    graded = pd.read_csv(tmp_path / "report_graded.csv").set_index("class")  # the slide report beside it
    f = w.canvas.points.features
    final = f["class"].where(f["class"] != "", f["prediction"])  # annotation, else prediction
    assert graded.loc["target", "red_cells"] == 24 and graded.loc["target", "count"] == (final == "target").sum()
    page = (tmp_path / "report_graded.html").read_text(encoding="utf-8")
    assert '<img alt="target"' in page and '<img class="umap"' in page
    w.export_report_in_background(tmp_path / "bg" / "r.csv")  # the button's way: the graded part in a worker
    assert (tmp_path / "bg" / "r.csv").is_file()
    qtbot.waitUntil(lambda: (tmp_path / "bg" / "r_graded.html").is_file(), timeout=60000)
    assert pd.read_csv(tmp_path / "bg" / "r_graded.csv").equals(pd.read_csv(tmp_path / "report_graded.csv"))
    (tmp_path / "a_file").write_text("x")  # a folder that cannot be written: one line, the old export stays
    for export in (w.export_cells, w.export_report):
        with pytest.raises(InputError, match="Could not write .* accepted: a file in a folder you can write to"):
            export(tmp_path / "a_file" / "out.csv")
    pred_knn, _ = w.train("knn")
    assert (pred_knn == names[y]).mean() > 0.9


def test_restart_after_renumbering_puts_annotations_on_the_same_cells(dock, tmp_path, monkeypatch):
    import napari_reddino._widgets.annotate as annotate_dock
    from napari_reddino.cells import cell_table

    viewer, make = dock
    w = make()
    s1 = (w.state.table["image"] == "s1").to_numpy()
    w.canvas.select(np.flatnonzero(s1 & (w.state.table["label"] == 1).to_numpy()))
    w.assign("burr")
    w.canvas.select(np.flatnonzero(s1 & (w.state.table["label"] == 12).to_numpy()))
    w.assign("target")
    w.close_canvas()
    layer = viewer.layers["s1 cells"]  # re-segmented: the same cells numbered the other way round
    layer.data = np.where(layer.data > 0, 13 - layer.data, 0).astype(np.int32)
    layer.metadata["reddino"]["labels"] = 13 - np.arange(1, 13)
    layer.features = cell_table(layer.data)
    notes = []
    monkeypatch.setattr(annotate_dock, "show_info", notes.append)
    w2 = make()
    assert w2.state.store.classes == {("s1", 12): "burr", ("s1", 1): "target"}
    assert any("2 matched to the equivalent cell after re-segmentation" in n for n in notes), notes


def test_another_smear_of_the_same_name_does_not_receive_the_annotations(dock, tmp_path, monkeypatch):
    """A different smear opened under the same name into the same project (or the home-folder file), its
    cells where the first one's were: the first smear's annotations stay in the file and are not shown."""
    import napari_reddino._widgets.annotate as annotate_dock
    from napari_reddino.cells import cell_table

    viewer, make = dock
    w = make()
    s1 = (w.state.table["image"] == "s1").to_numpy()
    w.canvas.select(np.flatnonzero(s1 & (w.state.table["label"] == 1).to_numpy()))
    w.assign("burr")
    w.close_canvas()
    viewer.layers["s1"].data = np.full(viewer.layers["s1"].data.shape, 200, np.uint8)  # another smear
    layer = viewer.layers["s1 cells"]  # its own segmentation: the cells lie where the first smear's were
    layer.data = np.where(layer.data > 0, 13 - layer.data, 0).astype(np.int32)
    layer.metadata["reddino"]["labels"] = 13 - np.arange(1, 13)
    layer.features = cell_table(layer.data)
    notes = []
    monkeypatch.setattr(annotate_dock, "show_info", notes.append)
    w2 = make()
    assert w2.state.store.classes == {}
    assert any("1 made on another image of the same name" in n for n in notes), notes
    w2.canvas.select(np.flatnonzero((w2.state.table["image"] == "s1").to_numpy())[:1])
    w2.assign("target")
    from napari_reddino.annotate import read_annotations

    saved = read_annotations(tmp_path / "proj" / "reddino-annotations.csv")
    assert sorted(saved["class"]) == ["burr", "target"]  # the first smear's work is kept beside the second's


def test_the_map_starts_from_the_cells_predictions_and_training_builds_on_them(dock):
    """Cells pre-classified by the features dock (the shipped classifier's columns in the layer's table) come
    onto the map as predictions, on one smear only as on both; they are what Train & predict builds on."""
    viewer, make = dock
    layer = viewer.layers["s1 cells"]
    guess = np.where(CLUSTERS["s1"] == 0, "normal", "target")
    layer.features = layer.features.assign(prediction=guess, confidence=np.linspace(0.5, 0.9, 12, dtype=np.float32))
    w = make()
    t = w.state.table
    s1 = (t["image"] == "s1").to_numpy()
    np.testing.assert_array_equal(w.state.prediction[s1], guess[t["label"].to_numpy()[s1] - 1])
    assert (w.state.prediction[~s1] == "").all() and np.isnan(w.state.confidence[~s1]).all()
    assert w.state.prior is not None and w.state.prior[0] is w.state.prediction
    predicted = {name: n for name, _, _, n in w.state.class_counts()}  # the legend counts them
    assert predicted["normal"] == 4 and predicted["target"] == 8


def test_a_smears_selection_is_drawn_over_it_not_over_the_smears_on_top(dock, qtbot):
    """Smears stacked in the layer list: the rings of cells selected on the lower smear sit just over that
    smear (under the next smear's image), not at the top of the list where they showed through every smear."""
    viewer, make = dock
    w = make()
    s1 = np.flatnonzero((w.state.table["image"] == "s1").to_numpy())[:3]
    w.canvas.select(s1)
    name = "s1 cells selection"
    qtbot.waitUntil(lambda: name in viewer.layers, timeout=10_000)
    names = [la.name for la in viewer.layers]
    assert names.index(name) == names.index("s1 cells") + 1 and names.index(name) < names.index("s2")


def _visible(canvas):
    """(row0, row1, col0, col1) of the canvas' view in world coordinates."""
    cam = canvas.camera
    h, w = canvas.model.canvas.size
    cr, cc = cam.center[-2:]
    return cr - h / (2 * cam.zoom), cr + h / (2 * cam.zoom), cc - w / (2 * cam.zoom), cc + w / (2 * cam.zoom)


def _all_in_view(canvas):
    r0, r1, c0, c1 = _visible(canvas)
    p = canvas.points.data
    return bool(np.all((p[:, 0] >= r0) & (p[:, 0] <= r1) & (p[:, 1] >= c0) & (p[:, 1] <= c1)))


def test_umap_canvas_frames_its_points_after_a_resize_until_the_user_zooms(qtbot):
    """The dock lays the canvas out after the points arrive (a short, wide strip on a laptop screen): the
    view must still frame every point, follow later resizes, stop following once the user zooms, and come
    back with Reset view."""
    from napari_reddino._widgets.umap_canvas import UmapCanvas

    canvas = UmapCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(700, 500)
    canvas.show()
    qtbot.wait(50)
    pts = np.random.default_rng(0).normal(size=(60, 2)) * [8, 2]  # tall cloud (rows)
    canvas.set_points("umap", pts, None, "white", 0.3)
    canvas.resize(700, 160)  # the dock squeezes it
    qtbot.waitUntil(lambda: canvas.model.canvas.size[0] < 200, timeout=5000)
    qtbot.waitUntil(lambda: _all_in_view(canvas), timeout=5000)
    canvas.camera.zoom *= 4  # the user zooms in
    assert not canvas.framed
    canvas.resize(700, 400)
    qtbot.wait(100)
    assert not _all_in_view(canvas)  # their zoom is kept
    canvas.reset_button.click()
    qtbot.waitUntil(lambda: _all_in_view(canvas), timeout=5000)
    assert canvas.framed
    canvas.close_canvas()


def test_selection_rings_are_a_colour_no_class_uses_and_napari_blue_is_not_drawn(qtbot):
    """The selected points were ringed in napari's highlight blue, next to the "normal" class' blue: now they
    are ringed in SELECTION_COLOR, far from every class colour, and napari's own highlight is not drawn."""
    from matplotlib.colors import to_rgb
    from skimage.color import deltaE_ciede2000, rgb2lab

    from napari_reddino._widgets.umap_canvas import SELECTION_COLOR, UmapCanvas
    from napari_reddino.annotate import UNLABELLED_COLOR, default_classes

    used = [c.color for c in default_classes()] + [UNLABELLED_COLOR]
    lab = rgb2lab(np.array([[to_rgb(c) for c in used]]))[0]
    ring = rgb2lab(np.array([[to_rgb(SELECTION_COLOR)]]))[0]
    napari_blue = rgb2lab(np.array([[[0.0, 0.6, 1.0]]]))[0]
    assert deltaE_ciede2000(napari_blue, lab[:1])[0] < 14  # what the user could not tell apart
    assert deltaE_ciede2000(np.repeat(ring, len(lab), 0), lab).min() > 15

    canvas = UmapCanvas()
    qtbot.addWidget(canvas)
    canvas.resize(500, 400)
    canvas.show()
    qtbot.wait(50)
    pts = np.stack(np.meshgrid(np.arange(6.0), np.arange(6.0)), -1).reshape(-1, 2)
    canvas.set_points("umap", pts, None, default_classes()[0].color, 0.5)  # all "normal"
    canvas.select(range(0, 36, 2))
    qtbot.wait(50)
    shot = canvas.qt_viewer.screenshot(flash=False)[..., :3].astype(int)

    def near(rgb, tol=40):
        return int((np.abs(shot - np.array(rgb)).max(-1) < tol).sum())

    assert near((0, 153, 255)) == 0  # no napari highlight blue
    assert near(np.round(np.array(to_rgb(SELECTION_COLOR)) * 255)) > 100  # the rings are drawn
    assert len(canvas.marks.data) == 18
    canvas.select([])
    assert len(canvas.marks.data) == 0
    canvas.close_canvas()


def test_legend_counts_cells_per_class_and_follows_annotations(dock):
    _, make = dock
    w = make()
    y = truth(w)
    assert "unannotated&nbsp;24" in w.canvas.legend.text()
    w.canvas.select(np.flatnonzero(y == 0))
    w.assign("spherocyte")
    w.canvas.select(np.flatnonzero(y == 1)[:2])
    w.assign("target")
    text = w.canvas.legend.text()
    assert "spherocyte&nbsp;8" in text and "target&nbsp;2" in text and "unannotated&nbsp;14" in text
    assert "normal" not in text  # classes without cells stay out of the legend
    assert w.panel.class_list.item(3).text().endswith("spherocyte  (8)")
    w.undo()
    assert "target" not in w.canvas.legend.text() and "unannotated&nbsp;16" in w.canvas.legend.text()
    assert w.panel.class_list.item(4).text().endswith("target")
    w.canvas.select(np.flatnonzero(y == 2)[:2])
    w.assign("burr")
    w.train("logreg")
    assert "predicted" in w.canvas.legend.text()


def test_opening_the_annotation_or_pipeline_dock_warms_the_umap_compile_in_the_background(
        make_napari_viewer, monkeypatch):
    """The first UMAP of a session sat at "0/1" while numba compiled (seconds; tens on a fresh install),
    with GUI stalls: opening either dock now compiles it in one background thread, once per session."""
    import threading

    import napari_reddino._widgets._common as common
    import napari_reddino.embedding as embedding
    from napari_reddino._widgets.annotate import AnnotationWidget
    from napari_reddino._widgets.pipeline import PipelineWidget

    ran = []
    real = embedding.warm_umap
    monkeypatch.setattr(embedding, "warm_umap", lambda: (ran.append(threading.current_thread()), real()))
    monkeypatch.setattr(common, "_warm_thread", None)
    monkeypatch.setenv("NAPARI_REDDINO_WARM_UMAP", "1")
    viewer = make_napari_viewer()
    AnnotationWidget(viewer)
    thread = common._warm_thread
    assert thread is not None and thread.daemon and thread is not threading.main_thread()
    PipelineWidget(viewer)
    assert common._warm_thread is thread  # once per session
    thread.join(timeout=300)
    assert not thread.is_alive() and ran == [thread]
    import umap.layouts

    assert umap.layouts._nb_optimize_layout_euclidean_single_epoch.signatures  # compiled off the GUI thread
    # turned off, nothing starts; a failing warm-up stays silent
    monkeypatch.setattr(common, "_warm_thread", None)
    monkeypatch.setenv("NAPARI_REDDINO_WARM_UMAP", "0")
    PipelineWidget(viewer)
    assert common._warm_thread is None
    monkeypatch.setenv("NAPARI_REDDINO_WARM_UMAP", "1")
    monkeypatch.setattr(embedding, "warm_umap", lambda: 1 / 0)
    common.start_warm_up().join(timeout=60)


def test_too_few_cells_for_a_umap_is_said_in_plain_words_before_any_work(make_napari_viewer, monkeypatch):
    import napari_reddino._widgets._common as common
    from napari_reddino._widgets.annotate import AnnotationWidget

    said = []
    monkeypatch.setattr(common, "show_error", said.append)
    viewer = make_napari_viewer()
    layer = add_embedded_smear(viewer, "few", CLUSTERS["s1"], seed=0)
    layer.metadata["reddino"]["embeddings"] = layer.metadata["reddino"]["embeddings"][:3]
    layer.metadata["reddino"]["labels"] = np.arange(1, 4)
    w = AnnotationWidget(viewer)
    assert w.start() is None and w.worker is None
    assert said == ["3 cells in few cells: too few for a UMAP map (it needs at least 4); choose more images or "
                    "segment a larger field"]
    w.close_canvas()


def test_smear_outlines_legend_and_hover_show_each_cells_class(dock):
    """The classes were a filled layer over random-colour labels and the PCA overlay: now each cell's
    outline takes its class colour (faded for a prediction), the legend beside the smear counts the
    classes, and hovering a cell shows its class with its measurements."""
    from matplotlib.colors import to_rgba

    from napari_reddino import style

    viewer, make = dock
    w = make()
    y = truth(w)
    t = w.state.table
    s1 = (t["image"] == "s1").to_numpy()
    rows = np.flatnonzero(s1 & (y == 0))
    w.canvas.select(rows)
    w.assign("spherocyte")
    cells = viewer.layers["s1 cells"]
    assert "s1 cells classes" not in viewer.layers  # no second, filled layer over the smear
    assert cells.contour == style.CONTOUR_WIDTH
    spherocyte = to_rgba(next(c.color for c in w.classes if c.name == "spherocyte"))
    for label in t["label"].to_numpy()[rows]:
        np.testing.assert_allclose(cells.colormap.map(int(label)), spherocyte, atol=1e-3)
        assert cells.features.set_index("label").loc[label, "class"] == "spherocyte"
    other = int(t["label"].to_numpy()[np.flatnonzero(s1 & (y == 1))[0]])
    np.testing.assert_allclose(cells.colormap.map(other), to_rgba(style.UNANNOTATED_COLOR), atol=1e-3)
    words = list(viewer.layers["s1 cells legend"].text.values)
    assert f"spherocyte {len(rows)}" in words and f"red cells not annotated {12 - len(rows)}" in words
    label = int(t["label"].to_numpy()[rows[0]])
    centre = tuple(np.argwhere(cells.data == label).mean(0))
    assert "class: spherocyte" in cells.get_status(centre, world=True)["coordinates"]
    # a prediction is the class colour, faded
    w.canvas.select(np.flatnonzero(s1 & (y == 1))[:2])
    w.assign("target")
    w.train("logreg")
    predicted = [i for i in np.flatnonzero(s1) if w.state.class_column()[i] == "" and w.state.prediction[i]]
    assert predicted
    colour = cells.colormap.map(int(t["label"].to_numpy()[predicted[0]]))
    assert colour[3] == pytest.approx(style.PREDICTED_ALPHA)


def test_a_resegmented_smear_is_not_drawn_or_clicked_with_the_old_session(dock):
    """After a re-segmentation (the same label numbers now name other cells) the session still open must
    neither colour the new cells with the old cells' classes nor select an old point from a click."""
    viewer, make = dock
    w = make()
    layer = viewer.layers["s1 cells"]
    before = layer.colormap.map(1)
    layer.data = np.where(layer.data > 0, 13 - layer.data, 0).astype(np.int32)  # renumbered
    s1 = (w.state.table["image"] == "s1").to_numpy()
    w.canvas.select(np.flatnonzero(s1 & (w.state.table["label"] == 1).to_numpy()))
    w.assign("burr")
    np.testing.assert_allclose(layer.colormap.map(1), before)  # old cell 1's class not on new cell 1
    np.testing.assert_allclose(layer.colormap.map(12), before)
    inside = tuple(np.argwhere(layer.data == 12).mean(0))
    viewer.layers["s2 cells"].visible = False  # (s2 lies at the same place)
    assert w.state.link.row_at(inside) is None


def on_main_thread(*_):
    import threading

    return threading.current_thread() is threading.main_thread()


def calls_of(monkeypatch, owner, name, record=on_main_thread, only=lambda kwargs: True):
    """Wrap ``owner.name`` so that each call (with keywords that ``only`` accepts) appends
    ``record(*args)`` to the returned list."""
    calls, original = [], getattr(owner, name)

    def wrapper(*args, **kwargs):
        if only(kwargs):
            calls.append(record(*args))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)
    return calls


def test_the_umap_session_measures_and_outlines_the_cells_off_the_gui_thread(dock, monkeypatch):
    """Matching saved annotations to the cells (centroids, fingerprint) and outlining them for the
    selection took seconds of the GUI thread on large smears when the map was shown; now in the worker."""
    from scipy import ndimage

    from napari_reddino import annotation_match

    _, make = dock
    cells = calls_of(monkeypatch, annotation_match.Cells, "__init__")
    outlines = calls_of(monkeypatch, ndimage, "grey_erosion", only=lambda kw: "size" in kw)  # not napari's
    w = make()
    w.canvas.select([0, 1, 13])  # on both smears: their outlines are lit
    assert cells == [False, False] and outlines == [False, False]


def test_train_button_learns_in_a_worker_then_shows_the_predictions(dock, qtbot, monkeypatch):
    """'Train & predict' fitted the classifier on the GUI thread (seconds on a few thousand cells)."""
    from napari_reddino._widgets import _common, annotation_state

    _, make = dock
    fits = calls_of(monkeypatch, annotation_state, "fit_on_top")
    said = []
    monkeypatch.setattr(_common, "show_error", said.append)
    w = make()
    w.panel.train_button.click()  # nothing annotated: one line, and the button works again
    qtbot.waitUntil(lambda: getattr(w, "trainer", None) is None and bool(said), timeout=60_000)
    assert len(said) == 1 and "at least 2" in said[0] and w.panel.train_button.isEnabled()
    w.canvas.select([0, 1, 2])
    w.assign(0)
    w.canvas.select([4, 5, 6])
    w.assign(1)
    w.panel.train_button.click()
    qtbot.waitUntil(lambda: getattr(w, "trainer", None) is None and (w.state.prediction != "").all(),
                    timeout=60_000)
    assert fits == [False, False] and len(said) == 1
    assert (w.canvas.points.features["prediction"] != "").all()


def test_assigning_a_class_redraws_only_the_smear_of_those_cells(dock, monkeypatch):
    """Each change of class redrew every smear of the session (about a second each for a large one)."""
    from napari.layers import Labels

    _, make = dock
    w = make()
    redraws = calls_of(monkeypatch, Labels, "_raw_to_displayed", lambda layer, *_: layer.name)
    rows = np.flatnonzero(w.canvas.points.features["image"] == "s2")[:3]
    w.canvas.select(rows)
    redraws.clear()
    w.assign(0)
    assert redraws == ["s2 cells"]
    redraws.clear()
    w.undo()
    assert redraws == ["s2 cells"]


def test_a_class_change_recolours_the_outlines_without_redrawing_them(dock, monkeypatch):
    """A change of class redrew the whole smear's outlines (napari recomputes them over the image and uploads
    it again on every colormap change: about a second a smear, for each assignment, undo and prediction).
    Now only the colour table changes, and the screen shows what napari's own redraw would."""
    from matplotlib.colors import to_rgba
    from napari.layers import Labels

    from napari_reddino._widgets.smear_link import cells_look

    viewer, make = dock
    for name in CLUSTERS:  # as the segmentation dock hands them over (napari draws uint16 labels fastest)
        viewer.layers[f"{name} cells"].data = viewer.layers[f"{name} cells"].data.astype(np.uint16)
    w = make()
    redraws = calls_of(monkeypatch, Labels, "_raw_to_displayed", lambda layer, *_: layer.name)
    s2 = np.flatnonzero(w.canvas.points.features["image"] == "s2")
    w.canvas.select(s2[:3])
    w.assign("spherocyte")
    w.canvas.select(s2[3:5])
    w.assign("target")
    w.undo()
    w.state.set_predictions(np.where(np.arange(len(w.state.table)) % 2, "burr", ""), w.state.confidence)
    assert redraws == []
    cells = viewer.layers["s2 cells"]
    rows = w.state.table.iloc[s2[:3]]
    spherocyte = to_rgba(next(c.color for c in w.classes if c.name == "spherocyte"))
    for label in rows["label"]:
        np.testing.assert_allclose(cells.colormap.map(int(label)), spherocyte, atol=1e-3)
    for layer in viewer.layers:  # the smear s2 alone on the screen (s1 lies at the same place)
        layer.visible = layer is cells
    viewer.window.show()  # (a hidden window's canvas draws nothing)
    viewer.reset_view()
    fast = viewer.screenshot(canvas_only=True, flash=False)
    cells.colormap = cells_look(cells.features, w.classes)["colormap"]  # napari's own redraw of the same look
    assert set(redraws) == {"s2 cells"}
    assert len(np.unique(fast.reshape(-1, fast.shape[-1]), axis=0)) >= 3  # background, plain and class outlines
    np.testing.assert_array_equal(fast, viewer.screenshot(canvas_only=True, flash=False))


def test_export_report_builds_the_cell_table_in_its_worker(dock, qtbot, tmp_path, monkeypatch):
    """*Export report…* built the cell table (a look-up in the store per cell) on the GUI thread twice, and the
    dock's report table was rebuilt from it after every change: now the per-image report counts the classes
    and predictions alone (the same figures), and the graded report's table is made in the worker."""
    from napari_reddino._widgets import annotation_state
    from napari_reddino.report import morphology_report

    _, make = dock
    w = make()
    w.canvas.select([0, 1, 2])
    w.assign("target")
    w.state.set_predictions(np.where(np.arange(len(w.state.table)) % 3, "burr", ""), w.state.confidence)
    tables = calls_of(monkeypatch, annotation_state, "export_cell_table")
    done = []
    worker = w.export_report_in_background(tmp_path / "r.csv")
    worker.finished.connect(lambda: done.append(True))
    qtbot.waitUntil(lambda: bool(done), timeout=60_000)
    assert tables == [False] and (tmp_path / "r_graded.html").is_file()
    pd.testing.assert_frame_equal(w.state.report(), morphology_report(w.state.cell_table()))
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "r.csv"), morphology_report(w.state.cell_table()),
                                  check_dtype=False)


def test_a_first_selection_on_several_smears_makes_their_layers_one_turn_at_a_time(dock, qtbot):
    """A lasso over a map of several smears made a full-size selection layer on each of them in one go (0.3-1 s
    a layer): the window froze for seconds; made at once for the first smear, it froze the lasso's release
    (0.6-0.9 s). Now the selection returns at once and the layers are made on the next turns of the event
    loop, one a turn, each made hidden and shown on the turn after (its first draw), each showing the
    selection it was made for."""
    viewer, make = dock
    w = make()
    link = w.state.link
    names = ("s1 cells selection", "s2 cells selection")
    before_turn = []  # (layers made, layers shown) as each turn starts
    draw_next = link._draw_next
    link._draw_next = lambda: (before_turn.append((sum(n in viewer.layers for n in names),
                                                   sum(n in viewer.layers and viewer.layers[n].visible
                                                       for n in names))), draw_next())
    rows = np.array([0, 1, 12, 13])  # cells of both smears
    w.canvas.select(rows)
    assert not any(n in viewer.layers for n in names) and len(link.pending) == 2
    qtbot.waitUntil(lambda: not link.pending)
    assert before_turn == [(0, 0), (1, 0), (1, 1), (2, 1)]
    assert all(viewer.layers[n].visible for n in names)
    pts = w.canvas.points.features
    for image in ("s1", "s2"):
        lit = viewer.layers[f"{image} cells"].data[viewer.layers[f"{image} cells selection"].data > 0]
        mine = rows[pts["image"].to_numpy()[rows] == image]
        assert set(np.unique(lit)) == set(pts["label"].to_numpy()[mine])


def test_a_class_change_updates_only_the_changed_cells_colours(dock):
    """Each assignment recoloured every cell of the smear (a new colormap of all its cells, validated by
    napari one colour at a time): now only the entries of the cells whose class changed are written."""
    viewer, make = dock
    for name in CLUSTERS:
        viewer.layers[f"{name} cells"].data = viewer.layers[f"{name} cells"].data.astype(np.uint16)
    w = make()
    cells = viewer.layers["s2 cells"]
    s2 = np.flatnonzero(w.canvas.points.features["image"] == "s2")
    w.canvas.select(s2[:3])
    w.assign("spherocyte")
    cmap = cells.colormap
    before = dict(cmap.color_dict)
    w.canvas.select(s2[3:5])
    w.assign("spherocyte")
    assert cells.colormap is cmap
    rewritten = {k for k, v in cmap.color_dict.items() if v is not before[k]}
    assert rewritten == set(w.state.table["label"].to_numpy()[s2[3:5]].tolist())


def test_the_dock_writes_annotations_off_the_gui_thread_and_closing_waits_for_the_write(dock, tmp_path,
                                                                                         monkeypatch):
    """A class for many cells wrote the annotation file on the GUI thread (seconds for 100,000 rows): the
    dock's writer thread writes it now; closing the dock waits until the file holds the last change."""
    import threading

    import napari_reddino.annotate as annotate

    viewer, make = dock
    w = make()
    threads, write = [], annotate.atomic_write_csv

    def recorded(df, path):
        threads.append(threading.current_thread())
        write(df, path)

    monkeypatch.setattr(annotate, "atomic_write_csv", recorded)
    w.canvas.select(np.arange(5))
    w.assign("target")
    w.canvas.select([7])
    w.assign("burr")
    w.close_canvas()  # waits for the writer
    assert threads and all(t is not threading.main_thread() for t in threads)
    saved = pd.read_csv(tmp_path / "proj" / "reddino-annotations.csv")
    assert sorted(saved["class"]) == ["burr"] + ["target"] * 5


def test_a_class_change_updates_the_rows_it_touched_not_every_rows_lookup(dock, monkeypatch):
    """Each refresh looked every row's class up in the store's dictionary (seconds for 10^6 cells): the rows
    are codes now, updated where a change touched them; counts and the report equal the ones computed from
    the full columns (an annotation of a class not in the list included)."""
    from napari_reddino.annotate import AnnotationStore
    from napari_reddino.report import morphology_report
    from napari_reddino.style import class_counts

    viewer, make = dock
    w = make()
    state = w.state
    pred = np.array(["normal", "burr", ""] * 8, dtype=object)
    state.set_predictions(pred, np.where(pred != "", 0.7, np.nan).astype(np.float32))

    def no_lookup(*_):
        raise AssertionError("every row looked up in the store")

    monkeypatch.setattr(AnnotationStore, "column", no_lookup)
    w.canvas.select([0, 1, 2])
    w.assign("target")
    w.canvas.select([1, 5])
    w.assign("my own class")  # not in the dock's list
    state.undo()
    state.undo()
    w.canvas.select([4])
    w.assign(None)
    monkeypatch.undo()
    expected = state.store.column(state.table)
    assert list(state.class_column()) == list(expected)
    assert list(state.points.features["class"]) == list(expected)
    assert state.class_counts() == class_counts(state.classes, expected, state.prediction)
    full = morphology_report(pd.DataFrame({"image": state.table["image"].astype(str).to_numpy(),
                                           "class": expected, "prediction": state.prediction}))
    pd.testing.assert_frame_equal(state.report(), full)
    w.canvas.select([1, 5])
    w.assign("my own class")
    expected = state.store.column(state.table)
    pd.testing.assert_frame_equal(state.report(), morphology_report(pd.DataFrame({
        "image": state.table["image"].astype(str).to_numpy(), "class": expected, "prediction": state.prediction})))
    assert state.class_counts() == class_counts(state.classes, expected, state.prediction)


def test_smears_beyond_a_turns_budget_are_recoloured_on_the_next_turns(dock, monkeypatch, qtbot):
    """A change over many smears (a prediction, a class for cells of every smear) recoloured all of them in one
    turn of the event loop, the window frozen meanwhile; now as many as a turn's budget allows, at least one,
    the rest on the next turns."""
    from napari_reddino._widgets import smear_link

    def cell_colours(layer):
        return {tuple(np.round(layer.colormap.map(int(v)), 3)) for v in np.unique(layer.data) if v > 0}

    viewer, make = dock
    w = make()
    monkeypatch.setattr(smear_link, "DRAW_BUDGET_S", 0.0)  # one smear a turn
    before = {i: cell_colours(viewer.layers[f"{i} cells"]) for i in ("s1", "s2")}
    w.canvas.select(np.arange(len(w.state.table)))  # cells of both smears
    qtbot.waitUntil(lambda: not w.state.link.pending)
    w.assign("target")
    now = {i: cell_colours(viewer.layers[f"{i} cells"]) for i in ("s1", "s2")}
    assert sorted(now[i] != before[i] for i in now) == [False, True] and w.state.link.pending
    qtbot.waitUntil(lambda: not w.state.link.pending)
    assert all(cell_colours(viewer.layers[f"{i} cells"]) != before[i] for i in ("s1", "s2"))
