"""A numpy forward pass of the bundled DiT (tools/train_tiny_dit.py: the facebookresearch/DiT
layout, depth 6, width 96, 4 heads, patch 2, unconditional ε prediction), so that evaluation
needs neither torch nor diffusers. Linear/Conv inputs go through `hook(layer, x, conv)` as in unet.py.
"""
import math

import numpy as np

from unet import im2col, silu

DEPTH, WIDTH, HEADS, PATCH, SIZE = 6, 96, 4, 2, 8


def layer_norm(x, eps=1e-6):
    x64 = x.astype(np.float64)
    mean = x64.mean(axis=-1, keepdims=True)
    var = x64.var(axis=-1, keepdims=True)
    return ((x64 - mean) / np.sqrt(var + eps)).astype(np.float32)


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.float32(math.sqrt(2.0 / math.pi)) * (x + np.float32(0.044715) * x**3)))


def timestep_embedding(t, dim=256, max_period=10000):
    half = dim // 2
    freqs = np.exp(-math.log(max_period) * np.arange(half, dtype=np.float32) / half).astype(np.float32)
    args = np.asarray(t, dtype=np.float32)[:, None] * freqs[None]
    return np.concatenate([np.cos(args), np.sin(args)], axis=1).astype(np.float32)


def sincos_2d(dim, grid):
    def one(d, pos):
        omega = 1.0 / 10000 ** (np.arange(d // 2, dtype=np.float64) / (d / 2.0))
        out = np.einsum("m,d->md", pos.reshape(-1), omega)
        return np.concatenate([np.sin(out), np.cos(out)], axis=1)

    gh, gw = np.meshgrid(np.arange(grid, dtype=np.float32), np.arange(grid, dtype=np.float32))
    return np.concatenate([one(dim // 2, gw), one(dim // 2, gh)], axis=1).astype(np.float32)


def modulate(x, shift, scale):
    return x * (1 + scale[:, None, :]) + shift[:, None, :]


class Model:
    def __init__(self, weights, hook=None):
        self.w = weights
        self.hook = hook
        self.pos = sincos_2d(WIDTH, SIZE // PATCH)[None]

    def linear(self, name, x):
        if self.hook:
            x = self.hook(name, x, None)
        return x @ self.w[name + ".weight"].T + self.w[name + ".bias"]

    def __call__(self, x, t):
        b = x.shape[0]
        t = np.broadcast_to(np.asarray(t).reshape(-1), (b,))
        wt = self.w["x_embedder.proj.weight"]
        if self.hook:
            x = self.hook("x_embedder.proj", x, (PATCH, PATCH, 0))
        cols, (_, ho, wo) = im2col(x, PATCH, PATCH, 0)
        h = (cols @ wt.reshape(WIDTH, -1).T + self.w["x_embedder.proj.bias"]).reshape(b, ho * wo, WIDTH) + self.pos
        c = self.linear("t_embedder.mlp.2", silu(self.linear("t_embedder.mlp.0", timestep_embedding(t))))
        for i in range(DEPTH):
            p = f"blocks.{i}"
            mod = self.linear(p + ".adaLN_modulation.1", silu(c))
            s1, sc1, g1, s2, sc2, g2 = np.split(mod, 6, axis=1)
            y = modulate(layer_norm(h), s1, sc1)
            qkv = self.linear(p + ".attn.qkv", y).reshape(b, -1, 3, HEADS, WIDTH // HEADS).transpose(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
            s = (q @ k.transpose(0, 1, 3, 2)).astype(np.float64) / math.sqrt(WIDTH // HEADS)
            s = np.exp(s - s.max(axis=-1, keepdims=True))
            a = ((s / s.sum(axis=-1, keepdims=True)).astype(np.float32) @ v).transpose(0, 2, 1, 3).reshape(b, -1, WIDTH)
            h = h + g1[:, None, :] * self.linear(p + ".attn.proj", a)
            y = modulate(layer_norm(h), s2, sc2)
            h = h + g2[:, None, :] * self.linear(p + ".mlp.fc2", gelu_tanh(self.linear(p + ".mlp.fc1", y)))
        shift, scale = np.split(self.linear("final_layer.adaLN_modulation.1", silu(c)), 2, axis=1)
        out = self.linear("final_layer.linear", modulate(layer_norm(h), shift, scale))
        g = SIZE // PATCH
        out = out.reshape(b, g, g, PATCH, PATCH).transpose(0, 1, 3, 2, 4)
        return out.reshape(b, 1, SIZE, SIZE)
