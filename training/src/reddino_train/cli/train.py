"""``reddino-train train``: DINOv2 training with the RedDino recipe (one process, or under torchrun)."""

from __future__ import annotations

import os
from pathlib import Path


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "train", help="train a ViT with DINOv2 + the RedDino recipe",
        description="Train student/teacher ViTs on a folder made by reddino-train prepare. On several GPUs or "
                    "nodes, run it under torchrun (below).\n\n"
                    "Writes, into the --out run folder:\n"
                    "- config.yaml: the full config (--resume reads it)\n"
                    "- metrics.csv: a row per step (losses, schedules, speed; kNN accuracy when monitored)\n"
                    "- checkpoint.pt: student, teacher and optimiser state, every --checkpoint-every steps, at the "
                    "end and when stopped (Ctrl-C, SIGTERM)",
        epilog="examples:\n"
               "  reddino-train train --config cpu_tiny --data prepared/ --out runs/tiny optim.epochs=5\n"
               "  torchrun --nproc_per_node 8 -m reddino_train.cli train --config reddino_vits14 --data prepared/ "
               "--out runs/s")
    p.add_argument("--config", default="cpu_tiny",
                   help="config name in reddino_train/configs (cpu_tiny, reddino_vits14, reddino_vitb14, "
                        "reddino_vitl14) or a YAML file (default: cpu_tiny)")
    p.add_argument("--data", required=True, help="training set folder (manifest.csv + images) from reddino-train prepare")
    p.add_argument("--out", required=True, help="run folder: config.yaml, metrics.csv, checkpoint.pt")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides, dotted keys, YAML values (e.g. loss.koleo_weight=0.1 crops.n_local=8)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out from its checkpoint with its saved config (plus overrides)")
    p.add_argument("--max-steps", type=int, default=None, help="stop at this optimiser step (smoke runs, tests)")
    p.add_argument("--checkpoint-every", type=int, default=None, help="checkpoint every N steps (config default)")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda (default: auto)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from napari_reddino.images import InputError

    from ..config import load_config
    from ..train.loop import train

    data = Path(args.data)
    if not data.is_dir():
        raise InputError(f"Received --data {str(data)!r}, which is not a folder; accepted: a folder made by "
                         "`reddino-train prepare`.")
    saved = Path(args.out) / "config.yaml"
    # a resumed run keeps the config it started with (its schedules depend on it)
    cfg = load_config(saved if args.resume and saved.is_file() else args.config, args.overrides)
    row = train(cfg, data, args.out, resume=args.resume, max_steps=args.max_steps,
                checkpoint_every=args.checkpoint_every, device=args.device, progress=not args.no_progress)
    if row and os.environ.get("RANK", "0") == "0":
        print(f"step {row['step']}: loss {row['loss']:.4f} (run folder {args.out})")
    return 0
