"""A saved session, headless: the pipeline's results written to a folder and read back identical without
running the segmenter, the model or UMAP; `napari-reddino run --out` folders are sessions; bad folders are
refused in one line; a failed save leaves no session."""

import json

import numpy as np
import pandas as pd
import pytest

from napari_reddino.progress import run
from napari_reddino.cli import main
from napari_reddino.images import InputError
from napari_reddino.pipeline import PipelineOptions, iter_pipeline
from napari_reddino.sample_data import synthetic_smear
from napari_reddino.session import SESSION_FILE, Session, SessionImage, read_session, save_session


@pytest.fixture(scope="module")
def result(tiny_model_dir):
    """Two smears through the whole chain: one read from a file, one made in memory."""
    a, _, _ = synthetic_smear(seed=3, shape=(200, 260), n_white=1)
    b, _, _ = synthetic_smear(seed=5, shape=(180, 240), n_white=0)
    return run(iter_pipeline([("a.png", a), ("b", b)], PipelineOptions(model=f"local-dir:{tiny_model_dir}")))


def forbid_recomputing(monkeypatch):
    """Make every computing step raise: a reopened session must need none of them."""
    def refuse(*args, **kwargs):
        raise AssertionError("recomputed on reopen")

    for target in ("napari_reddino.segment.iter_segment_cells", "napari_reddino.segment.segment",
                   "napari_reddino.models.load_model", "napari_reddino.embed.iter_embed_cells",
                   "napari_reddino.patch_features.iter_patch_features", "napari_reddino.embedding.umap_embed",
                   "napari_reddino.embedding.iter_umap_embed"):
        monkeypatch.setattr(target, refuse)


def one_line(exc_info) -> str:
    message = str(exc_info.value)
    assert "\n" not in message and "Traceback" not in message
    return message


def saved(result, tmp_path, name="session"):
    import imageio.v3 as iio

    iio.imwrite(tmp_path / "a.png", result.smears[0].image)
    images = [SessionImage("a.png", str(tmp_path / "a.png"), (0.5, 0.5), (10.0, 20.0), {"estimated_diameter": 24.5}),
              SessionImage("b")]
    session = Session(result, images, {"a.png": str(tmp_path / "ann.csv")}, None, {"a.png": 3})
    save_session(session, tmp_path / name)
    return tmp_path / name


def test_a_saved_session_reads_back_the_same_results_without_recomputing(result, tmp_path, monkeypatch):
    folder = saved(result, tmp_path)
    forbid_recomputing(monkeypatch)
    back = read_session(folder)
    assert [s.name for s in back.result.smears] == ["a.png", "b"]
    for old, new in zip(result.smears, back.result.smears):
        np.testing.assert_array_equal(new.image, old.image)
        np.testing.assert_array_equal(new.labels, old.labels)
        pd.testing.assert_frame_equal(new.table, old.table, check_dtype=False)
        np.testing.assert_array_equal(new.embedded, old.embedded)
        np.testing.assert_array_equal(new.embeddings, old.embeddings)  # the features matrix, bit for bit
        # the overlay comes back as the layer shows it (colours rounded to 0-255) on the same grid
        np.testing.assert_array_equal(np.round(new.pca * 255), np.round(old.pca * 255))
        assert new.patch == old.patch
    np.testing.assert_array_equal(back.result.umap, result.umap)  # same map, same order
    assert back.result.umap_params == {"n_neighbors": 15, "min_dist": 0.1, "metric": "cosine", "seed": 0}
    a, b = back.images
    assert (a.path, a.scale, a.translate, a.segmentation) == (str(tmp_path / "a.png"), (0.5, 0.5), (10.0, 20.0),
                                                              {"estimated_diameter": 24.5})
    assert b.path is None and (folder / "b_image.tif").is_file()  # not on disk: saved in the session
    assert back.annotation_files == {"a.png": str(tmp_path / "ann.csv")} and back.annotated == {"a.png": 3}
    # the annotation file is not in the session: when it is gone, that is said (the dock warns), not hidden
    assert back.missing_annotations() == {str(tmp_path / "ann.csv"): 3}
    (tmp_path / "ann.csv").write_text("image,label,class\n")
    assert back.missing_annotations() == {}
    manifest = json.loads((folder / SESSION_FILE).read_text())
    assert manifest["version"] == 1 and manifest["images"][1]["copy"] == "b_image.tif"
    assert not list(folder.glob(".*"))  # no temporary files left behind


