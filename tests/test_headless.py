"""The headless core installs and runs without napari's window (the `gui` extra): with napari, Qt and magicgui
absent, every core module imports and the CLI works; the commands that open a window refuse in one line,
before any work, saying what to install."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUI = ("napari", "magicgui", "qtpy", "superqt", "vispy", "npe2", "PyQt5", "PyQt6", "PySide2", "PySide6")
# a None entry makes `import napari` raise ModuleNotFoundError, as where it is not installed
WITHOUT_GUI = f"import sys\nsys.modules.update(dict.fromkeys({GUI!r}))\n"


def run_without_gui(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", WITHOUT_GUI + textwrap.dedent(code)], cwd=cwd,
                          capture_output=True, text=True, timeout=300)


def requirement_names(requirements) -> set[str]:
    return {re.split(r"[<>=!~\[;\s]", r, maxsplit=1)[0].lower() for r in requirements}


def test_core_and_cli_run_without_napari_or_qt(tmp_path):
    proc = run_without_gui("""
        import importlib, pkgutil
        from PIL import Image
        import napari_reddino
        for m in pkgutil.walk_packages(napari_reddino.__path__, "napari_reddino."):
            if "._widgets" not in m.name and not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        from napari_reddino.cli import main
        from napari_reddino.sample_data import synthetic_smear
        Image.fromarray(synthetic_smear(0, shape=(160, 200))[0]).save("smear.png")
        print("segment", main(["segment", "smear.png", "--backend", "threshold", "--out", "seg"]))
        print("models", main(["models", "list"]))
        print("run --view", main(["run", "smear.png", "--out", "run", "--view"]))
        print("view", main(["view", "seg"]))
    """, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    codes = dict(line.rsplit(" ", 1) for line in proc.stdout.splitlines() if line.split(" ")[0] in
                 ("segment", "models", "run", "view"))
    assert codes == {"segment": "0", "models": "0", "run --view": "2", "view": "2"}, proc.stdout
    assert (tmp_path / "seg" / "smear_labels.tif").is_file() and (tmp_path / "seg" / "smear_cells.csv").is_file()
    assert not (tmp_path / "run").exists()  # refused before any work
    assert "Traceback" not in proc.stderr
    refusals = [line for line in proc.stderr.splitlines() if ": error:" in line]
    assert len(refusals) == 2 and all("napari-reddino[gui]" in line for line in refusals), proc.stderr


def test_napari_and_qt_are_only_in_the_gui_extra():
    tomllib = pytest.importorskip("tomllib")
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not requirement_names(project["dependencies"]) & {g.lower() for g in GUI}
    gui = requirement_names(project["optional-dependencies"]["gui"])
    assert {"napari", "magicgui", "qtpy", "npe2"} <= gui
    assert any("napari[all]" in r for r in project["optional-dependencies"]["gui"])  # brings a Qt binding
