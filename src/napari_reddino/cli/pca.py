"""PCA overlays: a three-component PCA of RedDino patch features, as RGB pictures. --fit joint (default) fits
one PCA on all the images, so that a colour means the same on every slide; --fit each fits one per image.
--cell-resolution (default auto) enlarges each image first so that a red cell spans about 6 of the model's
patches. An image without cells (a bare slide, noise, one flat colour) gets a line saying so and no files;
the other images are still processed.

Writes, into the --out folder:
- <stem>_pca.png, per image: the overlay at the image's resolution
- <stem>_pca_side.png, per image: the image and the overlay side by side
- failed.csv, when an input could not be read: those inputs and why (exit code 2)
- NPZ, with --save-fit NPZ: the fit, which --load-fit applies in a later run

--workers N computes N images' features at a time, --scheduler on a dask cluster.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_reddino.cli import UsageError
from napari_reddino.cli.workers import add_distribute_arguments


def add_parser(sub) -> None:
    p = sub.add_parser("pca", help="PCA(3) overlays of RedDino patch features as RGB PNGs", description=__doc__)
    p.add_argument("images", nargs="+", help="image files or folders")
    p.add_argument("--model", default=None, help="model spec (default: a cached RedDino, else the demo model)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--fit", default="joint", choices=["joint", "each"],
                   help="one PCA for all images (same colours across slides) or one per image")
    p.add_argument("--load-fit", default=None, metavar="NPZ", help="apply a saved fit instead of fitting")
    p.add_argument("--save-fit", default=None, metavar="NPZ", help="save the (joint or last) fit")
    add_resolution_argument(p)
    p.add_argument("--overlap", type=int, default=0, help="patches shared by neighbouring windows")
    p.add_argument("--tile", type=int, default=None,
                   help="window size in px, a multiple of the patch size (default: the model's input size)")
    p.add_argument("--background", default="black", choices=["black", "transparent"])
    p.add_argument("--no-foreground", action="store_true", help="colour every patch, no background threshold")
    p.add_argument("--smooth", action="store_true", help="bilinear upsampling instead of square patches")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--precision", default="auto", choices=["auto", "bf16", "fp32"])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    add_distribute_arguments(p)
    p.set_defaults(func=run)


def resolution_value(text: str):
    """``--cell-resolution``: auto, off or an enlargement factor."""
    import argparse

    from napari_reddino.images import InputError
    from napari_reddino.pca_resolution import parse_resolution

    try:
        return parse_resolution(text)
    except InputError as exc:
        raise argparse.ArgumentTypeError(str(exc)[0].lower() + str(exc)[1:]) from None


def add_resolution_argument(p) -> None:
    from napari_reddino.pca_resolution import CELL_PATCHES, MAX_FACTOR, MAX_PIXELS

    p.add_argument("--cell-resolution", type=resolution_value, default="auto", metavar="auto|off|X",
                   help=f"enlarge the image before the PCA overlay: auto (default) so that a red cell spans about "
                        f"{CELL_PATCHES} of the model's patches (from the measured cell diameter), off (= 1, the "
                        f"model's own scale) or a factor from 1 to {MAX_FACTOR:g}; the enlarged image is kept "
                        f"within {MAX_PIXELS / 1e6:.0f} million pixels")


def side_by_side(image: np.ndarray, overlay: np.ndarray, gap: int = 8) -> np.ndarray:
    """``image | overlay`` as one RGB uint8 picture (a transparent overlay is shown on black)."""
    rgb = overlay[..., :3] * (overlay[..., 3:] if overlay.shape[-1] == 4 else 1.0)
    right = np.round(rgb * 255).astype(np.uint8)
    h = image.shape[0]
    return np.concatenate([image, np.full((h, gap, 3), 255, np.uint8), right], axis=1)


def run(args) -> int:
    from napari_reddino.cli.workers import check_scheduler
    from napari_reddino.distribute import Unit, UnitFailed, iter_map_units
    from napari_reddino.progress import run as drive
    from napari_reddino.images import expand_inputs, read_image
    from napari_reddino.models import clear_cache, default_spec, load_model
    from napari_reddino.outputs import Failures, check_out_dir, output_stems, unique_names
    from napari_reddino.pca import PatchPCA, fit_pca

    paths = expand_inputs(args.images)
    out = check_out_dir(args.out)  # before the model and the compute
    if args.load_fit and not Path(args.load_fit).is_file():
        raise UsageError(f"received --load-fit {args.load_fit!r}, which is not a file; accepted: an .npz "
                         "written by --save-fit")
    check_scheduler(args)
    spec = args.model or default_spec()  # here, so that every worker uses the same
    patch = int(load_model(spec, device=args.device).patch_embed.patch_size[0])  # a bad --model: one line now
    if args.workers > 1 or args.scheduler:  # the workers load their own
        clear_cache()
    failures = Failures()
    fit = PatchPCA.load(args.load_fit) if args.load_fit else None
    joint = fit is None and args.fit == "joint" and len(paths) > 1
    look = dict(background=args.background, smooth=args.smooth, foreground=not args.no_foreground)
    features = dict(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, precision=args.precision)
    names = unique_names(paths)
    stems = output_stems(names)
    # joint: the units hand back their grids (float16 and small: a 1280 x 960 smear through ViT-S, 5 MB; 4
    # times that enlarged 2x), one PCA is fitted on all of them here; else each unit writes its own overlay
    units = [Unit(name, iter_pca_image, (path, name, spec, args.device, args.cell_resolution, features),
                  {"write": None if joint else (str(out), stem, fit, look)})
             for path, name, stem in zip(paths, names, stems)]

    def say(_, result):
        if isinstance(result, UnitFailed):
            print(f"{result.name}: not read: {failures.add(result.name, ValueError(result.why))}")
        else:
            print("\n".join(result.lines))

    results = drive(iter_map_units(units, args.workers, args.scheduler, "images", done=say), bar=True)
    done = [(path, stem, r) for path, stem, r in zip(paths, stems, results)
            if not isinstance(r, UnitFailed) and r.found is not None]
    if joint and done:
        fit = fit_pca([r.found.grid for _, _, r in done], foreground=look["foreground"])
        for path, stem, r in done:
            print(write_overlay(out, stem, read_image(path), r.found, fit, patch, **look))
    elif fit is None:
        fits = [r.fit for _, _, r in done if r.fit is not None]
        fit = fits[-1] if fits else None  # --save-fit keeps the last image's
    if args.save_fit and fit is not None:
        fit.save(args.save_fit)
        print(f"wrote {args.save_fit}")
    failures.write(out / "failed.csv")
    return 2 if failures else 0


@dataclass
class PcaDone:
    lines: list[str]  # what is said of the image
    found: object = None  # its CellGrid (None: no cells); handed back for a joint fit only
    fit: object = None  # the fit made on this image alone (--fit each)


def iter_pca_image(path, name, spec, device, resolution, features, write=None):
    """One image of ``pca``, a unit of ``distribute.iter_map_units``: its patch features; with ``write`` =
    (out, stem, fit or None for one of its own, look) its overlay written here, else its grid handed back
    (a joint fit). An image without cells gets the line saying so and no files."""
    from napari_reddino.images import read_image
    from napari_reddino.models import load_model
    from napari_reddino.pca import fit_pca
    from napari_reddino.pca_resolution import NoCellsFound, iter_cell_features
    from napari_reddino.runtime import import_torch

    import_torch()  # a worker's first torch import, as the CLI's
    model = load_model(spec, device=device)
    image = read_image(path)
    try:
        found = yield from iter_cell_features(image, model, resolution, name=name, **features)
    except NoCellsFound as exc:
        return PcaDone([str(exc)])
    factor = f" enlarged {found.factor[0]:.2f}x" if found.factor != (1.0, 1.0) else ""
    lines = [f"{path}: patch features{factor}" + (f" ({found.note})" if found.note else "")]
    if write is None:
        return PcaDone(lines, found=found)
    out, stem, fit, look = write
    own = None if fit is not None else fit_pca(found.grid, foreground=look["foreground"])
    patch = int(model.patch_embed.patch_size[0])
    lines.append(write_overlay(Path(out), stem, image, found, fit or own, patch, **look))
    return PcaDone(lines, fit=own)


def write_overlay(out: Path, stem: str, image, found, fit, patch: int, background: str, smooth: bool,
                  foreground: bool) -> str:
    """``<stem>_pca.png`` and ``<stem>_pca_side.png`` (atomically); the line said of them."""
    from napari_reddino.formats import image_files, save_png
    from napari_reddino.pca import upsample_overlay

    rgb = fit.transform(found.grid, background=background)
    full = upsample_overlay(rgb, patch, image.shape, mode="bilinear" if smooth else "nearest", factor=found.factor)
    overlay = save_png(np.round(full * 255).astype(np.uint8), image_files(out, stem)["pca"])
    side = save_png(side_by_side(image, full), overlay.with_name(f"{stem}_pca_side.png"))
    return f"wrote {overlay} and {side}"
