"""Segment whole slides tile by tile, out of core: a slide of any size (OME-Zarr, OME-TIFF / pyramidal TIFF,
TIFF, .png or .jpg) is cut into overlapping tiles; each cell is taken whole from the one tile whose core holds its
centre, measured, optionally given its RedDino features, and written to disk as soon as its tile is done.
Memory stays that of one tile, whatever the slide's size. A killed or failed run goes on where it stopped
with --resume and gives the same files. --workers N does N tiles at a time (--scheduler: on the workers of a
running dask scheduler).

Writes, into the --out folder, per slide:
- <stem>_labels.zarr: the labels as an OME-Zarr label image (with --labels-beside, in <slide>/labels/cells
  instead, where napari-ome-zarr shows them over the slide)
- <stem>_cells.parquet: one row per object (centroid and box in the pixels of the level segmented, area,
  perimeter, diameter, eccentricity, solidity, mean colour, type, border: touching the slide's edge; with
  --classifier, prediction and confidence of every red cell)
- <stem>_features.parquet, with --features: image, label, centroid_x, centroid_y, emb_0 ... per embedded cell
- <stem>_cells.geojson: the cells' outlines for QuPath (File > Import objects), in level-0 slide pixels, each
  classified by its prediction (else its object type) and with its measurements
- <stem>.tiles/: each finished tile (what --resume keeps), removed when the slide is done unless --keep-tiles
- <stem>_pca.zarr, with --pca: the PCA overlay of the RedDino patch features, made tile by tile at the
  resolution of the cells (a red cell about 6 patches across), as a multiscale OME-Zarr image placed on the
  slide; <stem>_pca_fit.npz its colours (fitted on a few tiles that hold cells), <stem>.pca_tiles/ its finished
  tiles (what --resume keeps)
and for all the slides of the run:
- cells.h5ad: AnnData for scanpy: obs every slide's cells (image = the slide, label, centroid and box in level-0
  pixels, type, prediction, ...), with --features only the embedded ones and obsm["X_reddino"] their features
- run.json: the settings (what --resume checks)
- failed.csv, when a slide could not be done: which and why (the others are still done; exit code 2)

Example:
  napari-reddino slide scans/patient1.zarr --out results --backend threshold --resume
"""

from __future__ import annotations

import argparse
import sys

from napari_reddino.cli.embed import add_cell_types_argument
from napari_reddino.cli.segment import add_diameter_argument
from napari_reddino.cli.workers import add_distribute_arguments
from napari_reddino.segment import BACKENDS, DEFAULT_BACKEND


