"""npe2 reader for whole-slide TIFFs (OME-TIFF, SVS, NDPI...): one multiscale RGB layer, read lazily.

napari's builtin reader opens a pyramidal TIFF as one plain image of its full resolution, read whole (a
40,000 x 40,000 scan is 4.8 GB); this one gives napari the slide's levels (``slides.read``), so napari reads
only the tiles on screen at the level that fits. OME-Zarr is left to napari-ome-zarr.
"""

from __future__ import annotations


def get_reader(path):
    """The reader for ``path`` when it is a single TIFF (else None, for napari to try another)."""
    if isinstance(path, (list, tuple)):
        if len(path) != 1:
            return None
        path = path[0]
    return read_slide if str(path).lower().endswith((".tif", ".tiff", ".svs", ".ndpi", ".scn")) else None


def read_slide(path):
    from napari_reddino.slides.read import open_slide

    path = path[0] if isinstance(path, (list, tuple)) else path
    slide = open_slide(path)
    um = slide.pixel_size(0)
    meta = {"name": slide.name, "rgb": True, "contrast_limits": [0, 255],
            "multiscale": len(slide.levels) > 1, **({"scale": (um, um), "units": "µm"} if um else {})}
    return [(slide.levels if len(slide.levels) > 1 else slide.levels[0], meta, "image")]
