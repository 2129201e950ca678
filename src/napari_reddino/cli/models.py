"""RedDino models: list the known ones (cached or not) and download one explicitly.

Writes nothing, except models download: the model's weights, into the Hugging Face cache.
"""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list or download RedDino models", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="known model specs, their size and whether their weights are here",
                       description="List the known model specs with their feature dimension, size and whether "
                                   "their weights are here.\n\nWrites nothing.")
    dl = actions.add_parser("download", help="download a hf-hub: model into the Hugging Face cache",
                            description="Download a hf-hub: model's config and weights (needs internet).\n\n"
                                        "Writes the weights into the Hugging Face cache, and the revision they "
                                        "came from into ~/.napari-reddino/pins.json (or $NAPARI_REDDINO_PINS).")
    dl.add_argument("spec", help="e.g. hf-hub:Snarcy/RedDino-small")
    p.set_defaults(func=run)


def run(args) -> int:
    from napari_reddino import models

    if args.action == "list":
        default = models.default_spec()
        print(f"{'spec':32} {'dim':>5} {'params':>7}  {'weights':10} architecture")
        for spec, info in models.MODEL_SPECS.items():
            state = "cached" if models.is_cached(spec) else ("not shipped" if spec == "demo" else "not cached")
            mark = " (default)" if spec == default else ""
            dim, params = demo_size() if spec == "demo" and state == "cached" else (info["dim"], info["params"])
            print(f"{spec:32} {dim or '-':>5} {params:>7}  {state:10} {info['architecture']}{mark}")
        print("Also: local-dir:FOLDER (timm config.json + model.safetensors) or a DINOv2 .pth/.safetensors "
              "path.")
        print("RedDino weights: model cards say Apache-2.0, the pushed config says cc-by-nc-4.0; check before "
              "use.")
        return 0
    path = models.download(args.spec, tqdm_class=None)
    print(f"{args.spec}: weights at {path}")
    return 0


def demo_size() -> tuple[int, str]:
    """The shipped demo model's feature dimension and parameter count, read from its files (no torch)."""
    import json
    import math

    from safetensors import safe_open

    from napari_reddino.models import DEMO_DIR

    dim = json.loads((DEMO_DIR / "config.json").read_text())["num_features"]
    with safe_open(str(DEMO_DIR / "model.safetensors"), "numpy") as f:
        count = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
    return dim, f"{count / 1e6:.1f}M"
