"""napari-reddino: blood-smear morphology with RedDino features in napari.

The headless core (no Qt) is importable without napari's GUI:
``images``, ``segment``, ``cells``, ``models``, ``embed``, ``pca``, ``embedding``, ``annotate``,
``pipeline``. Widgets live in ``napari_reddino._widgets``; the CLI in ``napari_reddino.cli``.
"""

__version__ = "0.1.0"
