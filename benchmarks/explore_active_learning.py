"""Which selection of cells beats random annotation? The strategies tried for issue 18 item 3 before the
product's queue was chosen (``bench_active_learning.py`` measures the one kept); same simulated user.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/explore_active_learning.py SETTING STRATEGIES SEEDS ROUNDS

SETTING: nothing | shipped | shift (the stand-in without the elliptocyte batch); STRATEGIES, comma-separated:
random, queue (before issue 18 item 3), unc (least confident), undiv / undivc / undiv10 (the 5 or 10 x 20 least
confident, k-means into 20, the most uncertain / central cell of each), bal (least confident spread over the
predicted classes), mix (half queue, half random), mxd (margin x density), typ-N-x (TypiClust while fewer than N
cells are annotated), typ-N-near / typ-N-nearhalf (then cells whose nearest annotated cell has another class
than their prediction, all or half the batch, the rest TypiClust). TRACK=1 prints the elliptocytes annotated.
"""
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_active_learning as B  # noqa: E402

from napari_reddino.classify import fit_on_top, fit_predict  # noqa: E402
from napari_reddino.review import review_queue  # noqa: E402

BATCH = 20
TRACK = os.environ.get("TRACK")


def kmeans(Z, k, rng, iters=15):
    c = Z[rng.choice(len(Z), k, replace=False)]
    for _ in range(iters):
        d = ((Z[:, None, :] - c[None]) ** 2).sum(-1) if len(Z) * k < 2e6 else _d(Z, c)
        a = d.argmin(1)
        for j in range(k):
            m = a == j
            if m.any():
                c[j] = Z[m].mean(0)
    return a, c


def _d(Z, c):
    return (Z ** 2).sum(1)[:, None] - 2 * Z @ c.T + (c ** 2).sum(1)[None]


def typical(Z, free, labelled, k_extra, rng):
    """TypiClust: k-means with |L|+B clusters on the pool; from the largest clusters without a labelled cell, the
    cell of highest typicality (1 / mean distance to its 20 NN in the cluster)."""
    k = min(len(labelled) + k_extra, len(free) + len(labelled))
    allr = np.concatenate([free, labelled])
    a, c = kmeans(Z[allr], k, rng)
    covered = set(a[len(free):])
    sizes = np.bincount(a[:len(free)], minlength=k)
    order = [j for j in np.argsort(-sizes) if j not in covered and sizes[j] > 0]
    picks = []
    for j in order[:k_extra]:
        m = free[a[:len(free)] == j]
        D = _d(Z[m], Z[m])
        kk = min(20, len(m) - 1)
        if kk < 1:
            picks.append(m[0]); continue
        typ = 1 / (np.sort(D, 1)[:, 1:kk + 1].clip(0).mean(1) + 1e-9)
        picks.append(m[typ.argmax()])
    return np.array(picks, int)


def unc_diverse(Z, free, score, rng, m_factor=5, pick="unc"):
    """The m_factor*B most uncertain, k-means into B clusters, one per cluster (most uncertain)."""
    cand = free[np.argsort(-score[free], kind="stable")[:m_factor * BATCH]]
    a, c = kmeans(Z[cand], BATCH, rng)
    out = []
    for j in range(BATCH):
        m = np.flatnonzero(a == j)
        if len(m):
            if pick == "unc":
                out.append(cand[m[np.argmax(score[cand[m]])]])
            else:
                out.append(cand[m[np.argmin(((Z[cand[m]] - c[j]) ** 2).sum(1))]])
    out = np.array(out, int)
    rest = cand[~np.isin(cand, out)]
    return np.concatenate([out, rest])[:BATCH]


def density(Z, rows, k=20, sample=None):
    D = _d(Z[rows], Z[rows])
    return 1 / (np.sort(D, 1)[:, 1:k + 1].clip(0).mean(1) + 1e-9)


