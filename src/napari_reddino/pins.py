"""Downloads pinned to what was first trusted: the one home of download revisions and checksums.

Every download (RedDino weights from the Hugging Face Hub, Cellpose weights) is checked against a pin, a
revision (the Hub's commit) and a SHA-256 per file:

- pins shipped with the package (``pins.json`` beside this file) win; they are filled in for a release by
  someone with internet (this project's build machine has none, so the shipped table is empty today);
- otherwise the first download records its revision and checksums in the user's pin file
  (``~/.napari-reddino/pins.json``, or ``$NAPARI_REDDINO_PINS``), and every later download is made at that
  revision and must match them ("trust on first use"). A lab copies its pin file to its other machines so they
  all get exactly the weights the first one was validated on.

A file that does not match its pin is deleted and refused in one line, never used.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from napari_reddino.images import InputError

SHIPPED = Path(__file__).with_name("pins.json")


def user_pin_file() -> Path:
    env = os.environ.get("NAPARI_REDDINO_PINS")
    return Path(env).expanduser() if env else Path.home() / ".napari-reddino" / "pins.json"


def _read(path: Path) -> dict:
    try:
        pins = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise InputError(f"Received a pin file {str(path)!r} that cannot be read ({type(exc).__name__}); "
                         "accepted: the JSON file napari-reddino writes (delete it to trust the next download).") from None
    return pins if isinstance(pins, dict) else {}


def pin(key: str) -> dict:
    """``{"revision": str | None, "sha256": {file name: hex}}`` for a download ``key`` (a model spec such as
    ``hf-hub:Snarcy/RedDino-small``, or ``cellpose:cpsam``): what the package ships, completed by what was
    recorded (a shipped value wins)."""
    shipped, recorded = (_read(source).get(key) or {} for source in (SHIPPED, user_pin_file()))
    return {"revision": shipped.get("revision") or recorded.get("revision"),
            "sha256": {**(recorded.get("sha256") or {}), **(shipped.get("sha256") or {})}}


def sha256(path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_or_record(key: str, path, revision: str | None = None, name: str | None = None) -> None:
    """Check the downloaded file ``path`` (stored as ``name``, default its file name) against ``key``'s pin;
    with no pin for it yet, record its checksum (and ``revision``) in the user's pin file. A mismatch deletes
    the file and raises one line."""
    from napari_reddino.atomic import atomic_write_text

    path = Path(path)
    name = name or path.name
    digest = sha256(path)
    expected = pin(key)["sha256"].get(name)
    if expected and expected != digest:
        path.unlink(missing_ok=True)
        raise InputError(f"Received {name} for {key} with SHA-256 {digest[:12]}…, not the pinned {expected[:12]}… "
                         f"(deleted, not used); accepted: the pinned file. If the publisher changed it on purpose, "
                         f"remove {key} from {user_pin_file()} to trust the new one.")
    if expected:
        return
    user = user_pin_file()
    pins = _read(user)
    entry = pins.setdefault(key, {})
    if revision and not pin(key)["revision"]:
        entry["revision"] = revision
    entry.setdefault("sha256", {})[name] = digest
    atomic_write_text(user, json.dumps(pins, indent=1, sort_keys=True))


def hub_revision(downloaded) -> str | None:
    """The Hub commit a cached file belongs to (``…/snapshots/<commit>/<file>``), or None."""
    parts = Path(downloaded).parts
    return parts[parts.index("snapshots") + 1] if "snapshots" in parts[:-1] else None
