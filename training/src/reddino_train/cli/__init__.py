"""``reddino-train`` command line. Each subcommand is a module here exposing ``add_parser(subparsers)``
(which sets ``func(args) -> int``); built and run by the plugin's public CLI helpers, so its help reads as
napari-reddino's (plain text, a "Writes" paragraph: ``napari_reddino.cli.helptext``). Bad input exits 2
with one line on stderr and no traceback."""

from __future__ import annotations

import sys

from napari_reddino.cli import build_parser, dispatch

SUBCOMMANDS = ["prepare", "augment_sheet", "train", "export", "eval", "segmenter", "classifier"]


def parser():
    return build_parser("reddino-train", __name__, SUBCOMMANDS,
                        "Train RedDino-style DINOv2 weights and evaluate them (headless).")


def main(argv=None) -> int:
    return dispatch(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
