"""What an evaluation leaves behind: results.csv, results.md, a confusion-matrix PNG and a UMAP PNG."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from reddino_train.eval.protocol import CLASSIFIERS, METRICS

CSV_COLUMNS = ["model", "protocol", "classifier", "metric", "mean", "std"]


def write_csv(rows: list[dict], out: Path) -> Path:
    import pandas as pd

    path = Path(out) / "results.csv"
    pd.DataFrame(rows, columns=CSV_COLUMNS).to_csv(path, index=False, float_format="%.4f")
    return path


def markdown_table(rows: list[dict], protocol: str) -> str:
    """One table per protocol: a row per model, a column per classifier x metric, 'mean ± std' in %."""
    rows = [r for r in rows if r["protocol"] == protocol]
    models = list(dict.fromkeys(r["model"] for r in rows))
    clfs = [c for c in CLASSIFIERS if any(r["classifier"] == c for r in rows)]
    cell = {(r["model"], r["classifier"], r["metric"]): r for r in rows}
    head = ["model"] + [f"{c} {m}" for c in clfs for m in METRICS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for model in models:
        vals = []
        for c in clfs:
            for m in METRICS:
                r = cell.get((model, c, m))
                vals.append(f"{100 * r['mean']:.1f} ± {100 * r['std']:.1f}" if r else "")
        lines.append(f"| {model} | " + " | ".join(vals) + " |")
    return "\n".join(lines)


def write_markdown(rows: list[dict], out: Path, header: str, protocols: list[str]) -> Path:
    parts = [header.rstrip(), ""]
    for p in protocols:
        parts += [f"### protocol: {p}", "", markdown_table(rows, p), ""]
    path = Path(out) / "results.md"
    path.write_text("\n".join(parts))
    return path


def plot_confusions(panels: list[tuple[str, np.ndarray, np.ndarray]], classes: list[str], path: Path) -> Path:
    """Row-normalised confusion matrices, one panel per (title, y_true, y_pred)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import confusion_matrix

    present = sorted(set(np.concatenate([t for _, t, _ in panels]).tolist()))
    names = [classes[i] for i in present]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 5.0), squeeze=False)
    for ax, (title, t, p) in zip(axes[0], panels):
        ok = p >= 0
        cm = confusion_matrix(t[ok], p[ok], labels=present).astype(float)
        cm /= np.maximum(cm.sum(1, keepdims=True), 1)
        ax.imshow(cm, vmin=0, vmax=1, cmap="Blues")
        ax.set_xticks(range(len(names)), names, rotation=90, fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title(title, fontsize=9)
        for i in range(len(names)):
            for j in range(len(names)):
                if cm[i, j] >= 0.005:
                    ax.text(j, i, f"{100 * cm[i, j]:.0f}", ha="center", va="center", fontsize=5,
                            color="white" if cm[i, j] > 0.5 else "black")
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)


def plot_umap(panels: list[tuple[str, np.ndarray]], y: np.ndarray, classes: list[str], path: Path,
              seed: int = 0) -> Path:
    """UMAP (defaults, as in the paper) of each feature set, coloured by class (the plugin's map:
    ``formats.scatter_groups``, in the dock's class colours)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import umap

    from napari_reddino.formats import class_colours, scatter_groups

    names = np.asarray(classes, dtype=object)[np.asarray(y)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.2), squeeze=False)
    for ax, (title, X) in zip(axes[0], panels):
        emb = umap.UMAP(random_state=seed).fit_transform(np.asarray(X, dtype=np.float32))
        scatter_groups(ax, emb, names, class_colours(), size=2)
        ax.set_title(title, fontsize=9), ax.set_xticks([]), ax.set_yticks([])
    axes[0][-1].legend(markerscale=5, fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return Path(path)
