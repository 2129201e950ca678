"""The shipped demonstration weights (napari_reddino/demo_model): small, loadable offline, documented."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import napari_reddino

DEMO = Path(napari_reddino.__file__).parent / "demo_model"

pytestmark = pytest.mark.skipif(not (DEMO / "config.json").is_file(), reason="demo weights not shipped")


def test_demo_folder_is_small_and_has_a_card():
    files = {p.name for p in DEMO.iterdir() if p.is_file()}
    assert {"config.json", "model.safetensors", "MODEL_CARD.md"} <= files
    assert sum(p.stat().st_size for p in DEMO.iterdir() if p.is_file()) <= 25 * 2 ** 20
    card = (DEMO / "MODEL_CARD.md").read_text()
    for needle in ("demonstration model", "reddino-demo-tiny", "MIT", "Iterations", "weighted F1"):
        assert needle in card


def test_demo_loads_offline_and_embeds_cells():
    from napari_reddino.embed import embed_crops
    from napari_reddino.models import load_model

    model = load_model("demo")
    rng = np.random.default_rng(0)
    crops = [rng.integers(0, 255, (40 + i, 44, 3), dtype=np.uint8) for i in range(3)]
    emb = embed_crops(crops, model, batch_size=2, precision="fp32")
    assert emb.shape == (3, model.num_features) and np.isfinite(emb).all()
    assert not np.allclose(emb[0], emb[1])


def test_demo_weights_are_trained_not_random():
    """Training moves the weights far from timm's init; a random-init copy of the same architecture differs."""
    import torch
    from reddino_train.eval.features import random_init_like

    from napari_reddino.models import load_model

    model = load_model("demo")
    rand = random_init_like(model)
    w, r = model.state_dict(), rand.state_dict()
    diff = [float((w[k] - r[k]).abs().mean()) for k in w if w[k].is_floating_point() and w[k].ndim == 2]
    assert np.mean(diff) > 1e-3 and all(torch.isfinite(v).all() for v in w.values())
