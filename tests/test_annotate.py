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
    assert reopened.load(["a"]) == 3 and reopened.restored["kept"] == 3  # no cells given: nothing to check
    assert reopened.class_of("a", 2) == "target" and reopened.class_of("b", 1) == "normal"
    assert not list(tmp_path.glob(".*tmp"))  # atomic write leaves no temporary files


def test_undo_reverts_last_assignment_on_disk(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    store.assign([("a", 1)], "normal")
    store.assign([("a", 1), ("a", 2)], "burr")
    assert sorted(store.undo()) == [("a", 1), ("a", 2)]
    assert store.class_of("a", 1) == "normal" and store.class_of("a", 2) is None
    assert read_annotations(tmp_path / "ann.csv").iloc[:, :3].values.tolist() == [["a", 1, "normal"]]
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
    assert read_annotations(kept).iloc[:, :3].values.tolist() == [["a", 1, "normal"]]
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
                                 "confidence", "verified", "verified_by", "verified_at"]
    assert out["centroid_x"].isna().all()


def grid_cells(n=4, size=10, gap=4):
    """n x n square cells numbered row by row; the outer ring touches the image border."""
    side = n * size + (n - 1) * gap
    labels = np.zeros((side, side), np.int32)
    for i in range(n):
        for j in range(n):
            r, c = i * (size + gap), j * (size + gap)
            labels[r:r + size, c:c + size] = i * n + j + 1
    return labels


def drop_border(labels):
    """What 'drop cells touching the border' does: remove them and renumber the rest 1..N."""
    edge = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    kept = np.setdiff1d(np.unique(labels), np.append(edge, 0))
    lut = np.zeros(labels.max() + 1, np.int32)
    lut[kept] = np.arange(1, len(kept) + 1)
    return lut[labels]


def test_annotations_follow_their_cells_through_a_renumbering(tmp_path):
    before = grid_cells()
    store = AnnotationStore(tmp_path / "ann.csv")
    store.set_cells("a", before)
    every = [("a", lbl) for lbl in range(1, 17)]
    store.assign(every, "normal")
    store.assign([("a", 6), ("a", 1)], "target")  # 6: inner, 1: on the border
    after = drop_border(before)  # inner cells 6, 7, 10, 11 become 1, 2, 3, 4
    reopened = AnnotationStore(tmp_path / "ann.csv")
    reopened.set_cells("a", after)
    assert reopened.load(["a"]) == 4
    assert reopened.restored == {"same": 0, "matched": 4, "by_label": 0, "unmatched": 12, "other_image": 0}
    assert reopened.class_of("a", 1) == "target"  # old cell 6, not old cell 1
    assert [reopened.class_of("a", lbl) for lbl in (2, 3, 4)] == ["normal"] * 3
    reopened.assign([("a", 2)], "burr")
    saved = read_annotations(tmp_path / "ann.csv")
    assert len(saved) == 16  # the 12 unmatched are kept in the file, not deleted
    same = AnnotationStore(tmp_path / "ann.csv")
    same.set_cells("a", after)
    assert same.load(["a"]) == 4 and same.restored["same"] == 4 and same.class_of("a", 2) == "burr"


def test_another_image_of_the_same_name_never_receives_its_annotations(tmp_path):
    """Two smears both called '1' (two folders opened into one project, or the shared home-folder file):
    the second one's cells lie where the first one's were, but they are other cells."""
    rng = np.random.default_rng(0)
    smear_a, smear_b = rng.integers(0, 255, (2, 70, 70, 3), dtype=np.uint8)
    before = grid_cells()
    store = AnnotationStore(tmp_path / "ann.csv")
    store.set_cells("1", before, pixels=smear_a)
    store.assign([("1", lbl) for lbl in range(1, 17)], "target")
    other = AnnotationStore(tmp_path / "ann.csv")
    other.set_cells("1", drop_border(before), pixels=smear_b)  # positions match, pixels do not
    assert other.load(["1"]) == 0 and len(other) == 0
    assert other.restored["other_image"] == 16 and other.restored["matched"] == 0
    other.assign([("1", 1)], "burr")  # work on the second smear is saved beside the first one's, not over it
    saved = read_annotations(tmp_path / "ann.csv")
    assert len(saved) == 17 and (saved["class"] == "target").sum() == 16
    back = AnnotationStore(tmp_path / "ann.csv")  # the first smear, reopened as it was
    back.set_cells("1", before, pixels=smear_a.copy())
    assert back.load(["1"]) == 16 and back.restored["same"] == 16 and back.restored["other_image"] == 1


