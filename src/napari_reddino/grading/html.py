"""The slide report as one self-contained HTML page: inline CSS, images as data URIs, no link, script or font
from elsewhere, so it opens offline and prints on A4."""

from __future__ import annotations

import base64
import html
import io
from datetime import datetime

import numpy as np
import pandas as pd

from napari_reddino.grading.slide import NO_CLASS, SlideReport

CSS = """
@page { size: A4; margin: 14mm 12mm; }
body { font-family: "DejaVu Sans", Arial, Helvetica, sans-serif; font-size: 9.5pt; color: #111; max-width: 186mm;
       margin: 0 auto; }
h1 { font-size: 15pt; margin: 0 0 2mm; } h2 { font-size: 12pt; margin: 5mm 0 2mm; } h3 { font-size: 10.5pt; }
p.meta { color: #444; font-size: 8.5pt; margin: 0 0 3mm; }
table { border-collapse: collapse; width: 100%; margin: 1mm 0 3mm; page-break-inside: auto; }
tr { page-break-inside: avoid; }
th, td { border: 0.3mm solid #999; padding: 0.6mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #eee; } td.n { text-align: right; white-space: nowrap; }
td.g { font-weight: bold; text-align: center; }
.warn { border: 0.5mm solid #b00; background: #fff3f3; padding: 1mm 3mm; margin: 2mm 0; }
.warn li { margin: 0.5mm 0; } .note { color: #444; font-size: 8.5pt; }
section.sample { page-break-inside: avoid; }
.thumbs { display: flex; flex-wrap: wrap; align-items: center; gap: 1mm; margin: 0 0 2mm; page-break-inside: avoid; }
.thumbs .label { width: 34mm; font-size: 8.5pt; } .thumbs img { width: 14mm; height: 14mm; }
img.umap { width: 150mm; max-width: 100%; }
table.small td, table.small th { font-size: 8pt; padding: 0.4mm 1mm; }
@media print { .pagebreak { page-break-before: always; } }
"""


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _e(value) -> str:
    return html.escape(str(value))


def _pct(value) -> str:
    return "–" if value is None or not np.isfinite(value) else f"{value:.1f}"


def report_html(report: SlideReport, thumbnails: dict | None = None, umap_png: bytes | None = None,
                source: str = "", thumbnails_note: str = "", umap_note: str = "") -> str:
    """The page. ``thumbnails``: class name -> PNG bytes of a few of its cells (None: left out, with
    ``thumbnails_note`` saying why); ``umap_png``: the map coloured by class (None: ``umap_note``)."""
    from napari_reddino import __version__

    g = report.grading
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           "<title>Red-cell morphology report</title>", f"<style>{CSS}</style></head><body>",
           "<h1>Red-cell morphology report</h1>",
           f'<p class="meta">Made {datetime.now():%Y-%m-%d %H:%M} by napari-reddino {_e(__version__)}'
           + (f" from {_e(source)}" if source else "")
           + f"; grading: {_e(g.name)}; one sample per {_e(report.sample_by)}.</p>"]
    for note in report.notes:
        out.append(f'<p class="note">{_e(note)}</p>')
    for sample, rows in report.table.groupby("sample", sort=False):
        out += _sample_section(sample, rows, report.warnings.get(sample, []), report.images)
    out.append('<h2 class="pagebreak">Cells of each class</h2>')
    if thumbnails:
        for name, pngs in thumbnails.items():
            imgs = "".join(f'<img alt="{_e(name)}" src="{png_data_uri(p)}">' for p in pngs)
            out.append(f'<div class="thumbs"><span class="label">{_e(name)}</span>{imgs}</div>')
    out.append(f'<p class="note">{_e(thumbnails_note)}</p>' if thumbnails_note else "")
    out.append("<h2>Cell map (UMAP of the RedDino features), coloured by class</h2>")
    out.append(f'<img class="umap" alt="UMAP coloured by class" src="{png_data_uri(umap_png)}">' if umap_png
               else f'<p class="note">{_e(umap_note or "No UMAP in these results: the map is left out.")}</p>')
    out.append("<h2>Counts per image</h2>")
    out.append(_frame_table(_counted_columns(report.images), small=True))
    out += _grading_section(g)
    out.append("</body></html>")
    return "\n".join(s for s in out if s)


def _sample_section(sample, rows: pd.DataFrame, warnings, images: pd.DataFrame) -> list[str]:
    n = int(rows["red_cells"].iloc[0]) if len(rows) else 0
    n_images = int((images["sample"] == sample).sum())
    out = ['<section class="sample">', f"<h2>Sample: {_e(sample)}</h2>",
           f"<p>{n:,} red cells counted in {n_images} image{'s' if n_images != 1 else ''}.</p>"]
    if warnings:
        out.append('<div class="warn"><b>Warnings</b><ul>' + "".join(f"<li>{_e(w)}</li>" for w in warnings)
                   + "</ul></div>")
    out.append('<table class="grades"><thead><tr><th>Class</th><th>ICSH term</th><th>Count</th><th>% of red '
               "cells</th><th>95 % CI (Wilson)</th><th>Grade</th><th>Unverified</th></tr></thead><tbody>")
    for r in rows.itertuples(index=False):
        out.append(f"<tr><td>{_e(r[1])}</td><td>{_e(r.icsh_term)}</td><td class=\"n\">{r.count:,}</td>"
                   f'<td class="n">{_pct(r.percent)}</td><td class="n">{_pct(r.ci_low)}–{_pct(r.ci_high)}</td>'
                   f'<td class="g">{_e(r.grade)}</td><td class="n">{r.unverified:,}</td></tr>')
    out.append("</tbody></table></section>")
    return out


