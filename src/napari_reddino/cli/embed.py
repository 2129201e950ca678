"""RedDino features: one feature vector per cell. The cells come from label images (--labels, each paired with
the image of the same name: 1.jpg with 1.tif, 1_labels.tif, 1_masks.png or 1_cp_masks.png) or from a
segmentation made on the way (--segment).

Writes:
- FILE (--out FILE.parquet or FILE.csv, rewritten after each image): one row per cell with image, label,
  centroid_x, centroid_y (pixels), emb_0 ... emb_<D-1>
- FILE.run.json: the settings (what --resume checks)
- FILE.failed.csv, when an input could not be read: those inputs and why (exit code 2)

--workers N embeds N images at a time, --scheduler on a dask cluster.
"""

from __future__ import annotations

from pathlib import Path


from napari_reddino.cli import UsageError
from napari_reddino.cli.workers import add_distribute_arguments
from napari_reddino.formats import LABEL_SUFFIXES
from napari_reddino.segment import BACKENDS

# what segmentation tools append to the image's name: ours (`segment`, `run`), Cellpose's, common hand-made ones
LABEL_NAME_ENDINGS = ("_labels", "_label", "_cp_masks", "_masks", "_mask", "_seg")


def add_parser(sub) -> None:
    p = sub.add_parser("embed", help="RedDino features per cell → Parquet/CSV", description=__doc__)
    p.add_argument("images", nargs="+", help="image files or folders")
    cells = p.add_mutually_exclusive_group(required=True)
    cells.add_argument("--labels", nargs="+",
                       help="label images (.tif/.png/.npy) or folders; each goes with the image of the same name "
                            "(1.jpg: 1.tif, 1_labels.tif, 1_masks.png or 1_cp_masks.png)")
    cells.add_argument("--segment", choices=BACKENDS, help="segment the images first")
    p.add_argument("--model", default=None,
                   help="model spec (default: a cached RedDino, else the demo model); "
                        "see napari-reddino models list")
    p.add_argument("--out", required=True, metavar="FILE", help="the table to write, FILE.parquet or FILE.csv")
    p.add_argument("--resume", action="store_true",
                   help="keep the images already in --out (made with the same settings) and do the rest")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument("--pad-square", action="store_true", help="square crop with a margin (default: bounding box)")
    p.add_argument("--mask-neighbours", action="store_true", help="blank other cells inside each crop")
    add_cell_types_argument(p)
    add_distribute_arguments(p)
    p.set_defaults(func=run)


def add_cell_types_argument(p) -> None:
    from napari_reddino.segment.types import OBJECT_TYPES

    p.add_argument("--cell-types", default="rbc",
                   help=f"objects to embed: all, or a comma-separated list of {', '.join(OBJECT_TYPES)} "
                        "(default rbc: red cells only; the others are counted and left out)")


def label_paths(items) -> list[Path]:
    out: list[Path] = []
    for p in map(Path, items):
        if p.is_dir():
            out += sorted(q for q in p.iterdir() if q.suffix.lower() in LABEL_SUFFIXES)
        elif p.is_file():
            out.append(p)
        else:
            raise UsageError(f"received labels {str(p)!r}, which does not exist; accepted: label image files "
                             f"({', '.join(LABEL_SUFFIXES)}) or folders")
    return out


def label_key(path: Path) -> str:
    """The image name a label file belongs to: its stem without a segmentation tool's ending."""
    stem = path.stem
    for ending in LABEL_NAME_ENDINGS:
        if stem.endswith(ending) and len(stem) > len(ending):
            return stem[: -len(ending)]
    return stem


def pair_labels(images: list[Path], labels: list[Path]) -> list[Path]:
    """The label file of each image, matched by name (never by order: one missing file would shift every
    later image onto another image's cells). A missing, extra or doubled label file is a one-line error."""
    stems = [p.stem for p in images]
    doubled = sorted({s for s in stems if stems.count(s) > 1})
    if doubled:
        raise UsageError(f"received two images named {doubled[0]!r}; accepted with --labels: images of different "
                         "names (label images are paired with images by name); run the folders one at a time")
    paired, missing, used = [], [], set()
    for image in images:
        found = [q for q in labels if q.stem == image.stem
                 or (label_key(q) == image.stem and q.stem not in stems)]  # cell_mask.tif is cell_mask.jpg's
        if len(found) > 1:
            names = ", ".join(q.name for q in found)
            raise UsageError(f"received {len(found)} label images for {image.name} ({names}); accepted: one label "
                             "image per image")
        if not found:
            missing.append(image.name)
            continue
        paired.append(found[0])
        used.add(found[0])
    if missing:
        stem = Path(missing[0]).stem
        raise UsageError(f"received no label image for {', '.join(missing[:3])}"
                         + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
                         + f"; accepted: a label image named after its image ({stem}.tif, {stem}_labels.tif, "
                         f"{stem}_masks.png, ...) for every image")
    extra = [q.name for q in labels if q not in used]
    if extra:
        raise UsageError(f"received label image(s) {', '.join(extra[:3])} with no image of that name; accepted: "
                         "label images named after the images they belong to")
    return paired


