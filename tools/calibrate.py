#!/usr/bin/env python3
"""Reference calibration script for arrowquant (docs/CALIBRATION.md).

Runs a diffusion model's denoising loop and records, for every nn.Linear / nn.Conv1d / nn.Conv2d,
statistics of the layer's *input activations* at each sampling timestep:

    <layer>.act_min         F32 [T]        smallest input value seen at timestep index t
    <layer>.act_max         F32 [T]        largest input value seen at timestep index t
    <layer>.channel_absmax  F32 [T, C_in]  max |x_j| per input channel j at timestep index t
    <layer>.sq_mean         F32 [T, C_in]  E[x_j²] per input channel j at timestep index t
    <layer>.samples         I64 [T]        batch elements seen at timestep index t (0 = no data)

and, over all timesteps, the second-moment matrix G = E[x xᵀ] of the layer's unfolded input (the
Hessian of the layer's output error; for a conv the columns are C_in·kh·kw in the weight's order),
in the form `--gram` asks for:

    full         <layer>.gram          F32 [n, n]
    blocks:B     <layer>.gram_blocks   F32 [⌈n/B⌉, B, B]   the diagonal blocks (memory n·B while recording)
    lowrank:K    <layer>.gram_eigvecs  F32 [n, K], .gram_eigvals F32 [K], .gram_diag F32 [n]:
                 G ≈ V diag(λ) Vᵀ + diag(d), from a one-pass Nyström sketch (memory n·(K+8))
    auto         full up to n = 1024 columns, else lowrank:32 (the default)
                 <layer>.gram_rows     I64 [1]             rows averaged

With `--sensitivity`, each layer is also quantized alone (4 groups of 64 per row, min/max, f16
params, at 2, 4 and 8 bits) and the relative growth of the model's ε-MSE is stored as
<layer>.sensitivity F32 [3].

`<layer>` is the module path (`down_blocks.0.resnets.0.conv1`), so `<layer>.weight` is the weight
the activations feed. `__metadata__` holds format = "arrowquant-calibration" and the timestep
values as JSON. arrowquant reads this file in the browser, in Node and natively.

Use it as a library (any model, any sampler):

    stats = ActivationStats(model, gram="auto")   # registers forward pre-hooks
    for i, t in enumerate(timesteps):
        with stats.at(i):                          # everything run here is filed under index i
            model(x, t)
    stats.save("model.calib.safetensors", timesteps)

or from the command line for a diffusers UNet2DModel saved with `save_pretrained`:

    python tools/calibrate.py MODEL_DIR --steps 20 --samples 64 --out model.calib.safetensors

Needs torch, numpy, safetensors (and diffusers for the command line).
"""
import argparse
import contextlib
import json

import numpy as np
import torch
from safetensors.numpy import save_file

HOOKED = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d)
FULL_UP_TO = 1024
AUTO_RANK = 32
SKETCH_OVERSAMPLE = 8


def unfolded(module, x):
    """The layer input as rows of the weight's columns: [rows, n]."""
    if isinstance(module, torch.nn.Linear):
        return x.reshape(-1, x.shape[-1])
    if isinstance(module, torch.nn.Conv1d):
        x = x.unsqueeze(-1)
        k, s, p, d = (module.kernel_size[0], 1), (module.stride[0], 1), (module.padding[0], 0), (module.dilation[0], 1)
    else:
        k, s, p, d = module.kernel_size, module.stride, module.padding, module.dilation
    if isinstance(p, str):
        return None  # padding="same"/"valid": not unfolded here
    cols = torch.nn.functional.unfold(x, k, dilation=d, padding=p, stride=s)  # [N, C·kh·kw, L]
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


