"""Files written so that a crash or a failed write leaves the old file or the new one, never half of one.

The one home of the plugin's atomic writes: annotations (``annotate.py``), the pipeline's outputs and saved
sessions (``pipeline.write_outputs``, ``session.py``) all go through :func:`atomic_write`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path


def atomic_write(path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write a temporary file beside ``path``, then replace ``path`` with it in one
    step. If ``write`` raises, the temporary file is removed and ``path`` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the temporary name keeps the real suffix: writers that pick a format by suffix (PIL, matplotlib) pick
    # the right one; the leading dot keeps it out of folder listings
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, _mode(path))  # mkstemp makes it private; keep what the file (or the umask) said
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _read_umask() -> int:
    umask = os.umask(0o022)  # read once, at import: setting it later would race other threads' new files
    os.umask(umask)
    return umask


_UMASK = _read_umask()


def _mode(path: Path) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return 0o666 & ~_UMASK


def atomic_write_csv(df, path) -> Path:
    """A pandas DataFrame as CSV (no index), atomically."""
    return atomic_write(path, lambda tmp: df.to_csv(tmp, index=False))


def atomic_write_text(text: str, path) -> Path:
    return atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))
