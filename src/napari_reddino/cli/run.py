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
done. --workers N does N images at a time on this machine, --scheduler on a dask cluster; the table, UMAP and
report of all the images are made here once every image is done.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from napari_reddino.cli import UsageError, require_gui
from napari_reddino.cli.embed import add_cell_types_argument
from napari_reddino.cli.pca import add_resolution_argument
from napari_reddino.cli.report import add_grading_arguments
from napari_reddino.cli.segment import add_diameter_argument
from napari_reddino.cli.workers import add_distribute_arguments, check_scheduler
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
    add_distribute_arguments(p)
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
    from napari_reddino.images import expand_inputs, read_image
    from napari_reddino.outputs import Failures, RunRecord, check_out_dir, output_stems, settings_of, unique_names
    from napari_reddino.distribute import Unit, UnitFailed, iter_map_units
    from napari_reddino.pipeline import STEPS, PipelineOptions, write_pooled_outputs
    from napari_reddino.segment.types import parse_cell_types
    from napari_reddino.session import write_manifest

    if not args.images and not args.sample:
        raise UsageError("received no images; accepted: image files/folders, or --sample")
    if args.view or args.screenshot:
        flag = "--view" if args.view else "--screenshot"
        require_gui(flag, f", or leave out {flag} (the files are written without it)")
    out = check_out_dir(args.out)  # before any work: a bad folder must not cost the compute
    grading = read_grading(args.grading)  # a bad grading file too
    check_scheduler(args)
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
    if {"embed", "pca"} & set(steps):  # one model for every worker, checked before any work
        from napari_reddino.models import default_spec, load_model

        opts.model = opts.model or default_spec()
        load_model(opts.model, device=opts.device)
        if args.workers > 1 or args.scheduler:  # the workers load their own
            from napari_reddino.models import clear_cache

            clear_cache()
    done_before, units = {}, []
    for name, data in images:
        before = previous_outputs(name, data, out, stems[name], steps) if args.resume else None
        if before is not None:
            done_before[name] = before
        else:
            units.append(Unit(name, iter_run_image, (name, data, opts, str(out), stems[name])))
    t0 = time.perf_counter()
    finished = dict(zip([u.name for u in units], drive(iter_map_units(
        units, args.workers, args.scheduler, "images"), bar=True)))
    result = drive(iter_pooled_result(images, done_before, finished, opts, out, stems), bar=True)
    written += [p for name, _ in images if name in finished and not isinstance(finished[name], UnitFailed)
                for p in finished[name].written]
    written += write_pooled_outputs(result, out)
    sources = dict(zip(names, [None] * (len(names) - len(paths)) + [str(p.resolve()) for p in paths]))
    written += write_manifest(run_session(result, sources, out), out)
    written += run_report(result, out, grading, args.sample_by, {k: v for k, v in sources.items() if v})
    failures = Failures()
    for name, why in result.failed:
        failures.add(name, ValueError(why))
        print(f"not done: {name}: {why}")
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


def previous_outputs(name, data, out, stem, steps):
    """An image's results from an earlier run into ``out`` (``--resume``), None when any is missing or its
    input cannot be read now (it is then done again, or reported)."""
    from napari_reddino.images import InputError
    from napari_reddino.pipeline import read_image_outputs

    try:
        return read_image_outputs(name, data, out, stem, steps)
    except InputError:
        return None


@dataclass
class ImageDone:
    """What one image's unit hands back: small (its arrays are in the files it wrote)."""
    name: str
    written: list[Path]
    skipped: list[str]
    note: str
    attrs: dict  # the cell table's (the measured red-cell diameter)
    pca: object = None  # the overlay on its grid of squares (small; the PNG is at image resolution)
    patch: int | None = None
    pca_factor: tuple = (1.0, 1.0)


def iter_run_image(name: str, data, opts, out: str, stem: str):
    """One image of ``run``, a unit of ``distribute.iter_map_units`` (in this process or a worker's): read it,
    its steps (``pipeline.iter_smear``), its files written (atomically). The model comes from the worker's
    cache (``models.load_model``): one load per process."""
    from napari_reddino.images import to_rgb_uint8
    from napari_reddino.pipeline import SmearResult, iter_smear, write_image_outputs
    from napari_reddino.runtime import import_torch

    import_torch()  # a worker's first torch import, as the CLI's
    model = None
    if {"embed", "pca"} & set(opts.steps):
        from napari_reddino.models import load_model

        model = load_model(opts.model, device=opts.device)
    s = SmearResult(name, to_rgb_uint8(data() if callable(data) else data))
    skipped, note = yield from iter_smear(s, model, opts.model, opts, name)
    written = write_image_outputs(s, out, stem)
    return ImageDone(name, written, skipped, note, dict(s.table.attrs), s.pca, s.patch, s.pca_factor)


def iter_pooled_result(images, done_before: dict, finished: dict, opts, out, stems):
    """The run's result from every image's files (those done before and those the units wrote), then the
    UMAP over all of them; an image whose unit failed is in ``failed``."""
    from napari_reddino.images import InputError
    from napari_reddino.distribute import UnitFailed
    from napari_reddino.pipeline import PipelineResult, classify_smear, iter_pooled, read_image_outputs

    smears, failed, skipped, notes = [], [], [], set()
    for name, data in images:
        if name in done_before:
            s = done_before[name]
            if "prediction" not in s.table.columns:  # written before the shipped classifier
                notes.add(classify_smear(s, opts.model, opts.classifier))
        elif isinstance(finished[name], UnitFailed):
            failed.append((name, finished[name].why))
            continue
        else:
            got = finished[name]
            s = read_image_outputs(name, data, out, stems[name], tuple(x for x in opts.steps if x != "pca"))
            s.table.attrs.update(got.attrs)
            s.pca, s.patch, s.pca_factor = got.pca, got.patch, got.pca_factor
            skipped += got.skipped
            notes.add(got.note)
        smears.append(s)
    if not smears:
        raise InputError(f"Received {len(images)} image(s), none of which could be done ({failed[0][1]}); "
                         "accepted: image files.")
    result = PipelineResult(smears, model=opts.model, steps=tuple(opts.steps), skipped=skipped, failed=failed,
                            classifier_note=" ".join(sorted(n for n in notes if n)))
    yield from iter_pooled(result, opts)
    return result


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
