"""A numpy forward pass of the bundled DDPM (diffusers `UNet2DModel`, the configuration of
tools/train_tiny_ddpm.py), written from the diffusers model definition so that evaluation needs
neither torch nor diffusers.

Every Conv/Linear goes through `Model.linear` / `Model.conv`, which call `hook(name, x, conv)` with
the layer's input first (`conv` = (kernel, stride, padding) for a conv, None for a Linear) and use
what it returns: the evaluation records calibration statistics and fake-quantizes activations there. `weights` maps tensor names to float32 arrays (the source model, or a dequantized
file).
"""
import math

import numpy as np

GROUPS = 8
EPS = 1e-5
HEAD_DIM = 8


def silu(x):
    return x / (1.0 + np.exp(-x))


def group_norm(x, weight, bias, groups=GROUPS, eps=EPS):
    b, c = x.shape[:2]
    g = x.reshape(b, groups, -1).astype(np.float64)
    mean = g.mean(axis=2, keepdims=True)
    var = g.var(axis=2, keepdims=True)
    g = ((g - mean) / np.sqrt(var + eps)).reshape(x.shape).astype(np.float32)
    shape = (1, c) + (1,) * (x.ndim - 2)
    return g * weight.reshape(shape) + bias.reshape(shape)


def im2col(x, k, stride, pad):
    """[B, C, H, W] → [B·Ho·Wo, C·k·k] patches in (c, kh, kw) order (the weight row order)."""
    b, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((b, c, k, k, ho, wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = xp[:, :, i : i + stride * ho : stride, j : j + stride * wo : stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(b * ho * wo, c * k * k), (b, ho, wo)


def timestep_embedding(t, dim):
    """diffusers `get_timestep_embedding` with flip_sin_to_cos=True, downscale_freq_shift=0."""
    half = dim // 2
    freqs = np.exp(-math.log(10000) * np.arange(half, dtype=np.float32) / half)
    args = np.asarray(t, dtype=np.float32)[:, None] * freqs[None, :]
    return np.concatenate([np.cos(args), np.sin(args)], axis=1).astype(np.float32)


class Model:
    """The bundled DDPM UNet. `hook(layer, x, conv)` sees each Conv/Linear layer's input (the layer
    is the weight's module path, e.g. `down_blocks.0.resnets.0.conv1`) and returns the input to use."""

    def __init__(self, weights, hook=None):
        self.w = weights
        self.hook = hook

    def _in(self, name, x, conv=None):
        return self.hook(name, x, conv) if self.hook else x

    def linear(self, name, x):
        x = self._in(name, x)
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def conv(self, name, x, stride=1):
        wt = self.w[name + ".weight"]
        o, c, k, _ = wt.shape
        x = self._in(name, x, (k, stride, k // 2))
        cols, (b, ho, wo) = im2col(x, k, stride, k // 2)
        y = cols @ wt.reshape(o, -1).T + self.w[name + ".bias"]
        return y.reshape(b, ho, wo, o).transpose(0, 3, 1, 2)

    def norm(self, name, x):
        return group_norm(x, self.w[name + ".weight"], self.w[name + ".bias"])

    def resnet(self, p, x, temb):
        h = self.conv(p + ".conv1", silu(self.norm(p + ".norm1", x)))
        h = h + self.linear(p + ".time_emb_proj", silu(temb))[:, :, None, None]
        h = self.conv(p + ".conv2", silu(self.norm(p + ".norm2", h)))
        if p + ".conv_shortcut.weight" in self.w:
            x = self.conv(p + ".conv_shortcut", x)
        return x + h

    def attention(self, p, x):
        b, c, hh, ww = x.shape
        h = self.norm(p + ".group_norm", x).reshape(b, c, hh * ww).transpose(0, 2, 1)
        q, k, v = (self.linear(f"{p}.to_{n}", h) for n in "qkv")
        heads = c // HEAD_DIM
        split = lambda t: t.reshape(b, hh * ww, heads, HEAD_DIM).transpose(0, 2, 1, 3)  # noqa: E731
        q, k, v = split(q), split(k), split(v)
        s = (q @ k.transpose(0, 1, 3, 2)).astype(np.float64) / math.sqrt(HEAD_DIM)
        s = np.exp(s - s.max(axis=-1, keepdims=True))
        a = (s / s.sum(axis=-1, keepdims=True)).astype(np.float32) @ v
        a = a.transpose(0, 2, 1, 3).reshape(b, hh * ww, c)
        out = self.linear(p + ".to_out.0", a).transpose(0, 2, 1).reshape(b, c, hh, ww)
        return out + x

    def __call__(self, x, t):
        """Noise prediction ε̂(x_t, t) for images `x` [B, 1, 8, 8] at integer timesteps `t` [B]."""
        temb = timestep_embedding(t, 32)
        temb = self.linear("time_embedding.linear_2", silu(self.linear("time_embedding.linear_1", temb)))
        h = self.conv("conv_in", x)
        skips = [h]
        h = self.resnet("down_blocks.0.resnets.0", h, temb)
        skips.append(h)
        h = self.conv("down_blocks.0.downsamplers.0.conv", h, stride=2)
        skips.append(h)
        h = self.resnet("down_blocks.1.resnets.0", h, temb)
        h = self.attention("down_blocks.1.attentions.0", h)
        skips.append(h)
        h = self.resnet("mid_block.resnets.0", h, temb)
        h = self.attention("mid_block.attentions.0", h)
        h = self.resnet("mid_block.resnets.1", h, temb)
        for i in range(2):
            h = np.concatenate([h, skips.pop()], axis=1)
            h = self.resnet(f"up_blocks.0.resnets.{i}", h, temb)
            h = self.attention(f"up_blocks.0.attentions.{i}", h)
        h = h.repeat(2, axis=2).repeat(2, axis=3)
        h = self.conv("up_blocks.0.upsamplers.0.conv", h)
        for i in range(2):
            h = np.concatenate([h, skips.pop()], axis=1)
            h = self.resnet(f"up_blocks.1.resnets.{i}", h, temb)
        h = silu(self.norm("conv_norm_out", h))
        return self.conv("conv_out", h)


def linear_betas(steps=1000, start=1e-4, end=0.02):
    """DDPMScheduler's default schedule: ᾱ_t = Π (1 − β)."""
    betas = np.linspace(start, end, steps, dtype=np.float64)
    return np.cumprod(1.0 - betas)
