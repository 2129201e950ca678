"""The graded slide report: per sample, each red-cell class's count, percentage, 95 % Wilson interval and
ICSH grade (``table.py``: the grading file and the statistics; ``slide.py``: the report; ``html.py``: the page;
``files.py``: ``report.csv`` and ``report.html`` from a results folder)."""

from napari_reddino.grading.slide import SAMPLE_BY, SlideReport, sample_names, slide_report
from napari_reddino.grading.table import (DEFAULT_GRADING, GRADES, ClassGrading, Grading, Threshold, grade,
                                          read_grading, wilson_interval)

__all__ = ["DEFAULT_GRADING", "GRADES", "SAMPLE_BY", "ClassGrading", "Grading", "SlideReport", "Threshold", "grade",
           "read_grading", "sample_names", "slide_report", "wilson_interval"]
