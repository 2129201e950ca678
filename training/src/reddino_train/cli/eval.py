"""``reddino-train eval``: the RedDino paper's linear-probe / kNN protocol on labelled cells."""

from __future__ import annotations

import shlex
import sys

from napari_reddino.images import InputError


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "eval", help="linear probe and kNN on frozen features of labelled cells, with baselines",
        description="Extract CLS features of labelled cells and score them with the RedDino paper's protocol "
                    "(linear probe, 1-NN, 20-NN; accuracy, balanced accuracy, weighted F1 over folds), next to "
                    "a random-init model of the same architecture and handcrafted morphology+colour features.\n\n"
                    "Writes, into the --out folder:\n"
                    "- results.csv: a row per model, protocol, classifier and metric (mean and std over folds)\n"
                    "- results.md: the summary table\n"
                    "- confusion.png: a confusion matrix per model (the first classifier and protocol)\n"
                    "- umap.png: the cells' features mapped by UMAP, coloured by class (not with --no-umap)\n"
                    "and, with --cache-dir, the extracted features and scores there (reused by later runs).")
    p.add_argument("--model", required=True, help="model spec: demo, local-dir:PATH, hf-hub:Snarcy/RedDino-small|"
                                                  "base|large (needs --download the first time), checkpoint file")
    p.add_argument("--dataset", required=True, help="chula:PATH | folder:PATH | csv:FILE")
    p.add_argument("--out", required=True, help="output folder (results.csv, results.md, confusion.png, umap.png)")
    p.add_argument("--protocol", default="grouped", choices=["grouped", "ungrouped", "loso", "all"],
                   help="grouped: 5-fold StratifiedGroupKFold by image (default); ungrouped: the paper's "
                        "StratifiedKFold on pooled cells; loso: leave one source out; all: every one that applies")
    p.add_argument("--exclude-classes", default="", help="comma-separated class ids or names to leave out, e.g. 12")
    p.add_argument("--crop-size", type=int, default=48, help="square crop around each labelled centre (px)")
    p.add_argument("--limit", type=int, default=None, help="stratified random subsample of at most N cells")
    p.add_argument("--folds", type=int, default=None,
                   help="score only the first N folds (quick comparison of checkpoints; default: all)")
    p.add_argument("--classifiers", default="linear,knn1,knn20",
                   help="comma-separated subset of linear, knn1, knn20 (default: all three)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-baselines", action="store_true", help="skip the random-init and handcrafted baselines")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP figure")
    p.add_argument("--knn-metric", default="euclidean", choices=["euclidean", "cosine"])
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1 ...")
    p.add_argument("--download", action="store_true", help="allow downloading hf-hub weights (never implicit)")
    p.add_argument("--cache-dir", default=None, help="keep extracted features here and reuse them across runs")
    p.set_defaults(func=run)


def run(args) -> int:
    from reddino_train.eval.protocol import PROTOCOLS
    from reddino_train.eval.run import evaluate

    for flag, v in (("--limit", args.limit), ("--batch-size", args.batch_size), ("--folds", args.folds)):
        if v is not None and v < 1:
            raise InputError(f"Received {flag} {v}; accepted: a positive integer.")
    protocols = list(PROTOCOLS) if args.protocol == "all" else [args.protocol]
    exclude = [c for c in args.exclude_classes.split(",") if c.strip()]
    rows = evaluate(args.model, args.dataset, args.out, protocols=protocols, exclude=exclude,
                    crop_size=args.crop_size, limit=args.limit, baselines=not args.no_baselines,
                    knn_metric=args.knn_metric, batch_size=args.batch_size, precision=args.precision,
                    device=args.device, download=args.download, cache_dir=args.cache_dir,
                    make_umap=not args.no_umap, seed=args.seed, folds=args.folds,
                    classifiers=[c.strip() for c in args.classifiers.split(",") if c.strip()],
                    command="reddino-train eval " + " ".join(shlex.quote(a) for a in sys.argv[2:])
                    if len(sys.argv) > 1 and sys.argv[1] == "eval" else "")
    for r in (r for r in rows if r["metric"] == "wf1"):
        print(f"{r['protocol']:>9} {r['model']:<28} {r['classifier']:<6} wf1 "
              f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}")
    print(f"wrote {args.out}/results.csv, results.md, confusion.png" + ("" if args.no_umap else ", umap.png"))
    return 0
