"""The training loop, top to bottom: set up → models → optimiser → resume → data → steps → checkpoint."""

from __future__ import annotations

import contextlib
import math
import signal
import time
from pathlib import Path

import torch

from napari_reddino.images import InputError

from ..config import save_config
from ..loss.centering import MomentumCenter, sinkhorn_knopp
from ..loss.dino import dino_loss
from ..loss.ibot import ibot_loss
from ..loss.koleo import koleo_loss
from ..models import build_student_teacher, ema_update
from . import distributed
from .batches import build_loader
from .checkpoint import load_checkpoint, save_checkpoint, set_rng_state
from .metrics import MetricsCSV, effective_rank, mean_entropy
from .optim import build_optimizer, set_hyperparameters
from .schedules import Schedules


def autocast_dtype(precision: str, device: torch.device):
    if str(precision).lower() == "fp16":
        return torch.float16
    from napari_reddino.runtime import resolve_precision

    return resolve_precision(precision, device.type)


def build_dataset(cfg: dict, data_dir):
    from ..data.augment import build_augmentation
    from ..data.dataset import SmearDataset

    c = cfg["crops"]
    aug = build_augmentation(cfg["augmentation"], n_global=2, n_local=int(c["n_local"]),
                             global_size=int(c["global_size"]), local_size=int(c["local_size"]))
    return SmearDataset(data_dir, aug)


class StopFlag:
    """SIGTERM/SIGINT ask the loop to checkpoint and stop after the current step; a second SIGINT aborts."""

    def __init__(self):
        self.set, self._old = False, {}

    def _handle(self, signum, frame):
        if self.set and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.set = True

    def __enter__(self):
        with contextlib.suppress(ValueError):  # not the main thread: no handlers
            for s in (signal.SIGTERM, signal.SIGINT):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def teacher_targets(logits: torch.Tensor, temp: float, cfg_loss: dict, center: MomentumCenter | None):
    if cfg_loss["centering"] == "sinkhorn_knopp":
        return sinkhorn_knopp(logits, temp, int(cfg_loss["sinkhorn_iterations"]))
    return center(logits, temp)


def clip_gradients(student: torch.nn.Module, max_norm: float) -> None:
    """As DINOv2: clip backbone (with mask token) and each head separately."""
    if not max_norm:
        return
    parts = [[*student.backbone.parameters(), student.mask_token], list(student.dino_head.parameters())]
    if student.ibot_head is not None:
        parts.append(list(student.ibot_head.parameters()))
    for params in parts:
        torch.nn.utils.clip_grad_norm_(params, max_norm)


