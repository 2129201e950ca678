"""``napari-reddino pca``: three-component PCA overlays of RedDino patch features, written as PNGs.

For each image: ``<stem>_pca.png`` (the overlay at the image's resolution) and ``<stem>_pca_side.png``
(the image and the overlay side by side). ``--fit joint`` (default) fits one PCA on all the images so a
colour means the same on every slide; ``--fit each`` fits per image. ``--save-fit``/``--load-fit`` carry
a fit to later runs.
"""

from __future__ import annotations

from collections import Counter
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


def output_stems(paths) -> list[str]:
    """File stems, prefixed with the parent folder where two inputs share a stem."""
    counts = Counter(p.stem for p in paths)
    return [f"{p.parent.name}_{p.stem}" if counts[p.stem] > 1 else p.stem for p in paths]


def side_by_side(image: np.ndarray, overlay: np.ndarray, gap: int = 8) -> np.ndarray:
    """``image | overlay`` as one RGB uint8 picture (a transparent overlay is shown on black)."""
    rgb = overlay[..., :3] * (overlay[..., 3:] if overlay.shape[-1] == 4 else 1.0)
    right = np.round(rgb * 255).astype(np.uint8)
    h = image.shape[0]
    return np.concatenate([image, np.full((h, gap, 3), 255, np.uint8), right], axis=1)


def run(args) -> int:
    from PIL import Image

    from napari_reddino._progress import run as drive
    from napari_reddino.images import expand_inputs, read_image
    from napari_reddino.models import default_spec, load_model
    from napari_reddino.pca import PatchPCA, fit_pca, iter_patch_features, upsample_overlay

    paths = expand_inputs(args.images)
    if args.load_fit and not Path(args.load_fit).is_file():
        raise UsageError(f"received --load-fit {args.load_fit!r}, which is not a file; accepted: an .npz "
                         "written by --save-fit")
    model = load_model(args.model or default_spec(), device=args.device)
    patch = int(model.patch_embed.patch_size[0])
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    opts = dict(tile=args.tile, overlap=args.overlap, batch_size=args.batch_size, precision=args.precision)

    def features(path):
        image = read_image(path)
        print(f"{path}: patch features")
        return image, drive(iter_patch_features(image, model, **opts), bar=True)

    def write(stem, image, grid, fit):
        rgb = fit.transform(grid, background=args.background)
        full = upsample_overlay(rgb, patch, image.shape, mode="bilinear" if args.smooth else "nearest")
        png = np.round(full * 255).astype(np.uint8)
        Image.fromarray(png).save(out / f"{stem}_pca.png")
        Image.fromarray(side_by_side(image, full)).save(out / f"{stem}_pca_side.png")
        print(f"wrote {out / f'{stem}_pca.png'} and {out / f'{stem}_pca_side.png'}")

    fit = PatchPCA.load(args.load_fit) if args.load_fit else None
    stems = output_stems(paths)
    if fit is None and args.fit == "joint" and len(paths) > 1:
        # grids are float16 and small (a 1280 x 960 smear through ViT-S: 5 MB), so keep them for the fit
        done = [features(p) for p in paths]
        fit = fit_pca([g for _, g in done], foreground=not args.no_foreground)
        for stem, (image, grid) in zip(stems, done):
            write(stem, image, grid, fit)
    else:
        for stem, path in zip(stems, paths):
            image, grid = features(path)
            this = fit or fit_pca(grid, foreground=not args.no_foreground)
            write(stem, image, grid, this)
            last = this
        fit = fit or last
    if args.save_fit:
        fit.save(args.save_fit)
        print(f"wrote {args.save_fit}")
    return 0
