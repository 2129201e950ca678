"""``napari-reddino`` command line: every pipeline step on files and folders, over the same core.

Each subcommand lives in its own module exposing ``add_parser(subparsers)`` (which sets ``func``); its
docstring is its ``--help`` text: plain text laid out for ``helptext.HelpFormatter``, with a "Writes"
paragraph listing the files it writes (``helptext.help_problems`` checks both CLIs' help). Bad input exits 2
with one line on stderr and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from napari_reddino.cli.helptext import HelpFormatter, subparsers

SUBCOMMANDS = ["segment", "slide", "embed", "pca", "umap", "classify", "run", "report", "export", "view", "models"]


class UsageError(Exception):
    """Raised by subcommands for bad input; printed as one line, exit code 2."""


def require_gui(what: str, otherwise: str = "") -> None:
    """Before any work: napari's window is the ``gui`` extra, which a headless install (a cluster node) lacks.
    Only the commands that open a window import napari, and only here or after."""
    try:
        import napari  # noqa: F401
        import qtpy  # noqa: F401  (raises an ImportError when no Qt binding is installed)
    except ImportError as exc:
        raise UsageError(f"{what} opens napari's window, but {exc.name or 'a Qt binding'} is not installed here; "
                         f"install it with: pip install 'napari-reddino[gui]'{otherwise}") from None


def build_parser(prog: str, package: str, subcommands, description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description, formatter_class=HelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    for name in subcommands:
        try:
            module = importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:  # a step not built yet must not break the others
            if exc.name != f"{package}.{name}":
                raise
            continue
        module.add_parser(sub)
    for _, p in subparsers(parser):
        p.formatter_class = HelpFormatter
    return parser


def dispatch(parser: argparse.ArgumentParser, argv=None) -> int:
    """Parse and run a subcommand; user errors become one line on stderr and exit code 2."""
    from napari_reddino.images import InputError

    args = parser.parse_args(argv)
    if args.command not in ("models", "view", "export"):  # these compute nothing
        from napari_reddino.runtime import import_torch

        import_torch()  # before any step reaches torch through cellpose, torchvision or timm
    try:
        return int(args.func(args) or 0)
    except (InputError, UsageError, FileNotFoundError) as exc:
        print(f"{parser.prog} {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{parser.prog} {args.command}: interrupted", file=sys.stderr)
        return 130


def parser() -> argparse.ArgumentParser:
    return build_parser("napari-reddino", __name__, SUBCOMMANDS,
                        "Blood-smear morphology: every pipeline step on image files and folders.")


def main(argv=None) -> int:
    return dispatch(parser(), argv)


if __name__ == "__main__":
    sys.exit(main())
