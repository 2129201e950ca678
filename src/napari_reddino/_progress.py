"""The docks' old import path of :mod:`napari_reddino.progress` (the public home); new code imports that."""

from napari_reddino.progress import Progress, Steps, run  # noqa: F401
