"""Student/teacher construction: init from a local-dir folder with the pos_embed resampled, refused inits,
the weight-normalised prototypes and the mask token."""

from __future__ import annotations

import pytest
import torch

from napari_reddino.images import InputError
from napari_reddino.models import create_model, load_model, save_local_dir
from reddino_train.models import SSLNet, build_backbone, build_student_teacher


def _model_cfg(**kw):
    return {"arch": "vit_small_patch14_dinov2", "img_size": 42, "embed_dim": 32, "depth": 2, "num_heads": 2,
            "drop_path_rate": 0.0, "init": "scratch", "download": False, **kw}


def test_init_from_local_dir_resamples_pos_embed_and_leaves_the_plugin_cache_alone(tmp_path):
    torch.manual_seed(0)
    source = create_model("vit_small_patch14_dinov2", img_size=56, embed_dim=32, depth=2, num_heads=2)
    save_local_dir(source, tmp_path / "m")
    vit = build_backbone(_model_cfg(init=f"local-dir:{tmp_path / 'm'}"))
    assert vit.pos_embed.shape == (1, 1 + 3 * 3, 32) and vit.training
    assert all(p.requires_grad for p in vit.parameters())
    for k, v in source.state_dict().items():
        if k != "pos_embed":
            assert torch.equal(vit.state_dict()[k], v), k
    assert torch.equal(vit.pos_embed[:, 0], source.pos_embed[:, 0])  # the CLS position is kept
    assert load_model(f"local-dir:{tmp_path / 'm'}").pos_embed.shape == (1, 17, 32)


def test_scratch_layer_scale_init_sets_gamma_and_spreads_the_cls_tokens():
    """cpu_tiny starts LayerScale at 1: with timm's 1e-5 every image gets nearly the same CLS token."""
    from reddino_train.train.metrics import effective_rank

    x = torch.randn(16, 3, 42, 42)
    ranks = {}
    for gamma in (1e-5, 1.0):
        torch.manual_seed(0)
        vit = build_backbone(_model_cfg(layer_scale_init=gamma)).eval()
        assert torch.all(vit.blocks[0].ls1.gamma == gamma)
        with torch.no_grad():
            ranks[gamma] = effective_rank(vit.forward_features(x)[:, 0])
    assert ranks[1.0] > 2 * ranks[1e-5]


def test_refused_inits_are_one_line_input_errors():
    with pytest.raises(InputError, match="accepted"):
        build_backbone(_model_cfg(init="not_a_model"))
    with pytest.raises(InputError):  # hub weights not in the cache and download off: no network
        build_backbone(_model_cfg(init="vit_small_patch14_dinov2.lvd142m"))


def test_prototypes_have_unit_norm_and_mask_token_replaces_masked_patches():
    torch.manual_seed(0)
    head = {"n_prototypes": 16, "ibot_n_prototypes": 16, "hidden_dim": 32, "bottleneck_dim": 8, "n_layers": 3}
    net = SSLNet(build_backbone(_model_cfg()), head).eval()
    x = torch.randn(3, 3, 42, 42)
    masks = torch.zeros(3, 3, 3, dtype=torch.bool)
    masks[1, 0, :2] = True
    with torch.no_grad():
        out = net(x, masks)
        assert out["cls_logits"].abs().max() <= 1 + 1e-5  # cosine between unit vectors: weight_g fixed to 1
        net.dino_head.last_layer.weight_v.mul_(7.0)  # only the direction of each prototype matters
        assert torch.allclose(net(x, masks)["cls_logits"], out["cls_logits"], atol=1e-5)
        assert out["patch_logits"].shape == (2, 16)
        plain = net(x, None)
        assert torch.allclose(plain["cls"][[0, 2]], out["cls"][[0, 2]], atol=1e-6)  # unmasked images unchanged
        assert not torch.allclose(plain["cls"][1], out["cls"][1])
        teacher_view = net(x, masks, mask_input=False)  # the teacher sees whole images
        assert torch.allclose(teacher_view["cls"], plain["cls"], atol=1e-6)


def test_teacher_starts_equal_and_has_no_gradients(tiny_cfg):
    student, teacher = build_student_teacher(tiny_cfg())
    for (ks, s), (kt, t) in zip(student.named_parameters(), teacher.named_parameters()):
        assert ks == kt and torch.equal(s, t) and s.requires_grad and not t.requires_grad
