"""``napari-reddino run``: the whole pipeline on images (or a sample smear), results written to a folder;
optionally shown in napari (``--view``) or captured from the real napari window (``--screenshot``)."""

from __future__ import annotations

import time
from pathlib import Path

from napari_reddino.cli import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="segment → RedDino features → PCA overlay → UMAP on images, in one go",
                       description=__doc__)
    p.add_argument("images", nargs="*", help="image files or folders")
    p.add_argument("--sample", nargs="?", const="auto", choices=["auto", "chula", "synthetic"],
                   help="use a sample smear (auto: the real Chula-RBC-12 smear if available, else synthetic)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--backend", default="threshold", choices=["threshold", "cellpose"])
    p.add_argument("--diameter", type=float, default=None, help="cell diameter in pixels (default: estimated)")
    p.add_argument("--model", default=None, help="model spec (default: a cached RedDino, else the demo model)")
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--no-pca", action="store_true", help="skip the PCA overlay")
    p.add_argument("--no-umap", action="store_true", help="skip the UMAP embedding")
    view = p.add_mutually_exclusive_group()
    view.add_argument("--view", action="store_true", help="open napari with the result layers")
    view.add_argument("--screenshot", action="store_true",
                      help="save a screenshot of the napari window with the layers (needs an X display, e.g. Xvfb)")
    p.set_defaults(func=run)


def sample_images(which: str):
    from napari_reddino.images import InputError
    from napari_reddino.sample_data import chula_smear, synthetic_smear

    if which in ("auto", "chula"):
        try:
            return [("chula-rbc-12_1.jpg", chula_smear(1)[0])]
        except InputError as exc:
            if which == "chula":
                raise
            print(f"note: real sample unavailable ({exc}); using the synthetic smear")
    return [("synthetic_smear.png", synthetic_smear(0)[0])]


def run(args) -> int:
    from napari_reddino._progress import run as drive
    from napari_reddino.images import expand_inputs, read_image
    from napari_reddino.pipeline import STEPS, PipelineOptions, iter_pipeline, write_outputs

    if not args.images and not args.sample:
        raise UsageError("received no images; accepted: image files/folders, or --sample")
    images = sample_images(args.sample) if args.sample else []
    images += [(p.name, read_image(p)) for p in (expand_inputs(args.images) if args.images else [])]
    steps = tuple(s for s in STEPS if not (s == "pca" and args.no_pca) and not (s == "umap" and args.no_umap))
    opts = PipelineOptions(backend=args.backend, diameter=args.diameter, model=args.model,
                           precision=args.precision, steps=steps)
    t0 = time.perf_counter()
    result = drive(iter_pipeline(images, opts), bar=True)
    written = write_outputs(result, args.out)
    n = sum(len(s.table) for s in result.smears)
    print(f"{len(result.smears)} image(s), {n} cells, model {result.model}: {time.perf_counter() - t0:.1f} s")
    if args.view or args.screenshot:
        written += show(result, Path(args.out), screenshot=args.screenshot)
    print(f"wrote {len(written)} files to {Path(args.out).resolve()}:")
    for path in written:
        print(f"  {path.name}")
    return 0


def show(result, out: Path, screenshot: bool) -> list[Path]:
    import napari

    from napari_reddino._widgets.pipeline import add_result_layers

    viewer = napari.Viewer(title="napari-reddino", show=True)
    add_result_layers(viewer, result)
    if not screenshot:
        napari.run()
        return []
    from qtpy.QtWidgets import QApplication

    viewer.window._qt_window.resize(1600, 1000)
    for _ in range(20):
        QApplication.processEvents()
    path = out / "screenshot.png"
    viewer.screenshot(str(path), canvas_only=False)
    extra = [path]
    umap_viewer = getattr(viewer, "_reddino_umap_viewer", None)
    if umap_viewer is not None:
        umap_viewer.screenshot(str(out / "screenshot_umap.png"), canvas_only=False)
        extra.append(out / "screenshot_umap.png")
    viewer.close()
    return extra
