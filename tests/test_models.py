"""Model loading from every supported format, on small random weights saved locally (never downloaded)."""

from __future__ import annotations

import json

import pytest
import torch

from napari_reddino import models, runtime
from napari_reddino.images import InputError
from napari_reddino.models import ModelLoadError


@pytest.fixture(autouse=True)
def _isolated(empty_hub_cache, tmp_path, monkeypatch):
    """An empty Hugging Face cache and no shipped demo, whatever the machine has."""
    monkeypatch.setattr(models, "DEMO_DIR", tmp_path / "no-demo")


@pytest.fixture(scope="module")
def vit():
    """DINOv2-like ViT with 64-d heads (so the head count is inferable like for real DINOv2 weights)."""
    torch.manual_seed(0)
    model = models.create_model("vit_small_patch14_dinov2", img_size=70, embed_dim=128, depth=2,
                                num_heads=2).eval()
    with torch.no_grad():  # LayerScale starts at 1e-5: lift it so the blocks (and head count) matter
        for name, p in model.named_parameters():
            if name.endswith("gamma"):
                p.fill_(1.0)
    return model


@pytest.fixture(scope="module")
def x():
    return torch.randn(2, 3, 70, 70, generator=torch.Generator().manual_seed(1))


def assert_same_model(loaded, reference, x):
    assert not loaded.training
    assert models.model_input_size(loaded) == (70, 70)
    assert tuple(loaded.pretrained_cfg["input_size"]) == (3, 70, 70)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reference(x), rtol=0, atol=0)
        patches = loaded.forward_features(x)[:, loaded.num_prefix_tokens:]
    assert patches.shape == (2, 25, 128)


def test_local_dir_round_trip(vit, x, tmp_path):
    folder = models.save_local_dir(vit, tmp_path / "export")
    assert {"config.json", "model.safetensors"} <= {p.name for p in folder.iterdir()}
    loaded = models.load_model(f"local-dir:{folder}")
    assert_same_model(loaded, vit, x)
    assert models.model_mean_std(loaded) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert models.load_model(str(folder)) is not None  # a bare folder path works too
    assert models.is_cached(f"local-dir:{folder}")


def test_dinov2_teacher_checkpoint(vit, x, tmp_path):
    teacher = {f"backbone.{k}": v for k, v in vit.state_dict().items()}
    teacher["backbone.mask_token"] = torch.zeros(1, 128)
    teacher["dino_head.mlp.0.weight"] = torch.zeros(8, 128)
    teacher["ibot_head.last_layer.weight_g"] = torch.ones(8, 1)
    torch.save({"teacher": teacher}, tmp_path / "teacher_checkpoint.pth")
    loaded = models.load_model(tmp_path / "teacher_checkpoint.pth")
    assert_same_model(loaded, vit, x)
    assert loaded.blocks[0].attn.num_heads == 2


def test_fsdp_chunked_blocks_and_bare_state_dicts(vit, x, tmp_path):
    chunked = {}
    for k, v in vit.state_dict().items():  # DINOv2 BlockChunk layout: blocks.<chunk>.<global index>.
        chunked[k.replace("blocks.1.", "blocks.1.1.").replace("blocks.0.", "blocks.0.0.")] = v
    torch.save({"model": {f"teacher.backbone.{k}": v for k, v in chunked.items()}}, tmp_path / "chunks.pth")
    assert_same_model(models.load_model(tmp_path / "chunks.pth"), vit, x)

    from safetensors.torch import save_file

    torch.save(vit.state_dict(), tmp_path / "bare.pth")
    save_file({k: v.contiguous() for k, v in vit.state_dict().items()}, tmp_path / "bare.safetensors")
    assert_same_model(models.load_model(tmp_path / "bare.pth"), vit, x)
    assert_same_model(models.load_model(tmp_path / "bare.safetensors"), vit, x)


