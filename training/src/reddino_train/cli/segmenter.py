"""``reddino-train segmenter``: train the plugin's learned segmenter (its centre network) on labelled smears."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segmenter", help="train the learned segmenter (napari-reddino's default backend) on labelled smears",
        description="Measure each training image as the plugin does (stain, red-cell diameter), resize it so a "
                    "red cell is 24 px across and fit the U-Net to find the labelled red- and white-cell "
                    "centres. Training images: the odd-index images of each labelled source under --data "
                    "(the segmentation benchmark scores the even ones).\n\n"
                    "Writes the --out file: the U-Net's weights (safetensors), which napari-reddino segment "
                    "--backend learned reads with --weights.",
        epilog="example:\n"
               "  reddino-train segmenter --data ../shared/data --threads 2 --out "
               "src/napari_reddino/segment/segmenter.safetensors")
    p.add_argument("--data", default=None, help="data folder with chula-rbc-12, bccd, txl-pbc (any of them)")
    p.add_argument("--sources", default="chula,bccd,pbc,raabin", help="comma-separated (default: all four)")
    p.add_argument("--per-source", type=int, default=None, help="at most this many training images per source")
    p.add_argument("--synthetic", action="store_true", help="generated discs instead of data (a smoke run)")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=6000)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--size", type=int, default=96, help="crop side in px at the network scale")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--centre-weight", type=float, default=3.0,
                   help="how many times a pixel at a labelled centre counts in the loss (default 3)")
    p.add_argument("--channels", default=None,
                   help="U-Net widths, one level per entry, comma-separated (default: the plugin's, "
                        "napari_reddino.segment.learned.CHANNELS)")
    p.set_defaults(func=run)


def run(args) -> int:
    import time
    from pathlib import Path

    import numpy as np

    from napari_reddino.images import InputError

    from ..data.smears import SOURCES, source_items, training_half
    from ..segmenter.fields import labelled_field, synthetic_field
    from ..segmenter.train import train_segmenter

    # options first: measuring the training images takes minutes
    if not args.centre_weight > 0:
        raise InputError(f"Received --centre-weight {args.centre_weight}; accepted: a positive number (how many "
                         "times a labelled centre counts; 3 by default).")
    channels = None
    if args.channels:
        try:
            channels = tuple(int(c) for c in args.channels.split(","))
        except ValueError:
            channels = ()
        if len(channels) < 2 or min(channels) < 1:
            raise InputError(f"Received --channels {args.channels!r}; accepted: two or more positive widths, "
                             "comma-separated, for example 16,32,64,128.")
    t0 = time.time()
    fields = {}
    if args.synthetic:
        rng = np.random.default_rng(args.seed)
        fields["synthetic"] = [labelled_field(*synthetic_field(rng)) for _ in range(4)]
    else:
        sources = [s.strip() for s in args.sources.split(",") if s.strip()]
        bad = [s for s in sources if s not in SOURCES]
        if bad or not args.data or not Path(args.data).is_dir():
            raise InputError(f"Received --data {args.data!r} and sources {args.sources!r}; accepted: a data folder "
                             f"holding chula-rbc-12, bccd or txl-pbc and sources among {', '.join(SOURCES)}, "
                             "or --synthetic.")
        for src in sources:
            items = training_half(list(source_items(args.data, src)))[: args.per_source]
            fields[src] = [labelled_field(path, centres, boxes) for path, centres, boxes in items]
            print(f"{src}: {len(fields[src])} training images ({time.time() - t0:.0f} s)", flush=True)
    if not any(fields.values()):
        raise InputError(f"Received no labelled images under {args.data!r}; accepted: chula-rbc-12/labels, "
                         "bccd/Annotations or txl-pbc/labels beside their images.")
    loss = train_segmenter(fields, args.out, steps=args.steps, batch=args.batch, size=args.size, lr=args.lr,
                           seed=args.seed, threads=args.threads, channels=channels,
                           centre_weight=args.centre_weight)
    print(f"wrote {args.out} (loss {loss:.4f}, {time.time() - t0:.0f} s)")
    return 0
