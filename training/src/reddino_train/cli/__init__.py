"""``reddino-train`` command line. Each subcommand is a module here exposing ``add_parser(subparsers)``
(which sets ``func(args) -> int``). Bad input exits 2 with one line on stderr and no traceback."""

from __future__ import annotations

import sys

from napari_reddino.cli import build_parser, dispatch

SUBCOMMANDS = ["prepare", "augment_sheet", "train", "export", "eval", "segmenter", "classifier"]


def main(argv=None) -> int:
    return dispatch(build_parser("reddino-train", __name__, SUBCOMMANDS,
                                 "Train RedDino-style DINOv2 weights and evaluate them (headless)."), argv)


if __name__ == "__main__":
    sys.exit(main())
