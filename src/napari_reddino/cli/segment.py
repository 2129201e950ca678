"""Segment cells: one label per cell, each object typed (rbc, wbc, platelet, cluster, artefact) and flagged
when it touches the image border.

Writes, into the --out folder:
- <stem>_labels.tif, per image as soon as it is done: the labels (uint16; uint32 past 65,535 cells)
- <stem>_cells.csv, per image: one row per object (centroid, box, area, perimeter, diameter, eccentricity,
  solidity, mean colour, type, border)
- run.json: the settings (what --resume checks)
- failed.csv, when an input could not be read: those inputs and why (the others are still done; exit code 2)

Two inputs of the same name (a/1.jpg, b/1.jpg) get a__1_* and b__1_*.
"""

from __future__ import annotations

import sys

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
    from napari_reddino.progress import run as drive
    from napari_reddino.formats import image_files, save_labels, write_cell_table
    from napari_reddino.images import ReadError, expand_inputs, read_image
    from napari_reddino.outputs import Failures, RunRecord, check_out_dir, output_stems, settings_of, unique_names
    from napari_reddino.segment import iter_segment_cells
    from napari_reddino.segment.types import segmentation_summary

    paths = expand_inputs(args.images)
    out = check_out_dir(args.out)
    opts = segment_options(args)
    RunRecord(out, "segment", settings_of(args)).start(args.resume)
    names = unique_names(paths)
    failures, done = Failures(), 0
    for path, name, stem in zip(paths, names, output_stems(names)):
        files = image_files(out, stem)
        labels_file, table_file = files["labels"], files["cells"]
        if args.resume and labels_file.is_file() and table_file.is_file():
            print(f"{name}: done before, skipped")
            done += 1
            continue
        try:  # a file that cannot be read is this input's problem; a setting that fails (weights) stops all
            image = read_image(path)
            labels, table = drive(iter_segment_cells(image, args.backend, args.drop_border, **opts),
                                  bar=sys.stderr.isatty())
        except (ReadError, MemoryError) as exc:
            print(f"{name}: not segmented: {failures.add(name, exc)}", file=sys.stderr)
            continue
        save_labels(labels, labels_file)
        write_cell_table(table, table_file)
        print(f"{name}: {segmentation_summary(table, name)} → {labels_file}")
        done += 1
    failures.write(out / "failed.csv")
    if len(paths) > 1 or failures:
        print(f"{len(paths)} images: {failures.summary(done)}" + (" (see failed.csv)" if failures else ""))
    return 2 if failures else 0
