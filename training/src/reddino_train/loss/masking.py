"""Block-wise (BEiT) masks for iBOT with per-image ratios stratified over the batch, as in DINOv2's collate.

Everything is drawn from a seed per (step, slot) so a step's masks do not depend on how the global batch is split
across processes, on data-loader workers, or on whether the run was resumed."""

from __future__ import annotations

import math

import numpy as np


def block_mask(rng: np.random.Generator, grid: tuple[int, int], n_target: int, min_patches: int = 4,
               min_aspect: float = 0.3) -> np.ndarray:
    """Add random rectangles (area ≥ ``min_patches``, aspect in [min_aspect, 1/min_aspect]) until ``n_target``
    patches are masked or no block fits; never more than ``n_target``."""
    h_grid, w_grid = grid
    mask = np.zeros(grid, dtype=bool)
    log_aspect = (math.log(min_aspect), math.log(1 / min_aspect))
    count = 0
    while count < n_target:
        budget = n_target - count
        added = 0
        for _ in range(10):
            area = rng.uniform(min_patches, max(budget, min_patches))
            aspect = math.exp(rng.uniform(*log_aspect))
            h = int(round(math.sqrt(area * aspect)))
            w = int(round(math.sqrt(area / aspect)))
            if 0 < h < h_grid and 0 < w < w_grid:
                top = int(rng.integers(0, h_grid - h + 1))
                left = int(rng.integers(0, w_grid - w + 1))
                block = mask[top:top + h, left:left + w]
                new = h * w - int(block.sum())
                if 0 < new <= budget:
                    block[:] = True
                    added = new
                    break
        if added == 0:
            break
        count += added
    return mask


def step_masks(seed: int, step: int, n_images: int, grid: tuple[int, int], probability: float = 0.5,
               ratio_min_max=(0.1, 0.5), min_patches: int = 4, min_aspect: float = 0.3,
               select: slice | np.ndarray | None = None) -> np.ndarray:
    """Masks for the ``n_images`` global crops of one global batch: ``int(n_images·probability)`` of them get a
    ratio drawn from their own stratum of ``ratio_min_max`` (strata assigned to images at random), the others
    none. ``select`` picks this process's images; only those are drawn."""
    n_patches = grid[0] * grid[1]
    n_masked = int(n_images * probability)
    edges = np.linspace(ratio_min_max[0], ratio_min_max[1], n_masked + 1)
    order = np.random.default_rng([seed, step, 0]).permutation(n_images)  # image slot -> stratum (or none)
    wanted = np.arange(n_images)[select] if select is not None else np.arange(n_images)
    out = np.zeros((len(wanted), *grid), dtype=bool)
    for row, slot in enumerate(wanted):
        stratum = order[slot]
        if stratum >= n_masked:
            continue
        rng = np.random.default_rng([seed, step, 1, int(slot)])
        ratio = rng.uniform(edges[stratum], edges[stratum + 1])
        out[row] = block_mask(rng, grid, int(n_patches * ratio), min_patches, min_aspect)
    return out
