"""Where the command line puts its results, and what it does when an input is bad: one home for output names,
the output folder check, resuming, and the list of failed inputs.

- Every input gets its own name (``unique_names``): its file name, or its path under the inputs' common folder
  when two inputs share a file name (``a/1.jpg`` and ``b/1.jpg``), so no result overwrites another and pooled
  tables keep one row per (image, cell). File stems follow (``output_stems``: ``a__1``, ``b__1``).
- ``--out`` is checked before any work (``check_out_dir`` / ``check_out_file``): a file where a folder is
  wanted, a folder that cannot be made or written, is one line at once, not a traceback after the compute.
- A bad input is recorded (``Failures``) and the others go on; ``failed.csv`` names each with its reason
  and the command exits 2.
- ``--resume`` skips inputs whose results are all there, if the run was made with the same settings
  (``RunRecord`` keeps them in ``run.json``); the files themselves are written atomically
  (``napari_reddino.atomic``), so a result that exists is complete.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pandas as pd

from napari_reddino.atomic import atomic_path, atomic_write_text
from napari_reddino.images import InputError


def unique_names(paths) -> list[str]:
    """Each input's name in tables: its file name, or its path relative to the inputs' common folder where
    two inputs share a file name."""
    paths = [Path(p) for p in paths]
    counts = Counter(p.name for p in paths)
    if all(counts[p.name] == 1 for p in paths):
        return [p.name for p in paths]
    absolute = [p.resolve() for p in paths]
    root = Path(os.path.commonpath([p.parent for p in absolute]))
    return [p.relative_to(root).as_posix() if counts[q.name] > 1 else q.name for p, q in zip(absolute, paths)]


def output_stems(names) -> list[str]:
    """File stems for the inputs' results: ``a/1.jpg`` → ``a__1``, ``s.ome.zarr`` → ``s``; where two still collide (``1.jpg`` and
    ``1.png``), the suffix stays: ``1_jpg``, ``1_png``."""
    stems = [_without_suffix(Path(n)).as_posix().replace("/", "__") for n in names]
    counts = Counter(stems)
    return [s if counts[s] == 1 else s + "_" + Path(n).suffix.lstrip(".").lower() for s, n in zip(stems, names)]


def _without_suffix(path: Path) -> Path:
    """``a.jpg`` → ``a``; an OME file's two suffixes both (``s.ome.tif``, ``s.ome.zarr`` → ``s``)."""
    path = path.with_suffix("")
    return path.with_suffix("") if path.suffix.lower() == ".ome" else path


def _writable(folder: Path) -> None:
    import tempfile

    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        raise InputError(f"Received --out {str(folder)!r}, which cannot be written ({why}); accepted: a folder "
                         "you can write to (it is made if missing).") from None


def check_out_dir(path) -> Path:
    """The output folder, made if missing and shown writable, before any work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise InputError(f"Received --out {str(path)!r}, which is a file; accepted: a folder (made if missing).")
    _writable(path)
    return path


def check_out_file(path, suffixes=(".parquet", ".csv")) -> Path:
    """An output file name whose folder can be written, before any work."""
    path = Path(path)
    if path.suffix.lower() not in suffixes:
        raise InputError(f"Received --out {str(path)!r}; accepted: a {' or '.join(suffixes)} file name.")
    if path.is_dir():
        raise InputError(f"Received --out {str(path)!r}, which is a folder; accepted: a file name.")
    _writable(path.parent)
    return path


def write_csv(frame: pd.DataFrame, path, what: str = "the table") -> Path:
    """``frame`` as CSV at ``path``, atomically; a folder that cannot be written (read-only, full, a file in the
    way) is one line for a notification, not a traceback, and leaves any older file as it was."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            frame.to_csv(tmp, index=False)
    except OSError as exc:
        raise InputError(f"Could not write {what} to {str(path)!r} ({exc.strerror or type(exc).__name__}); "
                         "accepted: a file in a folder you can write to.") from None
    return path


class Failures:
    """Inputs that could not be processed, with the one-line reason; written to ``failed.csv``."""

    def __init__(self):
        self.rows: list[dict] = []

    def add(self, name, error: Exception) -> str:
        line = str(error).splitlines()[0] if str(error) else type(error).__name__
        self.rows.append({"input": str(name), "error": line})
        return line

    def __len__(self) -> int:
        return len(self.rows)

    def write(self, path) -> Path | None:
        """The list as a CSV (``failed.csv``; removed when nothing failed, so it never describes an older run)."""
        path = Path(path)
        if not self.rows:
            path.unlink(missing_ok=True)
            return None
        with atomic_path(path) as tmp:
            pd.DataFrame(self.rows, columns=["input", "error"]).to_csv(tmp, index=False)
        return path

    def summary(self, done: int) -> str:
        return f"{done} done, {len(self.rows)} failed"


class RunRecord:
    """``run.json`` in the output folder (``<file>.run.json`` beside an output file): the settings the results
    were made with. ``--resume`` only skips finished inputs when the settings are the same (else it would mix
    two different runs)."""

    def __init__(self, out, command: str, settings: dict):
        out = Path(out)
        self.path = out / "run.json" if out.is_dir() else out.with_name(out.name + ".run.json")
        self.record = {"command": command, "settings": {k: settings[k] for k in sorted(settings)}}

    def start(self, resume: bool) -> None:
        if resume and self.path.is_file():
            try:
                before = json.loads(self.path.read_text())
            except (OSError, ValueError):
                before = None
            if before != self.record:
                changed = sorted(k for k in self.record["settings"]
                                 if not isinstance(before, dict) or before.get("settings", {}).get(k)
                                 != self.record["settings"][k])
                raise InputError(f"Received --resume for {str(self.path.parent)!r}, whose results were made with "
                                 f"other settings ({', '.join(changed) or 'another command'}); accepted: the same "
                                 "settings, or a new --out folder.")
        atomic_write_text(self.path, json.dumps(self.record, indent=1, default=str) + "\n")


def settings_of(args, skip=("func", "images", "out", "resume", "command", "view", "screenshot", "workers",
                            "scheduler")) -> dict:
    """The command-line settings that shape the results (for ``RunRecord``; not where the work ran)."""
    return {k: v for k, v in vars(args).items() if k not in skip}
