"""reddino-train's fixtures, so that `pytest training/tests` runs alone (nothing here touches the network):
tiny training set-ups (a prepared-style folder of small synthetic smears, a config with a 42 px, 32-d ViT) and
the few general ones it shares with the plugin's tests/conftest.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import yaml

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NAPARI_REDDINO_OFFLINE", "1")
os.environ.setdefault("NAPARI_REDDINO_WARM_UMAP", "0")  # no background UMAP compile

SHARED_DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", Path(__file__).resolve().parents[2] / ".." / "shared" / "data"))


@pytest.fixture(autouse=True)
def own_pin_file(tmp_path_factory, monkeypatch):
    """Downloads record their pins in a file of the test's own, never in the user's ~/.napari-reddino."""
    monkeypatch.setenv("NAPARI_REDDINO_PINS", str(tmp_path_factory.mktemp("pins") / "pins.json"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it are skipped when it is absent."""
    if not (SHARED_DATA / "chula-rbc-12").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA.resolve()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_vit():
    """A small random-init DINOv2-architecture ViT (patch 14, 56 px, 64-d) built with timm."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=64,
                              depth=2, num_heads=2, num_classes=0)
    return model.eval()


@pytest.fixture
def run_killed():
    """``run_killed(code, **names)``: run ``code`` in a fresh Python that kills itself with SIGKILL (no cleanup,
    no ``finally``) where it calls ``die()``; the names are passed as strings. Returns the exit status (-9)."""
    import subprocess
    import sys
    import textwrap

    def run(code: str, **names) -> int:
        prelude = "import os, signal\ndef die():\n    os.kill(os.getpid(), signal.SIGKILL)\n"
        assigns = "".join(f"{k} = {str(v)!r}\n" for k, v in names.items())
        proc = subprocess.run([sys.executable, "-c", prelude + assigns + textwrap.dedent(code)],
                              capture_output=True, text=True, timeout=120)
        return proc.returncode

    return run


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
