"""Cell classes and the annotation store: who said which cell is what, saved on every change.

The store is keyed by ``(image, label)``. Every change is written at once (atomic replace) to a CSV with
columns ``image, label, class, centroid_x, centroid_y, segmentation, verified, by, at, image_hash`` (the cell's centroid and
the fingerprint of the segmentation it was made on, so that a re-segmentation cannot move annotations onto
other cells, see ``annotation_match.py``; whether a person set or confirmed the class, who and when; a hash of
the image's pixels, so that another image of the same name never receives them): one file
beside each image (``<stem>.reddino-annotations.csv``) or one
file in a chosen project folder. Re-opening a store reads those files back. In the dock the file is written
by a background writer (``AnnotationStore(background=True)``): the GUI thread only copies the store's
dictionaries; the writer writes the latest copy of each file (atomic replace: a crash or kill mid-write
leaves the previous complete file), and ``flush`` (the dock's close, a new map, a saved session) and Python's
exit wait for it. Classifier: ``classify.py``;
tables and the morphology report: ``report.py``.
"""

from __future__ import annotations

import getpass
import os
import threading
from collections.abc import Callable, Iterable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from napari_reddino.cells import label_column
from napari_reddino.chula import CLASSES as CHULA_NAMES
from napari_reddino.formats import with_current_names
from napari_reddino.images import InputError
from napari_reddino.style import UNANNOTATED_COLOR


@dataclass(frozen=True)
class CellClass:
    name: str
    color: str  # hex "#rrggbb"


# Chula-RBC-12's classes (``chula.CLASSES``, id order) in tab20-style colours (the paper's UMAPs use tab20)
CLASS_COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf",
                 "#aec7e8", "#7f7f7f", "#ffbb78", "#98df8a"]
CHULA_CLASSES = [CellClass(name, colour) for name, colour in zip(CHULA_NAMES, CLASS_COLOURS, strict=True)]
UNLABELLED_COLOR = UNANNOTATED_COLOR  # the name this module had for it
ANNOTATION_COLUMNS = ["image", "label", "class"]
WHERE_COLUMNS = ["centroid_x", "centroid_y", "segmentation"]  # absent before issue 17; x, y before 2026-12
# a person set or confirmed the class (``by`` the OS user name, ``at`` ISO time); absent before issue 18
VERIFY_COLUMNS = ["verified", "by", "at"]
IMAGE_HASH = "image_hash"  # annotation_match.image_fingerprint of the image the row was made on; '' unknown
FILE_COLUMNS = ANNOTATION_COLUMNS + WHERE_COLUMNS + VERIFY_COLUMNS + [IMAGE_HASH]
PROJECT_FILE = "reddino-annotations.csv"
FALLBACK_FOLDER = Path.home() / ".napari-reddino" / "annotations"  # where work goes when its folder is read-only
SUFFIX = ".reddino-annotations.csv"


def default_classes() -> list[CellClass]:
    return list(CHULA_CLASSES)


def class_colors(classes: Iterable[CellClass]) -> dict[str, np.ndarray]:
    """name → RGBA float array."""
    from matplotlib.colors import to_rgba

    return {c.name: np.asarray(to_rgba(c.color), dtype=np.float32) for c in classes}


def annotation_path(image_path=None, project_folder=None) -> Path:
    """Where one image's annotations live: the project folder's file, else beside the image."""
    if project_folder:
        return Path(project_folder) / PROJECT_FILE
    if image_path:
        p = Path(image_path)
        return p.with_name(p.stem + SUFFIX)
    raise InputError("Received neither an image file nor a project folder; accepted: a project folder to "
                     "save annotations in (the image was not opened from a file).")


def atomic_write_csv(df: pd.DataFrame, path: Path) -> None:
    """Write ``df`` so that a crash leaves either the old file or the new one, never half of one."""
    from napari_reddino.atomic import atomic_path

    with atomic_path(path) as tmp:
        df.to_csv(tmp, index=False)


