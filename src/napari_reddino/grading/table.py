"""The grading table (which percentage of red cells is 1+, 2+, 3+ for each class) and the statistics of a count.

The table is data: ``icsh2015.yaml`` beside this file (pre-filled from the ICSH recommendations, with the
source of each value), or the user's own copy in the same format. Reading checks every row and field; a bad
one is one line naming the row and field (``InputError``).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from napari_reddino.images import InputError

DEFAULT_GRADING = Path(__file__).with_name("icsh2015.yaml")
GRADES = ("1+", "2+", "3+")
REPORTS = ("grade", "presence", "count")
_COMPARISON = re.compile(r"^\s*(>=|>)\s*([0-9]+(?:\.[0-9]+)?)\s*%?\s*$")
ACCEPTED_COMPARISON = "'>' or '>=' and a percentage from 0 to 100, e.g. '>=5' or '>20'"


@dataclass(frozen=True)
class Threshold:
    """``percent > value`` (``inclusive=False``) or ``percent >= value``."""

    value: float
    inclusive: bool

    def holds(self, percent: float) -> bool:
        return percent >= self.value if self.inclusive else percent > self.value

    def __str__(self) -> str:
        return f"{'≥' if self.inclusive else '>'} {self.value:g} %"


@dataclass(frozen=True)
class ClassGrading:
    name: str
    icsh_term: str = ""
    report: str = "count"  # grade | presence | count
    thresholds: tuple[Threshold, ...] = ()  # 1+, 2+, 3+ when report == "grade"
    aliases: tuple[str, ...] = ()
    warn_above: float | None = None
    warn_note: str = ""
    source: str = ""
    found_at: str = ""
    confirmed: bool = False
    note: str = ""

    def rule(self) -> str:
        """The grading as one line for a report: ``1+ ≥ 5 %, 2+ > 20 %, 3+ > 50 %``."""
        if self.report == "grade":
            return ", ".join(f"{g} {t}" for g, t in zip(GRADES, self.thresholds))
        return "reported as present or absent" if self.report == "presence" else "counted, not graded"


@dataclass
class Grading:
    classes: list[ClassGrading]
    name: str = ""
    min_red_cells: int = 0
    min_red_cells_note: str = ""
    references: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def find(self, name: str) -> ClassGrading | None:
        """The entry of a class name as the cell table writes it (case and spaces aside, aliases too)."""
        key = _key(name)
        for c in self.classes:
            if key == _key(c.name) or key in {_key(a) for a in c.aliases}:
                return c
        return None


def _key(name) -> str:
    return " ".join(str(name).lower().replace("_", " ").split())


def grade(percent: float, thresholds) -> str:
    """The highest grade (``"1+"``, ``"2+"``, ``"3+"``) whose threshold ``percent`` meets; ``""`` for none."""
    if percent is None or not math.isfinite(percent):
        return ""
    found = ""
    for name, t in zip(GRADES, thresholds):
        if t.holds(percent):
            found = name
    return found


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a proportion ``k / n`` (fractions, not percent); (nan, nan) when ``n`` is 0."""
    if n <= 0:
        return math.nan, math.nan
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z / denom * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def parse_threshold(text, where: str) -> Threshold:
    m = _COMPARISON.match(str(text))
    if not m or float(m.group(2)) > 100:
        raise InputError(f"{where} = {text!r}; accepted: {ACCEPTED_COMPARISON}.")
    return Threshold(float(m.group(2)), m.group(1) == ">=")


