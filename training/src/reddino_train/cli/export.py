"""``reddino-train export``: a run's teacher backbone → a folder the plugin loads with ``local-dir:DIR``."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's teacher backbone as config.json + model.safetensors",
        description="Export the EMA teacher backbone of a training run in timm's Hugging Face folder format "
                    "(like Snarcy/RedDino-*); load it in napari-reddino with the model spec local-dir:DIR.",
        epilog="example: reddino-train export runs/tiny --out models/tiny && napari-reddino embed ... "
               "--model local-dir:models/tiny")
    p.add_argument("run", help="run folder of `reddino-train train` (config.yaml + checkpoint.pt)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import export

    path = export(args.run, args.out)
    print(f"wrote {path} (load with local-dir:{path})")
    return 0
