"""The docks' old import path of :mod:`napari_reddino.torch_runtime` (the public home); new code imports that."""

from napari_reddino.torch_runtime import import_torch  # noqa: F401
