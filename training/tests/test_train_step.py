"""One optimiser step: the student moves by AdamW with the parameter groups' rates, the teacher by the EMA formula;
config overrides and schedules."""

from __future__ import annotations

import math

import pytest
import torch

from napari_reddino.images import InputError
from reddino_train.config import load_config
from reddino_train.models import build_student_teacher
from reddino_train.train.checkpoint import load_checkpoint
from reddino_train.train.loop import train
from reddino_train.train.optim import param_groups
from reddino_train.train.schedules import Schedules


def test_one_step_updates_student_by_adamw_groups_and_teacher_by_ema(tiny_cfg, tiny_data, tmp_path):
    cfg = tiny_cfg()
    torch.manual_seed(int(cfg["train"]["seed"]))
    student0, _ = build_student_teacher(cfg)  # the loop seeds the same way: this is its step-0 model
    p0 = {k: v.clone() for k, v in student0.state_dict().items()}
    train(cfg, tiny_data, tmp_path / "run", max_steps=1, progress=False)
    ck = load_checkpoint(tmp_path / "run")
    s1, t1 = ck["student"], ck["teacher"]
    hp = Schedules.from_config(cfg, 4).at(0)
    assert hp["lr"] == pytest.approx(0.02 * math.sqrt(4 / 1024))
    # teacher_1 = m * teacher_0 + (1 - m) * student_1 with teacher_0 = student_0
    for k in p0:
        assert torch.allclose(t1[k], hp["momentum"] * p0[k] + (1 - hp["momentum"]) * s1[k], atol=1e-7), k
    # AdamW's first step moves each parameter by lr * lr_mult * |g| / (|g| + eps): lr * lr_mult wherever the
    # gradient is not tiny, never more; after decoupled weight decay lr * wd * wd_mult
    checked = set()
    for g in param_groups(student0, 0.2, 1.0):
        rate, largest = hp["lr"] * g["lr_mult"], 0.0
        for name in g["names"]:
            decayed = p0[name] * (1 - hp["lr"] * g["lr_mult"] * hp["wd"] * g["wd_mult"])
            step = (decayed - s1[name]).abs()
            assert (step > 1e-9).float().mean() > 0.5, name  # the optimiser moved it
            assert step.max() <= rate * 1.001, name
            largest = max(largest, step.max().item())
        assert largest == pytest.approx(rate, rel=0.1), g["names"]  # the group's own rate (0.2 vs 1 apart)
        checked.add((g["lr_mult"], g["wd_mult"]))
    assert {(0.2, 1.0), (1.0, 0.0), (1.0, 1.0)} <= checked  # patch_embed slowed, biases/norms/LayerScale not decayed


def test_param_groups_no_decay_on_biases_norms_layerscale():
    cfg = load_config("cpu_tiny", ["model.depth=2", "model.embed_dim=32", "model.num_heads=2", "model.img_size=28"])
    student, _ = build_student_teacher(cfg)
    groups = param_groups(student, 0.2, 0.5)
    by_name = {n: g for g in groups for n in g["names"]}
    assert by_name["backbone.blocks.0.ls1.gamma"]["wd_mult"] == 0
    assert by_name["backbone.blocks.1.norm1.weight"]["wd_mult"] == 0
    assert by_name["dino_head.mlp.0.bias"]["wd_mult"] == 0
    assert by_name["dino_head.mlp.0.weight"]["wd_mult"] == 1
    assert by_name["backbone.patch_embed.proj.weight"]["lr_mult"] == pytest.approx(0.2 * 0.5 ** 3)  # layer 0 of 3
    assert by_name["backbone.blocks.0.attn.qkv.weight"]["lr_mult"] == pytest.approx(0.5 ** 2)
    assert by_name["dino_head.last_layer.weight_v"]["is_last_layer"]


def test_schedules_follow_the_recipe():
    cfg = load_config("reddino_vits14")
    s = Schedules.from_config(cfg, global_batch=280)
    assert s.total_steps == 32000
    assert s.at(320)["lr"] == pytest.approx(2e-4 * math.sqrt(280 / 1024))  # end of the 0.1-epoch warmup
    assert s.at(0)["lr"] == 0 and s.at(32000)["lr"] == pytest.approx(1e-6)
    assert s.at(0)["wd"] == pytest.approx(0.04) and s.at(32000)["wd"] == pytest.approx(0.2)
    assert s.at(0)["momentum"] == pytest.approx(0.994) and s.at(32000)["momentum"] == pytest.approx(1.0)
    assert s.at(0)["teacher_temp"] == pytest.approx(0.04)
    assert s.at(32000)["teacher_temp"] == pytest.approx(0.04 + 0.03 / 3)  # 10 of 30 warm-up epochs


def test_config_names_overrides_and_augmentation(tmp_path):
    cfg = load_config("reddino_vitb14", ["loss.koleo_weight=0.1", "crops.n_local=8", "optim.base_lr=1e-3",
                                         "augmentation=dinov2"])
    assert cfg["model"]["arch"] == "vit_base_patch14_dinov2" and cfg["optim"]["batch_size_per_gpu"] == 196
    assert cfg["loss"]["koleo_weight"] == 0.1 and cfg["crops"]["n_local"] == 8 and cfg["optim"]["base_lr"] == 1e-3
    assert cfg["augmentation"]["name"] == "dinov2" and "global_crops" in cfg["augmentation"]
    red = load_config("reddino_vits14", ["augmentation.normalize.max_pixel_value=1.0"])
    assert red["augmentation"]["name"] == "reddino" and red["augmentation"]["normalize"]["max_pixel_value"] == 1.0
    assert red["loss"]["centering"] == "sinkhorn_knopp" and red["crops"]["n_local"] == 0
    with pytest.raises(InputError, match="koleo_wieght"):
        load_config("cpu_tiny", ["loss.koleo_wieght=0.1"])
    with pytest.raises(InputError, match="cpu_tiny"):
        load_config("no_such_config")
