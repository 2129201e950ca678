"""Teacher targets: Sinkhorn-Knopp (RedDino) or softmax with a momentum centre (DINOv2 default). Both reduce
across ranks, so N processes give the targets one process gives for the same global batch."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn


def _all_reduce(t: torch.Tensor) -> torch.Tensor:
    if dist.is_available() and dist.is_initialized():
        dist.all_reduce(t)
    return t


@torch.no_grad()
def sinkhorn_knopp(teacher_logits: torch.Tensor, temp: float, n_iterations: int = 3,
                   n_samples: torch.Tensor | int | None = None) -> torch.Tensor:
    """(B_local, K) logits → (B_local, K) targets whose rows sum to 1 and whose columns carry equal mass over the
    global batch. ``n_samples`` = global sample count (default: B_local summed over ranks)."""
    q = torch.exp(teacher_logits.float() / temp).t()  # K x B
    k = q.shape[0]
    if n_samples is None:
        n_samples = _all_reduce(torch.tensor(float(q.shape[1]), device=q.device))
    b = n_samples
    q /= _all_reduce(q.sum())
    for _ in range(n_iterations):
        q /= _all_reduce(q.sum(dim=1, keepdim=True))  # rows: each prototype gets mass 1/K
        q /= k
        q /= q.sum(dim=0, keepdim=True)  # columns: each sample gets mass 1/B
        q /= b
    q *= b
    return q.t()


class MomentumCenter(nn.Module):
    """softmax((t − c) / τ), then c ← m·c + (1 − m)·mean(t) over the global batch."""

    def __init__(self, n_prototypes: int, momentum: float = 0.9):
        super().__init__()
        self.momentum = momentum
        self.register_buffer("center", torch.zeros(1, n_prototypes))

    @torch.no_grad()
    def forward(self, teacher_logits: torch.Tensor, temp: float) -> torch.Tensor:
        t = teacher_logits.float()
        probs = torch.softmax((t - self.center) / temp, dim=-1)
        total = _all_reduce(t.sum(dim=0, keepdim=True))
        count = _all_reduce(torch.tensor(float(len(t)), device=t.device))
        self.center.mul_(self.momentum).add_(total / count.clamp(min=1), alpha=1 - self.momentum)
        return probs
