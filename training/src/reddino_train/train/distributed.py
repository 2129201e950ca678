"""Processes: one process, or ``torchrun`` (gloo on CPU, nccl on GPU), single or multi-node, with the student
under DDP or both student and teacher sharded with FSDP (``train.distributed=fsdp``, for ViT-L on smaller GPUs)."""

from __future__ import annotations

import contextlib
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


MODES = ("ddp", "fsdp")


def check_mode(mode: str) -> str:
    if mode not in MODES:
        from napari_reddino.images import InputError

        raise InputError(f"Received train.distributed={mode!r}; accepted: {', '.join(MODES)}.")
    return mode


def sharded(d: Dist, mode: str) -> bool:
    return check_mode(mode) == "fsdp" and d.world > 1


def wrap(student: torch.nn.Module, teacher: torch.nn.Module, d: Dist, mode: str = "ddp"):
    """The module the loop calls for the student's forward.

    ddp: DDP around the student; the teacher stays whole on every rank and every rank updates it identically.
    fsdp: FSDP2 ``fully_shard`` on each transformer block, then on the whole net, for the student *and* the
    teacher with the same layout, so each rank holds 1/N of both (and of the AdamW state) and the EMA update runs
    shard against shard. Call before building the optimiser: sharding replaces the parameters."""
    check_mode(mode)
    if d.world == 1:
        return student
    if mode == "ddp":
        from torch.nn.parallel import DistributedDataParallel as DDP

        return DDP(student, device_ids=[d.device.index] if d.device.type == "cuda" else None)
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    mesh = init_device_mesh(d.device.type, (d.world,))
    for net in (student, teacher):
        for block in net.backbone.blocks:
            fully_shard(block, mesh=mesh)
        fully_shard(net, mesh=mesh)
    return student


@contextlib.contextmanager
def gathered(net: torch.nn.Module, is_sharded: bool):
    """Whole parameters of a sharded net's own layers for calls that bypass its ``forward`` (the kNN monitor
    calls ``backbone.forward_features``; the blocks gather their own shards when called)."""
    if is_sharded:
        net.unshard()
    try:
        yield
    finally:
        if is_sharded:
            net.reshard()


def full_states(student, teacher, optimizer, is_sharded: bool) -> dict:
    """Whole (unsharded) state dicts for a checkpoint. Under FSDP every rank must call this (it gathers the
    shards); rank 0 gets the tensors on the CPU, the optimiser state keyed by parameter name."""
    if not is_sharded:
        return {"student": student.state_dict(), "teacher": teacher.state_dict(), "optimizer": optimizer.state_dict()}
    from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                         get_optimizer_state_dict)

    opts = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return {"student": get_model_state_dict(student, options=opts), "teacher": get_model_state_dict(teacher, options=opts),
            "optimizer": get_optimizer_state_dict(student, optimizer, options=opts), "sharding": "fsdp"}


def load_optimizer(student, optimizer, ckpt: dict, is_sharded: bool) -> None:
    """Restore the optimiser from a checkpoint written by a run launched the same way (FSDP checkpoints key the
    AdamW state by parameter name, DDP and single-process ones by position)."""
    if is_sharded != (ckpt.get("sharding") == "fsdp"):
        from napari_reddino.images import InputError

        raise InputError(f"Received --resume of a run checkpointed with train.distributed="
                         f"{'fsdp' if ckpt.get('sharding') == 'fsdp' else 'ddp or one process'}; accepted: resume it the same way.")
    if not is_sharded:
        optimizer.load_state_dict(ckpt["optimizer"])
        return
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(student, optimizer, ckpt["optimizer"], options=StateDictOptions(full_state_dict=True))


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
    """End of a finished run: every rank waits for the others (rank 0 may still be writing the checkpoint) before
    the group goes; a rank tearing gloo down alone aborted now and then ("terminate called without an active
    exception", SIGABRT in the two-process test)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
