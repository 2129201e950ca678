"""``reddino-train augment-sheet``: a contact sheet PNG of augmented samples — what the model sees."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "augment-sheet", help="write a contact sheet PNG of augmented training samples",
        description="Draw N samples of a training set and augment them as training would.\n\n"
                    "Writes the --out PNG: the crops (denormalised, captioned with the transforms that fired), "
                    "a row per sample.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--config", help="training config name or YAML file: its augmentation, crop sizes and "
                                      "number of local crops")
    src.add_argument("--augmentation", help="augmentation name (reddino, dinov2) or YAML file")
    p.add_argument("--data", required=True, help="training set folder (made by reddino-train prepare)")
    p.add_argument("--out", required=True, help="PNG file to write")
    p.add_argument("--n", type=int, default=8, help="number of samples (rows), default 8")
    p.add_argument("--global-size", type=int, default=None, help="global crop size (default: config's, or 224)")
    p.add_argument("--local-size", type=int, default=None, help="local crop size (default: config's, or 98)")
    p.add_argument("--n-local", type=int, default=None, help="local crops per sample (default: config's, or 0)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    import numpy as np

    from napari_reddino.images import InputError
    from reddino_train.config import load_config, resolve_augmentation
    from reddino_train.data.augment import IMAGENET_MEAN, IMAGENET_STD, build_augmentation
    from reddino_train.data.contact_sheet import write_contact_sheet
    from reddino_train.data.dataset import SmearDataset

    crops = {}
    if args.config:
        cfg = load_config(args.config)
        aug_cfg, crops = cfg["augmentation"], cfg.get("crops", {})
    else:
        aug_cfg = resolve_augmentation(args.augmentation)
    if args.n < 1:
        raise InputError(f"Received --n {args.n}; accepted: a positive number of samples.")
    pick = lambda arg, key, default: arg if arg is not None else crops.get(key, default)  # noqa: E731
    aug = build_augmentation(aug_cfg, n_global=2, n_local=pick(args.n_local, "n_local", 0),
                             global_size=pick(args.global_size, "global_size", 224),
                             local_size=pick(args.local_size, "local_size", 98), seed=args.seed)
    data = SmearDataset(args.data)
    idx = np.random.default_rng(args.seed).choice(len(data), size=min(args.n, len(data)), replace=False)
    norm = aug_cfg.get("normalize") or {}
    out = write_contact_sheet(aug, [data[int(i)] for i in sorted(idx)], args.out,
                              mean=norm.get("mean", IMAGENET_MEAN), std=norm.get("std", IMAGENET_STD))
    print(f"wrote {out} ({len(idx)} samples, augmentation {aug_cfg.get('name', '?')})")
    return 0