def test_files_without_image_hashes_still_load(tmp_path):
    before = grid_cells()
    store = AnnotationStore(tmp_path / "ann.csv")
    store.set_cells("a", before)
    store.assign([("a", 5)], "burr")
    frame = pd.read_csv(tmp_path / "ann.csv").drop(columns=["image_hash"])  # a file from before the column
    frame.to_csv(tmp_path / "ann.csv", index=False)
    reopened = AnnotationStore(tmp_path / "ann.csv")
    reopened.set_cells("a", before, pixels=np.zeros((70, 70, 3), np.uint8))
    assert reopened.load(["a"]) == 1 and reopened.class_of("a", 5) == "burr"


def test_two_cells_merged_into_one_are_unmatched_not_guessed(tmp_path):
    before = grid_cells(n=2, size=12)
    store = AnnotationStore(tmp_path / "ann.csv")
    store.set_cells("a", before)
    store.assign([("a", 1)], "normal")
    store.assign([("a", 2)], "burr")
    merged = np.where(before == 2, 1, before)
    merged[0:12, 12:16] = 1  # one cell now covers both: neither old centroid is near its centre
    reopened = AnnotationStore(tmp_path / "ann.csv")
    reopened.set_cells("a", merged)
    assert reopened.load(["a"]) == 0 and reopened.restored["unmatched"] == 2 and len(reopened) == 0
    reopened.assign([("a", 1)], "spherocyte")  # annotated anew on the merged cell
    again = AnnotationStore(tmp_path / "ann.csv")
    again.set_cells("a", merged)
    assert again.load(["a"]) == 1 and again.class_of("a", 1) == "spherocyte" and again.restored["unmatched"] == 2


def test_old_files_without_centroids_load_by_label_only_when_the_cells_fit(tmp_path):
    pd.DataFrame({"image": ["a", "a"], "label": [3, 16], "class": ["normal", "burr"]}).to_csv(
        tmp_path / "old.csv", index=False)
    store = AnnotationStore(tmp_path / "old.csv")
    store.set_cells("a", grid_cells())
    assert store.load(["a"]) == 2 and store.restored["by_label"] == 2 and store.class_of("a", 16) == "burr"
    fewer = AnnotationStore(tmp_path / "old.csv")
    fewer.set_cells("a", drop_border(grid_cells()))  # 4 cells: label 16 cannot be the same segmentation
    assert fewer.load(["a"]) == 0 and fewer.restored["unmatched"] == 2 and fewer.class_of("a", 3) is None


def test_two_annotations_claiming_one_cell_never_displace_one_made_on_it(tmp_path):
    before = np.zeros((20, 20), np.int32)
    before[4:10, 4:10], before[10:16, 10:16] = 1, 2  # two small cells, both near the centre of...
    after = np.zeros_like(before)
    after[3:17, 3:17] = 1  # ...one big cell after re-segmentation
    store = AnnotationStore(tmp_path / "ann.csv")
    store.set_cells("a", before)
    store.assign([("a", 1), ("a", 2)], "normal")
    reopened = AnnotationStore(tmp_path / "ann.csv")
    reopened.set_cells("a", after)
    assert reopened.load(["a"]) == 0 and reopened.restored["unmatched"] == 2  # ambiguous: reported, not moved
    reopened.assign([("a", 1)], "burr")
    again = AnnotationStore(tmp_path / "ann.csv")
    again.set_cells("a", after)
    assert again.load(["a"]) == 1 and again.class_of("a", 1) == "burr" and again.restored["unmatched"] == 2