def read_grading(path=None) -> Grading:
    """The grading table at ``path`` (None: the shipped ICSH table), checked row by row."""
    import yaml

    path = Path(path) if path else DEFAULT_GRADING
    what = f"Received grading file {str(path)!r}"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"{what}, which cannot be read ({exc.strerror or type(exc).__name__}); accepted: a "
                         "grading table in YAML (like the shipped icsh2015.yaml).") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        line = getattr(getattr(exc, "problem_mark", None), "line", None)
        at = f" at line {line + 1}" if line is not None else ""
        raise InputError(f"{what}, which is not valid YAML{at}; accepted: a grading table in YAML (like the "
                         "shipped icsh2015.yaml).") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list) or not data["classes"]:
        raise InputError(f"{what} without a 'classes' list; accepted: a YAML file with a 'classes' list, one "
                         "entry per class (like the shipped icsh2015.yaml).")
    classes, seen = [], {}
    for i, row in enumerate(data["classes"], start=1):
        entry = _read_row(row, f"{what}: classes row {i}")
        for key in (entry.name, *entry.aliases):
            if _key(key) in seen:
                raise InputError(f"{what}: classes row {i} ({entry.name!r}) names {key!r}, which row {seen[_key(key)]}"
                                 " names already; accepted: each class and alias once.")
            seen[_key(key)] = i
        classes.append(entry)
    min_cells = data.get("min_red_cells", 0)
    if isinstance(min_cells, bool) or not isinstance(min_cells, int) or min_cells < 0:
        raise InputError(f"{what}: field 'min_red_cells' = {min_cells!r}; accepted: a whole number, 0 or more.")
    refs = data.get("references") or {}
    if not isinstance(refs, dict):
        raise InputError(f"{what}: field 'references' is not a mapping; accepted: key: citation lines.")
    return Grading(classes, str(data.get("name") or path.stem), min_cells, str(data.get("min_red_cells_note") or ""),
                   {str(k): " ".join(str(v).split()) for k, v in refs.items()}, str(path))


def _read_row(row, where: str) -> ClassGrading:
    if not isinstance(row, dict):
        raise InputError(f"{where} is {row!r}; accepted: a mapping with at least 'class' and 'report'.")
    name = row.get("class")
    if not isinstance(name, str) or not name.strip():
        raise InputError(f"{where}: field 'class' = {name!r}; accepted: the class name as in the cell table.")
    where = f"{where} ({name!r})"
    report = row.get("report")
    if report not in REPORTS:
        raise InputError(f"{where}: field 'report' = {report!r}; accepted: {', '.join(REPORTS)}.")
    thresholds: tuple[Threshold, ...] = ()
    if report == "grade":
        grades = row.get("grades")
        if not isinstance(grades, dict) or set(map(str, grades)) != set(GRADES):
            raise InputError(f"{where}: field 'grades' = {grades!r}; accepted: a mapping of 1+, 2+ and 3+ to "
                             f"{ACCEPTED_COMPARISON}.")
        grades = {str(k): v for k, v in grades.items()}
        thresholds = tuple(parse_threshold(grades[g], f"{where}: field 'grades.{g}'") for g in GRADES)
        if any(a.value > b.value for a, b in zip(thresholds, thresholds[1:])):
            raise InputError(f"{where}: field 'grades' = {grades!r}, which does not rise from 1+ to 3+; accepted: "
                             "thresholds that rise (or stay) from 1+ to 3+.")
    aliases = row.get("aliases") or []
    if isinstance(aliases, str) or not all(isinstance(a, str) for a in aliases):
        raise InputError(f"{where}: field 'aliases' = {aliases!r}; accepted: a list of names, e.g. [target cell].")
    warn = row.get("warn_above")
    if warn is not None and (isinstance(warn, bool) or not isinstance(warn, (int, float)) or not 0 <= warn <= 100):
        raise InputError(f"{where}: field 'warn_above' = {warn!r}; accepted: a percentage from 0 to 100.")
    confirmed = row.get("confirmed", False)
    if not isinstance(confirmed, bool):
        raise InputError(f"{where}: field 'confirmed' = {confirmed!r}; accepted: true or false.")
    text = lambda key: " ".join(str(row.get(key) or "").split())  # noqa: E731 - YAML folded text, one line
    return ClassGrading(name.strip(), text("icsh_term"), report, thresholds, tuple(aliases),
                        None if warn is None else float(warn), text("warn_note"), text("source"), text("found_at"),
                        confirmed, text("note"))
