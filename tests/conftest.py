"""Shared fixtures. Nothing here (or in any test) touches the network."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("NAPARI_REDDINO_OFFLINE", "1")
os.environ.setdefault("NAPARI_REDDINO_WARM_UMAP", "0")  # no background compile in every dock test (see test_embedding)


@pytest.fixture(autouse=True)
def own_pin_file(tmp_path_factory, monkeypatch):
    """Downloads record their pins in a file of the test's own, never in the user's ~/.napari-reddino."""
    monkeypatch.setenv("NAPARI_REDDINO_PINS", str(tmp_path_factory.mktemp("pins") / "pins.json"))

SHARED_DATA = Path(os.environ.get("NAPARI_REDDINO_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it are skipped when it is absent."""
    if not (SHARED_DATA / "chula-rbc-12").is_dir():
        pytest.skip(f"real data not found at {SHARED_DATA}")
    return SHARED_DATA.resolve()


@pytest.fixture(scope="session")
def tiny_vit():
    """A small random-init DINOv2-architecture ViT (patch 14, 56 px, 64-d) built with timm, like the
    published RedDino models but small enough for tests."""
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=64,
                              depth=2, num_heads=2, num_classes=0)
    return model.eval()


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A small random-init DINOv2-architecture ViT saved in timm's Hugging Face folder format (the format of
    the published RedDino weights and of `reddino-train export`); load it with ``local-dir:<path>``."""
    from napari_reddino.models import create_model, save_local_dir

    path = tmp_path_factory.mktemp("tiny_model")
    save_local_dir(create_model("vit_small_patch14_dinov2", img_size=56, embed_dim=48, depth=2, num_heads=2),
                   path)
    return path


@pytest.fixture
def empty_hub_cache(tmp_path, monkeypatch):
    """An empty Hugging Face cache (whatever this machine has cached) and no loaded-model cache."""
    import huggingface_hub.constants as hf_constants

    from napari_reddino import models

    monkeypatch.setattr(hf_constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    models.clear_cache()
    yield tmp_path / "hf-cache"
    models.clear_cache()


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


@pytest.fixture(scope="session")
def patch_mean_vit():
    """A timm DINOv2 ViT (56 px input, patch 14) whose patch token is exactly the mean colour of its
    patch: no blocks, zero position embedding, no final norm, an averaging patch projection. Every
    token then tells where it came from, which makes stitching and alignment checkable."""
    import timm
    import torch

    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=3,
                              depth=0, num_heads=1, num_classes=0)
    with torch.no_grad():
        model.pos_embed.zero_()
        model.patch_embed.proj.weight.zero_()
        model.patch_embed.proj.bias.zero_()
        for c in range(3):
            model.patch_embed.proj.weight[c, c] = 1.0 / (14 * 14)
    model.norm = torch.nn.Identity()
    model.pretrained_cfg = dict(model.pretrained_cfg, mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0))
    return model.eval()
