"""iBOT loss on masked patches: cross-entropy between teacher targets and student logits at the masked positions,
each patch weighted 1 / (masked patches in its image), averaged over all global images (masked or not)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def ibot_loss(student_patch_logits: torch.Tensor, teacher_patch_probs: torch.Tensor, masks: torch.Tensor,
              student_temp: float) -> torch.Tensor:
    """student_patch_logits / teacher_patch_probs: (M, K) for the M masked patches in ``masks[masks]`` order;
    masks: (N_images, gh, gw) bool."""
    flat = masks.flatten(1)
    per_image = flat.sum(dim=1).clamp(min=1).float()
    weights = (1.0 / per_image).unsqueeze(1).expand_as(flat)[flat]  # (M,)
    log_p = F.log_softmax(student_patch_logits.float() / student_temp, dim=-1)
    ce = -(teacher_patch_probs * log_p).sum(dim=-1)
    return (ce * weights).sum() / max(len(flat), 1)