def _grading_section(g) -> list[str]:
    out = ["<h2>Grading table</h2>", f'<p class="note">{_e(g.name)} ({_e(g.path)}). A class is graded from its '
           "percentage of the red cells counted; a range a–b % is read as a ≤ p ≤ b, the next grade starting "
           "just above b." + (f" At least {g.min_red_cells:,} red cells: {_e(g.min_red_cells_note)}"
                              if g.min_red_cells else "") + "</p>",
           '<table class="small"><thead><tr><th>Class</th><th>ICSH term</th><th>Grading</th><th>Warning above</th>'
           "<th>Source</th><th>Values confirmed</th><th>Note</th></tr></thead><tbody>"]
    notes: dict[str, int] = {}  # one footnote per distinct note (the ICSH 2015 rows share theirs)
    for c in g.classes:
        text = c.note + (f" Values found at: {c.found_at}" if c.found_at and c.found_at not in c.note else "")
        mark = f"[{notes.setdefault(text, len(notes) + 1)}]" if text else ""
        out.append(f"<tr><td>{_e(c.name)}</td><td>{_e(c.icsh_term)}</td><td>{_e(c.rule())}</td>"
                   f"<td>{'' if c.warn_above is None else f'{c.warn_above:g} %'}</td><td>{_e(c.source)}</td>"
                   f"<td>{'yes' if c.confirmed else 'no'}</td><td>{mark}</td></tr>")
    out.append("</tbody></table>")
    out += [f'<p class="note">[{n}] {_e(text)}</p>' for text, n in notes.items()]
    if g.references:
        out.append("<h3>References</h3><ul>" + "".join(f"<li>[{_e(k)}] {_e(v)}</li>" for k, v in g.references.items())
                   + "</ul>")
    return out


def _counted_columns(images: pd.DataFrame) -> pd.DataFrame:
    """The per-image table without the classes no image has (an A4 page has no room for 13 empty columns)."""
    fixed = ["sample", "image", "red_cells", "other_objects", "unverified"]
    classes = [c for c in images.columns if c not in fixed and images[c].sum() > 0]
    return images[fixed + classes].rename(columns={"red_cells": "red cells", "other_objects": "other objects"})


def _frame_table(df: pd.DataFrame, small=False) -> str:
    head = "".join(f"<th>{_e(c)}</th>" for c in df.columns)
    body = "".join("<tr>" + "".join(f'<td class="n">{v:,}</td>' if isinstance(v, (int, np.integer))
                                    else f"<td>{_e(v)}</td>" for v in row) + "</tr>"
                   for row in df.itertuples(index=False))
    return f'<table{" class=small" if small else ""}><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(array, np.uint8)).save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def class_thumbnails(cells: pd.DataFrame, load, per_class: int = 8, size: int = 64) -> tuple[dict, str]:
    """A few cells of each class as PNG bytes (verified cells first, then the most confident), cropped from
    their images; ``load(image name)`` gives ``(image, labels)`` or None when not found. Returns the
    thumbnails and a note ('' when every image was found)."""
    from PIL import Image

    from napari_reddino.cells import crop_cells
    from napari_reddino.grading.slide import truthy
    from napari_reddino.report import final_class
    from napari_reddino.segment.types import RED_CELL

    df = pd.DataFrame({"image": cells["image"].astype(str), "label": cells["label"].astype(np.int64),
                       "class": final_class(cells),
                       "verified": truthy(cells["verified"]) if "verified" in cells.columns else False,
                       "confidence": pd.to_numeric(cells["confidence"], errors="coerce").fillna(0)
                       if "confidence" in cells.columns else 0.0})
    if "type" in cells.columns:
        df = df[(cells["type"].fillna("").astype(str) == RED_CELL).to_numpy()]
    df = df[df["class"] != ""].sort_values(["verified", "confidence"], ascending=False, kind="stable")
    picked = df.groupby("class", sort=False).head(per_class)
    crops: dict[tuple[str, int], bytes] = {}
    missing = []
    for image, rows in picked.groupby("image", sort=False):
        smear = load(image)
        if smear is None:
            missing.append(image)
            continue
        for label, crop in crop_cells(smear[0], smear[1], rows["label"].to_numpy(), pad_square=True,
                                       margin=0.15, fill=255):
            crops[(image, int(label))] = png_bytes(np.asarray(Image.fromarray(crop).resize((size, size))))
    thumbs: dict[str, list[bytes]] = {}
    for name, rows in picked.groupby("class", sort=False):
        got = [crops[k] for k in zip(rows["image"], rows["label"]) if k in crops]
        if got:
            thumbs[name] = got
    note = (f"Thumbnails of {len(missing)} image(s) left out: not found ({', '.join(missing[:3])}"
            f"{', …' if len(missing) > 3 else ''})." if missing else "")
    return thumbs, note


def umap_png(cells: pd.DataFrame) -> bytes | None:
    """The cells' map (``formats.umap_xy``) coloured by class; None without one."""
    from napari_reddino.formats import class_colours, plot_umap, umap_xy
    from napari_reddino.report import final_class

    xy = umap_xy(cells)
    keep = np.isfinite(xy).all(axis=1) if xy is not None else None
    if keep is None or not keep.any():
        return None
    buf = io.BytesIO()
    plot_umap(xy[keep], final_class(cells)[keep].to_numpy(), buf, colours=class_colours(), none=NO_CLASS)
    return buf.getvalue()
