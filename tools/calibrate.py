#!/usr/bin/env python3
"""Reference calibration script for arrowquant (docs/CALIBRATION.md).

Runs a diffusion model's denoising loop and records, for every nn.Linear / nn.Conv1d / nn.Conv2d,
statistics of the layer's *input activations* at each sampling timestep:

    <layer>.act_min         F32 [T]        smallest input value seen at timestep index t
    <layer>.act_max         F32 [T]        largest input value seen at timestep index t
    <layer>.channel_absmax  F32 [T, C_in]  max |x_j| per input channel j at timestep index t
    <layer>.samples         I64 [T]        batch elements seen at timestep index t (0 = no data)

`<layer>` is the module path (`down_blocks.0.resnets.0.conv1`), so `<layer>.weight` is the weight
the activations feed. `__metadata__` holds format = "arrowquant-calibration" and the timestep
values as JSON. arrowquant reads this file in the browser, in Node and natively.

Use it as a library (any model, any sampler):

    stats = ActivationStats(model)           # registers forward pre-hooks
    for i, t in enumerate(timesteps):
        with stats.at(i):                     # everything run here is filed under index i
            model(x, t)
    stats.save("model.calib.safetensors", timesteps)

or from the command line for a diffusers UNet2DModel / UNet2DConditionModel / DiT saved with
`save_pretrained`:

    python tools/calibrate.py MODEL_DIR --steps 20 --samples 64 --out model.calib.safetensors

Needs torch, numpy, safetensors (and diffusers for the command line).
"""
import argparse
import contextlib
import json

import numpy as np
import torch
from safetensors.numpy import save_file

HOOKED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d)


class ActivationStats:
    def __init__(self, model, num_timesteps=None):
        self.model = model
        self.current = None
        self.layers = {}  # name -> {t: [min, max, absmax tensor, samples]}
        self.handles = []
        for name, module in model.named_modules():
            if isinstance(module, HOOKED):
                self.handles.append(module.register_forward_pre_hook(self._hook(name, module)))

    def _hook(self, name, module):
        def hook(_module, inputs):
            if self.current is None or not inputs:
                return
            x = inputs[0].detach().float()
            if isinstance(module, torch.nn.Linear):
                # [..., C_in]: channels are the last axis, every other axis is a sample position
                per_channel = x.abs().reshape(-1, x.shape[-1]).amax(dim=0)
                batch = x.shape[0] if x.dim() > 1 else 1
            else:
                # [N, C_in, *spatial]
                per_channel = x.abs().transpose(0, 1).reshape(x.shape[1], -1).amax(dim=1)
                batch = x.shape[0]
            entry = self.layers.setdefault(name, {}).get(self.current)
            lo, hi = x.min().item(), x.max().item()
            if entry is None:
                self.layers[name][self.current] = [lo, hi, per_channel.cpu(), batch]
            else:
                entry[0] = min(entry[0], lo)
                entry[1] = max(entry[1], hi)
                entry[2] = torch.maximum(entry[2], per_channel.cpu())
                entry[3] += batch

        return hook

    @contextlib.contextmanager
    def at(self, index):
        self.current = index
        try:
            yield
        finally:
            self.current = None

    def remove(self):
        for h in self.handles:
            h.remove()

    def tensors(self, num_timesteps):
        out = {}
        for name, per_t in self.layers.items():
            channels = next(iter(per_t.values()))[2].numel()
            lo = np.full(num_timesteps, np.nan, dtype=np.float32)
            hi = np.full(num_timesteps, np.nan, dtype=np.float32)
            absmax = np.zeros((num_timesteps, channels), dtype=np.float32)
            samples = np.zeros(num_timesteps, dtype=np.int64)
            for t, (a, b, c, n) in per_t.items():
                lo[t], hi[t], absmax[t], samples[t] = a, b, c.numpy(), n
            out[f"{name}.act_min"] = lo
            out[f"{name}.act_max"] = hi
            out[f"{name}.channel_absmax"] = absmax
            out[f"{name}.samples"] = samples
        return out

    def save(self, path, timesteps, source=""):
        meta = {
            "format": "arrowquant-calibration",
            "version": "1",
            "timesteps": json.dumps([float(t) for t in timesteps]),
            "source": source,
        }
        save_file(self.tensors(len(timesteps)), path, metadata=meta)


@torch.no_grad()
def calibrate_unet(unet, scheduler, steps, samples, batch, seed=0, encoder_hidden_states=None):
    """Run the sampler's own trajectory from noise; record stats at each of its `steps` timesteps."""
    stats = ActivationStats(unet)
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    gen = torch.Generator().manual_seed(seed)
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        x = torch.randn((n, *shape), generator=gen) * scheduler.init_noise_sigma
        scheduler.set_timesteps(steps)
        for i, t in enumerate(scheduler.timesteps):
            with stats.at(i):
                kwargs = {} if encoder_hidden_states is None else {"encoder_hidden_states": encoder_hidden_states[:n]}
                eps = unet(scheduler.scale_model_input(x, t), t, **kwargs).sample
            x = scheduler.step(eps, t, x).prev_sample
        done += n
    stats.remove()
    return stats, timesteps


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="diffusers model folder (save_pretrained output)")
    ap.add_argument("--steps", type=int, default=20, help="sampling timesteps T (default 20)")
    ap.add_argument("--samples", type=int, default=64, help="trajectories per timestep (default 64)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(args.model).eval()
    scheduler = DDIMScheduler()  # the diffusers default: 1000 training steps, linear betas
    stats, timesteps = calibrate_unet(unet, scheduler, args.steps, args.samples, args.batch)
    stats.save(args.out, timesteps, source=args.model)
    print(f"{args.out}: {len(stats.layers)} layers x {len(timesteps)} timesteps")


if __name__ == "__main__":
    main()
