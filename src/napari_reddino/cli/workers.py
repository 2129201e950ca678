"""``--workers`` and ``--scheduler``, the same on every subcommand that works image by image (``run``,
``segment``, ``embed``, ``pca``); the work itself is spread by ``napari_reddino.distribute``."""

from __future__ import annotations

import argparse


def workers_value(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"received {text!r}; accepted: a number of processes, 1 or more")
    return value


def add_distribute_arguments(p, what: str = "images") -> None:
    """``what``: the units spread over the workers, as the help names them (``slide``: tiles)."""
    group = p.add_argument_group(f"many {what} at once").add_mutually_exclusive_group()
    group.add_argument("--workers", type=workers_value, default=1, metavar="N",
                       help=f"{what} done at the same time, each in its own process on this machine (default 1: "
                            "one after another in this process); each process gets its share of the CPU cores")
    group.add_argument("--scheduler", default=None, metavar="ADDRESS",
                       help=f"send the {what} to the workers of a running dask scheduler (e.g. tcp://10.0.0.5:8786, "
                            "its workers on cluster nodes started with dask-jobqueue) instead of this machine; its "
                            "workers must see the input and --out folders")


def check_scheduler(args) -> None:
    """A --scheduler that cannot be reached is one line before any work."""
    if getattr(args, "scheduler", None):
        from napari_reddino.distribute import connect

        client, _ = connect(1, args.scheduler)
        client.close()
