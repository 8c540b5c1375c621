#!/usr/bin/env python3
"""Train the tiny real diffusion transformer used for evaluation, then calibrate it with calibrate.py.

A DiT (the layout and parameter names of facebookresearch/DiT: patch embedder, timestep
embedder, adaLN-Zero blocks, final layer; depth 6, width 96, 4 heads, patch 2: 35 Linear/Conv
layers, 0.7 M parameters) is trained as an unconditional DDPM (1000 steps, linear betas, ε
prediction) on the first 1500 of scikit-learn's 8×8 handwritten digits; the last 297 are held
out for evaluation (tools/eval). Outputs (committed under samples/, provenance in
samples/README.md):

    tiny_dit_digits.safetensors        the trained weights, F16
    tiny_dit_digits.calib.safetensors  calibration statistics over a 20-step DDIM trajectory,
                                       with second moments, Gram matrices and layer sensitivity

    python tools/train_tiny_dit.py --steps 6000 --out-dir samples
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
from torch import nn
from diffusers import DDIMScheduler, DDPMScheduler
from safetensors.torch import save_file
from sklearn.datasets import load_digits

sys.path.insert(0, os.path.dirname(__file__))
from calibrate import calibrate, sensitivity  # noqa: E402

TRAIN = 1500  # digits [0, 1500) train, [1500, 1797) are held out
DEPTH, WIDTH, HEADS, PATCH, SIZE = 6, 96, 4, 2, 8


def timestep_embedding(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / half)
    args = t[:, None].float() * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def sincos_2d(dim, grid):
    """DiT's fixed 2-D sin-cos position embedding, [grid², dim]."""
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)
    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], axis=1).astype(np.float32)


class TimestepEmbedder(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(256, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t):
        return self.mlp(timestep_embedding(t))


class Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        a = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(c // self.heads), dim=-1) @ v
        return self.proj(a.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.fc1 = nn.Linear(dim, 4 * dim)
        self.fc2 = nn.Linear(4 * dim, dim)

    def forward(self, x):
        return self.fc2(nn.functional.gelu(self.fc1(x), approximate="tanh"))


def modulate(x, shift, scale):
    return x * (1 + scale.unsqueeze(1)) + shift.unsqueeze(1)


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.attn = Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.mlp = Mlp(dim)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 6 * dim))

    def forward(self, x, c):
        s1, sc1, g1, s2, sc2, g2 = self.adaLN_modulation(c).chunk(6, dim=1)
        x = x + g1.unsqueeze(1) * self.attn(modulate(self.norm1(x), s1, sc1))
        return x + g2.unsqueeze(1) * self.mlp(modulate(self.norm2(x), s2, sc2))


class FinalLayer(nn.Module):
    def __init__(self, dim, out):
        super().__init__()
        self.norm_final = nn.LayerNorm(dim, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(dim, out)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(dim, 2 * dim))

    def forward(self, x, c):
        shift, scale = self.adaLN_modulation(c).chunk(2, dim=1)
        return self.linear(modulate(self.norm_final(x), shift, scale))


class PatchEmbed(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.proj = nn.Conv2d(1, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class DiT(nn.Module):
    def __init__(self):
        super().__init__()
        self.x_embedder = PatchEmbed(WIDTH)
        self.t_embedder = TimestepEmbedder(WIDTH)
        grid = SIZE // PATCH
        self.register_buffer("pos_embed", torch.from_numpy(sincos_2d(WIDTH, grid))[None], persistent=False)
        self.blocks = nn.ModuleList(Block(WIDTH, HEADS) for _ in range(DEPTH))
        self.final_layer = FinalLayer(WIDTH, PATCH * PATCH)
        # adaLN-Zero: every block and the final layer start as the identity / zero
        for b in self.blocks:
            nn.init.zeros_(b.adaLN_modulation[-1].weight)
            nn.init.zeros_(b.adaLN_modulation[-1].bias)
        for m in (self.final_layer.adaLN_modulation[-1], self.final_layer.linear):
            nn.init.zeros_(m.weight)
            nn.init.zeros_(m.bias)

    def forward(self, x, t):
        t = torch.as_tensor(t).reshape(-1).expand(x.shape[0])
        h = self.x_embedder(x) + self.pos_embed
        c = self.t_embedder(t)
        for b in self.blocks:
            h = b(h, c)
        h = self.final_layer(h, c)  # [N, tokens, p·p]
        g = SIZE // PATCH
        h = h.reshape(-1, g, g, PATCH, PATCH).permute(0, 1, 3, 2, 4)
        return h.reshape(-1, 1, SIZE, SIZE)


def train(model, sched, data, args, weights):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.0)
    lr = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=args.steps)
    t0 = time.time()
    for step in range(args.steps):
        x0 = data[torch.randint(0, len(data), (args.batch,))]
        noise = torch.randn_like(x0)
        t = torch.randint(0, 1000, (args.batch,))
        loss = nn.functional.mse_loss(model(sched.add_noise(x0, noise, t), t), noise)
        opt.zero_grad()
        loss.backward()
        opt.step()
        lr.step()
        if step % 500 == 0 or step == args.steps - 1:
            print(f"step {step} loss {loss.item():.4f} ({time.time() - t0:.0f}s)", flush=True)
    model.eval()
    state = {k: v.detach().half().contiguous() for k, v in model.state_dict().items()}
    meta = {"modality": "image", "source": "tools/train_tiny_dit.py: DiT (depth 6, width 96) DDPM on sklearn digits 8x8",
            "train_steps": str(args.steps), "final_loss": f"{loss.item():.4f}", "train_digits": f"0:{TRAIN}",
            "heldout_digits": f"{TRAIN}:1797"}
    save_file(state, weights, metadata=meta)
    return state


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=6000)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--out-dir", default="samples")
    ap.add_argument("--calibrate-only", action="store_true", help="load <out-dir>/tiny_dit_digits.safetensors, only calibrate")
    args = ap.parse_args()
    torch.manual_seed(0)
    digits = load_digits().images.astype(np.float32) / 16.0 * 2.0 - 1.0  # [-1, 1]
    data = torch.from_numpy(digits[:TRAIN]).unsqueeze(1)
    model = DiT()
    sched = DDPMScheduler(num_train_timesteps=1000)
    weights = os.path.join(args.out_dir, "tiny_dit_digits.safetensors")
    if args.calibrate_only:
        from safetensors.torch import load_file

        state = load_file(weights)
    else:
        state = train(model, sched, data, args, weights)
    # Calibrate the model as stored (F16 weights).
    model.load_state_dict({k: v.float() for k, v in state.items()})
    with torch.no_grad():
        stats, timesteps = calibrate(model, model, (1, SIZE, SIZE), DDIMScheduler(num_train_timesteps=1000),
                                     steps=20, samples=64, batch=64, gram="lowrank:32")
        # Sensitivity on training digits (the held-out ones are for evaluation only).
        abar = sched.alphas_cumprod
        sens = sensitivity(model, model, data[:256], [10, 100, 250, 500, 750, 990], abar)
    calib = os.path.join(args.out_dir, "tiny_dit_digits.calib.safetensors")
    stats.save(calib, timesteps, source="tiny_dit_digits.safetensors, DDIM 20 steps, 64 trajectories, seed 0",
               extra=sens)
    print(f"wrote {weights} and {calib}: {len(stats.layers)} layers x {len(timesteps)} timesteps")


if __name__ == "__main__":
    main()
