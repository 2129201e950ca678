"""How cells are drawn on the smear, and rows of the pooled cell table ↔ cells: outlines coloured by class,
marks on the objects that are not red cells, a legend, the selection, click lookup.

The cells layer ``<image> cells`` itself draws every object's outline (contour mode) in its own colour
(a direct colormap; rules and colours: ``napari_reddino.style``); its ``features`` carry each cell's
measurements, type, class and prediction, which napari shows on hover. Beside it: ``<labels> objects``
(a named ring on each white cell, platelet, cluster and artefact) and ``<labels> legend`` (cells per class
and per type, to the right of the smear).

A selection is drawn as an additive yellow Image layer ``<labels> selection`` holding the selected cells'
outlines: a look-up table over precomputed outline pixels (``lut[rings]``) and an 8-bit texture upload.
A Labels layer with a direct colormap was ~10x slower (napari maps every pixel through the colormap).
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from napari_reddino import style

SOURCE_KWARGS = ("scale", "translate")
CLASS_COLUMNS = ("class", "prediction", "confidence")  # what the annotation dock writes into the features
DRAW_BUDGET_S = 0.1  # GUI-thread time for redrawing smears in one turn of the event loop; the rest on the next


def _selection_colormap():
    from napari.utils.colormaps import Colormap

    return Colormap([[0, 0, 0, 1], style.rgba(style.SELECTION_COLOR)], name="reddino selection")


def _keep_active(viewer, add):
    """Run ``add()`` (which adds a layer) without stealing the user's active layer, nor selecting the new one:
    each change of the active layer switches napari's layer controls, which repaints both canvases at once
    (0.1-0.15 s each in software OpenGL with a few smears open; a new layer made active, then the user's made
    active again, was two). napari's private switch (0.9.2); where it is missing, the user's layer is made
    active again afterwards."""
    layers = getattr(viewer.layers, "__wrapped__", viewer.layers)  # napari hands plugins a proxy
    if isinstance(getattr(layers, "_activate_on_insert", None), bool):
        before = layers._activate_on_insert
        layers._activate_on_insert = False
        try:
            return add()
        finally:
            layers._activate_on_insert = before
    active = viewer.layers.selection.active
    layer = add()
    if active is not None and active in viewer.layers:
        viewer.layers.selection.active = active
    return layer


def _upsert_points(viewer, name: str, data, features: pd.DataFrame, *, like, **kwargs):
    """Create or update the Points layer ``name`` (same scale and translate as ``like``); none is made for
    no points, and an existing one is emptied (kept, so that the user's choices on it stay)."""
    from napari.layers import Points

    data = np.asarray(data, dtype=float).reshape(-1, 2)
    old = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 (no .get)
    if old is not None and not isinstance(old, Points):
        viewer.layers.remove(old)
        old = None
    if not len(data):
        if old is not None:
            old.data = data
        return old
    place = {k: getattr(like, k) for k in SOURCE_KWARGS}
    if old is not None and old.data.shape == data.shape and np.array_equal(old.data, data) and \
            old.features.reset_index(drop=True).equals(features.reset_index(drop=True)) and \
            all(np.array_equal(getattr(old, k), v) for k, v in place.items()):
        return old  # the same marks (a class changed, not the objects): no redraw
    if old is not None:
        with old.events.blocker_all():
            old.data = data
            old.features = features
        for key, value in {**place, **kwargs}.items():
            setattr(old, key, value)
        old.refresh()
        return old
    return _keep_active(viewer, lambda: viewer.add_points(data, name=name, features=features, **place,
                                                          **kwargs))


def place_under_cells(viewer, layer) -> None:
    """Move ``layer`` (a PCA overlay) just above its image, under the cells' outlines, so that colours
    painted over the whole smear never hide them."""
    layers = viewer.layers
    if layer not in layers:
        return
    cells = [i for i, la in enumerate(layers) if la is not layer and la.name.endswith(style.CELLS_SUFFIX)
             and la.name[:-len(style.CELLS_SUFFIX)] == layer.name[:-len(style.PCA_SUFFIX)]]
    here = layers.index(layer)
    if cells and cells[0] < here:
        layers.move(here, cells[0])


def outline_colours(features, classes) -> dict:
    """label -> RGBA of each cell's outline (``style.outline_colors`` on the cells layer's features)."""
    get = lambda col: features[col].to_numpy() if col in features.columns else None  # noqa: E731
    return style.outline_colors(features["label"].to_numpy(), get("type"), get("class"), get("prediction"),
                                {c.name: c.color for c in classes})


def cells_look(features, classes=None, dtype=None) -> dict:
    """How the cells layer is drawn, as napari layer properties (``colormap``, ``contour``, ``opacity``):
    outlines coloured by class (faded for a prediction) or by object type. Pass them when the layer is
    made, so that it is drawn once. ``dtype``: the labels' (uint8 or uint16), to build here the colour of
    every possible label that napari builds on the GUI thread when the layer is drawn (65,536 colours one
    by one for uint16: ~0.3 s); call it so in a step's ``work()``."""
    from napari.utils.colormaps import DirectLabelColormap

    from napari_reddino.annotate import default_classes

    classes = list(classes) if classes is not None else default_classes()
    colors = outline_colours(features, classes)
    colormap = DirectLabelColormap(color_dict={None: style.rgba(style.UNANNOTATED_COLOR),
                                               0: np.zeros(4, np.float32), **colors})
    if dtype is not None and np.dtype(dtype).itemsize <= 2:
        try:  # napari's private cache, kept by the colormap object: a miss only leaves the work to napari
            colormap._get_mapping_from_cache(np.dtype(dtype))
        except Exception:  # noqa: BLE001
            pass
    return {"colormap": colormap, "contour": style.CONTOUR_WIDTH, "opacity": 1.0}


def _same_colours(old, new) -> bool:
    """Whether two label colormaps give every label the same colour (then the layer need not be redrawn)."""
    a, b = getattr(old, "color_dict", None), getattr(new, "color_dict", None)
    if a is None or b is None or set(a.keys()) != set(b.keys()):
        return False
    keys = list(b.keys())
    return bool(np.allclose(np.array([a[k] for k in keys], float), np.array([b[k] for k in keys], float)))


def draw_cells(viewer, layer, classes=None, look=None) -> None:
    """Draw the Labels layer ``layer`` (``<image> cells``) for reading: outlines coloured by class (faded
    for a prediction) or by object type, named rings on the objects that are not red cells, the legend,
    and its features (measurements, type, class) shown on hover. Reads the class and prediction from the
    layer's ``features``; updates the layers in place on every call, the cells layer only where its look
    changed, in one redraw. ``look``: ``cells_look`` of these features when a worker computed it."""
    for _ in iter_draw_cells(viewer, layer, classes, look):
        pass


def iter_draw_cells(viewer, layer, classes=None, look=None):
    """``draw_cells`` in three slices of the GUI thread (a generator: the outlines, the marks, the legend):
    making a napari layer takes a few tenths of a second, so a dock's display yields between them."""
    from napari_reddino._widgets._common import one_refresh
    from napari_reddino.annotate import default_classes

    classes = list(classes) if classes is not None else default_classes()
    features = style.with_label_index(layer.features)
    if features is None or "label" not in features.columns:
        return
    if not features.equals(layer.features):
        layer.features = features
    look = look if look is not None else cells_look(features, classes)
    changed = {k: v for k, v in look.items()
               if not (_same_colours(layer.colormap, v) if k == "colormap" else getattr(layer, k) == v)}
    if changed:
        with one_refresh(layer):
            for key, value in changed.items():
                setattr(layer, key, value)
        yield
        if layer not in viewer.layers:  # the user removed it meanwhile
            return
    _draw_marks(viewer, layer, features)
    yield
    if layer not in viewer.layers:
        return
    _draw_legend(viewer, layer, features, classes)
    viewer.tooltip.visible = True  # this viewer only (napari's setting stays as the user left it)


def recolour_in_place(layer, colors: dict) -> bool:
    """Give the cells of a drawn cells layer whose outline colour changed (``colors``: label -> RGBA, as
    ``outline_colours`` gives) their new colour without napari redrawing the smear. napari's colormap setter
    recomputes the outlines over the whole smear, uploads them to the screen again and builds its 65,536-entry
    colour table in a Python loop: about a second of the GUI thread per smear, on every class change. The
    outlines on the screen hold the label numbers (uint8/uint16 labels), so only the changed cells' entries
    of the layer's colormap and of the colour table napari's shader reads are changed. napari's private API
    (0.9.2): where any of it does not apply, nothing is changed and False is returned (the caller sets a new
    colormap the public way)."""
    try:
        from napari.layers import Labels
        from napari.utils.colormaps import DirectLabelColormap
        from napari.utils.colormaps.colormap import _texture_dtype

        layer = getattr(layer, "__wrapped__", layer)  # napari hands plugins a proxy hiding the private API
        cmap, dtype = layer.colormap, np.dtype(layer.data.dtype)
        if not (isinstance(layer, Labels) and isinstance(cmap, DirectLabelColormap) and
                cmap is layer._direct_colormap and dtype in (np.uint8, np.uint16) and not layer.multiscale and
                not layer.show_selected_label and not cmap.use_selection and 0 in cmap.color_dict and
                0 not in colors):
            return False
        new = {int(k): np.asarray(v, np.float32) for k, v in colors.items() if k is not None}
        changed = {k: v for k, v in new.items() if not np.array_equal(cmap.color_dict.get(k), v)}
        if not changed:
            return True
        key = (dtype, _texture_dtype(0, dtype))  # uint8/uint16 labels: a table as long as the data's range
        table = cmap._cache_mapping.get(key)
        if table is None:  # not drawn yet: the whole table, as napari would build it
            table = np.tile(np.asarray(cmap.default_color, np.float32), (np.iinfo(dtype).max + 1, 1))
            known = [k for k in cmap.color_dict if k is not None and 0 <= k < len(table)]
            table[known] = np.array([cmap.color_dict[k] for k in known], np.float32).reshape(-1, 4)
        cmap.color_dict.update(changed)
        keys = np.fromiter(changed, np.int64)
        inside = keys < len(table)
        table[keys[inside]] = np.stack(list(changed.values()))[inside]
        cmap._clear_cache()  # napari's derived look-ups (unique colours, label mappings) follow the new colours
        cmap._cache_mapping[key] = table
        layer._selected_color = layer.get_color(layer.selected_label)
    except (AttributeError, ImportError, KeyError, TypeError, ValueError):
        return False
    layer.events.colormap()  # napari's shader takes the new table; the outlines are not redrawn
    layer.events.selected_label()
    layer._update_thumbnail()
    return True


def recolour_cells(viewer, layer, classes=None, only_if_drawn: bool = False) -> None:
    """A cells layer after the classes or predictions in its features changed: the changed cells recoloured
    in place and the legend recounted (no redraw of the smear) where napari allows, else drawn anew; with
    ``only_if_drawn``, a Labels layer the plugin never drew as outlines (the user's own) is left as it looks."""
    from napari_reddino.annotate import default_classes

    classes = list(classes) if classes is not None else default_classes()
    features = layer.features
    if "label" not in features.columns:
        return
    if recolour_in_place(layer, outline_colours(features, classes)):
        if not _recount_legend(viewer, layer, features, classes):  # the outlines and marks stay
            _draw_legend(viewer, layer, features, classes)
    elif not only_if_drawn or getattr(layer, "contour", 0) == style.CONTOUR_WIDTH:  # outlines the plugin drew
        draw_cells(viewer, layer, classes)  # sets the colours with a redraw of the outlines


def _draw_marks(viewer, layer, features) -> None:
    marks = style.object_marks(features)
    ring = float(np.median(marks["size"])) if len(marks) else 0.0  # a typical ring's size
    _upsert_points(viewer, style.derived_layer_name(layer.name, style.OBJECTS_SUFFIX), marks[["y", "x"]],
                   marks[["label", "name", "color", "caption"]], like=layer, size=marks["size"].to_numpy(),
                   symbol="disc", face_color="transparent", border_color=[style.rgba(c) for c in marks["color"]],
                   border_width=0.08, border_width_is_relative=True,
                   text={"string": "{caption}", "color": {"feature": "color"}, "size": 10, "anchor": "upper_left",
                         "translation": [0, 0.5 * ring]})  # on the ring's top right


LEGEND_TEXT_SIZE = 0.5  # the legend's words, in rows of the legend (10 pt on a 480 px smear at 100 %)
LEGEND_CHAR_WIDTH = 0.6  # a character's width at that size, in rows (generous: napari's font is not fixed-width)


def _legend_points(layer, features, classes) -> tuple[list, list, list, float]:
    """The legend's points (row, col), words, colours and line height: one line per class with cells (and
    per other object type) to the right of the smear."""
    get = lambda col: features[col].fillna("").astype(str).to_numpy() if col in features.columns else (  # noqa: E731
        np.full(len(features), "", dtype=object))
    cls, pred = get("class"), get("prediction")
    types = features["type"].to_numpy() if "type" in features.columns else None
    shown = (cls != "") | (pred != "") | (np.asarray(types) == "rbc" if types is not None else True)
    entries = style.legend_entries(style.class_counts(classes, cls[shown], pred[shown]), types)
    h, w = np.asarray(layer.data).shape[-2:]
    step = max(h / 24, 6.0)
    data = [(step * (i + 0.5), w + step) for i in range(len(entries))]
    if entries:  # an invisible last point as far right as the words reach, so that napari's Home frames them
        words = max(len(t) for t, _ in entries)
        data.append((step * 0.5, w + step + LEGEND_CHAR_WIDTH * step * words))
        entries = [*entries, ("", "#00000000")]
    return data, [t for t, _ in entries], [style.rgba(c) for _, c in entries], step


def _draw_legend(viewer, layer, features, classes) -> None:
    """One line per class with cells (and per other object type) to the right of the smear."""
    data, words, colors, step = _legend_points(layer, features, classes)
    # napari sizes scaled text in world units, without the layer's scale (a slide's µm, or a level's 2**k):
    # the words' size is given in world units here (the swatches and the translation are in the layer's pixels)
    world = float(np.mean(np.abs(np.asarray(layer.scale[-2:], float))))
    _upsert_points(viewer, style.derived_layer_name(layer.name, style.LEGEND_SUFFIX), data,
                   pd.DataFrame({"text": words}), like=layer, size=0.7 * step, symbol="disc",
                   face_color=colors, border_color=[[1, 1, 1, c[3]] for c in colors], border_width=0.1,
                   text={"string": "{text}", "color": "white", "size": LEGEND_TEXT_SIZE * step * world, "scaling": True,
                         "anchor": "upper_left", "translation": [0.55 * step, 0.85 * step]})
    # napari puts upper_left text on the swatch's top left corner: the translation centres it on the swatch's
    # row and starts it just right of it. The words scale with the smear, as the swatches do: in screen points
    # they overlapped each other once a small window (1366x768) zoomed the smear out, and ran past the frame.


def _recount_legend(viewer, layer, features, classes) -> bool:
    """Update the legend's counts in place when its lines and colours stay the same (a class change that
    neither adds nor empties a class): its words, and the invisible last point when the longest line's
    length changed. Setting each property of the legend redrew it (ten redraws, a quarter of a second a
    smear). False, having changed nothing, when the lines themselves change (``_draw_legend`` then)."""
    name = style.derived_layer_name(layer.name, style.LEGEND_SUFFIX)
    old = viewer.layers[name] if name in viewer.layers else None  # noqa: SIM401 (no .get)
    data, words, colors, _ = _legend_points(layer, features, classes)
    if old is None or len(old.data) != len(data) or not len(data) or \
            not np.allclose(np.asarray(old.face_color, float), np.asarray(colors, float)):
        return False
    if list(old.features["text"]) != words:
        old.features = pd.DataFrame({"text": words})
    if not np.allclose(old.data, data):
        old.data = np.asarray(data, float)
    return True


def warm_class_colours() -> None:
    """Compile napari's numba code for a direct label colormap on int32 cell codes (the ``classes`` layer),
    which otherwise takes about a second of the GUI thread the first time the UMAP is shown. napari's
    private API, so any failure only leaves the compile to the first draw."""
    from napari.utils.colormaps import DirectLabelColormap

    cmap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: "red", 2: "blue"})
    cmap._data_to_texture(np.arange(16, dtype=np.int32).reshape(4, 4) % 3)


