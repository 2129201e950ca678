"""Downloads are pinned: the first one records its revision and checksums, later ones are made at that revision
and must match them; a changed file is deleted and refused in one line. Nothing here touches the network."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_reddino import pins
from napari_reddino.images import InputError


@pytest.fixture
def fake_hub(tmp_path, monkeypatch):
    """``hf_hub_download`` replaced by a local one that serves ``served[name]`` at commit ``commits[0]`` into a
    cache laid out as the Hub's (``snapshots/<commit>/<file>``), recording the revision asked for."""
    import huggingface_hub

    from napari_reddino import models

    served = {"config.json": b'{"architecture": "vit_small_patch14_dinov2"}', "model.safetensors": b"weights v1"}
    asked, commits = [], ["c0ffee1"]

    def fake_download(repo, name, revision=None, tqdm_class=None):
        asked.append((name, revision))
        path = tmp_path / "cache" / repo.replace("/", "--") / "snapshots" / (revision or commits[0]) / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(served[name])
        return str(path)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return models, served, asked, commits


def test_first_download_records_its_revision_and_checksums(fake_hub):
    models, served, asked, _ = fake_hub
    path = models.download("hf-hub:Snarcy/RedDino-small")
    assert path.read_bytes() == b"weights v1" and asked == [("config.json", None), ("model.safetensors", None)]
    recorded = json.loads(pins.user_pin_file().read_text())["hf-hub:Snarcy/RedDino-small"]
    assert recorded["revision"] == "c0ffee1"
    assert recorded["sha256"]["model.safetensors"] == pins.sha256(path)


def test_later_downloads_are_made_at_the_pinned_revision_and_must_match(fake_hub, tmp_path):
    models, served, asked, commits = fake_hub
    models.download("hf-hub:Snarcy/RedDino-small")
    commits[0] = "badc0de"  # the publisher pushed a new commit
    asked.clear()
    models.download("hf-hub:Snarcy/RedDino-small")
    assert [r for _, r in asked] == ["c0ffee1", "c0ffee1"]  # still the trusted commit
    served["model.safetensors"] = b"weights changed under the same commit"
    with pytest.raises(InputError, match="not the pinned") as info:
        models.download("hf-hub:Snarcy/RedDino-small")
    assert "\n" not in str(info.value)
    assert not list((tmp_path / "cache").glob("**/model.safetensors"))  # deleted: nothing left to load


def test_a_shipped_pin_wins_over_the_recorded_one(fake_hub, tmp_path, monkeypatch):
    models, served, asked, _ = fake_hub
    shipped = tmp_path / "shipped.json"
    shipped.write_text(json.dumps({"hf-hub:Snarcy/RedDino-base": {"revision": "5h1pped", "sha256": {
        "model.safetensors": "0" * 64}}}))
    monkeypatch.setattr(pins, "SHIPPED", shipped)
    with pytest.raises(InputError, match="not the pinned"):
        models.download("hf-hub:Snarcy/RedDino-base")
    assert ("model.safetensors", "5h1pped") in asked
    recorded = json.loads(pins.user_pin_file().read_text())["hf-hub:Snarcy/RedDino-base"]
    assert "model.safetensors" not in recorded["sha256"] and "revision" not in recorded  # the shipped pin holds


def test_cellpose_download_is_pinned_by_its_checksum(tmp_path, monkeypatch):
    from napari_reddino.segment import cellpose as cp_backend

    served = tmp_path / "served"
    served.mkdir()
    (served / "cpsam").write_bytes(np.random.default_rng(0).bytes(2**20 + 3))
    monkeypatch.setattr(cp_backend, "MODEL_URL", served.as_uri() + "/")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    path = cp_backend.resolve_weights("cpsam", download=True)
    assert pins.pin("cellpose:cpsam")["sha256"]["cpsam"] == pins.sha256(path)
    path.unlink()
    (served / "cpsam").write_bytes(b"another file under the same name")
    with pytest.raises(InputError, match="not the pinned"):
        cp_backend.resolve_weights("cpsam", download=True)
    assert not (tmp_path / "models" / "cpsam").exists() and not list((tmp_path / "models").glob("*.part"))


def test_a_damaged_pin_file_is_one_line(tmp_path, monkeypatch):
    bad = tmp_path / "pins.json"
    bad.write_text("{not json")
    monkeypatch.setenv("NAPARI_REDDINO_PINS", str(bad))
    with pytest.raises(InputError, match="pin file") as info:
        pins.pin("cellpose:cpsam")
    assert "\n" not in str(info.value)
