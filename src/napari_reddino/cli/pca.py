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
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_reddino.cli import UsageError


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

    from napari_reddino.progress import run as drive
    from napari_reddino.formats import image_files, save_png
    from napari_reddino.images import ReadError, expand_inputs, read_image
    from napari_reddino.models import default_spec, load_model
    from napari_reddino.outputs import Failures, check_out_dir, output_stems, unique_names
    from napari_reddino.pca import PatchPCA, fit_pca, upsample_overlay
    from napari_reddino.pca_resolution import NoCellsFound, iter_cell_features

    paths = expand_inputs(args.images)
    out = check_out_dir(args.out)  # before the model and the compute
    if args.load_fit and not Path(args.load_fit).is_file():
        raise UsageError(f"received --load-fit {args.load_fit!r}, which is not a file; accepted: an .npz "
                         "written by --save-fit")
    model = load_model(args.model or default_spec(), device=args.device)
    patch = int(model.patch_embed.patch_size[0])
    failures = Failures()
    opts = dict(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, precision=args.precision)

    def features(path, name):
        """(image, CellGrid), or None for an image without cells or one that cannot be read (said in one line)."""
        try:
            image = read_image(path)
        except ReadError as exc:
            print(f"{name}: not read: {failures.add(name, exc)}")
            return None
        try:
            found = drive(iter_cell_features(image, model, args.cell_resolution, name=name, **opts), bar=True)
        except NoCellsFound as exc:
            print(exc)
            return None
        factor = f" enlarged {found.factor[0]:.2f}x" if found.factor != (1.0, 1.0) else ""
        print(f"{path}: patch features{factor}" + (f" ({found.note})" if found.note else ""))
        return image, found

    def write(stem, image, found, fit):
        rgb = fit.transform(found.grid, background=args.background)
        full = upsample_overlay(rgb, patch, image.shape, mode="bilinear" if args.smooth else "nearest",
                                factor=found.factor)
        overlay = save_png(np.round(full * 255).astype(np.uint8), image_files(out, stem)["pca"])
        side = save_png(side_by_side(image, full), overlay.with_name(f"{stem}_pca_side.png"))
        print(f"wrote {overlay} and {side}")

    fit = PatchPCA.load(args.load_fit) if args.load_fit else None
    names = unique_names(paths)
    stems = output_stems(names)
    if fit is None and args.fit == "joint" and len(paths) > 1:
        # grids are float16 and small (a 1280 x 960 smear through ViT-S: 5 MB; 4 times that enlarged 2x)
        done = [(stem, got) for stem, path, name in zip(stems, paths, names) if (got := features(path, name))]
        if done:
            fit = fit_pca([found.grid for _, (_, found) in done], foreground=not args.no_foreground)
        for stem, (image, found) in done:
            write(stem, image, found, fit)
    else:
        last = None
        for stem, path, name in zip(stems, paths, names):
            got = features(path, name)
            if got is None:
                continue
            image, found = got
            this = fit or fit_pca(found.grid, foreground=not args.no_foreground)
            write(stem, image, found, this)
            last = this
        fit = fit or last
    if args.save_fit and fit is not None:
        fit.save(args.save_fit)
        print(f"wrote {args.save_fit}")
    failures.write(out / "failed.csv")
    return 2 if failures else 0
