"""Progress reporting shared by the core, the widgets and the CLI.

Long-running core functions are generators that ``yield Progress(...)`` and ``return`` their result.
The GUI runs them in a napari ``thread_worker`` (each yield is a chance to cancel); scripts and the CLI
call :func:`run` to drive them to completion, optionally with a tqdm bar.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Generator, TypeVar

T = TypeVar("T")


@dataclass
class Progress:
    done: int
    total: int
    message: str = ""


Steps = Generator[Progress, None, T]


def run(gen: "Steps[T]", callback: Callable[[Progress], None] | None = None, bar: bool = False) -> T:
    """Drive a progress generator to completion and return its result."""
    pbar = None
    try:
        while True:
            p = next(gen)
            if callback is not None:
                callback(p)
            if bar:
                if pbar is not None and (p.total != pbar.total or p.done < pbar.n):
                    pbar.close()  # a new step (pipeline): its own bar, so rate and ETA are its own
                    pbar = None
                if pbar is None:
                    from tqdm.auto import tqdm

                    pbar = tqdm(total=p.total, desc=p.message or None, leave=False)
                pbar.total = p.total
                pbar.n = p.done
                if p.message:
                    pbar.set_description(p.message, refresh=False)
                pbar.refresh()
    except StopIteration as stop:
        return stop.value
    finally:
        if pbar is not None:
            pbar.close()


def tagged(gen: "Steps[T]", tag: str) -> "Steps[T]":
    """Re-yield ``gen``'s progress with ``tag`` before each message (the image or unit it belongs to);
    return ``gen``'s result."""
    try:
        while True:
            p = next(gen)
            yield Progress(p.done, p.total, f"{tag}: {p.message}" if p.message else tag)
    except StopIteration as stop:
        return stop.value
