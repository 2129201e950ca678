"""reddino-train's --help reads as napari-reddino's: plain text, the files each subcommand writes, and only
option and placeholder names its commands have (options of napari-reddino commands it mentions included)."""

from __future__ import annotations

from reddino_train.cli import parser

from napari_reddino.cli import parser as plugin_parser
from napari_reddino.cli.helptext import help_problems, subparsers


def test_every_subcommand_help_is_plain_and_says_what_it_writes():
    problems = help_problems({"reddino-train": parser(), "napari-reddino": plugin_parser()})
    assert [p for p in problems if p.startswith("reddino-train")] == []


def test_examples_are_kept_as_written():
    help_text = {" ".join(words): p.format_help() for words, p in subparsers(parser())}
    assert "\n  reddino-train export runs/tiny --out models/tiny\n" in help_text["export"]
    assert "\n- checkpoint.pt:" in help_text["train"]