def run(args) -> int:
    import sys

    import pandas as pd

    from napari_reddino.cli.workers import check_scheduler
    from napari_reddino.distribute import Unit, UnitFailed, iter_map_units
    from napari_reddino.progress import run as drive
    from napari_reddino.formats import write_table
    from napari_reddino.images import expand_inputs
    from napari_reddino.models import clear_cache, default_spec, load_model
    from napari_reddino.outputs import Failures, RunRecord, check_out_file, settings_of, unique_names
    from napari_reddino.segment.types import parse_cell_types

    cell_types = parse_cell_types(args.cell_types)
    out = check_out_file(args.out)
    if args.batch_size < 1:
        raise UsageError(f"received --batch-size {args.batch_size}; accepted: an integer >= 1")
    check_scheduler(args)
    images = expand_inputs(args.images)
    labels = pair_labels(images, label_paths(args.labels)) if args.labels else None
    spec = args.model or default_spec()  # here, so that every worker uses the same
    model = load_model(spec, device=args.device)  # a bad --model: one line before any work
    num_features = model.num_features
    if args.workers > 1 or args.scheduler:  # the workers load their own
        del model
        clear_cache()
    RunRecord(out, "embed", settings_of(args, skip=("func", "images", "labels", "out", "resume", "workers",
                                                    "scheduler"))).start(args.resume)
    before = _previous(out) if args.resume and out.is_file() else None
    done_before = set(before["image"]) if before is not None else set()
    failures, names, units = Failures(), unique_names(images), []
    options = dict(segment=args.segment, spec=spec, device=args.device, batch_size=args.batch_size,
                   precision=args.precision, pad_square=args.pad_square, mask_neighbours=args.mask_neighbours,
                   cell_types=cell_types)
    for i, (path, name) in enumerate(zip(images, names)):
        if name in done_before:
            print(f"{name}: done before, kept", file=sys.stderr)
        else:
            units.append(Unit(name, iter_embed_image, (path, name, labels[i] if labels else None), options))
    frames = {}

    def keep(i, result):  # an interrupted run keeps every finished image: the table is rewritten after each
        if isinstance(result, UnitFailed):
            print(f"{result.name}: not embedded: {failures.add(result.name, ValueError(result.why))}",
                  file=sys.stderr)
            return
        frames[i], line = result
        print(line, file=sys.stderr)
        done = [before] if before is not None else []
        write_table(pd.concat(done + [frames[j] for j in sorted(frames)], ignore_index=True), out)

    drive(iter_map_units(units, args.workers, args.scheduler, "images", done=keep), bar=True)
    failures.write(out.with_name(out.name + ".failed.csv"))
    if before is None and not frames:
        raise UsageError(f"received {len(images)} image(s), none could be read; accepted: image files "
                         f"(see {out.name}.failed.csv)")
    n = (len(before) if before is not None else 0) + sum(len(f) for f in frames.values())
    print(f"wrote {n} cells × {num_features} features ({spec}) to {out}"
          + (f"; {failures.summary(len(images) - len(failures))}" if failures else ""))
    return 2 if failures else 0


def iter_embed_image(path, name, labels_path, segment, spec, device, batch_size, precision, pad_square,
                     mask_neighbours, cell_types):
    """One image of ``embed``, a unit of ``distribute.iter_map_units``: its cells (from ``labels_path``, else
    segmented with ``segment``) typed, selected and embedded; returns (its rows of the table, the line said)."""
    from napari_reddino.embed import iter_embed_cells
    from napari_reddino.formats import features_frame, read_labels
    from napari_reddino.images import read_image
    from napari_reddino.models import load_model
    from napari_reddino.runtime import import_torch
    from napari_reddino.segment.types import left_out_note, select_cells, typed_table

    import_torch()  # a worker's first torch import, as the CLI's
    image = read_image(path)
    if labels_path is not None:
        lab = read_labels(labels_path, image.shape[:2])
    else:
        from napari_reddino.segment import iter_segment

        lab = yield from iter_segment(image, backend=segment)
    objects = typed_table(image, lab)  # types from the image, whoever made the labels
    kept = select_cells(objects, cell_types)
    table, emb = yield from iter_embed_cells(image, lab, load_model(spec, device=device), batch_size=batch_size,
                                             precision=precision, pad_square=pad_square,
                                             mask_neighbours=mask_neighbours,
                                             label_ids=objects["label"].to_numpy()[kept])
    left = left_out_note(objects, kept)
    return features_frame(table, emb, name), f"{name}: {len(table)} cells" + (f" ({left})" if left else "")


def _previous(out: Path):
    from napari_reddino.formats import features_with_table, read_features

    return features_with_table(*read_features(out))
