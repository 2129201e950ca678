"""Per-iteration schedules (DINOv2's CosineScheduler as closed-form functions of the step, so resuming needs
only the step number)."""

from __future__ import annotations

import math
from dataclasses import dataclass


def warmup_cosine(step: int, base: float, final: float, total: int, warmup: int = 0,
                  start: float = 0.0) -> float:
    """Linear ``start → base`` over ``warmup`` steps, then cosine ``base → final`` until ``total``; final after."""
    if step < warmup:
        return start + (base - start) * step / warmup
    span = max(total - warmup, 1)
    t = min(max(step - warmup, 0), span) / span
    return final + 0.5 * (base - final) * (1 + math.cos(math.pi * t))


def linear_warmup(step: int, start: float, end: float, warmup: int) -> float:
    return end if step >= warmup else start + (end - start) * step / max(warmup, 1)


@dataclass
class Schedules:
    total_steps: int
    lr_peak: float
    cfg_optim: dict
    cfg_loss: dict

    @classmethod
    def from_config(cls, cfg: dict, global_batch: int) -> "Schedules":
        o = cfg["optim"]
        return cls(total_steps=int(o["epochs"] * o["epoch_length"]),
                   lr_peak=float(o["base_lr"]) * math.sqrt(global_batch / 1024.0), cfg_optim=o, cfg_loss=cfg["loss"])

    def _iters(self, epochs: float) -> int:
        return int(round(float(epochs) * self.cfg_optim["epoch_length"]))

    def at(self, step: int) -> dict:
        o, lo = self.cfg_optim, self.cfg_loss
        return {
            "lr": warmup_cosine(step, self.lr_peak, float(o["min_lr"]), self.total_steps, self._iters(o["warmup_epochs"])),
            "wd": warmup_cosine(step, float(o["weight_decay"]), float(o["weight_decay_end"]), self.total_steps),
            "momentum": warmup_cosine(step, float(o["momentum_teacher"]), float(o["final_momentum_teacher"]),
                                      self.total_steps),
            "teacher_temp": linear_warmup(step, float(lo["warmup_teacher_temp"]), float(lo["teacher_temp"]),
                                          self._iters(lo["warmup_teacher_temp_epochs"])),
            "last_layer_frozen": step < self._iters(o.get("freeze_last_layer_epochs", 0)),
        }
