"""Atomic writes: a process killed (SIGKILL) in the middle of writing leaves the previous file whole."""

from __future__ import annotations

import os

import pytest

from napari_reddino.atomic import atomic_path


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL")
def test_a_kill_mid_write_leaves_the_old_file(tmp_path, run_killed):
    target = tmp_path / "cells.csv"
    target.write_text("old,complete\n")
    code = """
        from napari_reddino.atomic import atomic_path
        with atomic_path(target) as tmp:
            with open(tmp, "w") as f:
                f.write("new,half")
                f.flush()
                die()
    """
    assert run_killed(code, target=target) == -9
    assert target.read_text() == "old,complete\n"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "cells.csv"
    target.write_text("old\n")
    with pytest.raises(OSError):
        with atomic_path(target) as tmp:
            tmp.write_text("new, but the disk is full")
            raise OSError(28, "No space left on device")
    assert target.read_text() == "old\n" and sorted(p.name for p in tmp_path.iterdir()) == ["cells.csv"]


def test_written_files_keep_the_suffix_for_writers_and_usual_permissions(tmp_path):
    from PIL import Image

    with atomic_path(tmp_path / "overlay.png") as tmp:
        assert tmp.suffix == ".png" and tmp.parent == tmp_path
        Image.new("RGB", (4, 4)).save(tmp)  # PIL picks the format from the suffix
    assert Image.open(tmp_path / "overlay.png").size == (4, 4)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "overlay.png").stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
