"""Thin napari widgets, one per pipeline step; all work is in the headless core."""