def add_parser(sub) -> None:
    p = sub.add_parser("slide", help="whole slides tile by tile → OME-Zarr labels + Parquet cells", description=__doc__)
    p.add_argument("slides", nargs="+", metavar="SLIDE",
                   help="OME-Zarr folders (.zarr), OME-TIFF / pyramidal TIFF, TIFF, PNG or .jpg files")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--level", type=int, default=0, help="the pyramid level to segment (default 0: full resolution)")
    p.add_argument("--tile", type=int, default=2048, help="tile size in pixels (default 2048)")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="learned (default), threshold or cellpose, as napari-reddino segment")
    add_diameter_argument(p)
    p.add_argument("--features", action=argparse.BooleanOptionalAction, default=False,
                   help="RedDino features of the cells too (default: --no-features)")
    p.add_argument("--pca", action="store_true",
                   help="the PCA overlay of the slide too, tile by tile (<stem>_pca.zarr; on a CPU about as long as "
                        "--features)")
    p.add_argument("--model", default=None, help="model spec for --features and --pca (default: a cached RedDino, "
                                                 "else the demo model)")
    add_cell_types_argument(p)
    p.add_argument("--classifier", default=None, choices=["morphology", "embedding+morphology"],
                   help="name every red cell with this shipped classifier, as napari-reddino run does (default: none; "
                        "embedding+morphology needs --features of the demo model, else morphology is used)")
    p.add_argument("--weights", default=None, help="the segmenter's weights: with --backend learned, a file written "
                   "by reddino-train segmenter (default: the shipped one); with cellpose, a Cellpose 4 weights file "
                   "(default: cpsam in Cellpose's model folder)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--labels-beside", action="store_true",
                   help="write the labels into the OME-Zarr slide itself (<slide>/labels/cells; level 0 only)")
    p.add_argument("--keep-tiles", action="store_true", help="keep <stem>.tiles/ after the slide is done")
    p.add_argument("--resume", action="store_true",
                   help="keep the tiles and slides already done in --out (made with the same settings)")
    add_distribute_arguments(p, what="tiles")
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import functools

    from napari_reddino.cli import UsageError
    from napari_reddino.cli.workers import check_scheduler
    from napari_reddino.distribute import iter_map_units
    from napari_reddino.images import InputError
    from napari_reddino.outputs import Failures, RunRecord, check_out_dir, output_stems, settings_of, unique_names
    from napari_reddino.progress import run as drive
    from napari_reddino.slides.tiled import iter_segment_slide, slide_files

    missing = [s for s in args.slides if not Path(s).exists()]
    if missing:
        raise UsageError(f"received {missing[0]!r}, which does not exist; accepted: OME-Zarr folders or image files")
    out = check_out_dir(args.out)
    check_scheduler(args)
    RunRecord(out, "slide", settings_of(args, skip=("func", "slides", "out", "resume", "command", "keep_tiles",
                                                    "workers", "scheduler"))).start(args.resume)
    run_units = functools.partial(iter_map_units, workers=args.workers, scheduler=args.scheduler)
    model = None
    if args.features:
        from napari_reddino.models import default_spec
        from napari_reddino.segment.types import parse_cell_types

        model = args.model or default_spec()
        cell_types = parse_cell_types(args.cell_types)
    else:
        cell_types = ("rbc",)
    opts = {} if args.diameter is None else {"diameter": args.diameter}
    if args.weights:
        opts["weights"] = args.weights
    if args.backend == "cellpose":
        opts["device"] = args.device
    if args.classifier:
        from napari_reddino.classifier import choose

        note = choose(model, args.classifier)[1]
        if note:
            print(f"note: {note}")
    names = unique_names(args.slides)
    failures, done, pooled = Failures(), 0, []
    for path, name, stem in zip(args.slides, names, output_stems(names)):
        files = slide_files(out, stem)
        if args.resume and files["cells"].is_file() and not files["tiles"].exists():
            print(f"{name}: cells done before, kept")
            pooled.append(_pooled(path, name, files, args))
            done += _overlay(args, path, name, out, stem, failures)
            continue
        try:
            result = drive(iter_segment_slide(
                path, out, stem, level=args.level, tile=args.tile, backend=args.backend, opts=opts, model=model,
                cell_types=tuple(cell_types), embed_opts={"device": args.device}, resume=args.resume,
                keep_tiles=args.keep_tiles, labels_beside=args.labels_beside, image=name,
                classifier=args.classifier, run_units=run_units),
                bar=sys.stderr.isatty())
        except (InputError, MemoryError) as exc:
            print(f"{name}: not done: {failures.add(name, exc)}", file=sys.stderr)
            continue
        if result.failed:
            first = result.failed[0]
            failures.add(name, InputError(f"{len(result.failed)} of {result.tiles} tiles failed (tile {first.name}: "
                                          f"{first.error}); --resume does the rest"))
            print(f"{name}: {len(result.failed)} of {result.tiles} tiles failed, first {first.name}: {first.error}",
                  file=sys.stderr)
            continue
        line = f"{name}: {result.cells} objects in {result.tiles} tiles"
        if result.skipped:
            line += f" ({result.skipped} done before)"
        if model:
            line += f", {result.features} with features"
        if not args.labels_beside and Path(path).suffix.lower() == ".zarr" and not args.level:
            print(f"{name}: --labels-beside writes the labels into the slide itself, where napari-ome-zarr shows "
                  "them over it")
        print(f"{line} → {result.files['labels']}, {result.files['cells']}, {result.files['geojson']}")
        pooled.append(_pooled(path, name, files, args))
        if result.reaching:
            print(f"{name}: {result.reaching} of {result.tiles} tiles keep cells of a clump of touching cells that runs "
                  "past the tile (a crowded field): their outlines may differ a little from one piece's", file=sys.stderr)
        done += _overlay(args, path, name, out, stem, failures)
    if pooled:
        from napari_reddino.exports import H5AD_FILE, run_info
        from napari_reddino.slides.pooled import write_slides_h5ad

        info = {"model": model, "level": args.level, "classifier": args.classifier}
        n = write_slides_h5ad(out / H5AD_FILE, pooled, run_info(out, info))
        print(f"{n} cells of {len(pooled)} slide{'s' if len(pooled) > 1 else ''} → {out / H5AD_FILE}")
    failures.write(out / "failed.csv")
    if len(args.slides) > 1 or failures:
        print(f"{len(args.slides)} slides: {failures.summary(done)}" + (" (see failed.csv)" if failures else ""))
    return 2 if failures else 0


def _pooled(path, name, files, args):
    """What ``cells.h5ad`` takes from a finished slide."""
    from napari_reddino.slides.pooled import SlideCells
    from napari_reddino.slides.tiled import level_scale

    return SlideCells(name, files["cells"], files["features"] if args.features else None,
                      level_scale(path, args.level) if args.level else 1.0)


def _overlay(args, path, name, out, stem, failures) -> int:
    """With --pca, the slide's overlay (skipped when --resume finds it made); 1 when the slide is done."""
    from napari_reddino.images import InputError
    from napari_reddino.progress import run as drive
    from napari_reddino.slides.overlay import Source, iter_slide_overlay

    if not args.pca:
        return 1
    target = out / f"{stem}_pca.zarr"
    if args.resume and target.is_dir():
        print(f"{name}: PCA overlay done before, kept")
        return 1
    from napari_reddino.models import default_spec

    try:
        made = drive(iter_slide_overlay(Source(str(path), args.level), args.model or default_spec(), out, stem,
                                        device=args.device, workers=args.workers, scheduler=args.scheduler),
                     bar=sys.stderr.isatty())
    except (InputError, MemoryError) as exc:
        print(f"{name}: PCA overlay not made: {failures.add(name, exc)}", file=sys.stderr)
        return 0
    print(f"{name}: PCA overlay → {made}")
    return 1
