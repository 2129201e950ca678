"""KoLeo regulariser (Sablayrolles et al.): spread the L2-normalised CLS tokens of one crop over the sphere."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def koleo_loss(cls_tokens: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """−mean_i log(‖x_i − x_nn(i)‖ + eps) on L2-normalised rows; nn(i) = nearest other row (max cosine)."""
    x = F.normalize(cls_tokens.float(), dim=-1, eps=eps)
    dots = x @ x.t()
    dots.fill_diagonal_(-2.0)  # never pick yourself
    nearest = dots.argmax(dim=1)
    dist = (x - x[nearest]).norm(dim=-1)
    return -torch.log(dist + eps).mean()