def test_a_run_output_folder_opens_as_a_session(tiny_model_dir, tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert main(["run", "--sample", "synthetic", "--out", str(out), "--model", f"local-dir:{tiny_model_dir}"]) == 0
    cells = pd.read_csv(out / "cells.csv")
    forbid_recomputing(monkeypatch)
    back = read_session(out)
    s = back.result.smears[0]
    assert back.images[0].path is None and s.image.shape[:2] == s.labels.shape  # the sample, saved as a copy
    analysed = cells[cells["analysed"]]
    np.testing.assert_array_equal(back.result.umap, analysed[["umap_x", "umap_y"]].to_numpy(np.float32))
    assert back.project_folder == str(out.resolve())  # annotations made on it go beside the results


def test_not_a_session_newer_version_and_missing_files_are_one_line(result, tmp_path):
    with pytest.raises(InputError) as err:
        read_session(tmp_path / "nowhere")
    assert "not a folder" in one_line(err) and "session.json" in one_line(err)
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError) as err:
        read_session(tmp_path / "empty")
    assert "holds no session.json" in one_line(err) and "napari-reddino run --out" in one_line(err)

    folder = saved(result, tmp_path)
    manifest = json.loads((folder / SESSION_FILE).read_text())
    (folder / SESSION_FILE).write_text(json.dumps({**manifest, "version": 2}))
    with pytest.raises(InputError) as err:
        read_session(folder)
    assert "version 2" in one_line(err) and "version 1 or older" in one_line(err)
    (folder / SESSION_FILE).write_text("{not json")
    with pytest.raises(InputError, match="Could not read"):
        read_session(folder)

    folder = saved(result, tmp_path, "again")
    (tmp_path / "a.png").unlink()  # the image the session refers to was moved away
    (folder / "b_features.parquet").unlink()
    with pytest.raises(InputError) as err:
        read_session(folder)
    assert f"the image '{tmp_path / 'a.png'}'" in one_line(err) and "b_features.parquet" in one_line(err)


def test_view_refuses_a_bad_folder_with_exit_code_2_and_one_line(tmp_path, capsys):
    assert main(["view", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds no session.json" in err[0]


def test_a_failed_save_leaves_no_session_and_no_half_file(result, tmp_path, monkeypatch):
    folder = saved(result, tmp_path)  # a good session is there first
    before = {p.name: p.read_bytes() for p in folder.iterdir() if p.name != SESSION_FILE}

    def disk_full(self, path, *args, **kwargs):
        with open(path, "wb") as fh:
            fh.write(b"PAR1 half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(pd.DataFrame, "to_parquet", disk_full)
    with pytest.raises(OSError):
        save_session(Session(result, [SessionImage("a.png", str(tmp_path / "a.png")), SessionImage("b")]), folder)
    assert not (folder / SESSION_FILE).exists()  # no manifest naming a mix of old and new files
    assert not list(folder.glob(".*"))  # the half-written file was removed
    assert (folder / "a_features.parquet").read_bytes() == before["a_features.parquet"]  # never half replaced
    with pytest.raises(InputError, match="holds no session.json"):
        read_session(folder)


def test_two_images_whose_files_would_share_a_name_each_keep_theirs(result, tmp_path, monkeypatch):
    from dataclasses import replace

    twins = replace(result, smears=[replace(result.smears[0], name="x.png"), replace(result.smears[1], name="x.jpg")],
                    umap=None)
    save_session(Session(twins, [SessionImage("x.png"), SessionImage("x.jpg")]), tmp_path / "s")
    forbid_recomputing(monkeypatch)
    back = read_session(tmp_path / "s")
    for old, new in zip(result.smears, back.result.smears):
        np.testing.assert_array_equal(new.labels, old.labels)
        np.testing.assert_array_equal(new.image, old.image)
