"""The runtime rules, one home for RedDino, Cellpose and reddino-train alike: how torch is first imported,
which device (``auto``: cuda, mps or cpu) and precision (``auto``: bf16 where the hardware runs it natively)
a model runs in, and whether downloads are off (``is_offline``).

Where triton is installed (a CUDA torch wheel brings it) torch imports it on the first ``torchvision.ops``
or ``torch._dynamo`` use, and inside napari that import can segfault (triton's LLVM against the one
Mesa's GL loaded) and take napari down. Without a usable CUDA GPU triton is of no use, so the plugin hides
it: torch asks ``import triton`` (``torch.utils._triton.has_triton_package``) or
``importlib.util.find_spec("triton")``, and a ``None`` entry in ``sys.modules`` makes both say "absent".
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from napari_reddino.images import InputError


def import_torch():
    """Import torch (returned) with triton hidden from it when no CUDA GPU is usable. Call before any
    torch, torchvision, timm or cellpose import on the plugin's paths; cheap after the first call."""
    import torch

    if "triton" not in sys.modules and not torch.cuda.is_available():
        sys.modules["triton"] = None  # import triton → ImportError, find_spec("triton") → None
    return torch


def is_offline() -> bool:
    """Downloads are off: NAPARI_REDDINO_OFFLINE or HF_HUB_OFFLINE set to 1, true, yes or on."""
    truthy = ("1", "true", "yes", "on")
    keys = ("HF_HUB_OFFLINE", "NAPARI_REDDINO_OFFLINE")
    return any(os.environ.get(k, "").strip().lower() in truthy for k in keys)


def resolve_device(device="auto") -> str:
    """``auto`` → cuda, mps or cpu, whichever is available; other values are checked."""
    torch = import_torch()

    device = str(device or "auto")
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        mps = getattr(torch.backends, "mps", None)
        return "mps" if mps is not None and mps.is_available() else "cpu"
    try:
        torch.device(device)
    except RuntimeError:
        raise InputError(f"Received device {device!r}; accepted: auto, cpu, cuda, cuda:N, mps.") from None
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"Received device {device!r} but no CUDA GPU is available; accepted: auto or cpu.")
    return device


def cpu_supports_bf16() -> bool:
    """True when the CPU has native bf16 instructions (AVX512-BF16 or AMX); without them bf16 autocast
    on CPU is emulated and slower than fp32."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def resolve_precision(precision="auto", device="cpu"):
    """``auto`` → bf16 where the hardware runs it natively (CUDA with bf16, CPU with AVX512-BF16/AMX),
    else fp32; ``bf16``/``fp32`` force it."""
    torch = import_torch()

    precision = str(precision).lower()
    if precision in ("fp32", "float32"):
        return torch.float32
    if precision in ("bf16", "bfloat16"):
        return torch.bfloat16
    if precision != "auto":
        raise InputError(f"Received precision {precision!r}; accepted: auto, bf16, fp32.")
    device = str(device)
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
    if device == "cpu":
        return torch.bfloat16 if cpu_supports_bf16() else torch.float32
    return torch.float32
