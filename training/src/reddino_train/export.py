"""Export a run's teacher backbone as a timm Hugging Face folder (config.json + model.safetensors), the format of
``Snarcy/RedDino-*``, which the plugin loads with ``local-dir:DIR``."""

from __future__ import annotations

from pathlib import Path

from napari_reddino.images import InputError

from .config import read_saved_config
from .train.checkpoint import CHECKPOINT, load_checkpoint


def teacher_backbone(run_dir):
    """The run's teacher backbone (timm ViT, eval mode) with the checkpoint's weights."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / CHECKPOINT).is_file():
        raise InputError(f"Received run folder {str(run_dir)!r} without config.yaml and {CHECKPOINT}; accepted: "
                         "the --out folder of `reddino-train train` after at least one checkpoint.")
    cfg = read_saved_config(run_dir / "config.yaml")
    state = load_checkpoint(run_dir)["teacher"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    mc = cfg["model"]
    from napari_reddino.models import model_from_weights

    try:  # the plugin's builder: the dimensions come from the tensors, as for any checkpoint the plugin loads
        model = model_from_weights(backbone, mc["arch"], mc.get("num_heads"), source=CHECKPOINT)
    except InputError as exc:
        raise InputError(f"Received run folder {str(run_dir)!r} whose config.yaml does not describe its checkpoint "
                         f"({str(exc)[:200]}); accepted: the run folder as `reddino-train train` left it.") from None
    model.pretrained_cfg = dict(model.pretrained_cfg, tag="reddino-train")  # not timm's LVD-142M weights
    if str(mc.get("init") or "scratch") == "scratch":  # timm's licence entry is DINOv2's; none of its weights used
        model.pretrained_cfg.pop("license", None)
    return model.eval()


def export(run_dir, out_dir) -> Path:
    from napari_reddino.models import save_local_dir

    return save_local_dir(teacher_backbone(run_dir), Path(out_dir))
