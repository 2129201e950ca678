"""Every control of every dock says what it does, in the words of the person at the microscope."""

import re

import pytest

pytestmark = pytest.mark.gui

# the code's own names, which mean nothing at the microscope
JARGON = re.compile(r"\bpatch(es)?\b|\bCLS\b|labels? layer|label id|n_neighbors|min_dist|U-Net|watershed|\btimm\b|"
                    r"checkpoint|embedding", re.IGNORECASE)


def _controls(root, skip=()):
    """The interactive widgets under ``root`` (the inner line edit of a spin or combo box is its box')."""
    from qtpy.QtWidgets import (
        QAbstractButton, QAbstractItemView, QAbstractSpinBox, QComboBox, QLineEdit, QListWidget, QSlider, QWidget)

    kinds = (QAbstractButton, QComboBox, QAbstractSpinBox, QLineEdit, QListWidget, QSlider)
    out = []
    def under(w, ancestor):
        while w is not None:
            if w is ancestor:
                return True
            w = w.parentWidget()
        return False

    for w in root.findChildren(QWidget):
        if not isinstance(w, kinds) or any(under(w, s) for s in skip):
            continue
        parent = w.parentWidget()
        if isinstance(parent, (QComboBox, QAbstractSpinBox)):
            continue
        if isinstance(parent, QAbstractItemView) or (parent is not None and
                                                      isinstance(parent.parentWidget(), QAbstractItemView)):
            continue  # a table's corner button, a list's scroll bars
        out.append(w)
    return out


def _tooltip(w, root) -> str:
    """What Qt shows on hover: the widget's tooltip, else its nearest container's (a file picker's button and
    text field share the picker's), never the dock's own."""
    while w is not None and w is not root:
        if w.toolTip():
            return w.toolTip()
        w = w.parentWidget()
    return ""


def _describe(w) -> str:
    text = w.text() if hasattr(w, "text") and callable(w.text) else ""
    return f"{type(w).__name__}({text!r}, object {w.objectName()!r})"


def _dock_names():
    from importlib.resources import files

    from npe2 import PluginManifest

    manifest = PluginManifest.from_file(str(files("napari_reddino") / "napari.yaml"))
    return [w.display_name for w in manifest.contributions.widgets]


def test_every_dock_is_walked():
    assert len(_dock_names()) == 6


@pytest.mark.parametrize("name", _dock_names())
def test_every_control_of_every_dock_has_a_plain_tooltip(make_napari_viewer, name):
    viewer = make_napari_viewer()
    _, dock = viewer.window.add_plugin_dock_widget("napari-reddino", name)
    controls = _controls(dock)
    assert len(controls) >= 5
    missing = [_describe(w) for w in controls if not _tooltip(w, dock).strip()]
    assert not missing, f"{name}: no tooltip on {missing}"
    jargon = {_tooltip(w, dock) for w in controls if JARGON.search(_tooltip(w, dock))}
    assert not jargon, f"{name}: tooltips in the code's words: {jargon}"
    from qtpy.QtGui import QShowEvent

    dock.showEvent(QShowEvent())  # a shown dock breaks its long tooltips into lines
    assert max(len(line) for w in controls for line in _tooltip(w, dock).splitlines()) <= 80


def test_umap_canvas_controls_have_tooltips(qtbot):
    from napari_reddino._widgets.umap_canvas import UmapCanvas

    canvas = UmapCanvas()
    qtbot.addWidget(canvas)
    try:
        controls = _controls(canvas, skip=[canvas.qt_viewer])  # napari's own viewer has its own tooltips
        assert len(controls) == 4
        assert all(_tooltip(w, canvas) for w in controls), [_describe(w) for w in controls]
        assert canvas.legend.toolTip()
    finally:
        canvas.close_canvas()
