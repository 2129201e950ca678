"""Cellpose backend with a tiny stand-in for Cellpose-SAM's 305M network: cellpose's own eval, tiling,
normalisation and mask dynamics run for real; only ``cellpose.models.CPSAM`` is replaced."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cp_models = pytest.importorskip("cellpose.models")
from cellpose.vit import BaseModel  # noqa: E402

from napari_reddino.images import InputError  # noqa: E402
from napari_reddino.sample_data import synthetic_smear  # noqa: E402
from napari_reddino.segment import cellpose as cp_backend  # noqa: E402
from napari_reddino.segment import segment  # noqa: E402


class TinyCPSAM(BaseModel):
    """Same constructor, ``forward`` outputs and ``W2`` readout as cellpose's CPSAM, 8x8 patch tokens."""

    instances = 0
    forward_calls = 0

    def __init__(self, ps=8, nout=3, bsize=256, rdrop=0.4, dtype=torch.float32):
        super().__init__(dtype=dtype)
        TinyCPSAM.instances += 1
        self.ps, self.nout = ps, nout
        self.encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 8, ps, stride=ps), torch.nn.GELU())
        self.out = torch.nn.Conv2d(8, nout * ps ** 2, kernel_size=1)
        self.W2 = torch.nn.Parameter(torch.eye(nout * ps ** 2).reshape(nout * ps ** 2, nout, ps, ps),
                                     requires_grad=False)

    def forward(self, x):
        TinyCPSAM.forward_calls += 1
        x1 = torch.nn.functional.conv_transpose2d(self.out(self.encoder(x)), self.W2, stride=self.ps)
        return x1, torch.zeros((x.shape[0], 256), device=x.device)


@pytest.fixture
def tiny_weights(tmp_path, monkeypatch):
    """A CP4-format weights file for the stand-in. Its readout is set by hand so the output means
    something: in each 8x8 token the flows point to the token's centre, and the cell probability is
    high where the token is dark (stained). Masks are then small squares on the cells."""
    monkeypatch.setattr(cp_models, "CPSAM", TinyCPSAM)
    cp_backend.clear_cache()
    net = TinyCPSAM()
    with torch.no_grad():
        net.encoder[0].weight.zero_()
        net.encoder[0].bias.zero_()
        net.encoder[0].weight[0] = 1.0 / (3 * 64)  # feature 0: the token's mean intensity
        net.out.weight.zero_()
        i, j = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
        norm = np.maximum(np.hypot(3.5 - i, 3.5 - j), 1e-6)
        net.out.bias[:64] = torch.tensor(5 * (3.5 - i) / norm, dtype=torch.float32).flatten()  # Y flow
        net.out.bias[64:128] = torch.tensor(5 * (3.5 - j) / norm, dtype=torch.float32).flatten()  # X flow
        net.out.weight[128:, 0, 0, 0] = -8.0  # cell probability: dark → high
        net.out.bias[128:] = 4.0
    path = tmp_path / "tiny_cpsam"
    torch.save(net.state_dict(), path)
    TinyCPSAM.instances = TinyCPSAM.forward_calls = 0
    yield path
    cp_backend.clear_cache()


@pytest.fixture(scope="module")
def image():
    return synthetic_smear(seed=1, shape=(128, 160), n_cells=8, n_white=0, n_platelets=0)[0]


def test_real_cellpose_code_runs_on_the_stand_in(tiny_weights, image):
    labels = segment(image, backend="cellpose", weights=tiny_weights, device="cpu", precision="fp32",
                     diameter=30)
    assert labels.shape == image.shape[:2] and labels.dtype == np.int32
    assert labels.max() >= 5  # the dynamics built masks from the stand-in's flows
    gt = synthetic_smear(seed=1, shape=(128, 160), n_cells=8, n_white=0, n_platelets=0)[1]
    assert ((labels > 0) & (gt > 0)).sum() > 0.7 * (labels > 0).sum()  # on the (dark) cells
    assert TinyCPSAM.forward_calls >= 1


def test_model_cached_and_flows_reused_when_thresholds_change(tiny_weights, image):
    opts = dict(backend="cellpose", weights=tiny_weights, device="cpu", precision="fp32", diameter=30)
    loose = segment(image, cellprob_threshold=0, **opts)
    calls = TinyCPSAM.forward_calls
    strict = segment(image, cellprob_threshold=5, **opts)  # nothing is that probable
    assert TinyCPSAM.forward_calls == calls and TinyCPSAM.instances == 1
    assert loose.max() > 0 and strict.max() == 0
    seg = cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="fp32")
    assert seg.network_runs == 1
    segment(image[::-1].copy(), **opts)  # a new image runs the network
    assert seg.network_runs == 2 and TinyCPSAM.forward_calls > calls
    segment(image, diameter=40, **{k: v for k, v in opts.items() if k != "diameter"})  # so does a new diameter
    assert seg.network_runs == 3


def test_dtype_is_part_of_the_cache_key(tiny_weights, monkeypatch):
    monkeypatch.setattr("napari_reddino.runtime.cpu_supports_bf16", lambda: True)
    a = cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="fp32")
    b = cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="bf16")
    assert a is not b and b.model.net.dtype == torch.bfloat16 and a.model.net.dtype == torch.float32
    assert cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="bf16") is b
    monkeypatch.setattr("napari_reddino.runtime.cpu_supports_bf16", lambda: False)
    with pytest.raises(InputError, match="no native bf16"):
        cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="bf16")


