"""Annotation store (save on every change, undo, restore), classifier, next-to-annotate, report."""

import numpy as np
import pandas as pd
import pytest

from napari_reddino.annotate import (
    AnnotationStore,
    annotation_path,
    default_classes,
    read_annotations,
)
from napari_reddino.classify import fit_predict, next_to_annotate, train_classifier
from napari_reddino.images import InputError
from napari_reddino.report import export_cell_table, morphology_report


def test_default_classes_are_chula_in_id_order():
    names = [c.name for c in default_classes()]
    assert names[:4] == ["normal", "macrocyte", "microcyte", "spherocyte"]
    assert names[10:] == ["uncategorised", "hypochromia", "elliptocyte"] and len(names) == 13
    assert len({c.color for c in default_classes()}) == 13


def test_store_saves_every_change_and_restores(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    assert store.assign([("a", 1), ("a", 2), ("b", 1)], "normal") == 3
    assert set(read_annotations(tmp_path / "ann.csv")["label"]) == {1, 2}
    store.assign([("a", 2)], "target")
    assert store.assign([("a", 2)], "target") == 0  # no change, no undo step
    reopened = AnnotationStore(tmp_path / "ann.csv")
    assert reopened.load(["a"]) == 3
    assert reopened.class_of("a", 2) == "target" and reopened.class_of("b", 1) == "normal"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary files


def test_undo_reverts_last_assignment_on_disk(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    store.assign([("a", 1)], "normal")
    store.assign([("a", 1), ("a", 2)], "burr")
    assert sorted(store.undo()) == [("a", 1), ("a", 2)]
    assert store.class_of("a", 1) == "normal" and store.class_of("a", 2) is None
    assert read_annotations(tmp_path / "ann.csv").values.tolist() == [["a", 1, "normal"]]
    store.undo()
    assert len(store) == 0 and not store.can_undo and store.undo() == []
    store.assign([("a", 1)], "normal")
    store.assign([("a", 1)], None)  # clearing is undoable too
    store.undo()
    assert store.class_of("a", 1) == "normal"


def test_files_beside_each_image_keep_other_images_rows(tmp_path):
    paths = {"s1": tmp_path / "one" / "s1.jpg", "s2": tmp_path / "two" / "s2.jpg"}
    store = AnnotationStore(lambda image: annotation_path(paths[image]))
    store.assign([("s1", 5), ("s2", 6)], "microcyte")
    assert (tmp_path / "one" / "s1.reddino-annotations.csv").is_file()
    assert read_annotations(tmp_path / "two" / "s2.reddino-annotations.csv")["label"].tolist() == [6]
    assert annotation_path(paths["s1"], tmp_path / "proj") == tmp_path / "proj" / "reddino-annotations.csv"
    with pytest.raises(InputError, match="project folder"):
        annotation_path(None, None)


def test_unwritable_folder_falls_back_says_so_and_keeps_the_work(tmp_path):
    blocker = tmp_path / "data.txt"
    blocker.write_text("a file, so no folder can be made under it (chmod does not stop root)")
    notes = []
    store = AnnotationStore(lambda image: annotation_path(None, blocker / "proj"), tmp_path / "home", notes.append)
    assert store.assign([("a", 1)], "normal") == 1
    kept = tmp_path / "home" / "proj-reddino-annotations.csv"
    assert read_annotations(kept).values.tolist() == [["a", 1, "normal"]]
    assert len(notes) == 1 and "\n" not in notes[0]
    assert str(blocker / "proj") in notes[0] and "not writable" in notes[0] and str(kept) in notes[0]
    assert store.path_of("a") == kept and store.save() == [kept]
    reopened = AnnotationStore(lambda image: annotation_path(None, blocker / "proj"), tmp_path / "home")
    assert reopened.load(["a"]) == 1 and reopened.class_of("a", 1) == "normal"  # found again next session


def test_nowhere_writable_is_one_line_and_keeps_the_annotation(tmp_path, monkeypatch):
    import napari_reddino.annotate as annotate

    def refuse(df, path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(annotate, "atomic_write_csv", refuse)
    store = AnnotationStore(tmp_path / "ann.csv", tmp_path / "home")
    with pytest.raises(InputError, match="not writable|is writable") as err:
        store.assign([("a", 1)], "normal")
    assert "\n" not in str(err.value) and store.class_of("a", 1) == "normal"


def test_read_annotations_refuses_wrong_columns(tmp_path):
    pd.DataFrame({"img": ["a"], "label": [1]}).to_csv(tmp_path / "x.csv", index=False)
    with pytest.raises(InputError, match="image, label, class"):
        read_annotations(tmp_path / "x.csv")


def blobs(seed=0):
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0, 0, 0], [6, 0, 0, 0], [0, 6, 0, 0]], float)
    y = np.repeat(np.array(["normal", "target", "burr"]), 40)
    X = centres[np.repeat(np.arange(3), 40)] + rng.normal(size=(120, 4))
    return X, y


@pytest.mark.parametrize("kind", ["logreg", "knn"])
def test_classifier_learns_from_few_annotations(kind):
    X, truth = blobs()
    y = np.full(len(X), "", dtype=object)
    few = np.r_[0:5, 40:45, 80:85]
    y[few] = truth[few]
    pred, conf = fit_predict(X, y, kind=kind, k=5)
    assert (pred == truth).mean() > 0.9
    assert conf.shape == (120,) and conf.min() > 0 and conf.max() <= 1


def test_classifier_needs_two_classes():
    X, _ = blobs()
    y = np.full(len(X), "", dtype=object)
    y[:5] = "normal"
    with pytest.raises(InputError, match="at least 2 classes"):
        train_classifier(X, y)
    with pytest.raises(InputError, match="accepted: logreg, knn"):
        train_classifier(X, y, kind="svm")


def test_next_to_annotate_picks_least_confident_unannotated():
    conf = np.array([0.9, 0.2, 0.5, 0.1, 0.3])
    y = np.array(["", "", "", "normal", ""], dtype=object)
    assert next_to_annotate(conf, y, k=2).tolist() == [1, 4]
    X, truth = blobs()
    y = np.full(len(X), "", dtype=object)
    y[[0, 40, 80]] = truth[[0, 40, 80]]
    _, conf = fit_predict(X, y)
    picked = next_to_annotate(conf, y, k=10)
    others = np.setdiff1d(np.flatnonzero(y == ""), picked)
    assert conf[picked].max() <= conf[others].min()


def test_morphology_report_counts_and_percent():
    table = pd.DataFrame({
        "image": ["a", "a", "a", "a", "b"], "label": [1, 2, 3, 4, 1],
        "class": ["normal", "", "burr", "", ""], "prediction": ["normal", "normal", "normal", "", "burr"],
        "confidence": [0.9, 0.8, 0.7, np.nan, 0.6]})
    rep = morphology_report(table)
    a = rep[rep.image == "a"].set_index("class")
    assert a.loc["normal", "count"] == 2 and a.loc["burr", "count"] == 1
    assert a["percent"].sum() == pytest.approx(100) and a.loc["normal", "percent"] == pytest.approx(200 / 3)
    full = morphology_report(table, source="class", classes=[c.name for c in default_classes()])
    assert len(full) == 26 and full[full.image == "b"]["count"].sum() == 0
    out = export_cell_table(table)
    assert list(out.columns) == ["image", "label", "centroid_x", "centroid_y", "class", "prediction",
                                 "confidence"]
    assert out["centroid_x"].isna().all()
