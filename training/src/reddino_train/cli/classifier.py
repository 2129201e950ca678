"""``reddino-train classifier``: train the plugin's shipped red-cell classifier on labelled smears."""

from __future__ import annotations

import shlex
import sys


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "classifier", help="train the classifier napari-reddino ships (prediction, confidence of every red cell)",
        description="Segment every labelled Chula-RBC-12 image with the default segmenter, match each labelled "
                    "centre to its mask, measure morphology and embed the cells with --model, score each "
                    "feature set with 5 folds grouped by image (with and without elliptocytes), then fit on all "
                    "cells.\n\n"
                    "Writes, into the --out folder:\n"
                    "- morphology.npz, embedding+morphology.npz: the two classifiers (arrays only)\n"
                    "- classifier.json: which is which, their features, temperature and scores\n"
                    "- cv.json: the cross-validation results\n"
                    "- CARD.md: the classifier's card\n"
                    "and the segmentations and embeddings into --cache-dir (reused by later runs).",
        epilog="example:\n"
               "  reddino-train classifier --data ../shared/data/chula-rbc-12 --cache-dir runs/clf-cache "
               "--out src/napari_reddino/classifier")
    p.add_argument("--data", required=True, help="Chula-RBC-12 folder (images/, labels/<id>.txt 'x y class')")
    p.add_argument("--out", required=True, help="folder to write the classifier files into")
    p.add_argument("--model", default="demo", help="embedding model spec (default: demo, the shipped one)")
    p.add_argument("--cache-dir", default=None, help="keep segmentations and embeddings here (default: "
                                                     "runs/classifier-cache)")
    p.add_argument("--kind", default="mlp", choices=["logreg", "mlp"],
                   help="mlp (default: one hidden ReLU layer) or logreg (logistic regression)")
    p.add_argument("--C", type=float, default=0.5, help="logistic regression's inverse regularisation")
    p.add_argument("--hidden", type=int, default=256, help="MLP hidden units (default 256)")
    p.add_argument("--alpha", type=float, default=1e-2, help="MLP L2 penalty (default 0.01)")
    p.add_argument("--balanced", action="store_true", help="weight classes inversely to their frequency")
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--threads", type=int, default=1, help="torch threads for the embedding (default 1)")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    from pathlib import Path

    import torch

    from napari_reddino.chula import CLASSES
    from napari_reddino.classifier import model_sha256
    from napari_reddino.images import InputError
    from napari_reddino.models import load_model
    from napari_reddino.outputs import check_out_dir
    from reddino_train.classifier.data import collect
    from reddino_train.classifier.run import evaluate, write_classifier

    if args.folds < 2 or args.C <= 0 or args.hidden < 1 or args.threads < 1 or args.alpha < 0:
        raise InputError(f"Received --folds {args.folds}, --C {args.C}, --hidden {args.hidden}, --alpha "
                         f"{args.alpha}, --threads {args.threads}; accepted: at least 2 folds, C > 0, at least "
                         "1 unit, alpha >= 0 and at least 1 thread.")
    out = check_out_dir(args.out)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    sha = model_sha256(args.model)
    if sha is None:
        raise InputError(f"Received --model {args.model}, whose weights are not a local file; accepted: demo, "
                         "local-dir:FOLDER or a checkpoint file (the classifier records the weights' SHA-256).")
    print(f"collecting labelled cells of {args.data} (segment, measure, embed with {args.model})", flush=True)
    lc = collect(args.data, args.cache_dir or Path("runs/classifier-cache"), model, sha[:20])
    fit_kw = {"kind": args.kind, "C": args.C, "balanced": args.balanced}
    if args.kind == "mlp":
        fit_kw = {"kind": "mlp", "hidden": args.hidden, "alpha": args.alpha, "balanced": args.balanced}
    print(f"{len(lc.cells)} red cells; {args.folds}-fold cross-validation grouped by image", flush=True)
    results = evaluate(lc, ["morphology", "embedding+morphology", "embedding"], n_splits=args.folds,
                       seed=args.seed, **fit_kw)
    command = "reddino-train classifier " + " ".join(shlex.quote(a) for a in sys.argv[2:]) \
        if len(sys.argv) > 1 and sys.argv[1] == "classifier" else ""
    names = {"classes": list(CLASSES), "data": Path(args.data).name}
    info = {"spec": args.model, "sha256": sha, "dim": int(lc.embeddings.shape[1])}
    for p in write_classifier(out, lc, info, results, fit_kw, names, command):
        print(f"wrote {p}")
    return 0
