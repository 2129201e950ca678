"""Multiscale image layers in the docks: which level a step processes, and where its results go on the slide.

What napari's readers give for a slide (looked at with napari 0.9.2):

- napari-ome-zarr: an RGB OME-Zarr (axes c, y, x) becomes three gray multiscale layers ``<name>: red``,
  ``: green``, ``: blue`` (colormaps red/green/blue, added together), all from the same path. The docks offer
  them as one image, ``<name>`` (:class:`ColourLayers`), whose levels are the three stacked into (y, x, 3);
- napari's builtin reader (when it is picked for a ``.zarr``): one multiscale layer of shape (3, y, x), shown
  gray with a channel slider; the docks read it as a colour image (channels first);
- a pyramidal TIFF: napari's builtin reader makes a plain image of the full resolution (read whole), not a
  multiscale layer.

A step on a multiscale layer processes one level at its full resolution (``LevelBox``; the default is the
finest level under ``DOCK_PIXELS``) and places its result layers so they lie on the slide: level k's pixel is
``level_factor`` level-0 pixels, its centre half of that minus half a pixel in (``level_placement``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_reddino.images import WHOLE_PIXELS

DOCK_PIXELS = 16_000_000  # the default level's budget: a dock's step holds its level, and more, in memory
MAX_DOCK_PIXELS = WHOLE_PIXELS  # above this a dock refuses the level, as a step refuses to read a file whole
COLOURS = ("red", "green", "blue")


class ColourLayers:
    """The three channel layers one RGB OME-Zarr becomes in napari-ome-zarr, as the one image they show."""

    def __init__(self, layers):
        self.layers = list(layers)
        first = self.layers[0]
        names = [la.name.rsplit(": ", 1)[0] for la in self.layers]
        self.name = names[0] if len(set(names)) == 1 and ": " in first.name else _stem(first.source.path)
        self.scale, self.translate = first.scale, first.translate
        self.multiscale, self.ndim, self.rgb = first.multiscale, 2, True
        self.source = first.source

    @property
    def data(self):
        import dask.array as da

        levels = [la.data if la.multiscale else [la.data] for la in self.layers]
        stacked = [da.stack([_lazy(lv[k]) for lv in levels], axis=-1) for k in range(len(levels[0]))]
        return stacked if self.multiscale else stacked[0]

    def __eq__(self, other):
        return isinstance(other, ColourLayers) and [id(la) for la in other.layers] == [id(la) for la in self.layers]

    def __hash__(self):
        return hash(tuple(id(la) for la in self.layers))


def _stem(path) -> str:
    from napari_reddino.slides.read import slide_name

    return slide_name(path) if path else "image"


def _lazy(array):
    import dask.array as da

    return array if hasattr(array, "dask") else da.from_array(array, chunks=getattr(array, "chunks", "auto"))


def colour_groups(layers) -> list[list]:
    """Groups of image layers that are one RGB image split by napari-ome-zarr: three gray 2-D layers read from
    the same path by that reader, with the same shape; in red, green, blue order by their colormaps when the
    file names the colours (OME "omero" metadata), else in the order napari added them (the channels')."""
    by_path: dict[str, list] = {}
    for layer in layers:
        src = getattr(layer, "source", None)
        if src is not None and src.path and src.reader_plugin == "napari-ome-zarr" and not layer.rgb \
                and layer.ndim == 2:
            by_path.setdefault(str(src.path), []).append(layer)
    groups = []
    for found in by_path.values():
        shapes = {tuple(la.data[0].shape if la.multiscale else la.data.shape) for la in found}
        named = {la.colormap.name: la for la in found}
        if len(shapes) == 1 and len(found) == 3:
            groups.append([named[c] for c in COLOURS] if all(c in named for c in COLOURS) else found)
    return groups


def image_choices(layers) -> list:
    """(name, image) for each image a step can start from: layers as they are, except that the channel layers
    of one RGB OME-Zarr are offered once, as a :class:`ColourLayers` (listed where its red layer is)."""
    groups = colour_groups(layers)
    grouped = {id(la): g for g in groups for la in g}
    out = []
    for layer in layers:
        group = grouped.get(id(layer))
        if group is None:
            out.append((layer.name, layer))
        elif layer is group[0]:
            image = ColourLayers(group)
            out.append((image.name, image))
    return out


def find_image(viewer, name: str):
    """The layer, or the :class:`ColourLayers`, called ``name`` (None when there is none)."""
    from napari.layers import Image

    for label, image in image_choices([la for la in viewer.layers if isinstance(la, Image)]):
        if label == name:
            return image
    return None


def levels_of(image) -> list:
    """The image's levels (one for a plain layer) as lazy (y, x[, c]) arrays, channels last."""
    data = list(image.data) if image.multiscale else [image.data]
    if image.ndim == 3 and not image.rgb:  # the builtin reader's (c, y, x) OME-Zarr
        import dask.array as da

        return [da.moveaxis(_lazy(d), 0, -1) for d in data]
    return data


def level_factor(full: int, level: int) -> float:
    """How many level-0 pixels one pixel of a level spans, from their sizes: an integer when the level is the
    full size divided by it (rounded up or down, as pyramids are written), else the ratio."""
    f = round(full / level)
    return float(f) if f >= 1 and level in (full // f, -(-full // f)) else full / level


def level_placement(image, level: int) -> tuple[tuple, tuple]:
    """(scale, translate) in y, x of a layer made from ``level`` of ``image`` so that it lies on the slide."""
    levels = levels_of(image)
    scale = np.asarray(image.scale[-2:], float)
    translate = np.asarray(image.translate[-2:], float)
    f = np.array([level_factor(levels[0].shape[i], levels[level].shape[i]) for i in (0, 1)])
    return tuple(scale * f), tuple(translate + (f - 1) / 2 * scale)


def default_level(image, max_pixels: float | None = None) -> int:
    """The finest level with at most ``max_pixels`` (default ``DOCK_PIXELS``) pixels (the coarsest when none
    is)."""
    max_pixels = DOCK_PIXELS if max_pixels is None else max_pixels
    levels = levels_of(image)
    for k, lv in enumerate(levels):
        if lv.shape[0] * lv.shape[1] <= max_pixels:
            return k
    return len(levels) - 1


def level_choices(image) -> list[tuple[str, int]]:
    levels = levels_of(image)
    out = []
    for k, lv in enumerate(levels):
        h, w = lv.shape[:2]
        f = level_factor(levels[0].shape[1], w)
        coarse = "full resolution" if k == 0 else f"{f:g}x coarser"
        large = " - too large for a dock: napari-reddino slide" if h * w > MAX_DOCK_PIXELS else ""
        out.append((f"{k}: {w:,} x {h:,} px ({coarse}, {h * w / 1e6:.1f} Mpx){large}", k))
    return out


LEVEL_TIP = ("This image is a slide stored at several resolutions. The step reads the chosen one whole, at "
             "its own full resolution: 0 is the finest; each further level is coarser (cells fewer pixels "
             f"across). The default is the finest level of at most {DOCK_PIXELS / 1e6:.0f} megapixels, which "
             f"a dock holds in memory comfortably; a level over {MAX_DOCK_PIXELS / 1e6:.0f} megapixels is refused. "
             "For a whole slide at full resolution use the command napari-reddino slide. The results are placed "
             "over the slide whatever the level")


class LevelBox:
    """A "level" combo that follows an image combo: shown only when the chosen image is multiscale, set to
    ``default_level`` each time another image is chosen."""

    def __init__(self, image_combo, resolve=None):
        from magicgui.widgets import ComboBox

        self.image_combo = image_combo
        self.resolve = resolve  # name -> image, for a dock whose image combo holds names
        self.combo = ComboBox(label="level", choices=self._choices)
        self.combo.tooltip = LEVEL_TIP
        self._shown_for = None
        image_combo.changed.connect(self.refresh)
        self.refresh()

    def _choices(self, *_):
        image = self.image
        return level_choices(image) if image is not None and image.multiscale else [("0", 0)]

    @property
    def image(self):
        value = self.image_combo.value
        if isinstance(value, str):
            return self.resolve(value) if self.resolve else None
        return value

    def refresh(self, *_):
        image = self.image
        self.combo.reset_choices()
        multi = image is not None and image.multiscale
        self.combo.visible = multi
        key = _key(image)
        if multi and key != self._shown_for:
            self.combo.value = default_level(image)
        self._shown_for = key

    @property
    def value(self) -> int:
        image = self.image
        return int(self.combo.value or 0) if image is not None and image.multiscale else 0


def _key(image):
    return None if image is None else tuple(id(la) for la in getattr(image, "layers", [image]))


def image_level(image, level: int):
    """Level ``level`` of ``image`` (lazy), checked to be a 2-D gray or colour plane."""
    from napari_reddino.images import InputError

    levels = levels_of(image)
    if not 0 <= level < len(levels):
        raise InputError(f"Received level {level} of {image.name!r}, which has levels 0 to {len(levels) - 1}; "
                         "accepted: one of those.")
    check_fits_dock(image.name, levels[level].shape, f"level {level} of ")
    return levels[level]


def check_fits_dock(name: str, shape, what: str = "") -> None:
    """Refuse an image (or a slide's level) a dock would hold in memory beyond ``MAX_DOCK_PIXELS``: napari
    would be killed for memory, losing the session, before the step could say anything."""
    from napari_reddino.images import InputError

    h, w = shape[:2]
    if h * w > MAX_DOCK_PIXELS:
        raise InputError(f"Received {what}{name!r}, {w:,} x {h:,} pixels ({h * w / 1e6:,.0f} megapixels); accepted: "
                         f"at most {MAX_DOCK_PIXELS / 1e6:.0f} megapixels in a dock, which holds the image in memory. "
                         "Choose a coarser level, or run `napari-reddino slide` on the file: it works tile by tile.")


def source_path(image) -> Path | None:
    src = getattr(image, "source", None)
    return Path(src.path) if src is not None and src.path else None


def cells_shape(viewer, image: str):
    """(y, x) of the cells layer of ``image`` (None without one): which level of a slide its cells are on."""
    from napari_reddino.style import cells_layer_name

    name = cells_layer_name(image)
    return tuple(viewer.layers[name].data.shape[:2]) if name in viewer.layers else None


def image_pixels(viewer, name: str, shape=None):
    """The pixels of image ``name`` (a layer or ``ColourLayers``) that a cells layer of ``shape`` (y, x) was
    made from: the level of that size of a multiscale image (else level 0). Lazy for a multiscale image; None
    when no such image is open."""
    from napari_reddino._widgets._common import image_layer_data

    image = find_image(viewer, name)
    if image is None:
        return None
    level = 0
    if image.multiscale and shape is not None:
        sizes = [tuple(lv.shape[:2]) for lv in levels_of(image)]
        level = sizes.index(tuple(shape[:2])) if tuple(shape[:2]) in sizes else 0
    return image_layer_data(image, level)
