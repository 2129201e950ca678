"""``reddino-train`` command line. Each subcommand is a module here exposing ``add_parser(subparsers)``
(which sets ``func(args) -> int``). Bad input exits 2 with one line on stderr and no traceback."""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ["prepare", "augment_sheet", "train", "export", "eval"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reddino-train", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"reddino_train.cli.{name}")
        except ModuleNotFoundError as exc:  # a step not built yet must not break the others
            if exc.name != f"reddino_train.cli.{name}":
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
    except (InputError, FileNotFoundError) as exc:
        print(f"reddino-train {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reddino-train {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
