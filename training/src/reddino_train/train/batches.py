"""Batches that depend only on (seed, step): sample order, augmentation randomness and masks are all drawn from
the global sample position, so a resumed run, a run with other workers, and N processes splitting the global
batch all see exactly the same data."""

from __future__ import annotations

import random

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..loss.masking import step_masks


class PositionSampler(Sampler):
    """Yields this rank's global sample positions, from ``start_step`` on, forever (rank r takes the r-th
    contiguous block of each global batch)."""

    def __init__(self, global_batch: int, rank: int = 0, world: int = 1, start_step: int = 0):
        self.global_batch, self.rank, self.world, self.start_step = global_batch, rank, world, start_step
        self.local_batch = global_batch // world

    def __iter__(self):
        step = self.start_step
        while True:
            base = step * self.global_batch + self.rank * self.local_batch
            yield from range(base, base + self.local_batch)
            step += 1


class SeededSamples(Dataset):
    """Maps a global position to ``transform(image)`` with every RNG seeded from (seed, position)."""

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed
        self._perm_epoch, self._perm = None, None

    def __len__(self):
        return len(self.dataset)

    def _index(self, position: int) -> int:
        epoch, offset = divmod(position, len(self.dataset))
        if epoch != self._perm_epoch:
            self._perm_epoch = epoch
            self._perm = np.random.default_rng([self.seed, epoch]).permutation(len(self.dataset))
        return int(self._perm[offset])

    def __getitem__(self, position: int):
        sample_seed = int(np.random.default_rng([self.seed, position, 7]).integers(2**31 - 1))
        random.seed(sample_seed)
        np.random.seed(sample_seed)
        torch.manual_seed(sample_seed)
        transform = getattr(self.dataset, "transform", None)
        if hasattr(transform, "reseed"):  # the augmentation keeps its own generators (albumentations 2.x)
            transform.reseed(sample_seed)
        return position, self.dataset[self._index(position)]


class CollateCrops:
    """[(position, {"global_crops": [..], "local_crops": [..]})] → crop-major stacks (n_g·B, 3, S, S) plus this
    process's iBOT masks, drawn here (in the workers) from (seed, step, slot) like every other random choice."""

    def __init__(self, cfg: dict, global_batch: int, grid: tuple[int, int], n_global: int = 2):
        m = cfg["masking"]
        self.seed, self.global_batch, self.grid, self.n_global = int(cfg["train"]["seed"]), global_batch, grid, n_global
        self.mask_kw = dict(probability=float(m["mask_sample_probability"]), ratio_min_max=tuple(m["mask_ratio_min_max"]),
                            min_patches=int(m["min_num_patches"]), min_aspect=float(m["min_aspect"]))

    def __call__(self, samples: list) -> dict:
        positions = [p for p, _ in samples]
        crops = [c for _, c in samples]
        n_g, n_l = len(crops[0]["global_crops"]), len(crops[0].get("local_crops") or [])
        out = {"global_crops": torch.stack([s["global_crops"][c] for c in range(n_g) for s in crops])}
        out["local_crops"] = (torch.stack([s["local_crops"][c] for c in range(n_l) for s in crops]) if n_l else None)
        step = positions[0] // self.global_batch
        slots = [c * self.global_batch + p % self.global_batch for c in range(n_g) for p in positions]
        out["masks"] = torch.from_numpy(step_masks(self.seed, step, n_g * self.global_batch, self.grid,
                                                   select=np.asarray(slots), **self.mask_kw))
        out["step"] = step
        return out


def build_loader(dataset, cfg: dict, rank: int, world: int, start_step: int, num_workers: int | None = None,
                 patch_size: int = 14):
    global_batch = int(cfg["optim"]["batch_size_per_gpu"]) * world
    workers = int(cfg["train"]["num_workers"] if num_workers is None else num_workers)
    grid = (int(cfg["crops"]["global_size"]) // patch_size,) * 2
    return torch.utils.data.DataLoader(
        SeededSamples(dataset, int(cfg["train"]["seed"])), batch_size=global_batch // world,
        sampler=PositionSampler(global_batch, rank, world, start_step), num_workers=workers,
        collate_fn=CollateCrops(cfg, global_batch, grid), pin_memory=torch.cuda.is_available(), drop_last=True,
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None)
