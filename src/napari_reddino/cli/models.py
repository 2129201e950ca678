"""``napari-reddino models``: list the known RedDino models (cached or not) and download one explicitly."""

from __future__ import annotations


def add_parser(sub) -> None:
    p = sub.add_parser("models", help="list or download RedDino models", description=__doc__)
    actions = p.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="known model specs, their size and whether their weights are here")
    dl = actions.add_parser("download", help="download a hf-hub: model into the Hugging Face cache")
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
            print(f"{spec:32} {info['dim'] or '-':>5} {info['params']:>7}  {state:10} "
                  f"{info['architecture']}{mark}")
        print("Also: local-dir:FOLDER (timm config.json + model.safetensors) or a DINOv2 .pth/.safetensors "
              "path.")
        print("RedDino weights: model cards say Apache-2.0, the pushed config says cc-by-nc-4.0; check before "
              "use.")
        return 0
    path = models.download(args.spec, tqdm_class=None)
    print(f"{args.spec}: weights at {path}")
    return 0
