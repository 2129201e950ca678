"""How cells are drawn (napari_reddino.style, no Qt): outline colour per cell, marks on the objects that are
not red cells, legend lines and counts shared with the UMAP canvas, napari's hover row."""

import numpy as np
import pandas as pd
from matplotlib.colors import to_rgb, to_rgba

from napari_reddino import style
from napari_reddino.annotate import default_classes


def test_outline_colour_is_the_class_then_the_faded_prediction_then_the_object_type():
    classes = {c.name: c.color for c in default_classes()}
    colors = style.outline_colors(
        labels=[1, 2, 3, 4, 5, 7],
        types=["rbc", "rbc", "rbc", "wbc", "artefact", "wbc"],
        annotated=["spherocyte", "", None, "", "", "target"],
        predicted=["normal", "target", "", "", "", ""],
        class_colors=classes)
    np.testing.assert_allclose(colors[1], to_rgba(classes["spherocyte"]))  # annotation wins over prediction
    np.testing.assert_allclose(colors[2][:3], to_rgb(classes["target"]))  # predicted: its class, faded
    assert colors[2][3] == style.PREDICTED_ALPHA < 1
    np.testing.assert_allclose(colors[3], to_rgba(style.UNANNOTATED_COLOR))
    np.testing.assert_allclose(colors[4], to_rgba(style.TYPE_COLORS["wbc"]))
    np.testing.assert_allclose(colors[5], to_rgba(style.TYPE_COLORS["artefact"]))
    np.testing.assert_allclose(colors[7], to_rgba(classes["target"]))  # an annotated white cell: its class
    assert set(colors) == {1, 2, 3, 4, 5, 7}


def test_type_and_selection_colours_are_far_from_every_class_colour_and_each_other():
    from skimage.color import deltaE_ciede2000, rgb2lab

    def lab(colors):
        return rgb2lab(np.array([[to_rgb(c) for c in colors]]))[0]

    classes = lab([c.color for c in default_classes()] + [style.UNANNOTATED_COLOR])
    marks = lab([*style.TYPE_COLORS.values(), style.SELECTION_COLOR])
    for m in marks:
        assert deltaE_ciede2000(np.repeat(m[None], len(classes), 0), classes).min() > 15
    for i in range(len(marks)):
        for j in range(i + 1, len(marks)):
            assert deltaE_ciede2000(marks[i], marks[j]) > 15


def test_marks_name_each_object_that_is_not_a_red_cell_around_its_centre():
    table = pd.DataFrame({"label": [1, 2, 3, 4], "centroid_y": [10.0, 20, 30, 40], "centroid_x": [1.0, 2, 3, 4],
                          "equivalent_diameter": [40.0, 50, 8, 3], "type": ["rbc", "wbc", "platelet", "artefact"]})
    marks = style.object_marks(table)
    assert marks["label"].tolist() == [2, 3, 4]
    assert marks["name"].tolist() == ["white cell", "platelet", "artefact"]
    assert marks["color"].tolist() == [style.TYPE_COLORS[t] for t in ("wbc", "platelet", "artefact")]
    assert marks[["y", "x"]].to_numpy().tolist() == [[20, 2], [30, 3], [40, 4]]
    assert (marks["size"].to_numpy() > table["equivalent_diameter"].to_numpy()[1:]).all()  # rings around
    assert len(style.object_marks(table[table["type"] == "rbc"])) == 0
    assert len(style.object_marks(table.drop(columns="type"))) == 0  # untyped labels: nothing to flag


def test_one_count_serves_both_legends():
    from napari_reddino._widgets.umap_canvas import UmapCanvas

    classes = default_classes()
    counts = style.class_counts(classes, ["normal", "normal", "", "", "burr"], ["", "", "burr", "", ""])
    by_name = {name: (a, p) for name, _, a, p in counts}
    assert by_name["normal"] == (2, 0) and by_name["burr"] == (1, 1) and by_name["unannotated"] == (2, 0)
    lines = style.legend_entries(counts, types=["rbc"] * 5 + ["wbc", "artefact", "artefact"])
    assert [t for t, _ in lines] == ["normal 2", "burr 1 + 1 predicted", "red cells not annotated 2",
                                     "white cell 1", "artefacts 2"]
    assert [c for _, c in lines][-2:] == [style.TYPE_COLORS["wbc"], style.TYPE_COLORS["artefact"]]
    # the UMAP canvas words its legend with the same count text
    text = []
    UmapCanvas.set_legend(type("L", (), {"legend": type("Q", (), {"setText": lambda self, t: text.append(t)})()})(),
                          counts)
    assert "burr&nbsp;1&nbsp;+&nbsp;1&nbsp;predicted" in text[0]


def test_hover_row_of_each_label_is_its_own():
    features = pd.DataFrame({"label": [1, 2, 5], "area": [10, 20, 50]})
    out = style.with_label_index(features)
    assert out.columns[0] == "index" and out["index"].tolist() == [1, 2, 5]
    assert out.drop(columns="index").equals(features)
    assert style.with_label_index(out).equals(out)  # idempotent


def test_objects_side_by_side_are_named_once_and_each_keeps_its_ring():
    """Two artefacts side by side wrote "artefact" twice, one over the other (the README's screenshot): a group of
    objects of one kind whose rings touch is named once; a different kind beside them, or one further away,
    keeps its own name."""
    table = pd.DataFrame({"label": [1, 2, 3, 4, 5], "centroid_y": [100.0, 108, 104, 400, 100],
                          "centroid_x": [100.0, 106, 300, 400, 112], "equivalent_diameter": [12.0] * 5,
                          "type": ["artefact", "artefact", "artefact", "artefact", "platelet"]})
    marks = style.object_marks(table)
    assert marks["caption"].tolist() == ["artefact", "", "artefact", "artefact", "platelet"]
    assert marks["name"].tolist() == ["artefact"] * 4 + ["platelet"]  # each object's own name stays (hover)
    assert len(marks) == 5  # every ring is drawn
