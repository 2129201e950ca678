"""The layer contract, one home for the docks: what the plugin's layers carry and how a dock puts them into
napari. Names: ``style.cells_layer_name`` / ``style.pca_layer_name``. A cells layer (Labels ``<image> cells``)
carries the cell table as ``features`` and, once features are made, ``metadata["reddino"]``
(:func:`features_metadata`; read back by ``embedding.layer_items``); a PCA layer (Image ``<image> PCA``)
carries ``metadata["reddino_pca"]`` (:func:`put_pca_layer`; a saved session reads it back).
"""

from __future__ import annotations

import numpy as np


from napari_reddino.embedding import LAYER_KEY as REDDINO  # a cells layer's features: embeddings, their labels, ...

REDDINO_PCA = "reddino_pca"  # a PCA layer's model, image, patch, upsampled, background, factor
REDDINO_UMAP = "reddino_umap"  # the map's Points layer: the cells layers it shows


def cells_features(layer) -> dict | None:
    """A cells layer's ``metadata["reddino"]`` (None before its features are made, or for another layer)."""
    return (getattr(layer, "metadata", None) or {}).get(REDDINO)


def pca_record(layer) -> dict | None:
    """A PCA layer's ``metadata["reddino_pca"]`` (None for another layer)."""
    return (getattr(layer, "metadata", None) or {}).get(REDDINO_PCA)


def features_metadata(embeddings, labels, model, image: str) -> dict:
    """What a cells layer's ``metadata["reddino"]`` holds once its cells have RedDino features."""
    return {"embeddings": embeddings, "labels": np.asarray(labels), "model": model, "image": image}


def cell_outlines(labels, width: int):
    """The outlines napari draws of ``labels`` in contour mode ``width`` (napari's own ``get_contours``, so the
    pixels are the same), for a step's ``work()`` to compute off the GUI thread (0.2-0.35 s of it on a 2560x1920
    smear, on every redraw of its cells). None where napari would not draw them from the whole array."""
    from napari.layers.labels._labels_utils import get_contours

    labels = np.asarray(labels)
    if labels.ndim != 2 or not labels.size or not width:
        return None
    return get_contours(labels, int(width), 0)


def use_outlines(layer, labels, outlines, width: int) -> bool:
    """Let napari draw the cells layer ``layer`` from ``outlines`` (:func:`cell_outlines` of ``labels``, computed
    in a worker) instead of computing them on the GUI thread, for as long as the layer holds ``labels`` itself,
    unpainted, in contour mode ``width`` over background 0, and napari redraws it whole; at the first painted
    stroke or any other change napari computes them again, as always (napari's private API, 0.9.2: where it is
    missing nothing is changed and False is returned)."""
    base = getattr(layer, "__wrapped__", layer)  # napari hands plugins a proxy hiding the private API
    own = getattr(type(base), "_calculate_contour", None)
    if outlines is None or own is None or getattr(base, "multiscale", True) or \
            np.shape(outlines) != np.shape(labels):
        return False

    def forget(*_):
        base.__dict__.pop("_calculate_contour", None)
        try:
            base.events.paint.disconnect(forget)
        except (AttributeError, TypeError, ValueError, RuntimeError):
            pass

    def calculate(raw, data_slice):
        whole = all((s.start or 0) == 0 and s.stop == n for s, n in zip(data_slice, outlines.shape))
        if whole and base.data is labels and base.contour == width and np.shape(raw) == outlines.shape and \
                base.colormap.background_value == 0:
            return outlines
        forget()  # painted, edited or re-styled: napari's own outlines from now on
        return own(base, raw, data_slice)

    forget()
    base._calculate_contour = calculate
    base.events.paint.connect(forget)
    return True


def iter_put_cells_layer(viewer, image: str, labels, *, features, look: dict, scale, translate, metadata: dict,
                         outlines=None):
    """Add or update the cells layer of ``image`` (``look``: ``smear_link.cells_look``), as a generator of a
    dock's display slices: a new layer is made hidden and outlined when shown in the next slice (making a napari
    layer and outlining a large smear are each a few tenths of a second). ``outlines``: :func:`cell_outlines` of
    ``labels`` at the look's contour width, computed in the step's worker. Returns the layer."""
    from napari_reddino._widgets._common import upsert_layer
    from napari_reddino.style import cells_layer_name

    name = cells_layer_name(image)
    new = name not in viewer.layers
    width = look.get("contour", 0)
    if not new:  # before the update that redraws it
        use_outlines(viewer.layers[name], labels, outlines, width)
    layer = upsert_layer(viewer, name, "labels", labels, features=features, scale=scale, translate=translate,
                         metadata=metadata, **look, **({"visible": False} if new else {}))
    if new:
        use_outlines(layer, labels, outlines, width)
    yield
    if new and layer in viewer.layers:
        layer.visible = True
        yield
    return layer


def put_pca_layer(viewer, image: str, rgb: np.ndarray, *, model, patch, upsampled: bool, factor, scale, translate,
                  background: str = "black", hidden_when_new: bool = False):
    """Add or update the PCA overlay of ``image`` (``rgb``: float in [0, 1], RGB or RGBA), under the cells'
    outlines; ``hidden_when_new``: a new layer is made hidden (the pipeline's: over the whole smear it hides the
    stain), a re-run leaves it as the user set it. Returns the layer."""
    from napari_reddino._widgets._common import upsert_layer
    from napari_reddino._widgets.smear_link import place_under_cells
    from napari_reddino.pca import overlay_scale_translate
    from napari_reddino.style import PCA_OPACITY, pca_layer_name

    name = pca_layer_name(image)
    data = np.round(np.asarray(rgb) * 255).astype(np.uint8)
    if name in viewer.layers and viewer.layers[name].data.shape[-1] != data.shape[-1]:
        viewer.layers.remove(name)  # RGB <-> RGBA: a fresh layer, napari won't switch in place
    first = name not in viewer.layers
    pca_scale, pca_translate = overlay_scale_translate(patch, scale, translate, upsampled=upsampled, factor=factor)
    layer = upsert_layer(viewer, name, "image", data, rgb=True, opacity=PCA_OPACITY, scale=pca_scale,
                         translate=pca_translate, **({"visible": False} if first and hidden_when_new else {}),
                         metadata={REDDINO_PCA: {"model": model, "image": image, "patch": patch,
                                                 "upsampled": upsampled, "background": background,
                                                 "factor": factor}})
    place_under_cells(viewer, layer)  # the cells' outlines stay on top of the overlay's colours
    return layer
