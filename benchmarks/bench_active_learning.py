"""Does the review queue teach the classifier faster than annotating cells at random? A simulated user on
Chula-RBC-12, images kept apart (issue 18, item 3).

The labelled images are split by image (seeded): 40 % train a stand-in for the shipped classifier (the shipped
one has seen every Chula image, so it cannot be scored on them), 40 % are the user's slides, 20 % are held out
for scoring. Three starts:

- **shipped, same lab**: the split above; the user's slides come from the lab the stand-in learnt from;
- **shipped, new batch**: the stand-in never sees Chula's elliptocyte batch (images 707-738, another
  acquisition, every elliptocyte of the dataset): two thirds of its images are among the user's slides, a
  third held out: a shift inside Chula the shipped classifier has to be corrected on;
- **nothing**: no shipped classifier, *Train & predict* on the annotations alone.

Each round the user annotates 20 cells of their slides (their true class), chosen

- by the **queue**: the product's (``review.review_queue`` with the cells' features, as the gallery walks it
  and 'Next to annotate' selects it: ``review.teach_first``, then the uncertain cells),
- by the **old queue** (before issue 18 item 3: where a kNN on the annotated cells disagrees, then the least
  confident), or
- at **random**,

then presses *Train & predict* (``classify.fit_on_top``: the annotations on top of the stand-in's confident
predictions; from nothing: ``classify.fit_predict`` on the annotations alone; the old queue's first round
from nothing is random, it needs predictions). The classifier learns from the user's slides and the held-out
ones (a user's map holds every smear); the queue sees the user's slides; the held-out labels only score:
weighted F1 of the predictions on the held-out images. Features: the shipped classifier's
(``morphology.measure_cells``), cached with the matched cells in ``runs/clf-cache/active_learning_cells.npz``.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_active_learning.py [--rounds 10] [--seeds 5]
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


def pick(strategy, X, ann, pred, conf, prior, n_pool, rng):
    """The ``BATCH`` cells of the user's slides (rows < ``n_pool``) annotated this round."""
    free = np.flatnonzero(ann[:n_pool] == "")
    if strategy == "random" or (pred is None and strategy == "old queue"):
        return rng.choice(free, BATCH, replace=False)
    second = None
    if pred is not None and len(set(ann[ann != ""])) >= 2:  # the gallery's second opinion: a kNN on the annotated
        second = fit_predict(X, ann, kind="knn")[0][:n_pool]
    n = n_pool
    pred = np.full(n, "", dtype=object) if pred is None else pred[:n]
    conf = np.full(n, np.nan) if conf is None else conf[:n]
    if strategy == "queue":  # the product's: what the gallery walks and 'Next to annotate' selects
        queue = review_queue(pred, conf, verified=ann[:n] != "", second=second, features=X[:n], annotated=ann[:n],
                             prior=None if prior is None else prior[0][:n], batch=BATCH)
    else:  # before issue 18 item 3: disagreement, then low confidence
        queue = review_queue(pred, conf, verified=ann[:n] != "", second=second)
    least = free[np.argsort(np.nan_to_num(conf[free], nan=1.0), kind="stable")]  # a queue can be shorter than a batch
    return np.concatenate([queue, least[~np.isin(least, queue)]])[:BATCH]


def simulate(X, y, pool, test, prior, strategy, rounds, rng):
    """Weighted F1 on ``test`` after each round (round 0: before any annotation, the stand-in or nothing)."""
    rows = np.concatenate([pool, test])  # the map: the user's slides, then the held-out ones
    n_pool = len(pool)
    ann = np.full(len(rows), "", dtype=object)
    pred, conf = (prior[0].copy(), prior[1].copy()) if prior else (None, None)
    scores = [weighted_f1(y[test], pred[n_pool:]) if prior else 0.0]
    for _ in range(rounds):
        chosen = pick(strategy, X[rows], ann, pred, conf, prior, n_pool, rng)
        assert len(set(chosen)) == BATCH and (ann[chosen] == "").all()
        ann[chosen] = y[pool[chosen]]
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


def split_new_batch(images, seed):
    """As :func:`split_images`, but the stand-in never sees the elliptocyte batch (images 707-738, another
    acquisition: every elliptocyte is there); two thirds of its images are the user's, a third held out."""
    rng = np.random.default_rng(seed)
    names = sorted(set(images))
    batch = rng.permutation([n for n in names if n.isdigit() and 707 <= int(n) <= 738])
    other = rng.permutation([n for n in names if n not in set(batch)])
    a, b, c = int(0.4 * len(other)), int(0.8 * len(other)), int(round(len(batch) * 2 / 3))
    parts = other[:a], np.concatenate([other[a:b], batch[:c]]), np.concatenate([other[b:], batch[c:]])
    return [np.flatnonzero(np.isin(images, part)) for part in parts]


