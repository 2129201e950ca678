"""The docks' old import path of :mod:`napari_reddino.runtime` (the public home); new code imports that."""

from napari_reddino.runtime import import_torch  # noqa: F401
