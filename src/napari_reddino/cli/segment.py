"""Segment cells: one label per cell, each object typed (rbc, wbc, platelet, cluster, artefact) and flagged
when it touches the image border.

Writes, into the --out folder:
- <stem>_labels.tif, per image as soon as it is done: the labels (uint16; uint32 past 65,535 cells)
- <stem>_cells.csv, per image: one row per object (centroid, box, area, perimeter, diameter, eccentricity,
  solidity, mean colour, type, border)
- run.json: the settings (what --resume checks)
- failed.csv, when an input could not be read: those inputs and why (the others are still done; exit code 2)

Two inputs of the same name (a/1.jpg, b/1.jpg) get a__1_* and b__1_*. --workers N segments N images at a
time, --scheduler on a dask cluster.
"""

from __future__ import annotations

import sys

from napari_reddino.cli.workers import add_distribute_arguments
from napari_reddino.segment import BACKENDS, DEFAULT_BACKEND


def add_parser(sub) -> None:
    p = sub.add_parser("segment", help="segment cells → labels TIFF + cells CSV", description=__doc__)
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--backend", choices=BACKENDS, default=DEFAULT_BACKEND,
                   help="learned (default): the stain pipeline with cell centres from the shipped small U-Net "
                        "(see README); threshold: stain colour + watershed, no weights; cellpose: Cellpose-SAM")
    p.add_argument("--out", required=True, help="output folder")
    add_diameter_argument(p)
    p.add_argument("--drop-border", action="store_true", help="drop cells touching the image border")
    p.add_argument("--resume", action="store_true",
                   help="skip the images whose results are already in --out (made with the same settings)")
    add_distribute_arguments(p)
    cp = p.add_argument_group("cellpose")
    cp.add_argument("--model", default=None, help="cellpose model name (default cpsam), in its model folder")
    cp.add_argument("--weights", default=None, help="a Cellpose 4 weights file (instead of --model); with --backend learned, a "
                    "segmenter file written by reddino-train segmenter (default: the shipped one)")
    cp.add_argument("--download", action="store_true", help="download the named model if it is missing")
    cp.add_argument("--flow-threshold", type=float, default=0.4, help="Cellpose's flow error threshold (default 0.4)")
    cp.add_argument("--cellprob-threshold", type=float, default=0.0,
                    help="Cellpose's cell probability threshold (default 0)")
    cp.add_argument("--min-size", type=int, default=15, help="smallest cell kept, in pixels (default 15)")
    cp.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    cp.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.set_defaults(func=run)


def diameter_value(text: str):
    """``--diameter``: ``auto`` or a number of pixels."""
    import argparse

    if text.strip().lower() == "auto":
        return "auto"
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"received {text!r}; accepted: auto or a red-cell diameter in pixels > 0")
    return value


def add_diameter_argument(p) -> None:
    p.add_argument("--diameter", type=diameter_value, default=None,
                   help="red-cell diameter in pixels, or auto (default: measured from each image for threshold; "
                        "Cellpose-SAM's own scale for cellpose, auto passes it the measured one)")


def segment_options(args) -> dict:
    default = "auto" if args.backend in ("threshold", "learned") else None
    opts = {"diameter": default if args.diameter is None else args.diameter}
    if args.backend == "cellpose":
        opts.update(model=args.model, weights=args.weights, download=args.download, device=args.device,
                    precision=args.precision, flow_threshold=args.flow_threshold,
                    cellprob_threshold=args.cellprob_threshold, min_size=args.min_size)
    elif args.backend == "learned" and args.weights:
        opts["weights"] = args.weights
    return opts


def run(args) -> int:
    from napari_reddino.cli.workers import check_scheduler
    from napari_reddino.distribute import Unit, UnitFailed, iter_map_units
    from napari_reddino.progress import run as drive
    from napari_reddino.formats import image_files
    from napari_reddino.images import expand_inputs
    from napari_reddino.outputs import Failures, RunRecord, check_out_dir, output_stems, settings_of, unique_names

    paths = expand_inputs(args.images)
    out = check_out_dir(args.out)
    check_scheduler(args)
    opts = segment_options(args)
    RunRecord(out, "segment", settings_of(args)).start(args.resume)
    names = unique_names(paths)
    failures, done, units = Failures(), 0, []
    for path, name, stem in zip(paths, names, output_stems(names)):
        files = image_files(out, stem)
        if args.resume and files["labels"].is_file() and files["cells"].is_file():
            print(f"{name}: done before, skipped")
            done += 1
            continue
        units.append(Unit(name, iter_segment_image, (path, name, args.backend, args.drop_border, opts,
                                                      files["labels"], files["cells"])))

    def report(_, result):  # as each image is done: its line now, not at the end of the batch
        nonlocal done
        if isinstance(result, UnitFailed):
            print(f"{result.name}: not segmented: {failures.add(result.name, ValueError(result.why))}",
                  file=sys.stderr)
        else:
            print(result)
            done += 1

    drive(iter_map_units(units, args.workers, args.scheduler, "images", done=report), bar=sys.stderr.isatty())
    failures.write(out / "failed.csv")
    if len(paths) > 1 or failures:
        print(f"{len(paths)} images: {failures.summary(done)}" + (" (see failed.csv)" if failures else ""))
    return 2 if failures else 0


def iter_segment_image(path, name, backend, drop_border, opts, labels_file, table_file):
    """One image of ``segment``, a unit of ``distribute.iter_map_units``: read, segmented, its two files
    written (atomically); returns the line said of it."""
    from napari_reddino.formats import save_labels, write_cell_table
    from napari_reddino.images import read_image
    from napari_reddino.runtime import import_torch
    from napari_reddino.segment import iter_segment_cells
    from napari_reddino.segment.types import segmentation_summary

    import_torch()  # a worker's first torch import, as the CLI's (the learned and cellpose backends use it)
    labels, table = yield from iter_segment_cells(read_image(path), backend, drop_border, **opts)
    save_labels(labels, labels_file)
    write_cell_table(table, table_file)
    return f"{name}: {segmentation_summary(table, name)} → {labels_file}"
