"""The whole pipeline on images or a sample smear: segment the cells, RedDino features, the shipped
classifier's prediction for every red cell, PCA overlay, UMAP and the graded slide report. --view then
opens the result in napari; --screenshot saves the real napari window instead (both need napari's window:
pip install 'napari-reddino[gui]').

Writes, into the --out folder, per image as soon as it is done:
- <stem>_labels.tif, <stem>_cells.csv: as napari-reddino segment
- <stem>_features.parquet: the image's cells' RedDino features
- <stem>_pca.png: the PCA overlay at the image's resolution

and for all the images:
- cells.csv: every object with its type, every red cell with prediction and confidence, UMAP coordinates
- umap.png: the map of the analysed cells
- report.csv, report.html: the graded slide report (as napari-reddino report)
- cells.h5ad (AnnData, for scanpy), <stem>_cells.geojson (outlines, for QuPath), <stem>_cells.parquet (as
  napari-reddino export)
- session.json, and <stem>_image.tif for a sample smear (a copy): the folder is a saved session, which
  napari-reddino view reopens without computing again
- run.json: the settings (what --resume checks)
- failed.csv, when an input could not be read: those inputs and why (the others are still done; exit code 2)
- screenshot.png, screenshot_umap.png, with --screenshot: the napari window and the map

Two inputs of the same name (a/1.jpg, b/1.jpg) get a__1_* and b__1_*. --resume keeps the images already
done.
"""

from __future__ import annotations

import time
from pathlib import Path

from napari_reddino.cli import UsageError, require_gui
from napari_reddino.cli.embed import add_cell_types_argument
from napari_reddino.cli.pca import add_resolution_argument
from napari_reddino.cli.report import add_grading_arguments
from napari_reddino.cli.segment import add_diameter_argument
from napari_reddino.segment import BACKENDS, DEFAULT_BACKEND


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="segment → RedDino features → PCA overlay → UMAP on images, in one go",
                       description=__doc__)
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--sample", nargs="?", const="auto", choices=["auto", "chula", "synthetic"],
                   help="use a sample smear (auto: the real Chula-RBC-12 smear if available, else synthetic)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--backend", default=DEFAULT_BACKEND, choices=BACKENDS)
    add_diameter_argument(p)
    p.add_argument("--model", default=None, help="model spec (default: a cached RedDino, else the demo model)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps (auto: the GPU when there is one)")
    p.add_argument("--drop-border", action="store_true", help="leave out cells touching the image border")
    add_cell_types_argument(p)
    p.add_argument("--classifier", default="morphology", choices=["morphology", "embedding+morphology"],
                   help="the shipped classifier that names every red cell (default morphology; "
                        "embedding+morphology only with the demo model: see napari_reddino/classifier/CARD.md)")
    p.add_argument("--no-pca", action="store_true", help="skip the PCA overlay")
    add_resolution_argument(p)
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding")
    add_grading_arguments(p)
    p.add_argument("--resume", action="store_true",
                   help="keep the images whose results are already in --out (same settings), do the rest, then "
                        "the pooled table and UMAP of all")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--view", action="store_true", help="open napari with the result layers")
    view.add_argument("--screenshot", action="store_true",
                      help="save a screenshot of the napari window with the layers (needs an X display, e.g. Xvfb)")
    p.set_defaults(func=run)


def sample_images(which: str):
    from napari_reddino.images import InputError
    from napari_reddino.chula import smear as chula_smear
    from napari_reddino.sample_data import synthetic_smear

    if which in ("auto", "chula"):
        try:
            return [("chula-rbc-12_1.jpg", chula_smear(1)[0])]
        except InputError as exc:
            if which == "chula":
                raise
            print(f"note: real sample unavailable ({exc}); using the synthetic smear")
    return [("synthetic_smear.png", synthetic_smear(0)[0])]


