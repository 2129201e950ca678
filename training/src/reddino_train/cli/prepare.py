"""``reddino-train prepare``: a training set (patches and/or single-cell crops + manifest.csv) from smear folders."""

from __future__ import annotations

from napari_reddino.progress import run as run_progress
from napari_reddino.segment import BACKENDS as CELL_BACKENDS


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "prepare", help="build a training set of patches and/or cell crops from folders of smear images",
        description="Cut smear images into non-overlapping patches (background patches dropped) and/or "
                    "single-cell crops from the plugin's segmentation. Each SRC is one source dataset.\n\n"
                    "Writes, into the --out folder:\n"
                    "- patches/*.png, cells/*.png: the samples\n"
                    "- manifest.csv: source, image, kind, box, label and class of every sample (with --append, "
                    "added to the one there)\n"
                    "- failed.csv, when an input could not be read: those inputs and why")
    p.add_argument("sources", nargs="+", metavar="SRC", help="image files or folders (searched recursively)")
    p.add_argument("--out", required=True, help="output folder (manifest.csv, patches/, cells/)")
    p.add_argument("--patches", action="store_true", help="cut patches (the default when --cells is not given)")
    p.add_argument("--cells", choices=CELL_BACKENDS, default=None,
                   help="also (or only) crop single cells segmented with this backend (cells touching the border "
                        "are skipped; crop = the cell's bounding box, as RedDino)")
    p.add_argument("--cell-size", type=int, default=None,
                   help="crop cells as a square of N px centred on the cell, neighbours included (keeps cell size "
                        "and shape through the resize; default: the bounding box)")
    p.add_argument("--patch-size", type=int, default=224, help="patch side in pixels (default 224)")
    p.add_argument("--min-foreground", type=float, default=0.05,
                   help="drop patches with a smaller fraction of stained pixels (default 0.05)")
    p.add_argument("--max-per-image", type=int, default=None, help="at most N patches and N cells per image "
                                                                  "(random, seeded)")
    p.add_argument("--limit", type=int, default=None, help="at most N images per SRC, evenly spaced (quick sets)")
    p.add_argument("--append", action="store_true", help="add to the manifest already in --out (a set built in "
                                                            "several runs with different options)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from reddino_train.data.prepare import iter_prepare

    patches = args.patches or args.cells is None
    manifest = run_progress(iter_prepare(
        args.sources, args.out, patches=patches, cells=args.cells, patch_size=args.patch_size,
        min_foreground=args.min_foreground, max_per_image=args.max_per_image, limit=args.limit, seed=args.seed,
        append=args.append, cell_size=args.cell_size),
        bar=True)
    counts = manifest.groupby(["source", "kind"]).size() if len(manifest) else {}
    for (source, kind), n in dict(counts).items():
        print(f"{source}: {n} {kind}{'es' if kind == 'patch' else 's'}")
    print(f"{len(manifest)} samples from {manifest['image'].nunique() if len(manifest) else 0} images "
          f"-> {args.out}/manifest.csv")
    failed = manifest.attrs.get("failed", [])
    for row in failed:
        print(f"not read: {row['input']}: {row['error']}")
    if failed:
        print(f"{len(failed)} image(s) could not be read: see {args.out}/failed.csv")
    return 2 if failed else 0