STARTS = {"shipped, same lab": split_images, "shipped, new batch": split_new_batch, "nothing": split_images}
STRATEGIES = ("queue", "random", "old queue")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", type=Path, default=DATA)
    p.add_argument("--cache-dir", type=Path, default=HERE.parent / "runs" / "clf-cache")
    p.add_argument("--rounds", type=int, default=10)
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args(argv)
    X, y, images = load(args.data, args.cache_dir)
    curves = {}
    t0 = time.perf_counter()
    for seed in range(args.seeds):
        for start, split in STARTS.items():
            train, pool, test = split(images, seed)
            prior = None if start == "nothing" else stand_in(X, y, train, np.concatenate([pool, test]))
            for strategy in STRATEGIES:
                s = simulate(X, y, pool, test, prior, strategy, args.rounds, np.random.default_rng(seed))
                curves.setdefault((start, strategy), []).append(s)
                print(f"seed {seed} from {start:<18} {strategy:<9} " + " ".join(f"{100 * v:.1f}" for v in s),
                      flush=True)
    seconds = time.perf_counter() - t0
    write_results(curves, args, len(y), len(set(images)), seconds, queue_timing(X, y))
    return 0


def queue_timing(X, y, n=5000):
    """Seconds of one ``review_queue`` call on ``n`` cells as the gallery makes it (after each verification):
    (annotated cells, first call with that many (its k-means), the next call) for the cells' 30 measurements
    and for 384 numbers a cell (a RedDino-small embedding's size, random)."""
    from napari_reddino import review

    rng = np.random.default_rng(0)
    rows = rng.choice(len(X), n, replace=False)
    out = []
    for name, F in (("30 measurements", X[rows]), ("384 numbers", rng.normal(size=(n, 384)).astype(np.float32))):
        truth, conf = y[rows].astype(object), rng.uniform(0.3, 1, n)
        for k in (0, 20, 100, 200, 201):
            ann = np.full(n, "", dtype=object)
            ann[:k] = truth[:k]
            times = []
            for _ in range(2):
                t = time.perf_counter()
                review.review_queue(truth, conf, ann != "", None, features=F, annotated=ann)
                times.append(time.perf_counter() - t)
            out.append((name, k, *times))
    return out


def write_results(curves, args, n_cells, n_images, seconds, timing):
    import os

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = np.arange(args.rounds + 1) * BATCH
    cols = list(range(0, args.rounds + 1, 2))
    fig, axes = plt.subplots(1, len(STARTS), figsize=(5 * len(STARTS), 4), dpi=110)
    lines = ["| start | strategy | " + " | ".join(f"{n[i]} cells" for i in cols) + " |", "|---|---|" + "---|" * len(cols)]
    for ax, start in zip(axes, STARTS):
        for strategy, style in zip(STRATEGIES, ("-", "--", ":")):
            runs = 100 * np.asarray(curves[(start, strategy)])
            mean, sd = runs.mean(0), runs.std(0)
            ax.plot(n, mean, style, label=strategy)
            ax.fill_between(n, mean - sd, mean + sd, alpha=0.15)
            lines.append(f"| {start} | {strategy} | " + " | ".join(f"{mean[i]:.1f} ± {sd[i]:.1f}" for i in cols) + " |")
        ax.set_title(f"from {start}")
        ax.set_xlabel("cells annotated")
        ax.set_ylabel("weighted F1 on held-out images (%)")
        ax.legend()
    fig.tight_layout()
    fig.savefig(HERE / "results_active_learning.png")
    wins = ["| start | " + " | ".join(f"{k} cells" for k in n[1:]) + " | mean |", "|---|" + "---|" * len(n)]
    for start in STARTS:
        d = 100 * (np.asarray(curves[(start, "queue")]) - np.asarray(curves[(start, "random")]))[:, 1:]
        wins.append(f"| {start} | " + " | ".join(f"{m:+.1f} ({w}/{len(d)})" for m, w in
                                                 zip(d.mean(0), (d > 0).sum(0))) +
                    f" | {d.mean():+.1f} ± {d.mean(1).std():.1f} |")
    text = (f"# Active learning: the review queue against random annotation (issue 18, item 3)\n\n"
            f"Command (from the repository root):\n\n    OMP_NUM_THREADS=1 .venv/bin/python "
            f"benchmarks/bench_active_learning.py --rounds {args.rounds} --seeds {args.seeds}\n\n"
            f"Chula-RBC-12 ({n_cells} matched red cells, {n_images} images), split by image per seed: 40 % train a "
            f"stand-in for the shipped classifier, 40 % are the user's slides, 20 % held out ('new batch': the "
            f"stand-in never saw the elliptocyte batch, images 707-738, which the user's slides and the held-out "
            f"ones include). {BATCH} cells a round; weighted F1 (%) on the held-out images, mean ± SD over "
            f"{args.seeds} seeds; {seconds / 60:.0f} min. 'queue': the product's (``review.review_queue`` with the "
            f"cells' features); 'old queue': before issue 18 item 3 (disagreement, then low confidence). See the "
            f"script's docstring for the simulated user.\n\n" + "\n".join(lines) +
            "\n\nQueue minus random per round, weighted F1 points (seeds where the queue is ahead), and the mean "
            "over rounds ± its SD over seeds:\n\n" + "\n".join(wins) +
            "\n\n![curves](results_active_learning.png)\n\n"
            f"One `review_queue` call on 5,000 Chula cells, no shipped classifier (the representative cells' k-means "
            f"runs when the number of verified cells passes a multiple of 20), load average "
            f"{os.getloadavg()[0]:.1f} on this 2-core host:\n\n| features | annotated | first call (ms) | next call (ms) |"
            "\n|---|---|---|---|\n" + "\n".join(f"| {f} | {k} | {1000 * a:.0f} | {1000 * b:.0f} |" for f, k, a, b in timing)
            + "\n")
    (HERE / "results_active_learning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    raise SystemExit(main())