def read_annotations(path) -> pd.DataFrame:
    """An annotation CSV (columns image, label, class) → DataFrame; InputError when it is not one."""
    path = Path(path)
    try:
        df = pd.read_csv(path, dtype={"image": str, "class": str})
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"Could not read {str(path)!r} ({type(exc).__name__}); accepted: a CSV with columns "
                         "image, label, class.") from None
    df = with_current_names(df)
    if any(c not in df.columns for c in ANNOTATION_COLUMNS):
        raise InputError(f"Received {str(path)!r} with columns {list(df.columns)}; accepted: columns image, "
                         "label, class.")
    for col in WHERE_COLUMNS + VERIFY_COLUMNS + [IMAGE_HASH]:
        if col not in df.columns:
            df[col] = np.nan
    df = df[FILE_COLUMNS].dropna(subset=["class"]).reset_index(drop=True)
    df["label"] = label_column(df["label"], repr(str(path)))
    for col in ("segmentation", "by", "at", IMAGE_HASH):
        df[col] = df[col].fillna("").astype(str)
    df["verified"] = df["verified"].map(lambda v: str(v).strip().lower() in ("true", "1", "yes")).astype(bool)
    return df


def current_user() -> str:
    """Who is verifying: the operating system's user name ('unknown' where it cannot say)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in the environment or the password database
        return "unknown"


def now_iso() -> str:
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="seconds")


Key = tuple[str, int]
Verification = tuple[str, str]  # (by, at)


class AnnotationStore:
    """Class per ``(image, label)``, with undo, saved to disk after every change.

    ``path_for(image) -> Path`` says where an image's annotations go; several images may share a file.
    ``verified`` holds who confirmed which class when (:meth:`verify`; every :meth:`assign` is a person's
    decision too). Rows read from a file for images not open now are kept and written back with it. A file that cannot be
    written goes to ``fallback_folder`` instead (``notify`` gets one line saying so) and is read from there.

    Two windows (or a window and a script) may save to one file: each save holds a lock on it, reads what
    is there, and writes that back with only this store's own changes since its last save applied (a cell
    both changed: the later save wins). So neither loses the other's work, and ``notify`` says once that
    another writer is at work.

    ``background``: a change is written by a writer thread, not before ``assign`` returns (module docstring);
    ``flush()`` waits for it. ``notify`` may then be called from that thread.
    """

    def __init__(self, path_for: Callable[[str], Path] | Path | str, fallback_folder=None,
                 notify: Callable[[str], None] | None = None, background: bool = False):
        if isinstance(path_for, (str, Path)):
            fixed = Path(path_for)
            path_for = lambda image: fixed
        self._path_for = path_for
        self.fallback_folder = Path(fallback_folder or FALLBACK_FOLDER)
        self.notify = notify or (lambda message: None)
        self._paths: dict[str, Path] = {}
        self.classes: dict[Key, str] = {}
        self.verified: dict[Key, Verification] = {}  # every key here has a class
        self.user = current_user()
        self._cells: dict = {}  # image -> annotation_match.Cells of the segmentation shown now
        self._where: dict[Key, tuple] = {}  # (x, y, segmentation, image_hash) read back, for images without cells
        self._unmatched: list[tuple] = []  # file rows that fit no current cell: kept, written back
        self.restored = {"same": 0, "matched": 0, "by_label": 0, "unmatched": 0, "other_image": 0}
        self._undo: list[dict[Key, tuple]] = []  # per step: key -> (class, verification) before it
        self._changed: dict[Key, int] = {}  # changed here since the last save (-> edit number): these win over the file
        self._edits = 0
        self._seen: dict[Path, tuple] = {}  # each file as this store last read or wrote it (inode, mtime, size)
        self._others: dict[Path, list[tuple]] = {}  # rows another writer made on another segmentation: kept
        self._told: set[Path] = set()
        self.background = background
        self._lock = threading.RLock()  # the dictionaries above, between the GUI thread and the writer
        self._idle = threading.Condition(self._lock)
        self._queued: dict[Path, _Snapshot] = {}  # files waiting for the writer: the latest copy of each
        self._writing: set[Path] = set()
        self._writer: threading.Thread | None = None

    # --- files ------------------------------------------------------------------------------------
    def path_of(self, image: str) -> Path:
        if image not in self._paths:
            path = Path(self._path_for(image))
            fallback = self._fallback(path)
            self._paths[image] = fallback if not path.is_file() and fallback.is_file() else path
        return self._paths[image]

    def _fallback(self, path: Path) -> Path:
        return self.fallback_folder / f"{path.parent.name}-{path.name}"

    def _write(self, df: pd.DataFrame, path: Path) -> Path:
        try:
            atomic_write_csv(df, path)
            return path
        except OSError:
            pass
        fallback = self._fallback(path)
        try:
            atomic_write_csv(df, fallback)
        except OSError:
            raise InputError(f"Could not save annotations: neither {str(path.parent)!r} nor "
                             f"{str(fallback.parent)!r} is writable; they are kept only until this dock "
                             "closes.") from None
        with self._lock:
            for image, p in self._paths.items():
                if p == path:
                    self._paths[image] = fallback
        self.notify(f"The folder {path.parent} is not writable: your annotations are saved in {fallback} "
                    "instead.")
        return fallback

    def set_cells(self, image: str, labels, pixels=None) -> None:
        """The label image ``image``'s annotations refer to now (or its ``annotation_match.Cells``, built
        off the GUI thread), and the image's pixels (rows made on other pixels are not this image's); call
        before :meth:`load`."""
        from napari_reddino.annotation_match import Cells

        self._cells[str(image)] = labels if isinstance(labels, Cells) else Cells(labels, pixels)

    def load(self, images: Iterable[str]) -> int:
        """Read the files of ``images`` (each file once); return how many annotations were put on cells.
        ``restored`` says how: on the same cells, matched after a re-segmentation, by label from an older
        file, unmatched (kept in the file, not shown), made on another image of the same name (kept, not
        shown), or kept as they were (images without cells set)."""
        from napari_reddino.annotation_match import match

        seen: set[Path] = set()
        for image in images:
            path = self.path_of(str(image))
            if path in seen or not path.is_file():
                continue
            seen.add(path)
            self._seen[path] = _stamp(path)
            df = read_annotations(path)
            for img, rows in df.groupby("image", sort=False):
                self._paths.setdefault(img, path)
                if img in self._cells:
                    labels, kinds = match(rows, self._cells[img])
                else:  # no segmentation to check against (an image not open now): keep as it was
                    labels, kinds = rows["label"].to_numpy(), np.full(len(rows), "kept", dtype=object)
                for row, lbl, kind in zip(rows.itertuples(index=False), labels, kinds):
                    self.restored[kind] = self.restored.get(kind, 0) + 1
                    if kind in ("unmatched", "other_image"):
                        self._unmatched.append(tuple(row))
                        continue
                    self.classes[(img, int(lbl))] = row[2]
                    if row[6]:
                        self.verified[(img, int(lbl))] = (row[7], row[8])
                    if img not in self._cells:
                        self._where[(img, int(lbl))] = (*row[3:6], row[9])
        return sum(v for k, v in self.restored.items() if k not in ("unmatched", "other_image"))

    def save(self, images: Iterable[str] | None = None) -> list[Path]:
        """Write the files holding ``images`` (all files when None) now; return where they were written."""
        with self._lock:
            images = set(self._paths) if images is None else {str(i) for i in images}
            paths = {self.path_of(i) for i in images}
            snapshot = self._snapshot()
        return sorted(self._write_file(path, snapshot) for path in paths)

    def _save_soon(self, images: Iterable[str]) -> None:
        """Save ``images``' files: at once, or (``background``) by the writer thread."""
        if not self.background:
            self.save(images)
            return
        with self._lock:
            snapshot = self._snapshot()
            for path in {self.path_of(str(i)) for i in images}:
                self._queued[path] = snapshot  # a newer copy replaces one not written yet
            if self._writer is None:
                # not a daemon: Python's exit (napari closed) waits for the last write
                self._writer = threading.Thread(target=self._write_queued, name="napari-reddino annotations")
                self._writer.start()

    def _write_queued(self) -> None:
        while True:
            with self._lock:
                if not self._queued:
                    self._writer = None
                    self._idle.notify_all()
                    return
                path = next(iter(self._queued))
                snapshot = self._queued.pop(path)
                self._writing.add(path)
            try:
                self._write_file(path, snapshot)
            except Exception as exc:  # noqa: BLE001 - kept in memory; said, never lost silently
                self.notify(str(exc) if isinstance(exc, InputError) else
                            f"Could not save annotations to {path} ({type(exc).__name__}: {exc}); they are kept "
                            "in memory and saved with the next change.")
            finally:
                with self._lock:
                    self._writing.discard(path)

    def flush(self) -> None:
        """Wait until every change is on disk (``background``: the writer's queue is empty)."""
        with self._lock:
            while self._writer is not None:
                self._idle.wait()

    def is_pending(self, path) -> bool:
        """Whether the writer has yet to write (or is writing) ``path``."""
        with self._lock:
            return Path(path) in self._queued or Path(path) in self._writing

    def _snapshot(self) -> _Snapshot:
        """What a save writes, copied (the writer reads it while the GUI thread edits the store)."""
        images = {k[0] for k in self.classes} | {r[0] for r in self._unmatched} | {
            r[0] for rows in self._others.values() for r in rows}
        return _Snapshot(dict(self.classes), dict(self.verified), dict(self._where), list(self._unmatched),
                         {p: list(v) for p, v in self._others.items()}, dict(self._cells),
                         {str(i): self.path_of(str(i)) for i in images}, self._edits)

    def _write_file(self, path: Path, snap: _Snapshot) -> Path:
        with _locked(path):
            if path.is_file() and _stamp(path) != self._seen.get(path):
                with self._lock:  # someone else wrote it: merge (rare), on the store itself
                    self._take_theirs(path)
                    snap = self._snapshot()
            where = self._write(_frame(path, snap), path)
            self._seen[where] = _stamp(where)
        with self._lock:
            self._changed = {k: n for k, n in self._changed.items()
                             if n > snap.edits or self.path_of(k[0]) != path}
        return where

    def _take_theirs(self, path: Path) -> None:
        """Someone else wrote ``path`` since this store read or wrote it: take their rows, except for the
        cells changed here since (ours win there)."""
        try:
            theirs = read_annotations(path)
        except InputError:
            return  # not readable as annotations: ours are written over it (the old file is not ours to fix)
        mine = {img for img in self._paths if self.path_of(img) == path}
        keep = {k: v for k, v in self.classes.items() if k in self._changed or k[0] not in mine}
        verified = {k: v for k, v in self.verified.items() if k in keep}
        others = []
        for row in theirs.itertuples(index=False):
            img, lbl, cls, seg, made_on = str(row[0]), int(row[1]), str(row[2]), str(row[5]), str(row[9])
            cells = self._cells.get(img)
            if cells is not None and ((seg and seg != cells.fingerprint)
                                      or (made_on and cells.image and made_on != cells.image)):
                others.append(tuple(row))  # another segmentation or image: not ours to place, kept as it is
            elif (img, lbl) not in self._changed:
                keep[(img, lbl)] = cls
                if row[6]:
                    verified[(img, lbl)] = (str(row[7]), str(row[8]))
                if cells is None:
                    self._where[(img, lbl)] = (*row[3:6], made_on)
        self.classes, self.verified = keep, verified
        self._others[path] = others
        self._unmatched = [r for r in self._unmatched if self.path_of(r[0]) != path]
        if path not in self._told:
            self._told.add(path)
            self.notify(f"Another window or script is also saving annotations to {path}: its annotations are "
                        "kept beside yours (compute the map again to see them).")

    # --- edits ------------------------------------------------------------------------------------
    def assign(self, keys: Iterable[Key], cls: str | None) -> int:
        """Give ``keys`` the class ``cls`` (None removes their class and its verification); a person decided,
        so the cells are verified (by this user, now); one undo step; saved at once."""
        return self._apply({(str(i), int(lbl)): None if cls is None else str(cls) for i, lbl in keys})

    def verify(self, classes: dict[Key, str]) -> int:
        """Mark cells verified with the class a person confirmed (``classes``: key -> class, e.g. the
        prediction of a cell nobody annotated); one undo step; saved at once."""
        return self._apply({(str(i), int(lbl)): str(c) for (i, lbl), c in classes.items() if c})

    def _apply(self, new: dict[Key, str | None]) -> int:
        stamp = (self.user, now_iso())
        with self._lock:
            classes, verified = self.classes, self.verified
            # one pass per step in C where it can be (100,000 cells at once: a tenth of a second, not a second)
            old = {k: (classes.get(k), verified.get(k)) for k in new}
            before = {k: o for k, o in old.items() if not (o[0] == new[k] and (new[k] is None or o[1] is not None))}
            if not before:
                return 0
            self._edits += 1
            self._changed.update(dict.fromkeys(before, self._edits))
            gone = [k for k in before if new[k] is None]
            for k in gone:
                classes.pop(k, None)
                verified.pop(k, None)
            kept = [k for k in before if new[k] is not None]
            classes.update({k: new[k] for k in kept})
            verified.update(dict.fromkeys(kept, stamp))
            self._undo.append(before)
        self._save_soon({img for img, _ in before})
        return len(before)

    def _set(self, key: Key, cls: str | None, verification: Verification | None) -> None:
        if cls is None:
            self.classes.pop(key, None)
        else:
            self.classes[key] = cls
        if verification is None:
            self.verified.pop(key, None)
        else:
            self.verified[key] = verification

    def undo(self) -> list[Key]:
        """Revert the last change; return the keys it touched (empty when there is nothing to undo)."""
        with self._lock:
            if not self._undo:
                return []
            before = self._undo.pop()
            self._edits += 1
            self._changed.update(dict.fromkeys(before, self._edits))
            for key, (cls, verification) in before.items():
                self._set(key, cls, verification)
        self._save_soon({img for img, _ in before})
        return list(before)

    @property
    def can_undo(self) -> bool:
        return bool(self._undo)

    def class_of(self, image: str, label: int) -> str | None:
        return self.classes.get((str(image), int(label)))

    def verified_column(self, table: pd.DataFrame) -> np.ndarray:
        """Whether each row of a table with ``image, label`` columns is verified (bool array)."""
        return _lookup(table, dict.fromkeys(self.verified, True), False).astype(bool)

    def verification(self, image: str, label: int) -> Verification | None:
        """(by, at) of a verified cell, else None."""
        return self.verified.get((str(image), int(label)))

    def column(self, table: pd.DataFrame) -> np.ndarray:
        """The class of each row of a table with ``image, label`` columns ('' where unannotated)."""
        return _lookup(table, self.classes, "")

    def frame(self) -> pd.DataFrame:
        rows = sorted((img, lbl, cls, k in self.verified, *self.verified.get(k, ("", "")))
                      for k, cls in self.classes.items() for img, lbl in [k])
        return pd.DataFrame(rows, columns=ANNOTATION_COLUMNS + VERIFY_COLUMNS)

    def __len__(self) -> int:
        return len(self.classes)


