"""The whole chain headless, and `napari-reddino run` (the README's main job) on a sample smear."""

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_reddino.progress import Progress, run
from napari_reddino.annotate import CHULA_CLASSES
from napari_reddino.cli import main
from napari_reddino.images import InputError
from napari_reddino.pipeline import PipelineOptions, iter_pipeline, write_outputs
from napari_reddino.sample_data import synthetic_smear


@pytest.fixture(scope="module")
def model_dir(tiny_model_dir):
    return tiny_model_dir


@pytest.fixture(scope="module")
def smear():
    image, truth, _ = synthetic_smear(seed=3, shape=(200, 260), n_white=1)
    return image, truth


def test_pipeline_chains_every_step(model_dir, smear, tmp_path):
    image, truth = smear
    seen = []
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed", "pca"), precision="fp32")
    result = run(iter_pipeline([("smear.png", image)], opts), callback=seen.append)
    s = result.smears[0]
    assert all(isinstance(p, Progress) for p in seen) and any("smear.png" in p.message for p in seen)
    assert s.labels.shape == image.shape[:2] and len(s.table) == len(np.unique(s.labels)) - 1
    assert len(s.table) >= 0.7 * (len(np.unique(truth)) - 1)  # the segmentation found most cells
    # red cells only, by default: the other objects (here the platelet and artefact) are counted, left out
    red = s.table.loc[s.table["type"] == "rbc", "label"].to_numpy()
    assert 0 < len(red) < len(s.table) and list(s.embedded) == list(red)
    assert s.embeddings.shape == (len(red), 48)
    assert f"{len(red)} analysed (left out 1 platelet, 1 artefact)" in result.summary()
    # rows stay aligned with labels: a cell's embedding equals embedding that cell alone
    from napari_reddino.embed import embed_cells
    from napari_reddino.models import load_model

    one = s.embedded[len(red) // 2]
    alone = np.where(s.labels == one, s.labels, 0)
    _, emb_alone = embed_cells(image, alone, load_model(f"local-dir:{model_dir}"), precision="fp32")
    np.testing.assert_allclose(s.embeddings[len(red) // 2], emb_alone[0], atol=1e-4)
    # enlarged so a red cell spans about 6 patches (84 px); partial patches at the edge are covered
    fy, fx = s.pca_factor
    assert 84 / 48 <= fy <= 84 / 26 and s.pca_factor == (round(200 * fy) / 200, round(260 * fy) / 260)
    assert s.pca.shape[:2] == (-(-round(200 * fy) // 14), -(-round(260 * fy) // 14)) and s.pca.shape[2] >= 3

    written = {p.name for p in write_outputs(result, tmp_path)}
    assert {"smear_labels.tif", "smear_cells.csv", "smear_features.parquet", "smear_pca.png", "cells.csv"} <= written
    assert (tifffile.imread(tmp_path / "smear_labels.tif") == s.labels).all()
    feats = pd.read_parquet(tmp_path / "smear_features.parquet")
    assert list(feats.columns[:4]) == ["image", "label", "centroid_x", "centroid_y"] and feats.shape[1] == 4 + 48
    assert list(feats["label"]) == list(red)
    np.testing.assert_allclose(feats["centroid_x"], s.table.set_index("label").loc[red, "centroid_x"])
    cells = pd.read_csv(tmp_path / "cells.csv")  # every object, marked analysed or not
    assert len(cells) == len(s.table) and cells["analysed"].sum() == len(red)
    assert "rbc" not in set(cells.loc[~cells["analysed"], "type"])
    # the shipped classifier (morphology, the default) named every red cell
    red_rows = cells["type"] == "rbc"
    assert cells.loc[red_rows, "prediction"].isin([c.name for c in CHULA_CLASSES]).all()
    assert cells.loc[red_rows, "confidence"].between(0, 1, inclusive="right").all()
    assert cells.loc[~red_rows, "prediction"].isna().all() and cells.loc[~red_rows, "confidence"].isna().all()
    assert result.classifier_note == ""


@pytest.mark.parametrize("model", ["demo", "tiny"])
def test_the_embedding_classifier_only_with_the_demo_model(smear, model, model_dir, monkeypatch):
    from napari_reddino import classifier

    image, _ = smear
    used = []
    real = classifier.ShippedClassifier.predict
    monkeypatch.setattr(classifier.ShippedClassifier, "predict",
                        lambda self, *a, **k: used.append(self.name) or real(self, *a, **k))
    spec = "demo" if model == "demo" else f"local-dir:{model_dir}"
    opts = PipelineOptions(model=spec, steps=("segment", "embed"), precision="fp32",
                           classifier="embedding+morphology")
    result = run(iter_pipeline([("smear.png", image)], opts))
    t = result.smears[0].table
    assert (t.loc[t["type"] == "rbc", "prediction"] != "").all()
    if model == "demo":
        assert used == ["embedding+morphology"] and result.classifier_note == ""
    else:  # another model's embeddings: morphology alone, said in one line
        assert used == ["morphology"] and "classified from morphology only" in result.classifier_note
        assert spec in result.classifier_note and "\n" not in result.classifier_note


def test_pipeline_analyses_every_object_when_asked(model_dir, smear):
    from napari_reddino.segment.types import OBJECT_TYPES

    image, _ = smear
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed"), precision="fp32",
                           cell_types=OBJECT_TYPES)
    result = run(iter_pipeline([("smear.png", image)], opts))
    s = result.smears[0]
    assert list(s.embedded) == list(s.table["label"]) and len(s.embeddings) == len(s.table)
    assert "left out" not in result.summary()


@pytest.mark.slow
def test_pipeline_umap_pools_images(model_dir, smear):
    image, _ = smear
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed", "umap"), precision="fp32")
    result = run(iter_pipeline([("a.png", image), ("b.png", image[:, ::-1].copy())], opts))
    cells = result.cells()
    assert result.umap.shape == (int(cells["analysed"].sum()), 2) and set(cells.image) == {"a.png", "b.png"}
    assert {"umap_x", "umap_y"} <= set(cells.columns)
    # the UMAP points sit on the analysed cells, in order; the white cells have none
    np.testing.assert_array_equal(cells.loc[cells["analysed"], "umap_x"], result.umap[:, 0])
    assert cells.loc[~cells["analysed"], "umap_x"].isna().all() and (~cells["analysed"]).sum() >= 2


def test_pipeline_refuses_bad_input(model_dir):
    with pytest.raises(InputError, match="steps"):
        run(iter_pipeline([("x", np.zeros((20, 20, 3), np.uint8))], PipelineOptions(steps=("segment", "dance"))))
    with pytest.raises(InputError, match="Received"):
        run(iter_pipeline([("x", np.zeros((2, 3, 4, 5)))], PipelineOptions(steps=("segment",))))


def test_blank_image_gives_zero_cells_not_an_error(model_dir, tmp_path):
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed"))
    result = run(iter_pipeline([("blank.png", np.full((120, 150, 3), 230, np.uint8))], opts))
    assert len(result.smears[0].table) == 0
    write_outputs(result, tmp_path)
    assert (tmp_path / "blank_labels.tif").is_file()


def test_an_image_without_cells_gets_no_overlay_and_the_other_steps_stand(model_dir, smear, tmp_path, capsys):
    """A plain slide or noise: no PCA overlay (it painted a colourful pattern), one plain line, and the
    segmentation, the other images and their overlays are still made (library and `napari-reddino run`)."""
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    image, _ = smear
    noise = rng.integers(0, 256, image.shape, dtype=np.uint8)
    slide = np.clip(rng.normal((225, 215, 220), 3, image.shape), 0, 255).astype(np.uint8)
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed", "pca"), precision="fp32")
    result = run(iter_pipeline([("noise.png", noise), ("smear.png", image), ("slide.png", slide)], opts))
    noisy, good, bare = result.smears
    assert noisy.pca is None and bare.pca is None and good.pca is not None
    assert noisy.labels is not None and bare.labels is not None  # the segmentation stands
    assert result.skipped[0].startswith("no cells found in 'noise.png': no overlay made (")
    assert result.skipped[1].startswith("no cells found in 'slide.png': no overlay made (")
    written = {p.name for p in write_outputs(result, tmp_path / "lib")}
    assert "smear_pca.png" in written and "noise_pca.png" not in written and "noise_labels.tif" in written

    for name, data in (("noise.png", noise), ("smear.png", image)):
        iio.imwrite(tmp_path / name, data)
    out = tmp_path / "cli"
    assert main(["run", str(tmp_path / "noise.png"), str(tmp_path / "smear.png"), "--out", str(out), "--model",
                 f"local-dir:{model_dir}", "--no-umap"]) == 0
    printed = capsys.readouterr().out
    assert "not made: no cells found in 'noise.png': no overlay made" in printed
    assert (out / "smear_pca.png").is_file() and not (out / "noise_pca.png").exists()
    assert (out / "noise_labels.tif").is_file()


def test_pipeline_cell_resolution_option(model_dir, smear):
    image, _ = smear
    opts = PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "pca"), precision="fp32",
                           pca_resolution="off")
    s = run(iter_pipeline([("smear.png", image)], opts)).smears[0]
    assert s.pca_factor == (1.0, 1.0) and s.pca.shape[:2] == (-(-200 // 14), -(-260 // 14))  # today's overlay
    opts.pca_resolution = 3
    s = run(iter_pipeline([("smear.png", image)], opts)).smears[0]
    assert s.pca_factor == (3.0, 3.0) and s.pca.shape[:2] == (-(-600 // 14), -(-780 // 14))


def test_cli_run_on_sample(model_dir, tmp_path, capsys):
    code = main(["run", "--sample", "synthetic", "--out", str(tmp_path), "--model", f"local-dir:{model_dir}",
                 "--no-umap"])
    assert code == 0
    assert (tmp_path / "synthetic_smear_pca.png").is_file() and (tmp_path / "cells.csv").is_file()
    out = capsys.readouterr().out
    assert "cells" in out and "note:" not in out  # the default classifier serves any model
    cells = pd.read_csv(tmp_path / "cells.csv")
    assert {"prediction", "confidence"} <= set(cells.columns)
    assert (cells.loc[cells["type"] == "rbc", "prediction"].fillna("") != "").all()


def test_cli_run_bad_input_exits_2_with_one_line(tmp_path, capsys):
    assert main(["run", "--out", str(tmp_path)]) == 2
    assert main(["run", str(tmp_path / "missing.png"), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all("error:" in line for line in err)


def test_a_step_that_cannot_run_is_skipped_with_a_note(model_dir, tmp_path, capsys):
    """Too few cells for a UMAP, or an image too small for an overlay: the other steps' results stand, and
    the result (and `napari-reddino run`) says what was not made and why."""
    image, _, _ = synthetic_smear(seed=4, shape=(160, 200), n_cells=3, n_white=0, n_platelets=0,
                                  touching_fraction=0.0)
    result = run(iter_pipeline([("few.png", image)], PipelineOptions(model=f"local-dir:{model_dir}")))
    s = result.smears[0]
    assert len(s.embeddings) == 3 and s.pca is not None and result.umap is None
    assert result.skipped == ["3 red cells found: too few for a UMAP map (it needs at least 4); the "
                              "segmentation and the PCA overlay are kept"]
    tiny = run(iter_pipeline([("tiny.png", np.full((5, 5, 3), 200, np.uint8))],
                             PipelineOptions(model=f"local-dir:{model_dir}", steps=("segment", "embed", "pca"))))
    assert tiny.smears[0].pca is None
    assert tiny.skipped == ["tiny.png is 5 x 5 pixels: too small for a PCA overlay (it needs at least 15 x 15)"]
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "few.png", image)
    assert main(["run", str(tmp_path / "few.png"), "--out", str(tmp_path / "out"), "--model",
                 f"local-dir:{model_dir}"]) == 0
    assert "not made: 3 red cells found" in capsys.readouterr().out


def test_the_pipeline_run_and_the_pca_dock_run_models_on_the_gpu_when_there_is_one(monkeypatch, tiny_model_dir):
    """The pipeline (dock and `run`) and the PCA dock never passed a device, so they ran on the CPU on a GPU
    machine while embed/pca CLIs and Cellpose used it: every caller now asks for ``auto``."""
    from napari_reddino import models
    from napari_reddino.pipeline import PipelineOptions, iter_pipeline
    from napari_reddino.progress import run
    from napari_reddino.sample_data import synthetic_smear

    real, asked = models.load_model, []
    monkeypatch.setattr(models, "load_model", lambda spec, device="cpu", **k: asked.append(device) or real(
        spec, device="cpu", **k))
    image = synthetic_smear(seed=0, shape=(120, 160), n_cells=4, n_white=0)[0]
    run(iter_pipeline([("a.png", image)], PipelineOptions(model=f"local-dir:{tiny_model_dir}", steps=("segment", "embed"))))
    assert asked == ["auto"]
