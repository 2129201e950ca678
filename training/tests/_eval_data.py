"""Small labelled datasets in the formats ``reddino-train eval`` reads, built from synthetic smears, and a
tiny DINOv2-architecture model saved as a ``local-dir:`` folder."""

from __future__ import annotations

from pathlib import Path

# synthetic kinds → Chula class ids (normal 0, spherocyte 3, target 4, elliptocyte 12)
KIND_TO_CHULA = {"normal": 0, "spherocyte": 3, "target": 4, "elliptocyte": 12}


def make_chula(root: Path, n_images: int = 6, shape=(200, 260)) -> Path:
    """``root/images/<id>.png`` + ``root/labels/<id>.txt`` (``x y class`` per red cell), one image without
    labels and one empty label file, like the real folder's irregularities."""
    from PIL import Image
    from scipy import ndimage

    from napari_reddino.sample_data import synthetic_smear

    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "labels").mkdir(exist_ok=True)
    for i in range(n_images):
        image, labels, classes = synthetic_smear(seed=i, shape=shape)
        Image.fromarray(image).save(root / "images" / f"{i + 1}.png")
        ids = [lab for lab, kind in classes.items() if kind in KIND_TO_CHULA]
        centres = ndimage.center_of_mass(labels > 0, labels, ids)
        lines = [f"{int(cx)} {int(cy)} {KIND_TO_CHULA[classes[lab]]}" for lab, (cy, cx) in zip(ids, centres)]
        (root / "labels" / f"{i + 1}.txt").write_text("\n".join(lines) + "\n")
    image, _, _ = synthetic_smear(seed=99, shape=shape)
    Image.fromarray(image).save(root / "images" / "unlabelled.png")
    Image.fromarray(image).save(root / "images" / "empty.png")
    (root / "labels" / "empty.txt").write_text("")
    return root


def save_tiny_model(path: Path, img_size: int = 28, seed: int = 0) -> Path:
    import torch

    from napari_reddino.models import create_model, save_local_dir

    torch.manual_seed(seed)
    model = create_model("vit_small_patch14_dinov2", img_size=img_size, embed_dim=32, depth=1, num_heads=2)
    return save_local_dir(model.eval(), path)
