"""Checkpoints: one ``checkpoint.pt`` in the run folder, replaced atomically (``napari_reddino.atomic``),
holding models, optimiser, centre, step and RNG states. Read back with ``weights_only=True``: only tensors and
plain containers are stored. The data position and the schedules follow from the step."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from napari_reddino.atomic import atomic_path
from napari_reddino.images import InputError

CHECKPOINT = "checkpoint.pt"


def rng_state() -> dict:
    np_state = np.random.get_state()
    py_state = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {"keys": torch.from_numpy(np_state[1].astype(np.int64)), "pos": int(np_state[2]),
                  "has_gauss": int(np_state[3]), "gauss": float(np_state[4])},
        "python": {"version": py_state[0], "state": list(py_state[1]),
                   "gauss": py_state[2]},
    }


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["state"]), p["gauss"]))


def save_checkpoint(run_dir: Path, step: int, states: dict, extra: dict | None = None) -> Path:
    """Write the state after ``step`` optimiser steps: ``states`` = student, teacher and optimizer state dicts
    (``distributed.full_states``). Call on the main process only."""
    path = Path(run_dir) / CHECKPOINT
    state = {"step": int(step), **states, "rng": rng_state(), **(extra or {})}
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return path


def load_checkpoint(run_dir: Path, map_location="cpu") -> dict | None:
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - whatever torch raises on a file it cannot read is bad input
        if "Weights only load failed" in str(exc) and "GLOBAL" in str(exc):
            raise InputError(f"Refused checkpoint {str(path)!r}: it holds more than tensors and plain values "
                             "(loading it could run a program hidden in it); accepted: a checkpoint.pt written by "
                             "reddino-train train.") from None
        raise InputError(f"Could not read checkpoint {str(path)!r} ({type(exc).__name__}: damaged or cut short); "
                         "accepted: a checkpoint.pt written by reddino-train train.") from None
    if not isinstance(state, dict) or not {"step", "student", "teacher"} <= set(state):
        raise InputError(f"Received checkpoint {str(path)!r} without the step, student and teacher a run saves; "
                         "accepted: a checkpoint.pt written by reddino-train train.")
    return state
