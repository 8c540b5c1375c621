#!/usr/bin/env python3
"""Train the tiny real diffusion model used as test data, then calibrate it with calibrate.py.

A diffusers UNet2DModel (two resolutions, self-attention at 4x4, 0.7 M parameters) is trained as
a DDPM on the first 1500 of scikit-learn's 8x8 handwritten digits (1797 images, bundled with
scikit-learn), on CPU; the last 297 are held out for evaluation (tools/eval).
Outputs (committed under samples/, provenance in samples/README.md):

    tiny_ddpm_digits.safetensors        the trained weights, F16 (diffusers names)
    tiny_ddpm_digits.calib.safetensors  calibration statistics over a 20-step DDIM trajectory, with
                                        second moments, Gram matrices and layer sensitivity

    python tools/train_tiny_ddpm.py --steps 2000 --out-dir samples
"""
import argparse
import os
import sys
import time

import numpy as np
import torch
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from safetensors.torch import save_file
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(__file__))
from calibrate import calibrate_unet, sensitivity  # noqa: E402

TRAIN = 1500  # digits [0, 1500) train, [1500, 1797) are held out


def build():
    return UNet2DModel(
        sample_size=8,
        in_channels=1,
        out_channels=1,
        block_out_channels=(32, 64),
        layers_per_block=1,
        down_block_types=("DownBlock2D", "AttnDownBlock2D"),
        up_block_types=("AttnUpBlock2D", "UpBlock2D"),
        norm_num_groups=8,
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out-dir", default="samples")
    args = ap.parse_args()
    torch.manual_seed(0)
    digits = load_digits().images.astype(np.float32) / 16.0 * 2.0 - 1.0  # [-1, 1]
    data = torch.from_numpy(digits[:TRAIN]).unsqueeze(1)
    unet = build()
    sched = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=2e-3, weight_decay=0.0)
    lr = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps)
    t0 = time.time()
    for step in range(args.steps):
        x0 = data[torch.randint(0, len(data), (args.batch,))]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (args.batch,))
        loss = torch.nn.functional.mse_loss(unet(sched.add_noise(x0, noise, t), t).sample, noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        if step % 250 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    unet.eval()
    # Store F16 weights (as most published checkpoints) and calibrate the model as stored.
    state = {k: v.detach().half().contiguous() for k, v in unet.state_dict().items()}
    meta = {"modality": "image", "source": "tools/train_tiny_ddpm.py: DDPM on sklearn digits 8x8",
            "train_steps": str(args.steps), "final_loss": f"{loss.item():.4f}", "train_digits": f"0:{TRAIN}",
            "heldout_digits": f"{TRAIN}:{len(digits)}"}
    weights = os.path.join(args.out_dir, "tiny_ddpm_digits.safetensors")
    save_file(state, weights, metadata=meta)
    unet.load_state_dict({k: v.float() for k, v in state.items()})
    stats, timesteps = calibrate_unet(unet, DDIMScheduler(num_train_timesteps=1000), steps=20, samples=64, batch=64,
                                      gram="lowrank:32")
    with torch.no_grad():
        sens = sensitivity(unet, lambda x, t: unet(x, t).sample, data[:256], [10, 100, 250, 500, 750, 990],
                           sched.alphas_cumprod)
    calib = os.path.join(args.out_dir, "tiny_ddpm_digits.calib.safetensors")
    stats.save(calib, timesteps, source="tiny_ddpm_digits.safetensors, DDIM 20 steps, 64 trajectories, seed 0",
               extra=sens)
    print(f"wrote {weights} and {calib}: {len(stats.layers)} layers x {len(timesteps)} timesteps")


if __name__ == "__main__":
    main()
