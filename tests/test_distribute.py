"""Many images at once (#19 item 3): the units of work give the same files whether they run in this process,
in two local worker processes or on a dask scheduler at an address; a failed image is reported while the others
are written; a run killed midway and resumed on a cluster gives the files of a run never stopped."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from napari_reddino.cli import main
from napari_reddino.distribute import Unit, UnitFailed, iter_map_units
from napari_reddino.images import InputError, read_image
from napari_reddino.progress import run
from napari_reddino.sample_data import synthetic_smear

N_IMAGES = 4


@pytest.fixture(scope="module")
def smears(tmp_path_factory):
    folder = tmp_path_factory.mktemp("smears")
    for i in range(N_IMAGES):
        Image.fromarray(synthetic_smear(seed=i, shape=(160, 200), n_cells=7, n_white=0)[0]).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def with_broken(smears, tmp_path_factory):
    """The smears and a file that is no image."""
    folder = tmp_path_factory.mktemp("with_broken")
    for p in smears.iterdir():
        (folder / p.name).symlink_to(p)
    (folder / "broken.png").write_bytes(b"not an image")
    return folder


def run_args(smears, out, *extra):
    return ["run", str(smears), "--out", str(out), "--backend", "threshold", "--model", "demo",
            "--cell-resolution", "off", *extra]


@pytest.fixture(scope="module")
def reference(smears, tmp_path_factory):
    """The reference: every image in this process, one after another; (its folder, the model's loads)."""
    from unittest import mock

    from napari_reddino import models

    out = tmp_path_factory.mktemp("one_process")
    models.clear_cache()
    with mock.patch.object(models, "_load_uncached", wraps=models._load_uncached) as load:
        assert main(run_args(smears, out)) == 0
    return out, load.call_count


@pytest.fixture(scope="module")
def one_process(reference):
    return reference[0]


def test_the_model_is_loaded_once_per_process_not_per_image(reference):
    assert reference[1] == 1  # the command's check and its N images: one load


@pytest.fixture(scope="module")
def scheduler():
    """A dask scheduler on 127.0.0.1 with two worker processes, as a cluster's would be: its address. Shared by
    the tests (its workers keep torch and the model loaded, as they do on a cluster)."""
    from distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", scheduler_port=0,
                      dashboard_address=None) as cluster:
        yield cluster.scheduler_address


def assert_same_outputs(a, b):
    """cells.csv (with the UMAP), every image's labels, cell table, features and overlay."""
    pd.testing.assert_frame_equal(pd.read_csv(a / "cells.csv"), pd.read_csv(b / "cells.csv"))
    for i in range(N_IMAGES):
        for suffix in ("_labels.tif", "_pca.png"):
            np.testing.assert_array_equal(np.asarray(Image.open(a / f"{i}{suffix}")),
                                          np.asarray(Image.open(b / f"{i}{suffix}")))
        pd.testing.assert_frame_equal(pd.read_csv(a / f"{i}_cells.csv"), pd.read_csv(b / f"{i}_cells.csv"))
        pd.testing.assert_frame_equal(pd.read_parquet(a / f"{i}_features.parquet"),
                                      pd.read_parquet(b / f"{i}_features.parquet"))


