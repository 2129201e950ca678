"""napari-reddino's --help reads cleanly: every subcommand's help is plain text (no reStructuredText), says
which files it writes, and names only options and placeholders the command has."""

from __future__ import annotations

import argparse

from napari_reddino.cli import parser
from napari_reddino.cli.helptext import help_problems, subparsers


def test_every_subcommand_help_is_plain_and_says_what_it_writes():
    assert help_problems({"napari-reddino": parser()}) == []


def test_the_check_finds_what_it_is_for():
    top = argparse.ArgumentParser(prog="tool")
    sub = top.add_subparsers(dest="command")
    sub.add_parser("a", description="Reads ``FILE`` and :func:`x`; see *Open…*.")
    sub.add_parser("b", description="Writes OUT with --out.").add_argument("--output")
    found = "\n".join(help_problems({"tool": top}))
    assert "tool a: the description does not say what it writes" in found and "tool: the desc" not in found
    assert "'``'" in found and "'`'" in found and "*Open…*" in found
    assert "tool a: FILE is none of its argument names" in found
    assert "--out is not an option of tool b" in found


def test_help_text_keeps_its_lists_and_examples():
    help_text = {" ".join(words): p.format_help() for words, p in subparsers(parser())}
    assert "\n- <stem>_labels.tif, per image" in help_text["segment"]
    assert "\n- session.json" in help_text["run"]
    assert "``" not in "".join(help_text.values())
    for words in ("segment", "embed", "pca", "umap", "classify", "run", "report", "export", "view", "models list",
                  "models download"):
        assert "Writes" in help_text[words], words


def test_run_takes_device_and_drop_border():
    args = parser().parse_args(["run", "x.png", "--out", "o", "--device", "cpu", "--drop-border"])
    assert args.device == "cpu" and args.drop_border


def test_models_list_shows_the_demo_dimension(capsys):
    from napari_reddino.cli import main
    from napari_reddino.models import load_model

    assert main(["models", "list"]) == 0
    demo = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("demo "))
    model = load_model("demo")
    assert demo.split()[1] == str(model.num_features)
    assert demo.split()[2] == f"{sum(p.numel() for p in model.parameters()) / 1e6:.1f}M"
