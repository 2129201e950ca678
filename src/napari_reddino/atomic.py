"""Writes that a crash, a kill or a full disk cannot leave half done: the new file appears whole under its
final name, or the old one stays. The one home for it (outputs, annotations, caches, logs, checkpoints).

    with atomic_path(out / "cells.csv") as tmp:   # a temporary name in the same folder, same suffix
        table.to_csv(tmp, index=False)            # any writer that takes a path
    # here cells.csv is complete and on disk; on an exception the temporary file is gone, cells.csv untouched
"""

from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path) -> Iterator[Path]:
    """A temporary path beside ``path`` (same suffix, so writers that choose a format by it still do);
    when the block ends it is flushed to disk and renamed over ``path`` with the usual file permissions."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would hide a shared project's files from colleagues
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)
