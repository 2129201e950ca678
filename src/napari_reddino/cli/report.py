"""Graded slide report of a cell table (CELLS): per sample (a slide: by default one per folder of images),
the red cells counted and, for each class, the count, percentage, 95 % Wilson interval and grade from a
grading table (the shipped ICSH 2015/2021 one, or --grading FILE), with warnings (fewer than 1,000 red
cells, schistocytes above 1 %, cells not verified by a person). In a folder written by napari-reddino run
the images, labels, annotations and UMAP are found by themselves; elsewhere give --images.

Writes, into the --out folder:
- report.csv: the long table (a row per sample and class)
- report.html: one self-contained page (opens offline, laid out for A4)
"""

from __future__ import annotations

from pathlib import Path

SAMPLE_BY_HELP = "one sample (slide) per image folder (default), per image, or per value of a cell-table column"


def add_grading_arguments(p) -> None:
    p.add_argument("--grading", default=None, metavar="FILE",
                   help="grading table (YAML, like the shipped icsh2015.yaml); default: ICSH 2015, schistocytes ICSH 2021")
    p.add_argument("--sample-by", default="folder", metavar="folder|image|COLUMN", help=SAMPLE_BY_HELP)


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="graded slide report (ICSH) of a cell table → report.csv + report.html",
                       description=__doc__)
    p.add_argument("cells", metavar="CELLS",
                   help="the cell table CSV (cells.csv of napari-reddino run, or Export cell table… in napari)")
    p.add_argument("--out", required=True, help="output folder")
    add_grading_arguments(p)
    p.add_argument("--images", default=None, metavar="DIR",
                   help="folder where the images named in the table's image column are now (for the thumbnails, "
                        "with the labels beside CELLS, and for one sample per folder); default: where the run "
                        "folder's session.json says they are")
    p.set_defaults(func=run)


def read_cells(path):
    import pandas as pd

    from napari_reddino.images import InputError

    path = Path(path)
    if not path.is_file():
        raise InputError(f"Received {str(path)!r}, which is not a file; accepted: a cell table CSV (cells.csv of "
                         "napari-reddino run, or Export cell table…).")
    try:
        cells = pd.read_csv(path, dtype={"image": str, "class": str, "prediction": str}, keep_default_na=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is bad input
        raise InputError(f"Could not read {str(path)!r} as CSV ({type(exc).__name__}); accepted: a cell table "
                         "CSV.") from None
    if not {"image", "label"} <= set(cells.columns):
        raise InputError(f"Received {str(path)!r} with columns {list(cells.columns)[:8]}; accepted: a cell table "
                         "with image and label columns.")
    return cells


def run(args) -> int:
    from napari_reddino.grading import read_grading
    from napari_reddino.grading.files import RunFolder, write_report
    from napari_reddino.images import InputError
    from napari_reddino.outputs import check_out_dir

    out = check_out_dir(args.out)
    grading = read_grading(args.grading)  # a bad file: one line, before any work
    cells = read_cells(args.cells)
    if args.images and not Path(args.images).is_dir():
        raise InputError(f"Received --images {args.images!r}, which is not a folder; accepted: the folder of the "
                         "images named in the cell table.")
    cells = with_umap_csv(cells, Path(args.cells).resolve().parent / "umap.csv")
    names = list(dict.fromkeys(cells["image"].astype(str)))
    folder = RunFolder(Path(args.cells).resolve().parent, names, args.images)
    report, written = write_report(cells, out, grading, args.sample_by, run=folder, source=str(args.cells))
    print_summary(report, written)
    return 0


def with_umap_csv(cells, path: Path):
    """The table with the map of ``napari-reddino umap`` (``umap.csv`` beside it: image, label, umap_x,
    umap_y) where it has no coordinates of its own."""
    import pandas as pd

    from napari_reddino.formats import UMAP_COLUMNS, umap_xy, with_current_names

    if umap_xy(cells) is not None or not path.is_file():
        return cells
    try:
        umap = with_current_names(pd.read_csv(path, dtype={"image": str}))[["image", "label", *UMAP_COLUMNS]]
    except (ValueError, KeyError, OSError):  # not that kind of file: the report goes on without the map
        return cells
    return cells.merge(umap.drop_duplicates(["image", "label"]), on=["image", "label"], how="left")


def print_summary(report, written) -> None:
    for sample, rows in report.table.groupby("sample", sort=False):
        graded = rows[rows["grade"].isin(["1+", "2+", "3+"])]
        found = ", ".join(f"{r['class']} {r.grade}" for _, r in graded.iterrows()) or "no graded abnormality"
        print(f"{sample}: {int(rows['red_cells'].iloc[0]):,} red cells; {found}")
        for line in report.warnings.get(sample, []):
            print(f"  warning: {line}")
    for note in report.notes:
        print(f"note: {note}")
    print("wrote " + ", ".join(str(p) for p in written))