@dataclass(frozen=True)
class _Snapshot:
    """A copy of what a save writes (``AnnotationStore._snapshot``)."""
    classes: dict
    verified: dict
    where: dict
    unmatched: list
    others: dict
    cells: dict
    paths: dict  # image -> its file
    edits: int  # the store's edit count when copied


def _frame(path: Path, snap: _Snapshot) -> pd.DataFrame:
    """The file ``path`` as ``snap`` holds it: its images' annotations, sorted by (image, label), then the
    rows kept as read (unmatched, or another writer's on another segmentation). Any thread."""
    keys = sorted(k for k in snap.classes if snap.paths.get(k[0]) == path)
    n = len(keys)
    img = np.array([k[0] for k in keys], dtype=object)
    lbl = np.fromiter((k[1] for k in keys), np.int64, n)
    x, y = np.full(n, np.nan), np.full(n, np.nan)
    seg, made_on = np.full(n, "", dtype=object), np.full(n, "", dtype=object)
    for image in dict.fromkeys(img.tolist()):
        rows = np.flatnonzero(img == image)
        cells = snap.cells.get(image)
        if cells:
            lab = lbl[rows]
            has = (lab > 0) & (lab < len(cells.area))
            has[has] = cells.area[lab[has]] > 0
            x[rows[has]], y[rows[has]] = cells.x[lab[has]], cells.y[lab[has]]
            seg[rows], made_on[rows] = cells.fingerprint, cells.image
        else:
            for r in rows:
                where = snap.where.get((image, int(lbl[r])), (np.nan, np.nan, "", ""))
                x[r], y[r], seg[r], made_on[r] = where[0], where[1], where[2], where[3]
    by_at = [snap.verified.get(k) for k in keys]
    frame = pd.DataFrame({"image": pd.Series(img, dtype=object), "label": lbl,
                          "class": pd.Series([snap.classes[k] for k in keys], dtype=object),
                          "centroid_x": x, "centroid_y": y, "segmentation": pd.Series(seg, dtype=object),
                          "verified": np.array([v is not None for v in by_at], bool),
                          "by": pd.Series([v[0] if v else "" for v in by_at], dtype=object),
                          "at": pd.Series([v[1] if v else "" for v in by_at], dtype=object),
                          IMAGE_HASH: pd.Series(made_on, dtype=object)}, columns=FILE_COLUMNS)
    kept = [r for r in snap.unmatched + snap.others.get(path, []) if snap.paths.get(r[0]) == path]
    if kept:
        frame = pd.concat([frame, pd.DataFrame(kept, columns=FILE_COLUMNS)], ignore_index=True)
    return frame