def train(cfg: dict, data_dir, out_dir, resume: bool = False, max_steps: int | None = None,
          checkpoint_every: int | None = None, dataset=None, device: str | None = None, on_step=None,
          progress: bool = True) -> dict:
    """Train until the schedule's end or ``max_steps`` (an absolute step number). Returns the last metrics row.
    ``dataset`` replaces the prepared folder (tests); ``on_step(step, teacher, row)`` runs after every step."""
    # --- processes, run folder, seeds -------------------------------------------------------------
    d = distributed.setup(device)
    out = Path(out_dir)
    if d.main:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = load_checkpoint(out) if resume else None
    if not resume and (out / "checkpoint.pt").exists():
        raise InputError(f"Received --out {str(out)!r}, which already holds a run; accepted: --resume or a new folder.")
    if d.main:
        save_config(cfg, out / "config.yaml")
    seed = int(cfg["train"]["seed"])
    torch.manual_seed(seed)

    # --- models: student, EMA teacher (an exact copy at step 0), centres ------------------------------
    student, teacher = build_student_teacher(cfg)
    student.to(d.device)
    teacher.to(d.device).eval()
    cl, head = cfg["loss"], cfg["head"]
    centers = {k: MomentumCenter(n, float(cl["center_momentum"])).to(d.device) if cl["centering"] != "sinkhorn_knopp"
               else None for k, n in (("cls", head["n_prototypes"]), ("patch", head["ibot_n_prototypes"]
                                      if not head.get("shared_ibot_head", True) else head["n_prototypes"]))}

    # --- resume the models; shard or wrap them; then the optimiser (sharding replaces the parameters) ------
    start_step = 0
    if ckpt is not None:
        try:
            student.load_state_dict(ckpt["student"])
            teacher.load_state_dict(ckpt["teacher"])
        except RuntimeError as exc:  # "Error(s) in loading state_dict ... size mismatch for ..."
            detail = next((line.strip() for line in str(exc).splitlines()[1:] if line.strip()), "")[:160]
            raise InputError(f"Received --resume with a config whose model does not match the checkpoint in "
                             f"{str(out)!r} ({detail}); accepted: the run's own config.yaml, without model or "
                             "head overrides.") from None
        for k, c in centers.items():
            if c is not None and f"center_{k}" in ckpt:
                c.center.copy_(ckpt[f"center_{k}"])
        start_step = int(ckpt["step"])
    mode = cfg["train"].get("distributed", "ddp")
    model = distributed.wrap(student, teacher, d, mode)
    is_sharded = distributed.sharded(d, mode)
    optimizer = build_optimizer(student, cfg["optim"])
    if ckpt is not None:  # optimiser state and RNG; the data position and the schedules follow from the step
        distributed.load_optimizer(student, optimizer, ckpt, is_sharded)
        set_rng_state(ckpt["rng"])
    per_rank = int(cfg["optim"]["batch_size_per_gpu"])
    global_batch = per_rank * d.world
    sched = Schedules.from_config(cfg, global_batch)
    end_step = sched.total_steps if max_steps is None else min(int(max_steps), sched.total_steps)
    every = int(checkpoint_every or cfg["train"]["checkpoint_every"] or 0)

    # --- data: global sample positions from start_step on ----------------------------------------------
    if dataset is None:
        dataset = build_dataset(cfg, data_dir)
    if len(dataset) == 0:
        raise InputError(f"Received a training set with no samples in {str(data_dir)!r}; accepted: a folder made by "
                         "`reddino-train prepare`.")
    loader = iter(build_loader(dataset, cfg, d.rank, d.world, start_step,
                               patch_size=student.backbone.patch_embed.patch_size[0]))
    n_global, n_local = 2, int(cfg["crops"]["n_local"])
    dtype = autocast_dtype(cfg["train"]["precision"], d.device)
    amp = torch.autocast(d.device.type, dtype=dtype, enabled=dtype != torch.float32)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    metrics = MetricsCSV(out / "metrics.csv", truncate_after=start_step) if d.main else None
    knn_every = int(cfg["train"].get("knn_every") or 0)
    knn = None
    if (d.main or is_sharded) and knn_every and cfg["train"].get("knn_data"):  # a sharded teacher runs on all ranks
        from .knn_monitor import KNNMonitor

        knn = KNNMonitor(cfg["train"]["knn_data"], int(cfg["model"]["img_size"]),
                         max_samples=int(cfg["train"].get("knn_samples") or 2000))
    bar = None
    if progress and d.main:
        from tqdm.auto import tqdm

        bar = tqdm(total=end_step, initial=start_step, unit="step", dynamic_ncols=True, desc="train")

    # --- steps ----------------------------------------------------------------------------------------
    row, step = {}, start_step
    with StopFlag() as stop:
        while step < end_step:
            t0 = time.perf_counter()
            batch = next(loader)
            t_data = time.perf_counter() - t0
            hp = sched.at(step)
            set_hyperparameters(optimizer, hp["lr"], hp["wd"], hp["last_layer_frozen"])
            global_crops = batch["global_crops"].to(d.device, non_blocking=True)
            local_crops = batch["local_crops"].to(d.device, non_blocking=True) if n_local else None
            masks = batch["masks"].to(d.device, non_blocking=True)
            assert batch["step"] == step, "data loader out of step with the loop"

            # teacher: whole images → targets for the CLS of each global crop and for the masked patches
            with torch.no_grad(), amp:
                t_out = teacher(global_crops, masks, mask_input=False)
            if is_sharded:  # FSDP keeps the root's layers whole after forward, expecting a backward; none comes
                teacher.reshard()
            t_cls = teacher_targets(t_out["cls_logits"], hp["teacher_temp"], cl, centers["cls"])
            t_patch = teacher_targets(t_out["patch_logits"], hp["teacher_temp"], cl, centers["patch"])

            # student: masked global crops (+ local crops)
            with amp:
                s_out = model(global_crops, masks, local_crops)
            temp = float(cl["student_temp"])
            losses = {"dino_loss": dino_loss(s_out["cls_logits"], t_cls, n_global, temp, s_out["local_logits"], n_local)}
            losses["ibot_loss"] = ibot_loss(s_out["patch_logits"], t_patch, masks, temp)
            losses["koleo_loss"] = (sum(koleo_loss(c) for c in s_out["cls"].chunk(n_global)) if cl["koleo_weight"]
                                    else torch.zeros((), device=d.device))
            loss = (float(cl["dino_weight"]) * losses["dino_loss"] + float(cl["ibot_weight"]) * losses["ibot_loss"]
                    + float(cl["koleo_weight"]) * losses["koleo_loss"])
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"loss is {loss.item()} at step {step}; lower optim.base_lr or use fp32")

            # optimiser step on the student, EMA step on the teacher
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.unscale_(optimizer)
            clip_gradients(student, float(cfg["optim"]["clip_grad"]))
            scaler.step(optimizer)
            scaler.update()
            ema_update(student, teacher, hp["momentum"])
            step += 1

            # log, checkpoint, stop
            t_step = time.perf_counter() - t0
            rank_every = int(cfg["train"].get("rank_every", 1) or 0)
            logged = distributed.mean_over_ranks([loss.item()] + [v.item() for v in losses.values()]
                                                 + [mean_entropy(t_cls)], d)
            row = {"step": step, "loss": logged[0], **dict(zip(losses, logged[1:-1])),
                   "lr": hp["lr"], "wd": hp["wd"], "momentum": hp["momentum"], "teacher_temp": hp["teacher_temp"],
                   "target_entropy": round(logged[-1], 4),
                   "cls_rank": effective_rank(s_out["cls"]) if rank_every and step % rank_every == 0 else "",
                   "data_s": round(t_data, 5), "step_s": round(t_step, 5),
                   "img_per_s": round(global_batch / t_step, 2)}
            if knn is not None and step % knn_every == 0:
                with distributed.gathered(teacher, is_sharded):
                    row.update({k: round(v, 4) for k, v in knn(teacher.backbone).items()})
            if metrics:
                metrics.write(row)
            if bar:
                bar.update(1)
                bar.set_postfix(loss=f"{row['loss']:.3f}", refresh=False)
            if on_step is not None:
                on_step(step, teacher, row)
            stopping = distributed.any_rank(stop.set, d)
            if (every and step % every == 0) or step == end_step or stopping:
                states = distributed.full_states(student, teacher, optimizer, is_sharded)  # all ranks under FSDP
                if d.main:
                    extra = {f"center_{k}": c.center for k, c in centers.items() if c is not None}
                    save_checkpoint(out, step, states, extra)
            if stopping:
                break
    if bar:
        bar.close()
    if metrics:
        metrics.close()
    distributed.cleanup()
    return row