def test_units_in_this_process_keep_their_order_and_a_failure_is_one_line(smears, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    units = [Unit("0.png", read_image, (smears / "0.png",)), Unit("broken.png", read_image, (broken,)),
             Unit("bug", int, ("seven",)), Unit("1.png", read_image, (smears / "1.png",))]
    seen, finished = [], []
    results = run(iter_map_units(units, done=lambda i, r: finished.append(i)), callback=seen.append)
    np.testing.assert_array_equal(results[0], read_image(smears / "0.png"))
    np.testing.assert_array_equal(results[3], read_image(smears / "1.png"))
    assert isinstance(results[1], UnitFailed) and results[1].name == "broken.png" and "\n" not in results[1].why
    assert results[2] == UnitFailed("bug", "ValueError: invalid literal for int() with base 10: 'seven'")
    assert finished == [0, 1, 2, 3] and seen[-1].done == seen[-1].total == 4


def test_a_setting_that_fails_stops_every_unit():
    """A --model that is not there fails every image alike: one line, not one row per image."""
    def bad_setting():
        raise InputError("Received tile size 50; accepted: a multiple of 14.")

    calls = []
    units = [Unit("a", bad_setting), Unit("b", calls.append, (1,))]
    with pytest.raises(InputError, match="tile size 50"):
        run(iter_map_units(units))
    assert calls == []


def test_one_process_does_not_import_dask(smears):
    code = ("import sys; from napari_reddino.distribute import Unit, iter_map_units; "
            "from napari_reddino.progress import run; "
            "assert run(iter_map_units([Unit('a', abs, (-2,))])) == [2]; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert got.returncode == 0 and got.stdout.strip() == "[]", got.stderr


def test_local_workers_get_their_share_of_the_cores_and_closing_stops_them():
    """Each worker process's torch/BLAS threads are cores // workers; closing the progress generator (Cancel,
    Ctrl-C) cancels what is left and closes the cluster at once."""
    import multiprocessing
    import os
    import time

    from napari_reddino.distribute import cores

    units = [Unit(str(i), os.getenv, ("OMP_NUM_THREADS",)) for i in range(2)] + [Unit("pid", os.getpid)]
    results = run(iter_map_units(units, workers=2))
    assert results[:2] == [str(max(1, cores() // 2))] * 2 and results[2] != os.getpid()
    assert not multiprocessing.active_children()  # the cluster is closed when the work is done
    gen = iter_map_units([Unit("quick", abs, (-1,))] + [Unit(f"long{i}", time.sleep, (120,)) for i in range(3)],
                         workers=2)
    assert next(gen).done == 0 and next(gen).done == 1  # started; the quick one is done, the long ones run
    assert multiprocessing.active_children()
    t0 = time.perf_counter()
    gen.close()
    assert not multiprocessing.active_children() and time.perf_counter() - t0 < 30


@pytest.mark.slow  # the CLI path on a scheduler is the fast tests'; LocalCluster's is the test above
def test_two_workers_write_what_one_process_writes_and_go_on_past_a_bad_file(with_broken, one_process, tmp_path):
    out = tmp_path / "two"
    assert main(run_args(with_broken, out, "--workers", "2")) == 2
    assert pd.read_csv(out / "failed.csv")["input"].tolist() == ["broken.png"]
    assert_same_outputs(one_process, out)


def test_a_killed_run_resumed_on_two_workers_gives_the_same_files(smears, one_process, scheduler, tmp_path,
                                                                  run_killed):
    """Killed (SIGKILL, no cleanup) while writing the third image's files: its labels written, its table not."""
    out = tmp_path / "killed"
    code = """
        import napari_reddino.formats as formats
        from napari_reddino.cli import main
        real, calls = formats.write_cell_table, []
        def dies_on_the_third(table, path):
            calls.append(path)
            if len(calls) == 3:
                die()
            return real(table, path)
        formats.write_cell_table = dies_on_the_third
        main(args.split("|"))
    """
    assert run_killed(code, args="|".join(run_args(smears, out))) == -9
    assert (out / "2_labels.tif").is_file() and not (out / "2_cells.csv").exists()
    assert not (out / "cells.csv").exists()
    assert main(run_args(smears, out, "--resume", "--scheduler", scheduler)) == 0
    assert_same_outputs(one_process, out)


def test_a_scheduler_at_an_address_gives_what_one_process_gives(with_broken, one_process, scheduler, tmp_path):
    out = tmp_path / "cluster"
    assert main(run_args(with_broken, out, "--scheduler", scheduler)) == 2
    assert pd.read_csv(out / "failed.csv")["input"].tolist() == ["broken.png"]
    assert_same_outputs(one_process, out)
    got = run(iter_map_units([Unit("bug", int, ("seven",)), Unit("fine", abs, (-1,))], scheduler=scheduler))
    assert got == [UnitFailed("bug", "ValueError: invalid literal for int() with base 10: 'seven'"), 1]


def test_a_scheduler_that_is_not_there_is_one_line_before_any_work(smears, tmp_path, capsys):
    out = tmp_path / "nowhere"
    assert main(run_args(smears, out, "--scheduler", "tcp://127.0.0.1")) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("napari-reddino run: error: Received --scheduler") and "\n" not in err
    assert not list(out.glob("*_labels.tif"))
    with pytest.raises(SystemExit):
        main(run_args(smears, out, "--workers", "2", "--scheduler", "tcp://127.0.0.1:8786"))
    assert "not allowed with argument" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["segment", "embed", "pca"])
def test_segment_embed_and_pca_on_a_scheduler_write_what_one_process_writes(smears, scheduler, tmp_path, command):
    extra = {"segment": ["--backend", "threshold"],
             "embed": ["--segment", "threshold", "--model", "demo"],
             "pca": ["--model", "demo", "--cell-resolution", "off"]}[command]
    outs = [tmp_path / "one", tmp_path / "two"]
    if command == "embed":
        outs = [o / "features.parquet" for o in outs]
    for out, where in zip(outs, (["--workers", "1"], ["--scheduler", scheduler])):
        assert main([command, str(smears), "--out", str(out), *where, *extra]) == 0
    if command == "embed":
        pd.testing.assert_frame_equal(pd.read_parquet(outs[0]), pd.read_parquet(outs[1]))
        assert len(pd.read_parquet(outs[0])["image"].unique()) == N_IMAGES
        return
    made = sorted(p.name for p in outs[0].iterdir() if p.suffix in (".tif", ".csv", ".png"))
    assert len(made) == 2 * N_IMAGES and made == sorted(p.name for p in outs[1].iterdir()
                                                        if p.suffix in (".tif", ".csv", ".png"))
    for name in made:
        if name.endswith(".csv"):
            pd.testing.assert_frame_equal(pd.read_csv(outs[0] / name), pd.read_csv(outs[1] / name))
        else:
            np.testing.assert_array_equal(np.asarray(Image.open(outs[0] / name)),
                                          np.asarray(Image.open(outs[1] / name)))
