"""Runtime rules for torch in the plugin: the one place that decides how torch is first imported.

Where triton is installed (a CUDA torch wheel brings it) torch imports it on the first ``torchvision.ops``
or ``torch._dynamo`` use, and inside napari that import can segfault (triton's LLVM against the one
Mesa's GL loaded) and take napari down. Without a usable CUDA GPU triton is of no use, so the plugin hides
it: torch asks ``import triton`` (``torch.utils._triton.has_triton_package``) or
``importlib.util.find_spec("triton")``, and a ``None`` entry in ``sys.modules`` makes both say "absent".
"""

from __future__ import annotations

import sys


def import_torch():
    """Import torch (returned) with triton hidden from it when no CUDA GPU is usable. Call before any
    torch, torchvision, timm or cellpose import on the plugin's paths; cheap after the first call."""
    import torch

    if "triton" not in sys.modules and not torch.cuda.is_available():
        sys.modules["triton"] = None  # import triton → ImportError, find_spec("triton") → None
    return torch

