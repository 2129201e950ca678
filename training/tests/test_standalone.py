"""reddino-train stands alone on a headless node: it depends on the plugin's core only (not napari's window),
imports and runs with napari, Qt and magicgui absent, and uses only the plugin's public names."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

TRAINING = Path(__file__).resolve().parents[1]
GUI = ("napari", "magicgui", "qtpy", "superqt", "vispy", "npe2", "PyQt5", "PyQt6", "PySide2", "PySide6")
# a None entry makes `import napari` raise ModuleNotFoundError, as where it is not installed
WITHOUT_GUI = f"import sys\nsys.modules.update(dict.fromkeys({GUI!r}))\n"


def test_depends_on_the_plugin_core_only():
    tomllib = pytest.importorskip("tomllib")
    deps = tomllib.loads((TRAINING / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {re.split(r"[<>=!~\[;\s]", d, maxsplit=1)[0].lower(): d for d in deps}
    assert names["napari-reddino"] == "napari-reddino"  # no extra: not the gui one
    assert not set(names) & {g.lower() for g in GUI}


def test_imports_and_runs_without_napari_or_qt(tmp_path):
    code = """
        import importlib, pkgutil
        from PIL import Image
        import reddino_train  # every module (the plugin's core ones: tests/test_headless.py)
        for m in pkgutil.walk_packages(reddino_train.__path__, "reddino_train."):
            if not m.name.endswith("__main__"):
                importlib.import_module(m.name)
        from reddino_train.cli import main
        from napari_reddino.sample_data import synthetic_smear
        Image.fromarray(synthetic_smear(0, shape=(160, 200))[0]).save("smear.png")
        try:
            main(["--help"])
        except SystemExit as exc:
            print("help", exc.code)
        print("prepare", main(["prepare", "smear.png", "--out", "prep", "--cells", "threshold", "--patches",
                               "--patch-size", "56"]))
    """
    proc = subprocess.run([sys.executable, "-c", WITHOUT_GUI + textwrap.dedent(code)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "help 0" in proc.stdout and "prepare 0" in proc.stdout, proc.stdout
    manifest = (tmp_path / "prep" / "manifest.csv").read_text().splitlines()
    kinds = {row.split(",")[manifest[0].split(",").index("kind")] for row in manifest[1:]}
    assert kinds == {"patch", "cell"}


def test_uses_only_public_names_of_the_plugin():
    private = []
    for path in sorted((TRAINING / "src" / "reddino_train").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("napari_reddino"):
                names = node.module.split(".") + [a.name for a in node.names]
            elif isinstance(node, ast.Import):
                names = [part for a in node.names if a.name.startswith("napari_reddino") for part in a.name.split(".")]
            else:
                continue
            if any(n.startswith("_") for n in names):
                private.append(f"{path.relative_to(TRAINING)}:{node.lineno}")
    assert private == []