def select(strategy, Z, ann, pred, conf, second, n_pool, rng, free):
    n_ann = int((ann != "").sum())
    if strategy == "random" or (pred is None and not strategy.startswith("typ")):
        return rng.choice(free, BATCH, replace=False)
    labelled = np.flatnonzero(ann[:n_pool] != "")
    if strategy.startswith("typ") and (pred is None or n_ann < int(strategy.split("-")[1])):
        return typical(Z, free, labelled, BATCH, rng)
    unc = np.ones(len(conf)) - conf
    if strategy == "queue" or strategy.endswith("-queue"):
        queue = review_queue(pred[:n_pool], conf[:n_pool], verified=ann[:n_pool] != "",
                             second=None if second is None else second[:n_pool])
        least = free[np.argsort(conf[free], kind="stable")]
        return np.concatenate([queue, least[~np.isin(least, queue)]])[:BATCH]
    if strategy.endswith("unc"):
        return free[np.argsort(conf[free], kind="stable")][:BATCH]
    if strategy.endswith("undiv"):
        return unc_diverse(Z, free, unc, rng)
    if strategy.endswith("undivc"):
        return unc_diverse(Z, free, unc, rng, pick="centre")
    if strategy.endswith("undiv10"):
        return unc_diverse(Z, free, unc, rng, m_factor=10)
    if strategy.endswith("mix"):
        q = select("queue", Z, ann, pred, conf, second, n_pool, rng, free)[:BATCH // 2]
        r = rng.choice(free[~np.isin(free, q)], BATCH - len(q), replace=False)
        return np.concatenate([q, r])
    if strategy.endswith("bal"):  # uncertain cells spread over predicted classes, round robin
        order = free[np.argsort(conf[free], kind="stable")]
        byc = {}
        for r in order:
            byc.setdefault(pred[r], []).append(r)
        out, i = [], 0
        while len(out) < BATCH:
            for c in sorted(byc):
                if i < len(byc[c]):
                    out.append(byc[c][i])
            i += 1
        return np.array(out[:BATCH], int)
    if strategy.endswith("mxd"):  # margin x density on a subsample of the free cells
        cand = free[np.argsort(conf[free], kind="stable")[:10 * BATCH]]
        s = unc[cand] * density(Z, cand)
        return cand[np.argsort(-s)][:BATCH]
    if "near" in strategy:
        lab = np.flatnonzero(ann[:n_pool] != "")
        D = _d(Z[free], Z[lab])
        nn = D.argmin(1)
        dist = D[np.arange(len(free)), nn]
        dis = ann[lab][nn] != pred[free]
        cand = free[dis][np.argsort(dist[dis], kind="stable")]
        h = BATCH // 2 if strategy.endswith("half") else BATCH
        cand = cand[:h]
        rest = typical(Z, free[~np.isin(free, cand)], np.concatenate([lab, cand]), BATCH - len(cand), rng) \
            if len(cand) < BATCH else np.zeros(0, int)
        return np.concatenate([cand, rest])[:BATCH]
    raise ValueError(strategy)


def simulate(X, Z, y, pool, test, prior, strategy, rounds, rng):
    rows = np.concatenate([pool, test])
    n_pool = len(pool)
    ann = np.full(len(rows), "", dtype=object)
    pred, conf = (prior[0].copy(), prior[1].copy()) if prior else (None, None)
    scores = [B.weighted_f1(y[test], pred[n_pool:]) if prior else 0.0]
    for _ in range(rounds):
        free = np.flatnonzero(ann[:n_pool] == "")
        second = None
        if pred is not None and len(set(ann[ann != ""])) >= 2 and "queue" in strategy:
            second = fit_predict(X[rows], ann, kind="knn")[0]
        pick = select(strategy, Z[rows], ann, pred, conf, second, n_pool, rng, free)
        assert len(pick) == BATCH and len(set(pick)) == BATCH and (ann[pick] == "").all(), strategy
        ann[pick] = y[pool[pick]]
        if prior:
            pred, conf = fit_on_top(X[rows], ann, prior[0], prior[1])
        elif len(set(ann[ann != ""])) >= 2:
            pred, conf = fit_predict(X[rows], ann)
        scores.append(B.weighted_f1(y[test], pred[n_pool:]) if pred is not None else 0.0)
    if TRACK:
        print(strategy, "ellipto annotated", (ann == "elliptocyte").sum(), "corrections",
              int(((ann[:n_pool] != "") & (prior is not None) & (ann[:n_pool] != (prior[0][:n_pool] if prior else ann[:n_pool]))).sum()))
    return scores


def split_shift(images, seed):
    """stand-in trained without the elliptocyte batch (707-738); the user's slides and held-out include it."""
    rng = np.random.default_rng(seed)
    names = sorted(set(images))
    batch = np.array([n for n in names if n.isdigit() and 707 <= int(n) <= 738])
    other = rng.permutation([n for n in names if n not in set(batch)])
    batch = rng.permutation(batch)
    a, b = int(0.4 * len(other)), int(0.8 * len(other))
    nb = int(round(len(batch) * 2 / 3))
    parts = (other[:a], np.concatenate([other[a:b], batch[:nb]]), np.concatenate([other[b:], batch[nb:]]))
    return [np.flatnonzero(np.isin(images, p)) for p in parts]


def main():
    setting, strategies = sys.argv[1], sys.argv[2].split(",")
    seeds = range(int(sys.argv[3]))
    rounds = int(sys.argv[4])
    X, y, images = B.load(B.DATA, Path(os.environ.get("CACHE_DIR", B.HERE.parent / "runs" / "clf-cache")))
    Z = (X - X.mean(0)) / X.std(0)
    res = {}
    t0 = time.perf_counter()
    for seed in seeds:
        train, pool, test = (split_shift if setting == "shift" else B.split_images)(images, seed)
        prior = None
        if setting != "nothing":
            prior = B.stand_in(X, y, train, np.concatenate([pool, test]))
        for s in strategies:
            sc = simulate(X, Z, y, pool, test, prior, s, rounds, np.random.default_rng(seed))
            res.setdefault(s, []).append(sc)
            print(f"{setting} seed {seed} {s:<14} " + " ".join(f"{100 * v:.1f}" for v in sc), flush=True)
    print(f"--- {setting} mean over {len(seeds)} seeds ({time.perf_counter() - t0:.0f}s)")
    base = np.mean(res["random"], 0) if "random" in res else None
    for s, r in res.items():
        m = 100 * np.mean(r, 0)
        g = "" if base is None else f"  gain {100 * (np.mean(r, 0) - base)[1:].mean():+.1f}"
        print(f"{s:<14} " + " ".join(f"{v:.1f}" for v in m) + g)


if __name__ == "__main__":
    main()