class GramSketch:
    """E[x xᵀ] accumulated in float64, in the requested form."""

    def __init__(self, n, form, seed):
        self.n, self.rows = n, 0
        kind, _, arg = form.partition(":")
        if kind == "auto":
            kind, arg = ("full", "") if n <= FULL_UP_TO else ("lowrank", str(AUTO_RANK))
        self.kind = kind
        if kind == "full":
            self.acc = torch.zeros(n, n, dtype=torch.float64)
        elif kind == "blocks":
            self.size = int(arg)
            nb = -(-n // self.size)
            self.acc = torch.zeros(nb, self.size, self.size, dtype=torch.float64)
        elif kind == "lowrank":
            self.k = int(arg)
            m = min(n, self.k + SKETCH_OVERSAMPLE)
            gen = torch.Generator().manual_seed(seed)
            self.omega = torch.randn(n, m, generator=gen, dtype=torch.float64)
            self.acc = torch.zeros(n, m, dtype=torch.float64)  # G Ω
            self.diag = torch.zeros(n, dtype=torch.float64)
        else:
            raise ValueError(f"--gram {form}: expected full, blocks:B, lowrank:K or auto")

    def add(self, rows):
        x = rows.to(torch.float64)
        self.rows += x.shape[0]
        if self.kind == "full":
            self.acc += x.T @ x
        elif self.kind == "blocks":
            b, nb = self.size, self.acc.shape[0]
            pad = torch.zeros(x.shape[0], nb * b - self.n, dtype=x.dtype)
            xb = torch.cat([x, pad], dim=1).reshape(x.shape[0], nb, b)
            self.acc += torch.einsum("rki,rkj->kij", xb, xb)
        else:
            self.acc += x.T @ (x @ self.omega)
            self.diag += (x * x).sum(0)

    def tensors(self, name):
        g = self.acc / max(self.rows, 1)
        out = {f"{name}.gram_rows": np.array([self.rows], dtype=np.int64)}
        if self.kind == "full":
            out[f"{name}.gram"] = g.float().numpy()
        elif self.kind == "blocks":
            out[f"{name}.gram_blocks"] = g.float().numpy()
        else:
            # Nyström: G ≈ Y (Ωᵀ Y)⁺ Yᵀ with Y = G Ω, then its top-k eigenpairs; the diagonal of
            # what they leave out goes to gram_diag.
            y = g
            core = self.omega.T @ y
            core = (core + core.T) / 2
            w, q = torch.linalg.eigh(core)
            keep = w > w.max() * 1e-10
            c = y @ q[:, keep] @ torch.diag(w[keep].rsqrt())  # G ≈ C Cᵀ
            u, s, _ = torch.linalg.svd(c, full_matrices=False)
            k = min(self.k, u.shape[1])
            vecs, vals = u[:, :k], s[:k] ** 2
            diag = (self.diag / max(self.rows, 1) - (vecs ** 2) @ vals).clamp(min=0)
            out[f"{name}.gram_eigvecs"] = vecs.float().numpy()
            out[f"{name}.gram_eigvals"] = vals.float().numpy()
            out[f"{name}.gram_diag"] = diag.float().numpy()
        return out


class ActivationStats:
    def __init__(self, model, gram="auto", seed=0):
        self.model = model
        self.current = None
        self.layers = {}  # name -> {t: [min, max, absmax, sum x², count, samples]}
        self.grams = {}
        self.gram_form = gram
        self.seed = seed
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
                flat = x.reshape(-1, x.shape[-1])
                batch = x.shape[0] if x.dim() > 1 else 1
            else:
                # [N, C_in, *spatial]
                flat = x.transpose(0, 1).reshape(x.shape[1], -1).T
                batch = x.shape[0]
            per_channel = flat.abs().amax(dim=0)
            sq = (flat.double() ** 2).sum(0)
            entry = self.layers.setdefault(name, {}).get(self.current)
            lo, hi = x.min().item(), x.max().item()
            if entry is None:
                self.layers[name][self.current] = [lo, hi, per_channel.cpu(), sq.cpu(), flat.shape[0], batch]
            else:
                entry[0] = min(entry[0], lo)
                entry[1] = max(entry[1], hi)
                entry[2] = torch.maximum(entry[2], per_channel.cpu())
                entry[3] += sq.cpu()
                entry[4] += flat.shape[0]
                entry[5] += batch
            if self.gram_form and getattr(module, "groups", 1) == 1:
                rows = unfolded(module, x)
                if rows is not None:
                    if name not in self.grams:
                        self.grams[name] = GramSketch(rows.shape[1], self.gram_form, self.seed)
                    self.grams[name].add(rows.cpu())

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
            sq_mean = np.zeros((num_timesteps, channels), dtype=np.float32)
            samples = np.zeros(num_timesteps, dtype=np.int64)
            for t, (a, b, c, sq, rows, n) in per_t.items():
                lo[t], hi[t], absmax[t], samples[t] = a, b, c.numpy(), n
                sq_mean[t] = (sq / rows).numpy()
            out[f"{name}.act_min"] = lo
            out[f"{name}.act_max"] = hi
            out[f"{name}.channel_absmax"] = absmax
            out[f"{name}.sq_mean"] = sq_mean
            out[f"{name}.samples"] = samples
            if name in self.grams:
                out.update(self.grams[name].tensors(name))
        return out

    def save(self, path, timesteps, source="", extra=None):
        meta = {
            "format": "arrowquant-calibration",
            "version": "2",
            "timesteps": json.dumps([float(t) for t in timesteps]),
            "source": source,
        }
        tensors = self.tensors(len(timesteps))
        tensors.update(extra or {})
        save_file(tensors, path, metadata=meta)


def fake_quantize(w, bits, group=64):
    """Min/max group-wise quantization with f16 params, as arrowquant stores it (rows of the
    flattened weight, groups along the row)."""
    shape = w.shape
    rows = w.reshape(shape[0], -1).double()
    out = torch.empty_like(rows)
    qmax = 2**bits - 1
    for g0 in range(0, rows.shape[1], group):
        x = rows[:, g0 : g0 + group]
        lo, hi = x.min(1, keepdim=True).values, x.max(1, keepdim=True).values
        scale = ((hi - lo) / qmax).half().double()
        lo = lo.half().double()
        q = torch.where(scale > 0, torch.round((x - lo) / torch.where(scale > 0, scale, 1)), 0).clamp(0, qmax)
        out[:, g0 : g0 + group] = q * scale + lo
    return out.reshape(shape).to(w.dtype)


@torch.no_grad()
def sensitivity(model, predict, x0, timesteps, alphas_cumprod, seed=0):
    """{layer: [ε-MSE growth at 2, 4, 8 bits]} when each hooked layer alone is quantized."""
    gen = torch.Generator().manual_seed(seed)
    batches = []
    for t in timesteps:
        eps = torch.randn(x0.shape, generator=gen)
        a = alphas_cumprod[t]
        batches.append((a.sqrt() * x0 + (1 - a).sqrt() * eps, torch.full((x0.shape[0],), t), eps))

    def mse():
        return sum(((predict(xt, tt) - eps) ** 2).mean().item() for xt, tt, eps in batches) / len(batches)

    base = mse()
    out = {}
    for name, module in model.named_modules():
        if not isinstance(module, HOOKED) or module.weight.dim() < 2:
            continue
        original = module.weight.data.clone()
        row = []
        for bits in (2, 4, 8):
            module.weight.data = fake_quantize(original, bits)
            row.append(max(mse() / base - 1.0, 0.0))
        module.weight.data = original
        out[f"{name}.sensitivity"] = np.array(row, dtype=np.float32)
    return out


@torch.no_grad()
def calibrate(predict, model, shape, scheduler, steps, samples, batch, seed=0, gram="auto"):
    """Run the sampler's own trajectory from noise; record stats at each of its `steps` timesteps.
    `predict(x, t)` is the model's noise prediction, `model` the module whose layers are hooked."""
    stats = ActivationStats(model, gram=gram, seed=seed)
    scheduler.set_timesteps(steps)
    timesteps = [int(t) for t in scheduler.timesteps]
    gen = torch.Generator().manual_seed(seed)
    done = 0
    while done < samples:
        n = min(batch, samples - done)
        x = torch.randn((n, *shape), generator=gen) * scheduler.init_noise_sigma
        scheduler.set_timesteps(steps)
        for i, t in enumerate(scheduler.timesteps):
            with stats.at(i):
                eps = predict(scheduler.scale_model_input(x, t), t)
            x = scheduler.step(eps, t, x).prev_sample
        done += n
    stats.remove()
    return stats, timesteps


def calibrate_unet(unet, scheduler, steps, samples, batch, seed=0, gram="auto"):
    cfg = unet.config
    shape = (cfg.in_channels, cfg.sample_size, cfg.sample_size)
    return calibrate(lambda x, t: unet(x, t).sample, unet, shape, scheduler, steps, samples, batch, seed, gram)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model", help="diffusers UNet2DModel folder (save_pretrained output)")
    ap.add_argument("--steps", type=int, default=20, help="sampling timesteps T (default 20)")
    ap.add_argument("--samples", type=int, default=64, help="trajectories per timestep (default 64)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--gram", default="auto", help="full | blocks:B | lowrank:K | auto | none (default auto)")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    from diffusers import DDIMScheduler, UNet2DModel

    unet = UNet2DModel.from_pretrained(args.model).eval()
    scheduler = DDIMScheduler()  # the diffusers default: 1000 training steps, linear betas
    gram = None if args.gram == "none" else args.gram
    stats, timesteps = calibrate_unet(unet, scheduler, args.steps, args.samples, args.batch, gram=gram)
    stats.save(args.out, timesteps, source=args.model)
    print(f"{args.out}: {len(stats.layers)} layers x {len(timesteps)} timesteps")


if __name__ == "__main__":
    main()
