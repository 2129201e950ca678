"""Whole slides: images too big to hold, read lazily and worked on tile by tile.

``ngff.py``: OME-Zarr images and labels (read and written lazily, the one home of the format);
``synthetic.py``: a slide of any size composed from development smears, for benchmarks and tests;
``tiles.py``: which tile owns a cell (the tile plan); ``tiled.py`` + ``assemble.py``: a slide segmented tile
by tile out of core, resumable.
"""
