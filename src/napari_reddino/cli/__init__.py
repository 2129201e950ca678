"""``napari-reddino`` command line: every pipeline step on files and folders, over the same core.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets ``func``).
Bad input exits 2 with one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ["segment", "embed", "pca", "umap", "classify", "run", "models"]


class UsageError(Exception):
    """Raised by subcommands for bad input; printed as one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="napari-reddino", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"napari_reddino.cli.{name}")
        except ModuleNotFoundError as exc:  # a step not built yet must not break the others
            if exc.name != f"napari_reddino.cli.{name}":
                raise
            continue
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    from napari_reddino.images import InputError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (InputError, UsageError, FileNotFoundError) as exc:
        print(f"napari-reddino {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-reddino {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