def warm_outline_shapes() -> None:
    """Compile napari's numba code for Shapes (the UMAP canvas' selection outline is one), which napari
    otherwise compiles on the GUI thread when the canvas first appears: seconds on a fresh install."""
    from napari.layers.shapes._accelerated_triangulate_dispatch import warmup_numba_cache

    warmup_numba_cache()


def outline_rings(labels: np.ndarray) -> np.ndarray:
    """Each cell's 2-pixel inner outline carrying its label (0 elsewhere): what a selection lights up."""
    from scipy import ndimage as ndi

    labels = np.asarray(labels)
    edge = (ndi.grey_erosion(labels, size=5) != labels) | (ndi.grey_dilation(labels, size=5) != labels)
    return np.where(edge & (labels > 0), labels, 0).astype(labels.dtype, copy=False)


def smear_geometry(labels: np.ndarray, pixels=None) -> dict:
    """What a UMAP session needs from a smear's labels, computed off the GUI thread (a second on a
    2560x1920 smear): its cells' centroids and fingerprint, and the image's (``pixels``), matching saved
    annotations (``annotation_match.Cells``), and their outlines (``outline_rings``). ``labels`` is kept:
    the session uses these only while the layer still holds this very array."""
    from napari_reddino.annotation_match import Cells

    return {"labels": labels, "cells": Cells(labels, pixels), "rings": outline_rings(labels)}


