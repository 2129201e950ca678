"""Fit the learned segmenter's U-Net on synthetic fields (:mod:`.synth`) and write safetensors weights.

Loss: binary cross-entropy on the foreground, plus the mean squared error of the normalised distance inside
the true foreground (weighted 5x). Adam, a cosine learning rate, fixed seed; CPU-runnable.
"""

from __future__ import annotations

import time

import numpy as np


def train_segmenter(bank, out, steps=2000, batch=8, size=96, lr=3e-3, seed=0, threads=1, log_every=100,
                    channels=None):
    """Train on fields composed from ``bank``; writes ``out`` (safetensors) and returns the last loss."""
    from safetensors.torch import save_file

    from napari_reddino._torch_runtime import import_torch
    from napari_reddino.segment.learned import CHANNELS, build_unet

    from .synth import compose

    torch = import_torch()
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    net = build_unet(channels or CHANNELS)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    bce = torch.nn.BCEWithLogitsLoss()
    t0, loss = time.time(), None
    for step in range(1, steps + 1):
        fields = [compose(bank, rng, size) for _ in range(batch)]
        x = torch.from_numpy(np.stack([f[0] for f in fields]))
        fg = torch.from_numpy(np.stack([f[1] for f in fields]))
        dist = torch.from_numpy(np.stack([f[2] for f in fields]))
        y = net(x)
        err = (torch.sigmoid(y[:, 1]) - dist) ** 2
        loss = bce(y[:, 0], fg) + 5 * (err * fg).sum() / fg.sum().clamp(min=1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps):
            print(f"step {step}/{steps} loss {loss.item():.4f} ({time.time() - t0:.0f} s)", flush=True)
    net.eval()
    state = {k: v.detach().contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(out), metadata={"steps": str(steps), "seed": str(seed)})
    return float(loss.item())
