"""``reddino-train export``: a run's teacher backbone → a folder the plugin loads with ``local-dir:DIR``."""

from __future__ import annotations


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "export", help="write a run's teacher backbone as config.json + model.safetensors",
        description="Export the EMA teacher backbone of a training run in timm's Hugging Face folder format "
                    "(like Snarcy/RedDino-*); napari-reddino loads it with the model spec local-dir:OUT.\n\n"
                    "Writes, into the --out folder:\n"
                    "- config.json: the architecture and input size (timm's)\n"
                    "- model.safetensors: the weights",
        epilog="example:\n"
               "  reddino-train export runs/tiny --out models/tiny\n"
               "  napari-reddino embed smears/ --segment learned --model local-dir:models/tiny --out features.parquet")
    p.add_argument("run", help="run folder of reddino-train train (config.yaml + checkpoint.pt)")
    p.add_argument("--out", required=True, help="output folder")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..export import export

    path = export(args.run, args.out)
    print(f"wrote {path} (load with local-dir:{path})")
    return 0
