"""``reddino-train segmenter``: train the plugin's learned segmenter on synthetic smears (no labels)."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "segmenter", help="train the learned segmenter (napari-reddino --backend learned) on synthetic smears",
        description="Find isolated cells in the training images with the threshold segmenter, compose "
                    "synthetic fields from them with exact overlap ground truth and fit the U-Net. No labels "
                    "are read. Default images: the odd-index images of each benchmark source under --data.",
        epilog="example: OMP_NUM_THREADS=1 reddino-train segmenter --data ../shared/data --out "
               "src/napari_reddino/segment/segmenter.safetensors")
    p.add_argument("images", nargs="*", help="training images (default: the benchmark's training half of --data)")
    p.add_argument("--data", default=None, help="data folder with chula-rbc-12, bccd, txl-pbc")
    p.add_argument("--per-source", type=int, default=60, help="training images per source (default 60)")
    p.add_argument("--synthetic", action="store_true", help="use a bank of generated discs (a smoke run)")
    p.add_argument("--out", required=True, help="safetensors file to write")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--size", type=int, default=96, help="field side in px at the network scale")
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import time

    from napari_reddino.images import InputError

    from ..segmenter.synth import cell_bank, disc_bank, training_items
    from ..segmenter.train import train_segmenter

    t0 = time.time()
    if args.synthetic:
        bank = disc_bank(seed=args.seed)
    else:
        images = args.images or (training_items(args.data, max_per_source=args.per_source) if args.data else [])
        if not images:
            raise InputError("Received no training images; accepted: image files, --data FOLDER or --synthetic.")
        bank = cell_bank(images, seed=args.seed)
        print(f"cell bank: {len(bank)} cells from {len(images)} images ({time.time() - t0:.0f} s)", flush=True)
    if not bank:
        raise InputError("Received images without isolated cells; accepted: stained smears.")
    loss = train_segmenter(bank, args.out, steps=args.steps, batch=args.batch, size=args.size, lr=args.lr,
                           seed=args.seed, threads=args.threads)
    print(f"wrote {args.out} (loss {loss:.4f}, {time.time() - t0:.0f} s)")
    return 0