def _lookup(table: pd.DataFrame, values: dict, missing) -> np.ndarray:
    """``values[(image, label)]`` for each row of ``table`` (object array, ``missing`` where absent), image by
    image of ``values``: a map of a million cells is looked up in a fraction of a second, not 5 s."""
    out = np.full(len(table), missing, dtype=object)
    if not values or not len(table):
        return out
    by_image: dict[str, dict[int, object]] = {}
    for (image, label), value in values.items():
        by_image.setdefault(image, {})[label] = value
    images = table["image"].astype(str).to_numpy()
    labels = table["label"].to_numpy(np.int64)
    for image, found in by_image.items():
        rows = np.flatnonzero(images == image)
        if len(rows):
            out[rows] = pd.Series(labels[rows]).map(found).to_numpy(object)
            out[rows[pd.isna(out[rows])]] = missing
    return out


def _stamp(path: Path) -> tuple:
    """What changes whenever a file is replaced (every save is an atomic replace: a new inode)."""
    try:
        st = path.stat()
    except OSError:
        return ()
    return (st.st_ino, st.st_mtime_ns, st.st_size)


@contextmanager
def _locked(path: Path):
    """An exclusive lock, while a save reads and writes ``path``, on the folder holding it (no lock file left
    beside the user's files); where the platform or folder allows none, the merge still runs, unlocked."""
    try:
        import fcntl

        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path.parent, os.O_RDONLY)
    except (ImportError, OSError):
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)