def run(args) -> int:
    from functools import partial

    from napari_reddino.progress import run as drive
    from napari_reddino.grading import read_grading
    from napari_reddino.grading.files import run_report
    from napari_reddino.images import InputError, expand_inputs, read_image
    from napari_reddino.outputs import Failures, RunRecord, check_out_dir, output_stems, settings_of, unique_names
    from napari_reddino.pipeline import (STEPS, PipelineOptions, iter_pipeline, read_image_outputs,
                                         write_image_outputs, write_pooled_outputs)
    from napari_reddino.segment.types import parse_cell_types
    from napari_reddino.session import write_manifest

    if not args.images and not args.sample:
        raise UsageError("received no images; accepted: image files/folders, or --sample")
    if args.view or args.screenshot:
        flag = "--view" if args.view else "--screenshot"
        require_gui(flag, f", or leave out {flag} (the files are written without it)")
    out = check_out_dir(args.out)  # before any work: a bad folder must not cost the compute
    grading = read_grading(args.grading)  # a bad grading file too
    images = sample_images(args.sample) if args.sample else []
    paths = expand_inputs(args.images) if args.images else []
    names = [name for name, _ in images] + unique_names(paths)
    images += [(name, partial(read_image, p)) for name, p in zip(names[len(images):], paths)]
    stems = dict(zip(names, output_stems(names)))
    steps = tuple(s for s in STEPS if not (s == "pca" and args.no_pca) and not (s == "umap" and args.no_umap))
    opts = PipelineOptions(backend=args.backend, diameter=args.diameter, model=args.model, device=args.device,
                           drop_border=args.drop_border, precision=args.precision, steps=steps,
                           cell_types=parse_cell_types(args.cell_types), pca_resolution=args.cell_resolution,
                           classifier=args.classifier)
    # the report is made again each time, and the device does not change the results: no reason to refuse --resume
    report_options = ("grading", "sample_by", "device")
    RunRecord(out, "run", {k: v for k, v in settings_of(args).items() if k not in report_options}).start(args.resume)
    written = []

    def done(smear):
        written.extend(write_image_outputs(smear, out, stems[smear.name]))

    def previous(name):
        if not args.resume:
            return None
        try:
            return read_image_outputs(name, dict(images)[name], out, stems[name], steps)
        except InputError:  # the input itself is unreadable now: the pipeline reports it
            return None

    t0 = time.perf_counter()
    result = drive(iter_pipeline(images, opts, done=done, previous=previous), bar=True)
    written += write_pooled_outputs(result, out)
    sources = dict(zip(names, [None] * (len(names) - len(paths)) + [str(p.resolve()) for p in paths]))
    written += write_manifest(run_session(result, sources, out), out)
    written += run_report(result, out, grading, args.sample_by, {k: v for k, v in sources.items() if v})
    failures = Failures()
    for name, why in result.failed:
        failures.add(name, ValueError(why))
        print(f"not read: {name}: {why}")
    failures.write(out / "failed.csv")
    print(f"{result.summary()}: {time.perf_counter() - t0:.1f} s"
          + (f"; {len(failures)} input(s) failed (see failed.csv)" if failures else ""))
    for note in result.skipped:
        print(f"not made: {note}")
    if result.classifier_note:
        print(f"note: {result.classifier_note}")
    if args.view or args.screenshot:
        from napari_reddino._widgets.window import show_result

        written += show_result(result, Path(args.out), screenshot=args.screenshot)
    print(f"wrote {len(written)} files to {Path(args.out).resolve()}:")
    for path in written:
        print(f"  {path.name}")
    return 2 if failures else 0


def run_session(result, paths: dict, out: Path):
    """The run's results as a session (``paths``: name -> image file, None for a sample); annotations made
    on it later go to ``OUT/reddino-annotations.csv``, where ``--view`` puts them too."""
    from napari_reddino.annotate import annotation_path
    from napari_reddino.session import Session, SessionImage

    folder = Path(out).resolve()
    files = ({s.name: str(annotation_path(None, folder)) for s in result.umap_smears()}
             if result.umap is not None else {})
    images = [SessionImage(s.name, paths.get(s.name),
                           segmentation={"estimated_diameter": s.table.attrs["diameter"]}
                           if s.table is not None and s.table.attrs.get("diameter") else {})
              for s in result.smears]
    return Session(result, images, files, str(folder))