def test_register_tokens_in_dinov2_layout(x, tmp_path):
    torch.manual_seed(2)
    reg = models.create_model("vit_small_patch14_reg4_dinov2", img_size=70, embed_dim=128, depth=1,
                              num_heads=2).eval()
    with torch.no_grad():
        reg.cls_token.normal_()  # O(1) values, so splitting CLS between two tensors rounds harmlessly
    sd = reg.state_dict()  # convert the timm layout back to DINOv2's (CLS inside pos_embed)
    dinov2 = {k: v for k, v in sd.items() if k not in ("reg_token", "cls_token", "pos_embed")}
    dinov2["register_tokens"] = sd["reg_token"]
    offset = torch.randn(1, 1, 128)
    dinov2["cls_token"] = sd["cls_token"] - offset
    dinov2["pos_embed"] = torch.cat([offset, sd["pos_embed"]], dim=1)
    torch.save(dinov2, tmp_path / "reg.pth")
    loaded = models.load_model(tmp_path / "reg.pth")
    assert loaded.num_prefix_tokens == 5
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), reg(x), rtol=1e-5, atol=1e-5)


def test_loaded_models_are_cached_and_reload_when_the_file_changes(vit, tmp_path):
    torch.save(vit.state_dict(), tmp_path / "w.pth")
    first = models.load_model(tmp_path / "w.pth")
    assert models.load_model(tmp_path / "w.pth") is first
    changed = {k: v + 1 if k == "norm.bias" else v for k, v in vit.state_dict().items()}
    torch.save(changed, tmp_path / "w.pth")
    import os

    os.utime(tmp_path / "w.pth", ns=(1, 10**18))
    second = models.load_model(tmp_path / "w.pth")
    assert second is not first
    torch.testing.assert_close(second.norm.bias, vit.norm.bias + 1)


class NotATensor:
    pass


@pytest.mark.parametrize("case, expected", [
    ("unknown", "accepted: hf-hub:Snarcy/RedDino"),
    ("missing", "not a file"),
    ("garbage", "weights-only torch checkpoint"),
    ("pickled-object", "objects other than tensors"),
    ("bad-safetensors", "as safetensors"),
    ("not-a-vit", "expected a DINOv2/timm ViT backbone"),
    ("hub-not-cached", "napari-reddino models download hf-hub:Snarcy/RedDino-small"),
    ("demo", "no demo weights"),
    ("empty-folder", "no config.json"),
])
def test_bad_models_give_one_line(case, expected, tmp_path):
    spec = {"unknown": "RedDino-tiny", "missing": str(tmp_path / "gone.pth"),
            "hub-not-cached": "hf-hub:Snarcy/RedDino-small", "demo": "demo",
            "empty-folder": f"local-dir:{tmp_path}"}.get(case)
    if case == "garbage":
        spec = tmp_path / "garbage.pth"
        spec.write_bytes(b"not a checkpoint")
    elif case == "pickled-object":
        spec = tmp_path / "object.pth"
        torch.save({"teacher": {"x": NotATensor()}}, spec)
    elif case == "bad-safetensors":
        spec = tmp_path / "bad.safetensors"
        spec.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{broken}")
    elif case == "not-a-vit":
        spec = tmp_path / "resnet.pth"
        torch.save({"conv1.weight": torch.zeros(3)}, spec)
    with pytest.raises(ModelLoadError, match=expected) as info:
        models.load_model(spec)
    assert isinstance(info.value, InputError)
    assert "\n" not in str(info.value)


def test_folder_config_must_agree_with_weights(vit, tmp_path):
    folder = models.save_local_dir(vit, tmp_path / "f")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["model_args"] = {}  # like RedDino's pushed config: the architecture name only
    cfg["architecture"] = "vit_base_patch14_dinov2"
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ModelLoadError, match="embed_dim=768 but the weights have embed_dim=128"):
        models.load_model(f"local-dir:{folder}")


