"""reddino-train: DINOv2 with the RedDino recipe, headless (never imports napari or Qt)."""

__version__ = "0.1.0"