class SmearLink:
    def __init__(self, viewer, source_layers: list[str], source_of_row: np.ndarray, labels: np.ndarray,
                 geometry: dict | None = None):
        self.viewer = viewer
        self.sources = list(source_layers)
        self.source_of_row = np.asarray(source_of_row, dtype=np.int64)
        self.labels = np.asarray(labels, dtype=np.int64)
        order = np.argsort(self.source_of_row, kind="stable")  # each source's rows, in order, in one pass
        bounds = np.searchsorted(self.source_of_row[order], np.arange(len(self.sources) + 1))
        self._rows_of_source = [order[bounds[s]:bounds[s + 1]] for s in range(len(self.sources))]
        self._row_lut = []  # per source: label -> row (-1 where no row)
        for s in range(len(self.sources)):
            data = self._labels_data(s)
            lut = np.full(int(max(data.max(initial=0), self.labels[self._rows_of_source[s]].max(initial=0))) + 1,
                          -1, dtype=np.int64)
            rows = self._rows_of_source[s]
            lut[self.labels[rows]] = rows
            self._row_lut.append(lut)
        self._data = [getattr(self._layer(s), "data", None) for s in range(len(self.sources))]  # these rows' cells
        self._shown: list[np.ndarray | None] = [None] * len(self.sources)
        self._wanted = [np.zeros(0, np.int64) for _ in self.sources]
        self._ring_cache: list[np.ndarray | None] = [
            g["rings"] if g is not None and g["labels"] is self._data[s] else None
            for s, g in enumerate((geometry or {}).get(name) for name in self.sources)]
        self._watching: dict = {}
        self._drawn_classes: list[tuple | None] = [None] * len(self.sources)  # what each smear shows now
        self._cells: dict | None = None  # class, prediction, confidence per row, and the classes
        self._classes_stale = [False] * len(self.sources)
        self.pending: list[int] = []  # smears to draw on the next turns of the event loop
        self._to_reveal: set[int] = set()  # smears whose new selection layer is to be shown on the next turn
        self._scheduled = False

    def _layer(self, s):
        name = self.sources[s]
        return self.viewer.layers[name] if name in self.viewer.layers else None  # noqa: SIM401 (no .get)

    def _labels_data(self, s) -> np.ndarray:
        layer = self._layer(s)
        return np.asarray(layer.data) if layer is not None else np.zeros((1, 1), np.int32)

    def is_current(self, s) -> bool:
        return self._current(s)

    def _current(self, s) -> bool:
        """Whether source ``s`` still shows the cells these rows were made of: after a re-segmentation its
        label numbers mean other cells, so nothing of this session is drawn on it or read from it."""
        layer = self._layer(s)
        return layer is not None and layer.data is self._data[s]

    def _put(self, s, suffix: str, data: np.ndarray, kind: str = "labels", **create_kwargs):
        """Update the derived layer ``<source> <suffix>`` in place, or add it over the source."""
        name = style.derived_layer_name(self.sources[s], suffix)
        if name in self.viewer.layers:
            self.viewer.layers[name].data = data
            return self.viewer.layers[name]
        import napari.layers

        source = self._layer(s)
        kwargs = {k: getattr(source, k) for k in SOURCE_KWARGS} if source is not None else {}
        layer = getattr(napari.layers, kind.capitalize())(data, name=name, **kwargs, **create_kwargs, visible=False)
        layers = self.viewer.layers
        # just over its smear, not over smears on top of it: put there, not added on top and moved (a move
        # reorders every layer's drawing and repainted the window once more)
        at = layers.index(source) + 1 if source is not None and source in layers else len(layers)
        _keep_active(self.viewer, lambda: layers.insert(at, layer))
        self._to_reveal.add(s)  # shown on the next turn: making a layer and its first draw are each ~0.2 s here
        self.pending.insert(0, s)
        self._schedule()
        return layer

    # --- rows -> smear ----------------------------------------------------------------------------
    def _rings(self, s) -> np.ndarray:
        """Each cell's outline carrying its label (``outline_rings``): from ``smear_geometry`` when the
        worker computed it, else computed here once per source."""
        if self._ring_cache[s] is None:
            self._ring_cache[s] = outline_rings(self._labels_data(s))
        return self._ring_cache[s]

    def highlight(self, rows) -> None:
        """Outline the cells of ``rows`` on their smears."""
        rows = np.asarray(rows, dtype=np.int64)
        source = self.source_of_row[rows]
        order = np.argsort(source, kind="stable")  # grouped once: 100,000 rows of 100 slides in 10 ms
        bounds = np.searchsorted(source[order], np.arange(len(self.sources) + 1))
        for s in range(len(self.sources)):
            self._wanted[s] = np.sort(self.labels[rows[order[bounds[s]:bounds[s + 1]]]])
        self._draw_visible()

    def color_cells(self, annotated, predicted, confidence, classes, changed=None, draw: bool = True) -> None:
        """Give each row's cell its class (``annotated``), ``predicted`` class and ``confidence``: written
        into its cells layer's features and drawn as its outline's colour (``draw_cells``). ``changed``: the
        rows that may have changed (None: any), so that only their smears are compared; ``draw``: draw them now
        (else ``iter_draw``)."""
        self._cells = {"class": np.asarray(annotated, dtype=object), "prediction": np.asarray(predicted, dtype=object),
                       "confidence": np.asarray(confidence, dtype=np.float32), "classes": list(classes)}
        if changed is not None:  # the caller knows these rows changed: their smears are redrawn, no comparing
            for s in np.unique(self.source_of_row[changed]):
                self._drawn_classes[s], self._classes_stale[s] = None, True
            if draw:
                self._draw_visible()
            return
        for s, rows in enumerate(self._rows_of_source):  # redraw only the smears whose cells changed
            if not self._current(s):  # not open (a map of 100 slides, one open): drawn if it is opened again
                self._drawn_classes[s], self._classes_stale[s] = None, True
                continue
            now = tuple(self._cells[col][rows].tobytes() if col == "confidence" else tuple(self._cells[col][rows])
                        for col in CLASS_COLUMNS)
            if now != self._drawn_classes[s]:
                self._drawn_classes[s] = now
                self._classes_stale[s] = True
        if draw:
            self._draw_visible()

    def _draw_visible(self) -> None:
        """Redraw visible smears; a hidden smear is redrawn when it is shown (users flip through smears one
        at a time, and redrawing every hidden one would multiply the cost). Updates are drawn now, as many as
        ``DRAW_BUDGET_S`` of the GUI thread allows (each turn of the event loop repaints the window: ~0.2 s
        here), the rest on the next turns; a smear's first selection layer is made on a later turn, one smear
        a turn, and shown on the turn after (a lasso over several smears made a layer on each in one go, 0.3-1
        s each: the window froze for seconds; made at once for the first smear, it froze the lasso's release
        with the map's own update and repaint: 0.6-0.9 s)."""
        todo = []
        for s in sorted(range(len(self.sources)), key=lambda s: not len(self._wanted[s])):
            layer = self._layer(s)
            if layer is not None and layer.visible:
                todo.append(s)
            else:
                self._watch(s)
        todo = [s for s in todo if self._needs_draw(s)]
        new = [s for s in todo if self._needs_layer(s)]
        start, later = time.perf_counter(), []
        for i, s in enumerate(todo):
            if i == 0 or time.perf_counter() - start < DRAW_BUDGET_S:
                self._draw(s, make_layer=False)  # the classes now; a new selection layer waits for its turn
            if self._needs_draw(s) and s not in new:
                later.append(s)
        reveal = [s for s in self.pending if s in self._to_reveal]
        self.pending = [*reveal, *new, *later, *(s for s in self.pending if s not in todo and s not in reveal)]
        self._schedule()

    def _schedule(self) -> None:
        if self.pending and not self._scheduled:
            from napari_reddino._widgets._common import next_turn

            self._scheduled = True
            next_turn(self._draw_next)

    def _watch(self, s) -> None:
        """Draw hidden smear ``s`` when it is shown."""
        layer = self._layer(s)
        if layer is not None and s not in self._watching:
            self._watching[s] = lambda event=None, s=s: self._draw(s) if self._layer(s).visible else None
            layer.events.visible.connect(self._watching[s])

    def iter_draw(self):
        """Draw the shown smears that need it, one per turn of the event loop (a generator for a dock's display
        slices: recolouring a smear and its legend takes a few tenths of a second); hidden ones when shown."""
        for s in range(len(self.sources)):
            layer = self._layer(s)
            if layer is None or not layer.visible:
                self._watch(s)
            elif self._needs_draw(s):
                self._draw(s)
                yield

    def _draw_next(self) -> None:
        """One turn of the pending work: a new selection layer shown, or one made (hidden), or smears drawn for
        up to ``DRAW_BUDGET_S``."""
        self._scheduled = False
        start, drawn = time.perf_counter(), 0
        while self.pending and (not drawn or time.perf_counter() - start < DRAW_BUDGET_S):
            s = self.pending[0]
            if s in self._to_reveal:
                self.pending.pop(0)
                self._to_reveal.discard(s)
                name = style.derived_layer_name(self.sources[s], style.SELECTION_SUFFIX)
                if name in self.viewer.layers:
                    self.viewer.layers[name].visible = True  # its first draw: a turn of its own
                break
            layer = self._layer(s)
            if layer is None or not layer.visible or not self._needs_draw(s):
                self.pending.pop(0)
                continue
            made = self._needs_layer(s)
            if made and drawn:
                break  # a new layer gets a turn of its own
            self.pending.pop(0)
            self._draw(s)
            drawn += 1
            if made:
                break
        self._schedule()

    def _needs_layer(self, s) -> bool:
        """Whether drawing smear ``s`` makes its selection layer (a full-size layer: slow to make)."""
        return len(self._wanted[s]) > 0 and \
            style.derived_layer_name(self.sources[s], style.SELECTION_SUFFIX) not in self.viewer.layers

    def _needs_draw(self, s) -> bool:
        if not self._current(s):
            return False
        if self._cells is not None and self._classes_stale[s]:
            return True
        shown = self._shown[s]
        return len(self._wanted[s]) > 0 if shown is None else not np.array_equal(shown, self._wanted[s])

    def disconnect(self) -> None:
        for s in self._to_reveal:  # made for this session's selection: not left hidden
            name = style.derived_layer_name(self.sources[s], style.SELECTION_SUFFIX)
            if name in self.viewer.layers:
                self.viewer.layers[name].visible = True
        self._to_reveal.clear()
        self.pending = []  # a newer session draws these smears now
        for s, callback in self._watching.items():
            layer = self._layer(s)
            if layer is not None:
                layer.events.visible.disconnect(callback)
        self._watching.clear()

    def _draw(self, s, make_layer: bool = True) -> None:
        """Draw smear ``s``'s classes and selection (without ``make_layer``, not a selection that needs its
        layer made: ``_needs_layer``)."""
        if not self._current(s):
            return
        if self._cells is not None and self._classes_stale[s]:
            self._classes_stale[s] = False
            self._draw_classes(s)
        if not make_layer and self._needs_layer(s):
            return
        wanted = self._wanted[s]
        if self._shown[s] is not None and np.array_equal(self._shown[s], wanted):
            return
        if self._shown[s] is None and not len(wanted):
            return  # nothing selected yet: no layer (a full-size image per smear) until there is
        self._shown[s] = wanted
        lut = np.zeros(len(self._row_lut[s]), dtype=np.uint8)
        lut[wanted] = 1
        mask = lut[np.clip(self._rings(s), 0, len(lut) - 1)]
        self._put(s, style.SELECTION_SUFFIX, mask, kind="image", colormap=_selection_colormap(),
                  blending="additive", contrast_limits=(0, 1))

    def _draw_classes(self, s) -> None:
        layer = self._layer(s)
        rows = self._rows_of_source[s]
        features = layer.features.copy() if "label" in layer.features.columns else pd.DataFrame(
            {"label": self.labels[rows]})
        where = pd.Series(rows, index=self.labels[rows])
        at = where.reindex(features["label"].to_numpy()).to_numpy()  # row of each feature line (NaN: none)
        has = ~np.isnan(at)
        take = at[has].astype(np.int64)
        for col in CLASS_COLUMNS:
            values = np.full(len(features), np.nan if col == "confidence" else "", dtype=object)
            values[has] = self._cells[col][take]
            features[col] = values.astype(np.float32) if col == "confidence" else values
        layer.features = features
        recolour_cells(self.viewer, layer, self._cells["classes"])

    # --- smear -> rows ----------------------------------------------------------------------------
    def row_at(self, position) -> int | None:
        """The table row of the cell under ``position`` (world coordinates) on a visible source."""
        for s in range(len(self.sources)):
            layer = self._layer(s)
            if layer is None or not layer.visible or not self._current(s):
                continue
            value = layer.get_value(position, world=True)
            if isinstance(value, tuple):  # multiscale answers (level, value)
                value = value[-1]
            if value is None or int(value) <= 0 or int(value) >= len(self._row_lut[s]):
                continue
            row = int(self._row_lut[s][int(value)])
            if row >= 0:
                return row
        return None