def test_two_windows_on_one_project_keep_each_others_work(tmp_path):
    """Two napari windows on one project: 200 assignments made, 100 on disk, no warning. Each save now
    takes the file's rows and applies only its own changes, and the second writer is told."""
    cells = grid_cells()
    told = {"one": [], "two": []}
    one, two = (AnnotationStore(tmp_path / "ann.csv", notify=told[k].append) for k in ("one", "two"))
    for store in (one, two):
        store.set_cells("a", cells)
        store.load(["a"])
    for lbl in range(1, 9):  # interleaved, as two people clicking at once
        one.assign([("a", lbl)], "normal")
        two.assign([("a", lbl + 8)], "target")
    saved = read_annotations(tmp_path / "ann.csv")
    assert dict(zip(saved["label"], saved["class"])) == {**{k: "normal" for k in range(1, 9)},
                                                          **{k: "target" for k in range(9, 17)}}
    assert len(told["two"]) == 1 and "Another window or script" in told["two"][0]  # once, not per click
    two.assign([("a", 1)], "burr")  # a cell both touched: the later change wins
    one.assign([("a", 2)], None)  # a removal is a change too
    saved = read_annotations(tmp_path / "ann.csv")
    got = dict(zip(saved["label"], saved["class"]))
    assert got[1] == "burr" and 2 not in got and len(got) == 15
    assert one.class_of("a", 9) == "target"  # the other window's work is in this store too


def test_a_script_writing_the_file_is_merged_not_overwritten(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    store.assign([("a", 1)], "normal")
    script = read_annotations(tmp_path / "ann.csv")
    script.loc[len(script)] = ["b", 7, "burr", np.nan, np.nan, "", False, "", "", ""]  # another program appends a row
    script.to_csv(tmp_path / "ann.csv", index=False)
    store.assign([("a", 2)], "target")
    saved = read_annotations(tmp_path / "ann.csv")
    assert sorted(zip(saved["image"], saved["label"])) == [("a", 1), ("a", 2), ("b", 7)]


def test_a_background_store_writes_off_the_callers_thread_and_flush_waits_for_it(tmp_path, monkeypatch):
    """The dock's store (``background=True``): ``assign`` returns while the file is being written by a thread
    of its own (a class for 100,000 cells wrote 100,000 rows on the GUI thread: seconds); the writer is not a
    daemon (Python's exit waits for it) and ``flush`` returns once the file holds every change."""
    import threading

    import napari_reddino.annotate as annotate

    release, started, threads = threading.Event(), threading.Event(), []
    write = annotate.atomic_write_csv

    def slow(df, path):
        threads.append(threading.current_thread())
        started.set()
        release.wait(10)
        write(df, path)

    monkeypatch.setattr(annotate, "atomic_write_csv", slow)
    store = AnnotationStore(tmp_path / "ann.csv", background=True)
    assert store.assign([("a", 1), ("a", 2)], "normal") == 2  # returned: the write waits for `release`
    store.assign([("a", 3)], "burr")
    assert not (tmp_path / "ann.csv").exists() and store.is_pending(tmp_path / "ann.csv")
    assert started.wait(10)
    assert threads and threads[0] is not threading.main_thread() and not threads[0].daemon
    release.set()
    store.flush()
    saved = read_annotations(tmp_path / "ann.csv").set_index("label")["class"].to_dict()
    assert saved == {1: "normal", 2: "normal", 3: "burr"} and not store.is_pending(tmp_path / "ann.csv")
    assert len(threads) <= 2  # the second change's copy replaced the first's while it waited, or followed it


def test_a_write_interrupted_midway_leaves_the_previous_file_and_the_annotation_is_kept(tmp_path, monkeypatch):
    """A write that dies halfway (a crash, a full disk) leaves the last complete file; the change stays in the
    store and goes to disk with the next save; the user is told."""
    import napari_reddino.annotate as annotate
    from napari_reddino.atomic import atomic_path

    notes = []
    store = AnnotationStore(tmp_path / "ann.csv", background=True, notify=notes.append)
    store.assign([("a", 1)], "normal")
    store.flush()
    before = (tmp_path / "ann.csv").read_bytes()

    def dies_midway(df, path):
        with atomic_path(path) as tmp:
            df.iloc[:1].to_csv(tmp, index=False)
            raise OSError("disk full")

    monkeypatch.setattr(annotate, "atomic_write_csv", dies_midway)
    monkeypatch.setattr(annotate.AnnotationStore, "_fallback", lambda self, path: tmp_path / "ro" / "x" / path.name)
    (tmp_path / "ro").write_text("not a folder")  # the fallback cannot be written either
    store.assign([("a", 2)], "burr")
    store.flush()
    assert (tmp_path / "ann.csv").read_bytes() == before and notes  # the old complete file; said
    monkeypatch.undo()
    store.assign([("a", 3)], "target")
    store.flush()
    saved = read_annotations(tmp_path / "ann.csv").set_index("label")["class"].to_dict()
    assert saved == {1: "normal", 2: "burr", 3: "target"}
