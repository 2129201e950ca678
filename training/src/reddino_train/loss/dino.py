"""DINO loss on CLS tokens: every student crop against the teacher target of every *other* global crop."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor, student_temp: float) -> torch.Tensor:
    """mean over rows of −Σ_k t_k · log softmax(s / τ_s)_k."""
    log_p = F.log_softmax(student_logits.float() / student_temp, dim=-1)
    return -(teacher_probs * log_p).sum(dim=-1).mean()


def dino_loss(student_global: torch.Tensor, teacher_probs: torch.Tensor, n_global: int, student_temp: float,
              student_local: torch.Tensor | None = None, n_local: int = 0) -> torch.Tensor:
    """student_global / teacher_probs: (n_global·B, K) crop-major; student_local: (n_local·B, K).
    Average of the cross-entropies over all (student crop, teacher crop) pairs of different crops."""
    s_g = student_global.chunk(n_global)
    t_g = teacher_probs.chunk(n_global)
    terms = [cross_entropy(s_g[i], t_g[j], student_temp)
             for i in range(n_global) for j in range(n_global) if i != j]
    if student_local is not None and n_local > 0:
        terms += [cross_entropy(s, t, student_temp) for s in student_local.chunk(n_local) for t in t_g]
    return torch.stack(terms).mean()
