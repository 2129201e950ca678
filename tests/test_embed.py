"""Per-cell embeddings: the batched path equals RedDino's published per-crop reference loop."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest
import torch

from napari_reddino.formats import features_frame, write_table
from napari_reddino import embed
from napari_reddino.cells import crop_cells
from napari_reddino.images import InputError


@pytest.fixture(scope="module")
def tiny_vit():
    """Small DINOv2-architecture ViT whose output depends on its input: random init leaves LayerScale at
    1e-5, which makes every CLS token nearly the same, so the gammas are set to 1."""
    import timm

    torch.manual_seed(0)
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, img_size=56, embed_dim=64,
                              depth=2, num_heads=2, num_classes=0).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def smear():
    """Textured background with 7 disk 'cells' of different sizes (two touching), labels 3, 5, 9, ..."""
    rng = np.random.default_rng(0)
    image = rng.integers(150, 220, size=(120, 160, 3), dtype=np.uint8)
    labels = np.zeros((120, 160), np.int32)
    yy, xx = np.mgrid[:120, :160]
    for i, (cy, cx, r) in enumerate([(20, 20, 9), (22, 33, 8), (60, 80, 14), (100, 30, 6), (90, 130, 11),
                                     (30, 120, 5), (70, 20, 10)]):
        disk = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        labels[disk & (labels == 0)] = 3 + 2 * i
        image[disk] = rng.integers(60, 140, size=(int(disk.sum()), 3), dtype=np.uint8)
    return image, labels


def reference_embedding(image, box, model):
    """RedDino's usage notebook: PIL crop → Resize((H, W)) → ToTensor → Normalize → model, batch 1."""
    from PIL import Image
    from torchvision import transforms

    h, w = model.patch_embed.img_size
    tf = transforms.Compose([transforms.Resize((h, w)), transforms.ToTensor(),
                             transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    y0, x0, y1, x1 = box
    crop = Image.fromarray(image).crop((x0, y0, x1, y1))
    with torch.no_grad():
        return model(tf(crop).unsqueeze(0))[0].numpy()


def test_batched_path_equals_reference_loop(smear, tiny_vit):
    image, labels = smear
    table, emb = embed.embed_cells(image, labels, tiny_vit, batch_size=3, precision="fp32")
    assert list(table["label"]) == [3, 5, 7, 9, 11, 13, 15]
    assert emb.dtype == np.float32 and emb.shape == (7, tiny_vit.num_features)
    for row, vec in zip(table.itertuples(), emb):
        box = (int(row.bbox_y0), int(row.bbox_x0), int(row.bbox_y1), int(row.bbox_x1))
        np.testing.assert_allclose(vec, reference_embedding(image, box, tiny_vit), rtol=0, atol=1e-5)
    assert np.abs(emb - emb[0]).max() > 0.1  # different cells give different vectors


def test_crop_options_reach_the_crops(smear, tiny_vit):
    image, labels = smear
    _, plain = embed.embed_cells(image, labels, tiny_vit, precision="fp32")
    _, padded = embed.embed_cells(image, labels, tiny_vit, precision="fp32", pad_square=True, margin=0.2)
    _, masked = embed.embed_cells(image, labels, tiny_vit, precision="fp32", mask_neighbours=True)
    crops = [c for _, c in crop_cells(image, labels, pad_square=True, margin=0.2)]
    np.testing.assert_allclose(padded, embed.embed_crops(crops, tiny_vit, precision="fp32"), atol=1e-5)
    assert np.abs(padded - plain).max() > 0.1
    # only the two touching cells (labels 3 and 5) see a neighbour inside their box
    changed = np.abs(masked - plain).max(axis=1) > 1e-3
    assert changed[:2].all() and not changed[2:].any()


def test_bf16_autocast_stays_close_to_fp32(smear, tiny_vit):
    image, labels = smear
    _, fp32 = embed.embed_cells(image, labels, tiny_vit, precision="fp32")
    _, bf16 = embed.embed_cells(image, labels, tiny_vit, precision="bf16")
    assert bf16.dtype == np.float32
    cos = (fp32 * bf16).sum(1) / np.linalg.norm(fp32, axis=1) / np.linalg.norm(bf16, axis=1)
    assert cos.min() > 0.98
    assert not np.array_equal(fp32, bf16)  # autocast really ran in bf16


def test_preprocess_matches_torchvision(tiny_vit, rng):
    from PIL import Image
    from torchvision import transforms

    crop = rng.integers(0, 256, size=(37, 23, 3), dtype=np.uint8)
    ref = transforms.Compose([transforms.Resize((56, 56)), transforms.ToTensor(),
                              transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    x = embed.preprocess([crop, Image.fromarray(crop)], tiny_vit)
    assert x.shape == (2, 3, 56, 56) and x.dtype == torch.float32
    torch.testing.assert_close(x[0], ref(Image.fromarray(crop)), rtol=0, atol=1e-6)
    torch.testing.assert_close(x[1], x[0])


def test_no_cells_gives_empty_results(tiny_vit):
    table, emb = embed.embed_cells(np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40), np.int32), tiny_vit)
    assert len(table) == 0 and emb.shape == (0, tiny_vit.num_features)


def test_progress_and_cancel_stop_the_crop_thread(smear, tiny_vit):
    image, labels = smear
    gen = embed.iter_embed_cells(image, labels, tiny_vit, batch_size=2, precision="fp32")
    steps = [next(gen), next(gen)]
    assert steps[0].done == 0 and steps[1].done == 2 and steps[1].total == 7
    gen.close()  # what a napari worker's quit does between yields
    assert not any(t.name == "reddino-crops" and t.is_alive() for t in threading.enumerate())


def test_errors_in_the_crop_thread_reach_the_caller(tiny_vit):
    with pytest.raises(InputError, match="accepted"):
        embed.embed_crops([np.zeros((10, 10, 3), np.uint8), np.zeros((5, 5, 7, 2))], tiny_vit)
    with pytest.raises(InputError, match="batch size"):
        embed.embed_crops([np.zeros((10, 10, 3), np.uint8)], tiny_vit, batch_size=0)


def test_frame_and_files(smear, tiny_vit, tmp_path):
    image, labels = smear
    table, emb = embed.embed_cells(image, labels, tiny_vit, precision="fp32")
    frame = features_frame(table, emb, "smear.png")
    d = tiny_vit.num_features
    assert list(frame.columns[:4]) == ["image", "label", "centroid_x", "centroid_y"] and frame.shape == (7, 4 + d)
    assert frame["centroid_x"].iloc[2] == pytest.approx(80) and frame["centroid_y"].iloc[2] == pytest.approx(60)
    for name in ("cells.parquet", "cells.csv"):
        back = pd.read_parquet(write_table(frame, tmp_path / name)) if name.endswith("parquet") \
            else pd.read_csv(write_table(frame, tmp_path / name))
        np.testing.assert_allclose(back[[f"emb_{i}" for i in range(d)]].to_numpy(), emb, rtol=1e-6)
    with pytest.raises(InputError, match=".parquet or .csv"):
        write_table(frame, tmp_path / "cells.xlsx")
