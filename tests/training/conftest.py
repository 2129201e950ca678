"""Tiny training set-ups: a prepared-style folder of small synthetic smears and a config with a 42 px, 32-d ViT."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

TINY = {  # 42 px = a 3x3 patch grid; blocks of 1+ patches so that iBOT masks fit it
    "masking": {"min_num_patches": 1},
    "model": {"img_size": 42, "embed_dim": 32, "depth": 2, "num_heads": 2},
    "head": {"n_prototypes": 64, "ibot_n_prototypes": 64, "hidden_dim": 32, "bottleneck_dim": 16},
    "crops": {"global_size": 42, "local_size": 28},
    "optim": {"batch_size_per_gpu": 4, "epochs": 1, "epoch_length": 20, "warmup_epochs": 0, "base_lr": 0.02},
    # KoLeo 0 (RedDino's value): KoLeo uses nearest neighbours inside each process's batch, as in DINOv2, so
    # an N-process step equals the one-process step only without it
    "loss": {"warmup_teacher_temp_epochs": 0.5, "koleo_weight": 0.0},
    "train": {"num_workers": 0, "checkpoint_every": 0, "precision": "fp32"},
}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """12 random 56x56 'smear' PNGs with a manifest, as `reddino-train prepare` writes them."""
    from PIL import Image

    root = tmp_path_factory.mktemp("prepared")
    rng = np.random.default_rng(0)
    rows = ["path,source,image,kind"]
    (root / "patches").mkdir()
    for i in range(12):
        img = np.full((56, 56, 3), 230, np.uint8)
        for _ in range(6):
            y, x = rng.integers(6, 50, 2)
            yy, xx = np.ogrid[:56, :56]
            img[(yy - y) ** 2 + (xx - x) ** 2 < rng.integers(16, 60)] = rng.integers(120, 200, 3)
        Image.fromarray(img).save(root / "patches" / f"p{i}.png")
        rows.append(f"patches/p{i}.png,synthetic,s{i}.png,patch")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="session")
def tiny_labelled(tiny_data, tmp_path_factory):
    """The same 12 smears as a labelled folder (classes 0/1 alternating) for the kNN monitor."""
    root = tmp_path_factory.mktemp("labelled")
    lines = (tiny_data / "manifest.csv").read_text().splitlines()
    rows = [lines[0] + ",class"] + [f"{line},{i % 2}" for i, line in enumerate(lines[1:])]
    (root / "manifest.csv").write_text("\n".join(rows).replace("patches/", f"{tiny_data}/patches/") + "\n")
    return root


def write_config(path, **sections) -> str:
    """A YAML file: cpu_tiny + TINY + ``sections`` (dicts merged per section)."""
    from reddino_train.config import deep_merge

    cfg = deep_merge({"base": "cpu_tiny"}, TINY)
    cfg = deep_merge(cfg, sections)
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


@pytest.fixture
def tiny_cfg(tmp_path):
    from reddino_train.config import load_config

    def make(*overrides, **sections):
        return load_config(write_config(tmp_path / "tiny.yaml", **sections), list(overrides))

    return make
