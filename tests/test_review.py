"""Verification: the gallery's groups and order, the queue of uncertain cells, and the ``verified`` record in
the annotation file (who, when; merged like the classes; old files load as unverified)."""

import numpy as np
import pandas as pd

from napari_reddino import review
from napari_reddino.annotate import FILE_COLUMNS, AnnotationStore, read_annotations
from napari_reddino.report import export_cell_table

NAN = np.nan


def test_groups_follow_the_class_list_least_confident_first_unclassified_last():
    annotated = ["", "target", "", "", "", "normal"]
    prediction = ["normal", "normal", "target", "", "zebra", "target"]
    confidence = [0.9, 0.2, 0.5, NAN, 0.7, 0.1]
    got = review.groups(annotated, prediction, confidence, ["normal", "target"])
    assert [(name, rows.tolist()) for name, rows in got] == [
        ("normal", [5, 0]),  # annotated normal (its prediction's confidence 0.1), then predicted normal 0.9
        ("target", [1, 2]),  # an annotation wins over the prediction
        ("zebra", [4]),  # a class not in the list, after it
        ("", [3])]
    only = review.groups(annotated, prediction, confidence, ["normal", "target"],
                         only=np.array([1, 0, 0, 1, 0, 0], bool))
    assert [(name, rows.tolist()) for name, rows in only] == [("normal", [0]), ("", [3])]


def test_cells_without_confidence_go_last_in_their_group():
    assert review.by_confidence(np.array([0, 1, 2, 3]), [NAN, 0.4, NAN, 0.1]).tolist() == [3, 1, 0, 2]


def test_queue_puts_disagreements_first_then_low_confidence_and_skips_verified():
    prediction = np.array(["a", "a", "b", "b", "a", "", "a"], dtype=object)
    confidence = np.array([0.95, 0.5, 0.6, 0.99, 0.2, NAN, 0.97])
    second = np.array(["a", "a", "a", "a", "a", "b", ""], dtype=object)  # the kNN disagrees on rows 2 and 3
    verified = np.array([0, 0, 0, 0, 1, 0, 0], bool)
    queue = review.review_queue(prediction, confidence, verified, second, threshold=0.8)
    assert queue.tolist() == [2, 3, 1]  # disagreements (least confident first), then row 1 (0.5 < 0.8)
    assert review.review_queue(prediction, confidence, None, None, threshold=0.8).tolist() == [4, 1, 2]
    assert review.review_queue(prediction, confidence, verified, second, threshold=0.0).tolist() == [2, 3]


