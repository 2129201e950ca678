"""Processes: one process, or ``torchrun`` (DDP; gloo on CPU, nccl on GPU), single or multi-node."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup(device: str | None = None) -> Dist:
    """Join the process group when launched by torchrun (WORLD_SIZE set), else run alone."""
    want_cuda = torch.cuda.is_available() if device in (None, "auto") else device.startswith("cuda")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    dev = torch.device(f"cuda:{local_rank}" if want_cuda else "cpu")
    if want_cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if want_cuda else "gloo")
    rank = dist.get_rank() if dist.is_initialized() else 0
    return Dist(rank=rank, world=dist.get_world_size() if dist.is_initialized() else 1,
                local_rank=local_rank, device=dev)


def wrap_student(student: torch.nn.Module, d: Dist, mode: str = "ddp"):
    """DDP around the student when there is more than one process. The teacher stays unwrapped: it is updated
    identically on every rank. (ViT-L with batch 64 fits an 80 GB GPU under DDP; FSDP is not built yet.)"""
    if mode != "ddp":
        from napari_reddino.images import InputError

        raise InputError(f"Received train.distributed={mode!r}; accepted: ddp (FSDP is not implemented yet).")
    if d.world == 1:
        return student
    from torch.nn.parallel import DistributedDataParallel as DDP

    return DDP(student, device_ids=[d.device.index] if d.device.type == "cuda" else None)


def any_rank(flag: bool, d: Dist) -> bool:
    """True on every rank when it is true on one (a signal seen by one process stops them all together)."""
    if d.world == 1:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=d.device)
    dist.all_reduce(t)
    return bool(t.item() > 0)


def mean_over_ranks(values: list[float], d: Dist) -> list[float]:
    """The global mean of per-rank means (equal batches), for logging."""
    if d.world == 1:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=d.device)
    dist.all_reduce(t)
    return (t / d.world).tolist()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