def test_unknown_name_is_refused_without_download(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(InputError, match="Received Cellpose model 'cyto9'; accepted: .*cpsam"):
        cp_backend.resolve_weights("cyto9")


def test_missing_weights_name_the_file_and_folder(monkeypatch, tmp_path):
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path))
    monkeypatch.setattr("urllib.request.urlopen", lambda *a, **k: pytest.fail("downloaded"))
    with pytest.raises(InputError) as info:
        cp_backend.resolve_weights("cpsam")
    msg = str(info.value)
    assert str(tmp_path / "cpsam") in msg and "CELLPOSE_LOCAL_MODELS_PATH" in msg and "\n" not in msg
    with pytest.raises(InputError, match="offline"):  # asked to download, but offline (conftest)
        cp_backend.resolve_weights("cpsam", download=True)
    with pytest.raises(InputError, match="not a file"):
        cp_backend.resolve_weights(weights=tmp_path / "nope.pth")


@pytest.fixture
def fake_server(monkeypatch, tmp_path):
    """Cellpose's model URL pointed at a local folder (file://): the download code runs, the network is not
    touched."""
    served = tmp_path / "served"
    served.mkdir()
    (served / "cpsam").write_bytes(np.random.default_rng(0).bytes(3 * 2**20 + 5))
    monkeypatch.setattr(cp_backend, "MODEL_URL", served.as_uri() + "/")
    monkeypatch.setenv("CELLPOSE_LOCAL_MODELS_PATH", str(tmp_path / "models"))
    monkeypatch.setenv("NAPARI_REDDINO_OFFLINE", "0")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    return served / "cpsam", tmp_path / "models"


def test_explicit_download_reports_megabytes_and_lands_in_the_model_folder(fake_server):
    source, folder = fake_server
    gen, seen = cp_backend.iter_resolve_weights("cpsam", download=True), []
    try:
        while True:
            seen.append(next(gen))
    except StopIteration as stop:
        path = stop.value
    assert path == folder / "cpsam" and path.read_bytes() == source.read_bytes()
    assert [(p.done, p.total) for p in seen] == [(0, 3), (1, 3), (2, 3), (3, 3), (3, 3)]
    assert "Downloading Cellpose cpsam" in seen[0].message and not list(folder.glob("*.part"))
    assert cp_backend.resolve_weights("cpsam") == path  # found now, nothing fetched


def test_cancelled_or_failed_download_leaves_no_weights(fake_server, monkeypatch):
    _, folder = fake_server
    gen = cp_backend.iter_resolve_weights("cpsam", download=True)
    next(gen), next(gen)
    gen.close()  # what the dock's Cancel does to the worker's generator
    assert list(folder.iterdir()) == []
    monkeypatch.setattr(cp_backend, "MODEL_URL", (folder / "nowhere").as_uri() + "/")
    with pytest.raises(InputError, match="Could not download Cellpose weights") as info:
        cp_backend.resolve_weights("cpsam", download=True)
    assert "\n" not in str(info.value) and list(folder.iterdir()) == []


def test_not_a_cellpose_file_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setattr(cp_models, "CPSAM", TinyCPSAM)
    bad = tmp_path / "bad.pth"
    torch.save({"something": torch.zeros(2)}, bad)
    with pytest.raises(InputError, match="Could not load Cellpose weights"):
        cp_backend.get_segmenter(weights=bad, device="cpu", precision="fp32")


class _Planted:
    """Unpickling this runs ``open(marker, "w")``: a stand-in for a weights file that runs a program."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("environment", [{}, {"TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD": "1"}])
def test_weights_that_would_run_code_are_refused_whatever_the_environment(tiny_weights, tmp_path, monkeypatch,
                                                                          environment):
    """cellpose reads the file once without ``weights_only``: with TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1 a crafted
    file ran its code (the same file given as a RedDino model was refused)."""
    for key, value in environment.items():
        monkeypatch.setenv(key, value)
    marker = tmp_path / "ran"
    state = torch.load(tiny_weights, weights_only=True)
    state["planted"] = _Planted(marker)
    evil = tmp_path / "evil.pth"
    torch.save(state, evil)
    with pytest.raises(InputError, match="holds more than tensors") as info:
        cp_backend.get_segmenter(weights=evil, device="cpu", precision="fp32")
    assert not marker.exists() and "\n" not in str(info.value)
    import os

    assert os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD") == environment.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD")
    assert "TORCH_FORCE_WEIGHTS_ONLY_LOAD" not in os.environ
    cp_backend.get_segmenter(weights=tiny_weights, device="cpu", precision="fp32")  # tensors only: loads


def test_auto_diameter_passes_the_measured_one_to_cellpose(tiny_weights, image, monkeypatch):
    from napari_reddino.segment import segment_cells
    from napari_reddino.segment.threshold import estimate_image_diameter

    seen = []
    real = cp_backend.CellposeSegmenter.flows
    monkeypatch.setattr(cp_backend.CellposeSegmenter, "flows",
                        lambda self, img, diameter=None: seen.append(diameter) or real(self, img, diameter))
    opts = dict(backend="cellpose", weights=tiny_weights, device="cpu", precision="fp32")
    _, table = segment_cells(image, diameter="auto", **opts)
    measured = estimate_image_diameter(image)[1]
    assert seen[-1] == pytest.approx(measured) and table.attrs["diameter"] == pytest.approx(measured)
    _, table = segment_cells(image, **opts)  # default: Cellpose-SAM's own scale
    assert seen[-1] is None and table.attrs["diameter"] == pytest.approx(measured)  # types still get a size
    assert set(table["type"]) <= {"rbc", "wbc", "platelet", "cluster", "artefact"}
