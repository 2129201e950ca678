"""Does the review queue teach the classifier faster than annotating cells at random? A simulated user on
Chula-RBC-12, images kept apart (issue 18, item 3).

The labelled images are split by image (seeded): 40 % train a stand-in for the shipped classifier (the shipped
one has seen every Chula image, so it cannot be scored on them), 40 % are the user's slides, 20 % are held out
for scoring. Each round the user annotates 20 cells of their slides, chosen

- by the **queue**: the gallery's review queue (``review.review_queue``: the cells where the classifier and a
  kNN on the annotated cells disagree, then the least confident), or
- at **random**,

then presses *Train & predict* (``classify.fit_on_top``: the annotations on top of the stand-in's confident
predictions; from nothing: ``classify.fit_predict`` on the annotations alone, the first round at random for
both). The map holds the user's slides and the held-out ones, as a user's would; the held-out labels are only
used to score: weighted F1 of the predictions on the held-out images. Features: the shipped classifier's
(``morphology.measure_cells``).

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_active_learning.py [--rounds 15] [--seeds 3]
        [--cache-dir runs/clf-cache]

Writes ``results_active_learning.md`` and ``results_active_learning.png`` beside this file.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from napari_reddino.classify import fit_on_top, fit_predict
from napari_reddino.morphology import FEATURES
from napari_reddino.review import review_queue

HERE = Path(__file__).resolve().parent
DATA = HERE.parents[1] / "shared" / "data" / "chula-rbc-12"
BATCH = 20


def load(data, cache_dir):
    """(features (N, F), class names (N,), image (N,)) of every matched red cell, cached as one .npz."""
    from reddino_train.classifier.data import collect

    f = Path(cache_dir) / "active_learning_cells.npz"
    if f.is_file():
        with np.load(f, allow_pickle=False) as z:
            return z["X"], z["y"], z["image"]
    lc = collect(data, cache_dir)
    X = lc.cells[FEATURES].to_numpy(np.float64)
    X = np.where(np.isfinite(X), X, np.nanmean(X, 0))
    y = np.array([lc.classes[i] for i in lc.cells["y"]], dtype=str)
    f.parent.mkdir(parents=True, exist_ok=True)
    np.savez(f, X=X, y=y, image=lc.cells["image"].to_numpy(str))
    return X, y, lc.cells["image"].to_numpy(str)


def stand_in(X, y, train, rows):
    """The shipped recipe (an MLP on standardised measurements) fitted on ``train``: (prediction,
    confidence) for ``rows``."""
    from reddino_train.classifier.fit import fit_export, logits, softmax

    classes = sorted(set(y))
    code = {c: i for i, c in enumerate(classes)}
    model = fit_export(X[train], np.array([code[c] for c in y[train]]), len(classes), kind="mlp", hidden=256,
                       alpha=0.01)
    p = softmax(logits(model, X[rows]))
    return np.array(classes, dtype=object)[p.argmax(1)], p.max(1)


def weighted_f1(truth, pred) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(truth, pred, average="weighted", zero_division=0))


def simulate(X, y, pool, test, prior, strategy, rounds, rng):
    """Weighted F1 on ``test`` after each round (round 0: before any annotation, the stand-in or nothing)."""
    rows = np.concatenate([pool, test])  # the map: the user's slides, then the held-out ones
    n_pool = len(pool)
    ann = np.full(len(rows), "", dtype=object)
    pred, conf = (prior[0].copy(), prior[1].copy()) if prior else (None, None)
    scores = [weighted_f1(y[test], pred[n_pool:]) if prior else 0.0]
    for _ in range(rounds):
        free = np.flatnonzero(ann[:n_pool] == "")
        if strategy == "random" or pred is None:
            pick = rng.choice(free, BATCH, replace=False)
        else:
            second = None
            if len(set(ann[ann != ""])) >= 2:  # the gallery's second opinion: a kNN on the annotated cells
                second = fit_predict(X[rows], ann, kind="knn")[0]
            queue = review_queue(pred[:n_pool], conf[:n_pool], verified=ann[:n_pool] != "",
                                 second=None if second is None else second[:n_pool])
            least = free[np.argsort(conf[free], kind="stable")]  # the queue can be shorter than a batch
            pick = np.concatenate([queue, least[~np.isin(least, queue)]])[:BATCH]
        ann[pick] = y[pool[pick]]
        if prior:
            pred, conf = fit_on_top(X[rows], ann, prior[0], prior[1])
        elif len(set(ann[ann != ""])) >= 2:
            pred, conf = fit_predict(X[rows], ann)
        scores.append(weighted_f1(y[test], pred[n_pool:]) if pred is not None else 0.0)
    return scores


def split_images(images, seed):
    rng = np.random.default_rng(seed)
    names = rng.permutation(sorted(set(images)))
    a, b = int(0.4 * len(names)), int(0.8 * len(names))
    return [np.flatnonzero(np.isin(images, part)) for part in (names[:a], names[a:b], names[b:])]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--cache-dir", type=Path, default=HERE.parent / "runs" / "clf-cache")
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--seeds", type=int, default=3)
    args = p.parse_args(argv)
    X, y, images = load(args.data, args.cache_dir)
    curves = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        train, pool, test = split_images(images, seed)
        rows = np.concatenate([pool, test])
        prior = stand_in(X, y, train, rows)
        for start in ("shipped", "nothing"):
            for strategy in ("queue", "random"):
                s = simulate(X, y, pool, test, prior if start == "shipped" else None, strategy, args.rounds,
                             np.random.default_rng(seed))
                curves.setdefault((start, strategy), []).append(s)
                print(f"seed {seed} from {start:<7} {strategy:<6} " + " ".join(f"{100 * v:.1f}" for v in s),
                      flush=True)
    write_results(curves, args, len(y), len(set(images)), time.perf_counter() - t0)
    return 0


def write_results(curves, args, n_cells, n_images, seconds):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.arange(args.rounds + 1) * BATCH
    fig, ax = plt.subplots(figsize=(6, 4), dpi=120)
    lines = ["| start | strategy | " + " | ".join(f"{k} cells" for k in n[::3]) + " |",
             "|---|---|" + "---|" * len(n[::3])]
    for (start, strategy), runs in curves.items():
        mean = 100 * np.mean(runs, axis=0)
        style = "-" if strategy == "queue" else "--"
        ax.plot(n, mean, style, label=f"from {start}, {strategy}")
        lines.append(f"| {start} | {strategy} | " + " | ".join(f"{v:.1f}" for v in mean[::3]) + " |")
    ax.set_xlabel("cells annotated")
    ax.set_ylabel("weighted F1 on held-out images (%)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "results_active_learning.png")
    gain = {start: 100 * (np.mean(curves[(start, "queue")], 0) - np.mean(curves[(start, "random")], 0))[1:].mean()
            for start in ("shipped", "nothing")}
    text = (f"# Active learning: the review queue against random annotation (issue 18, item 3)\n\n"
            f"Command (from the repository root):\n\n    OMP_NUM_THREADS=1 .venv/bin/python "
            f"benchmarks/bench_active_learning.py --rounds {args.rounds} --seeds {args.seeds}\n\n"
            f"Chula-RBC-12 ({n_cells} matched red cells, {n_images} images), split by image per seed: 40 % train a "
            f"stand-in for the shipped classifier, 40 % are the user's slides, 20 % held out. {BATCH} cells a round; "
            f"weighted F1 (%) on the held-out images, mean over {args.seeds} seeds; {seconds / 60:.0f} min. "
            f"See the script's docstring for the simulated user.\n\n" + "\n".join(lines) +
            f"\n\nMean gain of the queue over random across rounds 1-{args.rounds}: from the shipped classifier "
            f"{gain['shipped']:+.1f} points, from nothing {gain['nothing']:+.1f} points.\n\n"
            f"![curves](results_active_learning.png)\n")
    (HERE / "results_active_learning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
