"""``reddino-train eval`` end to end on a synthetic Chula-format folder with a tiny local-dir model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _eval_data import make_chula, save_tiny_model
from reddino_train.cli import main


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    return make_chula(root / "chula", n_images=6), save_tiny_model(root / "tiny")


@pytest.mark.slow
def test_eval_writes_the_tables_and_figures(inputs, tmp_path):
    chula, model = inputs
    out = tmp_path / "out"
    rc = main(["eval", "--model", f"local-dir:{model}", "--dataset", f"chula:{chula}", "--out", str(out),
               "--protocol", "all", "--crop-size", "40", "--precision", "fp32", "--device", "cpu",
               "--cache-dir", str(tmp_path / "cache")])
    assert rc == 0
    df = pd.read_csv(out / "results.csv")
    assert list(df.columns) == ["model", "protocol", "classifier", "metric", "mean", "std"]
    assert set(df.model) == {f"local-dir:{model}", "random-init", "handcrafted"}
    assert set(df.protocol) == {"grouped", "ungrouped"}  # no sources: leave-one-source-out cannot apply
    assert set(df.classifier) == {"linear", "knn1", "knn20"} and set(df.metric) == {"acc", "bacc", "wf1"}
    assert len(df) == 3 * 2 * 3 * 3 and df["mean"].between(0, 1).all() and (df["std"] >= 0).all()
    # synthetic spherocytes, target cells and elliptocytes differ in size and shape: morphology finds them
    hand = df[(df.model == "handcrafted") & (df.protocol == "grouped") & (df.classifier == "linear")]
    assert hand.set_index("metric")["mean"]["wf1"] > 0.6
    md = (out / "results.md").read_text()
    assert "### protocol: grouped" in md and "random-init" in md and "±" in md
    assert "\n\nPer class:" in md and "\n\n\n" not in md  # each header line its own paragraph, no empty ones
    for png in ("confusion.png", "umap.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"
    cached = sorted((tmp_path / "cache").glob("*.npy"))
    assert len(cached) == 3
    again = tmp_path / "again"  # second run reads the cached features and excludes class 12
    assert main(["eval", "--model", f"local-dir:{model}", "--dataset", f"chula:{chula}", "--out", str(again),
                 "--crop-size", "40", "--exclude-classes", "elliptocyte", "--no-umap", "--precision", "fp32",
                 "--cache-dir", str(tmp_path / "cache")]) == 0
    assert sorted((tmp_path / "cache").glob("*.npy")) == cached
    again_md = (again / "results.md").read_text()
    assert "excluded classes: ['elliptocyte']" in again_md
    assert "read from the cache" not in md and again_md.count("read from the cache") == 3
    assert not (again / "umap.png").exists()


def test_quick_comparison_scores_chosen_folds_and_classifiers(inputs, tmp_path):
    from reddino_train.eval import datasets, features, protocol

    from napari_reddino.models import load_model

    chula, model = inputs
    out = tmp_path / "quick"
    assert main(["eval", "--model", f"local-dir:{model}", "--dataset", f"chula:{chula}", "--out", str(out),
                 "--crop-size", "40", "--folds", "2", "--classifiers", "knn20,knn1", "--no-baselines",
                 "--no-umap", "--precision", "fp32"]) == 0
    df = pd.read_csv(out / "results.csv")
    assert set(df.classifier) == {"knn20", "knn1"} and set(df.model) == {f"local-dir:{model}"}
    assert "first 2 of each protocol's split" in (out / "results.md").read_text()
    # the mean is over exactly the first two grouped folds
    cells = datasets.load_dataset(f"chula:{chula}", 40)
    X = features.model_features(cells.crops, load_model(f"local-dir:{model}"), precision="fp32", log=None)
    splits = protocol.make_splits("grouped", cells.y, cells.groups)
    wf1 = [f["wf1"] for f in protocol.run_protocol(X, cells.y, splits, ["knn20"])["knn20"]["folds"]]
    got = df[(df.classifier == "knn20") & (df.metric == "wf1")]["mean"].item()
    assert got == pytest.approx(np.mean(wf1[:2]), abs=1e-4)  # results.csv keeps 4 decimals
    assert abs(np.mean(wf1[:2]) - np.mean(wf1)) > 1e-3  # so the check above tells 2 folds from 5


def test_model_and_random_init_features_differ(inputs):
    from reddino_train.eval import datasets, features

    from napari_reddino.models import load_model

    chula, model = inputs
    cells = datasets.stratified_limit(datasets.load_dataset(f"chula:{chula}", 40), 30)
    vit = load_model(f"local-dir:{model}")
    a = features.model_features(cells.crops, vit, precision="fp32", log=None)
    b = features.model_features(cells.crops, features.random_init_like(vit), precision="fp32", log=None)
    assert a.shape == b.shape == (len(cells), 32) and a.dtype == np.float32
    assert not np.allclose(a, b)


@pytest.mark.parametrize("argv, needle", [
    (["--dataset", "chula:/no/such"], "chula"),
    (["--dataset", "folder"], "accepted"),
    (["--limit", "0"], "--limit"),
    (["--exclude-classes", "nonsense"], "class"),
    (["--model", "local-dir:/no/such/model"], "folder"),
    (["--folds", "9"], "--folds"),
    (["--folds", "0"], "--folds"),
    (["--classifiers", "svm"], "classifiers"),
])
def test_bad_input_exits_2_with_one_line(inputs, tmp_path, capsys, argv, needle):
    chula, model = inputs
    args = {"--model": f"local-dir:{model}", "--dataset": f"chula:{chula}", "--out": str(tmp_path / "o")}
    args.update(dict(zip(argv[::2], argv[1::2])))
    rc = main(["eval", *[x for kv in args.items() for x in kv], "--no-baselines", "--no-umap"])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and needle in err and "\n" not in err and "Traceback" not in err
