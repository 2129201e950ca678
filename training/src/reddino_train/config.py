"""Training configs: YAML by name (``configs/<name>.yaml``) or path, ``key.sub=value`` overrides with YAML-typed
values, a ``base:`` file to inherit from, and ``augmentation:`` resolved from a name to every parameter.

The resolved config (nothing left by name) is what a run saves in its folder and what ``--resume`` reads back.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from napari_reddino.images import InputError

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def available_configs() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if not p.stem.startswith("augmentation_"))


def _read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"Could not parse {str(path)!r} as YAML ({type(exc).__name__}); accepted: a YAML mapping.") from None
    if not isinstance(data, dict):
        raise InputError(f"Received {str(path)!r} holding a {type(data).__name__}; accepted: a YAML mapping.")
    return data


def _find(name_or_path: str | Path, prefix: str = "") -> Path:
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        if not p.is_file():
            raise InputError(f"Received config {str(p)!r}, which does not exist; accepted: a YAML file or one of "
                             f"{available_configs()}.")
        return p
    named = CONFIG_DIR / f"{prefix}{name_or_path}.yaml"
    if not named.is_file():
        choices = sorted(q.stem[len(prefix):] for q in CONFIG_DIR.glob(f"{prefix}*.yaml")) if prefix else available_configs()
        raise InputError(f"Received config name {str(name_or_path)!r}; accepted: a YAML file or one of {choices}.")
    return named


def deep_merge(base: dict, top: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _load_with_base(path: Path, seen=()) -> dict:
    data = _read_yaml(path)
    base = data.pop("base", None)
    if base is None:
        return data
    base_path = path.parent / base if (path.parent / base).is_file() else _find(base)
    if base_path.resolve() in seen:
        raise InputError(f"Received config {str(path)!r} whose base chain loops; accepted: a chain of distinct files.")
    return deep_merge(_load_with_base(base_path, seen + (path.resolve(),)), data)


def resolve_augmentation(aug) -> dict:
    """A name (``reddino``, ``dinov2``) → the dict in ``configs/augmentation_<name>.yaml``; a dict stays."""
    if isinstance(aug, dict):
        return aug
    if not isinstance(aug, str):
        raise InputError(f"Received augmentation {aug!r}; accepted: a name (reddino, dinov2), a YAML file or a mapping.")
    data = _read_yaml(_find(aug, prefix="augmentation_"))
    if set(data) == {"augmentation"} and isinstance(data["augmentation"], dict):
        data = data["augmentation"]
    return data


def parse_override(text: str) -> tuple[list[str], object]:
    if "=" not in text or text.startswith("="):
        raise InputError(f"Received override {text!r}; accepted: key.sub=value (value parsed as YAML).")
    key, value = text.split("=", 1)
    try:
        parsed = yaml.safe_load(value) if value != "" else None
    except yaml.YAMLError:
        parsed = value
    if isinstance(parsed, str):  # YAML 1.1 reads "1e-3" as a string
        try:
            parsed = float(parsed)
        except ValueError:
            pass
    return key.strip().split("."), parsed


def apply_override(cfg: dict, keys: list[str], value) -> None:
    """Set ``cfg[k0][k1]...`` = value. Keys must exist (typos are errors, inside ``augmentation`` too) and the
    value must be of the kind the key holds (a number for a number, true/false for a switch, ...)."""
    if keys[0] == "augmentation" and len(keys) > 1:
        cfg["augmentation"] = resolve_augmentation(cfg.get("augmentation"))
    node = cfg
    for i, key in enumerate(keys):
        if not isinstance(node, dict) or key not in node:
            known = sorted(node) if isinstance(node, dict) else []
            raise InputError(f"Received override key {'.'.join(keys)!r}; accepted keys at this level: {known}.")
        if i == len(keys) - 1:
            node[key] = value if keys == ["augmentation"] else _same_kind(".".join(keys), node[key], value)
        else:
            node = node[key]


def _kind(value) -> str:
    if isinstance(value, bool):
        return "true or false"
    if isinstance(value, (int, float)):
        return "a number"
    return {str: "a text", list: "a list", dict: "a mapping"}.get(type(value), type(value).__name__)


def _same_kind(name: str, old, value):
    """``value`` if it is the kind of thing ``old`` is (any number for a number); None keeps its meaning."""
    if old is None or value is None or _kind(old) == _kind(value):
        return value
    raise InputError(f"Received {name}={value!r}; accepted: {_kind(old)} (the config has {old!r}).")


# keys whose values must be whole numbers >= the bound (other number keys: >= the bound); a missing key or null
# (the architecture's own) is fine
WHOLE = {"optim.batch_size_per_gpu": 1, "optim.epoch_length": 1, "model.img_size": 14, "model.embed_dim": 1,
         "model.depth": 1, "model.num_heads": 1, "head.n_prototypes": 1, "head.ibot_n_prototypes": 1,
         "head.hidden_dim": 1, "head.bottleneck_dim": 1, "head.n_layers": 1, "crops.global_size": 14,
         "crops.local_size": 14, "crops.n_local": 0, "train.num_workers": 0, "train.checkpoint_every": 0,
         "train.seed": 0, "train.rank_every": 0, "train.knn_every": 0, "train.knn_samples": 1}
AT_LEAST = {"optim.epochs": 1e-9, "optim.base_lr": 0.0, "optim.min_lr": 0.0, "optim.warmup_epochs": 0.0,
            "optim.weight_decay": 0.0, "optim.weight_decay_end": 0.0, "loss.student_temp": 1e-9,
            "loss.teacher_temp": 1e-9, "loss.warmup_teacher_temp": 1e-9}


def check_config(cfg: dict) -> dict:
    """One line naming the first value a run could not use (a size of 0, a negative rate), before any work."""
    for name, low in {**WHOLE, **AT_LEAST}.items():
        section, key = name.split(".")
        value = (cfg.get(section) or {}).get(key)
        if value is None:
            continue
        whole = name in WHOLE
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and value >= low and (
            not whole or float(value).is_integer())
        if not ok:
            what = f"a whole number >= {low}" if whole else ("a number > 0" if low > 0 else "a number >= 0")
            raise InputError(f"Received {name}={value!r}; accepted: {what}.")
        if whole:
            cfg[section][key] = int(value)
    return cfg


def load_config(name_or_path: str | Path, overrides=()) -> dict:
    """The fully resolved config dict."""
    cfg = _load_with_base(_find(name_or_path))
    for text in overrides:
        apply_override(cfg, *parse_override(text))
    cfg["augmentation"] = resolve_augmentation(cfg.get("augmentation", "reddino"))
    return check_config(cfg)


def save_config(cfg: dict, path: Path) -> None:
    path = Path(path)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(cfg, sort_keys=False))
    tmp.replace(path)


def read_saved_config(path: Path) -> dict:
    return _read_yaml(Path(path))
