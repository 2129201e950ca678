"""How both command lines' ``--help`` reads: the formatter that lays out the subcommands' plain-text help, and
the check of what it says (no reStructuredText, the files each subcommand writes, option and placeholder names
that exist), which the tests run on napari-reddino and reddino-train."""

from __future__ import annotations

import argparse
import re
import textwrap

class HelpFormatter(argparse.HelpFormatter):
    """Help text as written in the docstrings: paragraphs (blank lines between) are filled to the terminal,
    a line starting with "- " is a list item (lines indented by two spaces continue it), and other lines
    indented by two spaces (examples) are kept as they are. Words are never split at their hyphens."""

    def _fill_text(self, text, width, indent):
        paragraphs = []
        for para in textwrap.dedent(text).strip().split("\n\n"):
            blocks = []  # [kind, words or line]: "text", "item" (filled) or "verbatim"
            for line in para.splitlines():
                if line.startswith("- "):
                    blocks.append(["item", line.split()])
                elif line.startswith("  ") and blocks and blocks[-1][0] == "item":
                    blocks[-1][1] += line.split()
                elif line.startswith("  "):
                    blocks.append(["verbatim", line])
                elif blocks and blocks[-1][0] == "text":
                    blocks[-1][1] += line.split()
                else:
                    blocks.append(["text", line.split()])
            paragraphs.append("\n".join(
                indent + body if kind == "verbatim" else
                textwrap.fill(" ".join(body), width, initial_indent=indent, break_on_hyphens=False,
                              subsequent_indent=indent + ("  " if kind == "item" else ""))
                for kind, body in blocks))
        return "\n\n".join(paragraphs)

    def _split_lines(self, text, width):  # an option's help: never "--save-" / "fit" across two lines
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


def subparsers(parser: argparse.ArgumentParser):
    """Every parser under ``parser`` (subcommands, their actions), depth first, as (words, parser)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield [name], sub
                for words, deeper in subparsers(sub):
                    yield [name] + words, deeper


MARKUP = re.compile(r"`+|(?<![\w/])\*[A-Za-z][^*\n]*[^\s*]\*(?!\w)")  # ``literal``, `x`, :role:`x`, *emphasis*
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")
COMMAND = re.compile(r"\b(napari-reddino|reddino-train) ([a-z][a-z-]*)")
PLACEHOLDER = re.compile(r"(?<!:)\b[A-Z][A-Z0-9_]+\b")  # not in a spec's syntax (local-dir:PATH)
NOT_PLACEHOLDERS = {"PCA", "UMAP", "RGB", "PNG", "CSV", "TIFF", "ICSH", "HTML", "GPU", "CPU", "CUDA", "CLS", "EMA",
                    "YAML", "MLP", "L2", "F1", "NN", "SAM", "RBC", "CARD", "README", "SIGTERM", "NAPARI_REDDINO_PINS", "A4", "OME"}


def options_of(parser: argparse.ArgumentParser) -> set[str]:
    return {s for a in parser._actions for s in a.option_strings}


def placeholders_of(parser: argparse.ArgumentParser) -> set[str]:
    names = set()
    for a in parser._actions:
        for name in (a.metavar if isinstance(a.metavar, tuple) else (a.metavar or a.dest.upper(),)):
            names.update(re.split(r"[^A-Za-z0-9_]+", str(name)))
    return names


def help_problems(programs: dict[str, argparse.ArgumentParser]) -> list[str]:
    """What reads wrong in the help of every parser of ``programs`` (name -> top-level parser): reST markup, a
    subcommand whose description does not say what it writes ("Writes ..."), an --option that the command it
    is said of does not take, an UPPER-CASE placeholder that is none of the command's argument names."""
    parsers = {}
    for name, top in programs.items():
        parsers[name] = top
        parsers.update({f"{name} {' '.join(words)}": p for words, p in subparsers(top)})
    problems = []
    for where, parser in parsers.items():
        groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
        subcommand_helps = [a.help or "" for action in groups for a in action._choices_actions]
        if not groups and "Writes" not in (parser.description or ""):
            problems.append(f"{where}: the description does not say what it writes")
        texts = [parser.description or "", parser.epilog or ""] + [a.help or "" for a in parser._actions]
        for text in texts + subcommand_helps:
            problems += [f"{where}: markup {m!r} in {text[:60]!r}" for m in MARKUP.findall(text)]
        for text in texts[:1] + texts[2:]:  # not the epilog: its examples run other commands
            for clause in re.split(r"[;,.()](?:\s|$)|\n- ", text):
                said_of, start, pieces = parser, 0, []  # an option after "napari-reddino segment" is segment's
                for m in COMMAND.finditer(clause):
                    pieces.append((said_of, clause[start:m.start()]))
                    said_of, start = parsers.get(" ".join(m.groups())), m.end()
                pieces.append((said_of, clause[start:]))
                problems += [f"{where}: {option} is not an option of {target.prog}: {clause!r}"
                             for target, piece in pieces if target is not None
                             for option in OPTION.findall(piece) if option not in options_of(target)]
            unknown = set(PLACEHOLDER.findall(text)) - placeholders_of(parser) - NOT_PLACEHOLDERS
            problems += [f"{where}: {word} is none of its argument names: {text[:80]!r}" for word in sorted(unknown)]
    return problems