def blobs(seed=0, sizes=(60, 40, 20), outliers=3):
    """Cells in well separated clusters of ``sizes`` (2 features), plus a few far-out cells; returns
    (features, cluster of each cell, -1 for an outlier)."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0, 0], [12, 0], [0, 12]], float)
    parts = [centres[c] + rng.normal(size=(n, 2)) for c, n in enumerate(sizes)]
    parts.append(rng.uniform(25, 35, size=(outliers, 2)))
    cluster = np.concatenate([np.full(n, c) for c, n in enumerate(sizes)] + [np.full(outliers, -1)])
    return np.concatenate(parts), cluster


def test_a_batch_covers_every_cluster_where_the_least_confident_sit_in_one():
    X, cluster = blobs()
    prediction = np.where(cluster == 0, "a", "b").astype(object)
    confidence = np.where(cluster == 2, 0.4, 0.9) + 0.001 * np.arange(len(X))  # the small cluster is unsure
    old = review.review_queue(prediction, confidence)[:3]
    assert set(cluster[old]) == {2}  # uncertainty alone: one cluster's cells, all alike
    new = review.review_queue(prediction, confidence, features=X, batch=3)
    assert sorted(cluster[new[:3]]) == [0, 1, 2]  # one cell of each cluster, the largest first
    assert set(new[3:]) == set(np.flatnonzero(confidence < review.DEFAULT_THRESHOLD)) - set(new[:3])


def test_cold_start_picks_typical_cells_not_outliers_and_then_the_clusters_left():
    X, cluster = blobs()
    first = review.teach_first(X, batch=3)  # no annotation, no prediction
    assert cluster[first].tolist() == [0, 1, 2]
    centre = np.array([X[cluster == c].mean(0) for c in range(3)])
    assert (np.linalg.norm(X[first] - centre, axis=1) < 1.0).all()  # the cluster's core, not its edge
    annotated = np.full(len(X), "", dtype=object)
    annotated[first] = "x"
    second = review.teach_first(X, annotated, batch=4)
    assert not set(second) & set(first) and len(set(second)) == 4
    assert (cluster[second] >= 0).all()  # more clusters (one per annotated cell + per pick): still no outlier
    verified = np.zeros(len(X), bool)
    verified[first] = True  # a verified prediction counts as annotated
    assert not set(review.teach_first(X, verified=verified, batch=4)) & set(first)


def test_cells_next_to_a_correction_the_classifier_still_misses_come_first():
    X, cluster = blobs()
    prior = np.where(cluster == 1, "ovalocyte", "normal").astype(object)  # cluster 1 is really elliptocytes
    annotated = np.full(len(X), "", dtype=object)
    fixed = int(np.flatnonzero(cluster == 1)[0])
    annotated[fixed] = "elliptocyte"  # the user's correction of the shipped classifier
    annotated[np.flatnonzero(cluster == 0)[0]] = "normal"  # an agreement: points to nothing
    prediction = prior.copy()
    learnt = np.flatnonzero(cluster == 1)[1:6]
    prediction[learnt] = "elliptocyte"  # these the retrained classifier already gets right
    picks = review.teach_first(X, annotated, prediction, prior, batch=10)
    assert (cluster[picks] == 1).all() and not set(picks) & (set(learnt) | {fixed})
    Z = (X - X.mean(0)) / X.std(0)  # distances between standardised features
    assert (np.diff(np.linalg.norm(Z[picks] - Z[fixed], axis=1)) >= 0).all()  # closest first
    no_prior = review.teach_first(X, annotated, prediction, None, batch=10)
    assert len(set(cluster[no_prior])) >= 2  # without the shipped classifier there is no correction


def test_a_new_map_gets_its_own_clusters():
    X, cluster = blobs(seed=1)
    review.teach_first(X, batch=3)
    Y, cluster_y = blobs(seed=2, sizes=(10, 30, 50))
    assert cluster_y[review.teach_first(Y, batch=3)].tolist() == [2, 1, 0]


def test_next_to_annotate_with_features_is_the_queue_head():
    from napari_reddino.classify import next_to_annotate

    X, cluster = blobs()
    confidence = np.where(cluster == 2, 0.4, 0.9)
    assert set(cluster[next_to_annotate(confidence, None, 3)]) == {2}
    assert next_to_annotate(confidence, None, 3, features=X).tolist() == review.teach_first(X, batch=3).tolist()


def test_next_in_queue_goes_on_from_the_current_cell_and_wraps():
    q = np.array([5, 2, 9])
    assert review.next_in_queue(q) == 5
    assert review.next_in_queue(q, 2) == 9 and review.next_in_queue(q, 9) == 5
    assert review.next_in_queue(q, 7) == 5  # the cell just verified left the queue: its head is next
    assert review.next_in_queue(np.array([], int), 2) is None


def test_verify_records_who_and_when_and_reloads(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    store.user = "tech1"
    assert store.verify({("a", 1): "normal", ("a", 2): "target"}) == 2  # confirmed predictions: rows with their class
    assert store.verify({("a", 1): "normal"}) == 0  # already verified: nothing new, no undo step
    store.assign([("a", 3)], "burr")  # a person gave a class: verified too
    df = read_annotations(tmp_path / "ann.csv")
    assert list(pd.read_csv(tmp_path / "ann.csv").columns) == FILE_COLUMNS
    assert df["verified"].all() and set(df["by"]) == {"tech1"}
    assert all(pd.Timestamp(t).tzinfo is not None for t in df["at"])  # ISO time with its offset
    reopened = AnnotationStore(tmp_path / "ann.csv")
    reopened.load(["a"])
    assert reopened.verification("a", 2)[0] == "tech1" and reopened.class_of("a", 2) == "target"
    table = pd.DataFrame({"image": ["a"] * 4, "label": [1, 2, 3, 4]})
    assert reopened.verified_column(table).tolist() == [True, True, True, False]


def test_undo_takes_back_the_class_and_the_verification(tmp_path):
    store = AnnotationStore(tmp_path / "ann.csv")
    store.assign([("a", 1)], "normal")
    store.verified[("a", 1)] = ("old", "2026-01-01T00:00:00+00:00")
    store.assign([("a", 1)], "target")
    store.undo()
    assert store.class_of("a", 1) == "normal" and store.verification("a", 1) == ("old", "2026-01-01T00:00:00+00:00")
    store.verify({("a", 2): "burr"})
    store.undo()
    assert store.class_of("a", 2) is None and store.verification("a", 2) is None
    assert read_annotations(tmp_path / "ann.csv")["label"].tolist() == [1]
    store.assign([("a", 1)], None)  # clearing a class clears its verification
    assert store.verification("a", 1) is None


def test_old_files_without_the_new_columns_load_as_unverified(tmp_path):
    (tmp_path / "ann.csv").write_text("image,label,class\na,1,normal\na,2,burr\n")
    df = read_annotations(tmp_path / "ann.csv")
    assert df["verified"].tolist() == [False, False] and df["by"].tolist() == ["", ""]
    store = AnnotationStore(tmp_path / "ann.csv")
    store.load(["a"])
    assert store.class_of("a", 2) == "burr" and not store.verified
    store.verify({("a", 2): "burr"})  # written back in the new form, the other row unverified
    df = read_annotations(tmp_path / "ann.csv")
    assert dict(zip(df["label"], df["verified"])) == {1: False, 2: True}


def test_two_windows_verifying_one_project_keep_each_others_verifications(tmp_path):
    one, two = AnnotationStore(tmp_path / "ann.csv"), AnnotationStore(tmp_path / "ann.csv")
    one.user, two.user = "ann", "bob"
    one.verify({("a", 1): "normal"})
    two.verify({("a", 2): "target"})  # merges one's row in
    one.assign([("a", 3)], "burr")  # merges two's row in
    df = read_annotations(tmp_path / "ann.csv")
    assert dict(zip(df["label"], df["by"])) == {1: "ann", 2: "bob", 3: "ann"} and df["verified"].all()
    assert one.verification("a", 2)[0] == "bob"


def test_cell_table_says_which_cells_are_verified():
    table = pd.DataFrame({"image": ["a", "a"], "label": [1, 2], "class": ["normal", ""],
                          "verified": [True, False], "verified_by": ["tech1", ""]})
    out = export_cell_table(table)
    assert out["verified"].tolist() == [True, False] and out["verified_by"].tolist() == ["tech1", ""]
    assert export_cell_table(table.drop(columns=["verified"]))["verified"].tolist() == [False, False]
