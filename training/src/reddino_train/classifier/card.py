"""``CARD.md`` of the shipped classifier: data, features, command, grouped scores per class, confusion matrix,
and what it must not be used for. Every figure comes from the run that wrote the files."""

from __future__ import annotations

import numpy as np

from napari_reddino.morphology import FEATURES

TARGET = 0.80


def _pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def card_text(results: dict, lc, model_info, fit_kw: dict, names: dict, command: str) -> str:
    classes = names["classes"]
    main = results.get("morphology") or next(iter(results.values()))
    m = lc.matched
    lines = [
        "# Shipped red-cell classifier", "",
        "Predicts one of the 13 Chula-RBC-12 classes for every red cell that `napari-reddino run`, the pipeline "
        "dock and the annotation dock find (`prediction`, `confidence` columns). A technologist's annotation "
        "always wins over it. Written by `reddino-train classifier`; every figure below is from that run.", "",
        "## Data",
        f"{names['data']} (Chula-PIC-Lab/Chula-RBC-12-Dataset, Naruenatthanaset et al., arXiv:2012.01321, MIT "
        f"licence): {lc.cells['image'].nunique()} labelled images, {m['labelled']} labelled centres. Each image "
        "was segmented with the plugin's default (learned) segmenter and each centre matched to the mask "
        f"holding it: {m['matched']} red cells kept; dropped {m['no_mask']} centres in no mask, "
        f"{m['shared_mask']} in a mask holding two centres, {m['not_red_cell']} in an object the segmenter "
        "does not call a red cell.", "",
        "| class | cells |", "|---|---|",
        *[f"| {c} | {int((lc.cells['y'] == k).sum())} |" for k, c in enumerate(classes)], "",
        "## Features and model",
        "- `morphology` (the default, for any embedding model): the measurements below, each standardised.",
        "- `embedding+morphology` (an option: `napari-reddino run --classifier embedding+morphology`): the "
        "embedding model's CLS token of the cell's bounding box (as `napari-reddino run` embeds it) followed by "
        "the measurements. "
        + (f"Valid only for embeddings from `{model_info['spec']}` with weights SHA-256 "
           f"`{model_info['sha256'][:16]}…` (checked at use; any other model falls back to `morphology` with a "
           "one-line note). " if model_info else "")
        + "It scores a little more below, but it is not the default: the embedding sees the slide around the "
        "cell, and Chula's elliptocytes all come from one batch with a bright slide, so on a brighter slide than "
        "Chula's it calls normal cells elliptocytes (measured on drawn cells, `tests/test_classifier.py`, and "
        "seen on two thalassaemia smears of Chula's 'RBC Diseases', brighter than the labelled ones, where it "
        "called 25 of 98 and 34 of 113 red cells elliptocytes, and `morphology` 2 and 1). The measurements are "
        "relative to the smear's own slide and cells, so they do not move with the slide's brightness.",
        f"- Measurements ({len(FEATURES)}, `napari_reddino.morphology.measure_cells`): sizes relative to the "
        "image's red-cell diameter and to the smear's median red cell (never pixels), shape (axes, "
        "eccentricity, solidity, circularity, outline radius spread, convexity defects), optical density against "
        "the slide background (mean, channel ratios, a 5-ring radial profile from rim to centre, central pallor "
        f"depth and fraction): {', '.join(f'`{f}`' for f in FEATURES)}.",
        f"- Classifier: {fit_kw}; confidence = softmax of the logits divided by a temperature fitted on the "
        "out-of-fold logits (negative log-likelihood).", "",
        "## Command", "```", command or "reddino-train classifier ...", "```", "",
        "## Scores on images the classifier never saw",
        "5-fold cross-validation grouped by image (StratifiedGroupKFold, shuffled, seed 0): no image has cells "
        "on both sides. Weighted F1 is the mean ± std over the folds. Without class 12: elliptocytes removed "
        "from training and testing, because every elliptocyte comes from one acquisition batch (images "
        "707–738, PNG files with another background) and can be recognised by it.", "",
        "| features | weighted F1, all 13 classes | without elliptocyte | balanced accuracy | ECE raw → calibrated |",
        "|---|---|---|---|---|",
    ]
    for fs, r in results.items():
        a, w = r["all"], r["without_12"]
        lines.append(f"| {fs} | {_pct(a['wf1_mean'])} ± {_pct(a['wf1_std'])} | {_pct(w['wf1_mean'])} ± "
                     f"{_pct(w['wf1_std'])} | {_pct(a['balanced_accuracy'])} | {a['ece_raw']:.3f} → "
                     f"{a['ece_calibrated']:.3f} (T = {a['temperature']:.2f}) |")
    met = main["all"]["wf1_mean"] >= TARGET
    lines += ["", f"Target (issue 18): at least {100 * TARGET:.0f} weighted F1 on unseen images — "
              + ("met" if met else "**not met**") + f" by the default ({_pct(main['all']['wf1_mean'])}).", "",
              "### Per class (`morphology`, the default; all 13 classes, pooled out-of-fold predictions)", "",
              "| class | cells | recall | precision |", "|---|---|---|---|"]
    a = main["all"]
    for k, c in enumerate(classes):
        lines.append(f"| {c} | {a['support'][k]} | {_pct(a['recall'][k])} | {_pct(a['precision'][k])} |")
    cm = np.asarray(a["confusion"])
    short = [c[:5] for c in classes]
    lines += ["", "### Confusion matrix (rows: true class, columns: predicted)", "",
              "| true \\ predicted | " + " | ".join(short) + " |", "|---" * (len(classes) + 1) + "|"]
    lines += [f"| {c} | " + " | ".join(str(int(v)) for v in cm[k]) + " |" for k, c in enumerate(classes)]
    lines += [
        "", "## What it must not be used for",
        "- Not a diagnosis, and not a medical device: it pre-sorts cells for a trained person to verify; "
        "its confidence says which cells to look at first, not that a cell is right.",
        "- Trained on one lab's smears (Chula: one camera, 1000x oil, one staining protocol). On other stains, "
        "magnifications or cameras its figures do not hold until checked on labelled cells of that lab; "
        "the sizes are relative to the smear's own red cells, so a slide full of macrocytes reads as normal "
        "sized, and `macrocyte` / `microcyte` follow the smear's red-cell diameter, not micrometres.",
        "- Rare classes (teardrop, uncategorised, microcyte, macrocyte) have few examples: read their recall "
        "above before trusting a count of them.",
        "- `elliptocyte` was learnt from one acquisition batch; its score is not evidence that it finds "
        "elliptocytes in another lab.",
        "- Not for white cells, platelets or parasites: only objects the segmenter calls red cells are classified.",
        "",
    ]
    return "\n".join(x for x in lines if x is not None) + "\n"
