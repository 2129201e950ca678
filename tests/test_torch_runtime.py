"""Where triton is installed but no CUDA GPU is usable, the plugin's torch paths must never import it:
inside napari triton's import can segfault and take napari down (issue 17)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

TINY_STEP = """
import numpy as np, torch, torchvision.ops
from napari_reddino import models
from napari_reddino.embed import embed_crops
vit = models.create_model("vit_small_patch14_dinov2", img_size=28, embed_dim=16, depth=1, num_heads=1)
emb = embed_crops(np.zeros((2, 28, 28, 3), np.uint8), vit.eval(), batch_size=2, precision="fp32")
keep = torchvision.ops.nms(torch.tensor([[0., 0, 4, 4], [0, 0, 4, 4]]), torch.tensor([1., .5]), .5)
assert emb.shape == (2, 16) and keep.tolist() == [0]
"""

ENTRY = {  # how each of the plugin's entry points reaches torch first
    "library": "from napari_reddino import runtime\nruntime.resolve_device('auto')\n" + TINY_STEP,
    "cli": ("import argparse\nfrom napari_reddino.cli import dispatch\n"
            "p = argparse.ArgumentParser(prog='t'); s = p.add_subparsers(dest='command')\n"
            f"s.add_parser('embed').set_defaults(func=lambda a: exec({TINY_STEP!r}))\n"
            "assert dispatch(p, ['embed']) == 0\n"),
    "segment": ("from napari_reddino.sample_data import synthetic_smear\nfrom napari_reddino.segment import segment_cells\n"
                "labels, table = segment_cells(synthetic_smear(0, shape=(120, 160))[0])\n"  # the default: learned
                "assert (table['type'] == 'rbc').sum() > 0\n" + TINY_STEP),
    "widget": ("from types import SimpleNamespace\nfrom napari_reddino._widgets._common import StepWidget\n"
               f"def work():\n    exec({TINY_STEP!r})\n    return 'done'\n    yield\n"
               "gen = StepWidget._guarded_work(SimpleNamespace(work=work))\n"
               "try:\n    next(gen)\nexcept StopIteration as stop:\n    assert stop.value == 'done'\n"),
}


@pytest.mark.parametrize("entry", sorted(ENTRY))
def test_a_crashing_triton_is_never_imported(entry, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("with a CUDA GPU triton is left to torch")
    fake = tmp_path / "triton"
    fake.mkdir()
    (fake / "__init__.py").write_text("import os, sys\nsys.stderr.write('fake triton imported\\n')\nos._exit(139)\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    code = textwrap.dedent(ENTRY[entry]) + "\nprint('step ran')\n"
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert "fake triton imported" not in proc.stderr
    assert proc.returncode == 0 and "step ran" in proc.stdout, proc.stderr[-2000:]