def fake_hub_cache(root, repo, files: dict):
    """Lay files out the way huggingface_hub's cache does (refs/main → snapshots/<sha>/)."""
    base = root / f"models--{repo.replace('/', '--')}"
    snap = base / "snapshots" / ("0" * 40)
    snap.mkdir(parents=True)
    (base / "refs").mkdir()
    (base / "refs" / "main").write_text("0" * 40)
    for name, writer in files.items():
        writer(snap / name)
    return snap


def test_cached_hub_model_loads_offline_and_becomes_default(vit, x, tmp_path):
    import huggingface_hub.constants as hf_constants

    assert not models.is_cached("hf-hub:Snarcy/RedDino-base")
    assert models.default_spec() == "hf-hub:Snarcy/RedDino-small"  # nothing cached, no demo
    export = models.save_local_dir(vit, tmp_path / "export")
    fake_hub_cache(tmp_path / "hf-cache", "Snarcy/RedDino-base", {
        "config.json": lambda p: p.write_bytes((export / "config.json").read_bytes()),
        "model.safetensors": lambda p: p.write_bytes((export / "model.safetensors").read_bytes())})
    assert hf_constants.HF_HUB_CACHE == str(tmp_path / "hf-cache")
    assert models.is_cached("hf-hub:Snarcy/RedDino-base")
    assert models.default_spec() == "hf-hub:Snarcy/RedDino-base"
    assert_same_model(models.load_model("hf-hub:Snarcy/RedDino-base"), vit, x)


@pytest.mark.slow
def test_reddino_pushed_config_builds_at_224_without_resampling(tmp_path):
    """RedDino's Hub config names the architecture only (timm default 518 px); the 257-token position
    embedding must give a 224-px model with the weights untouched."""
    torch.manual_seed(3)
    small = models.create_model("vit_small_patch14_dinov2", img_size=224).eval()
    config = {"architecture": "vit_small_patch14_dinov2", "num_classes": 0, "num_features": 384,
              "pretrained_cfg": {"input_size": [3, 224, 224], "fixed_input_size": True, "crop_pct": 1.0,
                                 "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225],
                                 "num_classes": 0, "license": "cc-by-nc-4.0"}}
    from safetensors.torch import save_file

    fake_hub_cache(tmp_path / "hf-cache", "Snarcy/RedDino-small", {
        "config.json": lambda p: p.write_text(json.dumps(config)),
        "model.safetensors": lambda p: save_file(small.state_dict(), p)})
    loaded = models.load_model("hf-hub:Snarcy/RedDino-small")
    assert models.model_input_size(loaded) == (224, 224) and loaded.num_features == 384
    assert loaded.pretrained_cfg["license"] == "cc-by-nc-4.0"
    torch.testing.assert_close(loaded.pos_embed, small.pos_embed, rtol=0, atol=0)
    xb = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(loaded(xb), small(xb), rtol=0, atol=0)


def test_download_refuses_offline(monkeypatch):
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match="offline"):
        models.download("hf-hub:Snarcy/RedDino-small")
    with pytest.raises(ModelLoadError, match="offline"):
        models.load_model("hf-hub:Snarcy/RedDino-small", download=True)


def test_precision_and_device():
    assert runtime.resolve_precision("fp32", "cpu") is torch.float32
    assert runtime.resolve_precision("bf16", "cpu") is torch.bfloat16
    expected = torch.bfloat16 if runtime.cpu_supports_bf16() else torch.float32
    assert runtime.resolve_precision("auto", "cpu") is expected
    with pytest.raises(InputError, match="accepted: auto, bf16, fp32"):
        runtime.resolve_precision("fp8", "cpu")
    assert runtime.resolve_device("cpu") == "cpu"
    with pytest.raises(InputError, match="device"):
        runtime.resolve_device("toaster")
    assert set(models.MODEL_SPECS) >= {"hf-hub:Snarcy/RedDino-small", "hf-hub:Snarcy/RedDino-base",
                                       "hf-hub:Snarcy/RedDino-large", "demo"}
    assert models.MODEL_SPECS["hf-hub:Snarcy/RedDino-large"]["dim"] == 1024
