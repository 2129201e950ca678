"""The training set written by ``reddino-train prepare``: a folder with ``manifest.csv`` and image files."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from napari_reddino.images import InputError, read_image


class SmearDataset:
    """``dataset[i]`` = ``transform(rgb uint8 (H, W, 3))`` of the i-th manifest row (the raw array without a
    transform). ``kinds`` keeps only those kinds (``"patch"``, ``"cell"``); ``table`` is the manifest."""

    def __init__(self, root, transform=None, kinds=None):
        self.root = Path(root)
        manifest = self.root / "manifest.csv"
        if not manifest.is_file():
            raise InputError(f"Received {str(self.root)!r}, which has no manifest.csv; accepted: a folder made by "
                             "`reddino-train prepare`.")
        table = pd.read_csv(manifest)
        if "path" not in table.columns:
            raise InputError(f"Received {str(manifest)!r} without a 'path' column; accepted: a manifest written by "
                             "`reddino-train prepare`.")
        if kinds is not None:
            table = table[table["kind"].isin([kinds] if isinstance(kinds, str) else list(kinds))]
        if table.empty:
            raise InputError(f"Received {str(self.root)!r} with no samples{f' of kind {kinds}' if kinds else ''}; "
                             "accepted: a training set with at least one sample.")
        self.table = table.reset_index(drop=True)
        self.paths = [self.root / p for p in self.table["path"]]
        self.transform = transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        image = read_image(self.paths[index])
        return image if self.transform is None else self.transform(image)
