"""The plugin as napari sees it: a valid manifest, widgets under names that say the step, a Qt-free core."""

import importlib
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import napari_reddino

MANIFEST = Path(napari_reddino.__file__).with_name("napari.yaml")
CORE = ["images", "cells", "segment", "models", "embed", "pca", "embedding", "annotate", "review", "pipeline"]


def test_manifest_validates():
    from npe2 import PluginManifest

    pm = PluginManifest.from_file(MANIFEST)
    names = [w.display_name for w in pm.contributions.widgets]
    for step in ["Segment cells", "Extract RedDino features", "PCA overlay", "Embedding & annotation",
                 "Run the whole pipeline"]:
        assert any(step in n for n in names), (step, names)


def test_every_contribution_imports():
    data = yaml.safe_load(MANIFEST.read_text())
    for cmd in data["contributions"]["commands"]:
        module, attr = cmd["python_name"].split(":")
        assert callable(getattr(importlib.import_module(module), attr)), cmd["python_name"]


def test_core_imports_without_qt_napari_or_heavy_libraries():
    code = (
        "import sys\n"
        f"import {', '.join('napari_reddino.' + m for m in CORE)}\n"
        "bad = [m for m in ('qtpy', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6', 'napari', 'torch', 'cellpose', 'umap')"
        " if m in sys.modules]\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"headless core imported {out.stdout.strip()} at import time"


@pytest.mark.gui
def test_widgets_open_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    data = yaml.safe_load(MANIFEST.read_text())
    for w in data["contributions"]["widgets"]:
        dock, widget = viewer.window.add_plugin_dock_widget("napari-reddino", w["display_name"])
        assert widget is not None
