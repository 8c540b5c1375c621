"""Calibration statistics recorded with the numpy models — what tools/calibrate.py records with
PyTorch hooks (docs/CALIBRATION.md) — and written in any of the carrier's forms from one recording,
so the evaluation can compare them: `full`, `blocks:B`, `lowrank:K` Gram matrices, `diag` (second
moments only), `ranges` (activation ranges and channel maxima only)."""
import json
import struct

import numpy as np

from unet import im2col


class Recorder:
    """A model hook that files each layer's input under the current timestep index."""

    def __init__(self):
        self.t = None
        self.layers = {}

    def __call__(self, name, x, conv):
        if self.t is None:
            return x
        if conv is None:
            flat = x.reshape(-1, x.shape[-1])
            rows = flat
            batch = x.shape[0]
        else:
            flat = x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])
            rows, _ = im2col(x, *conv)
            batch = x.shape[0]
        layer = self.layers.setdefault(name, {"per_t": {}, "gram": 0.0, "rows": 0})
        e = layer["per_t"].setdefault(self.t, [np.inf, -np.inf, 0.0, 0.0, 0, 0])
        e[0] = min(e[0], float(x.min()))
        e[1] = max(e[1], float(x.max()))
        e[2] = np.maximum(e[2], np.abs(flat).max(axis=0))
        e[3] = e[3] + (flat.astype(np.float64) ** 2).sum(axis=0)
        e[4] += flat.shape[0]
        e[5] += batch
        r = rows.astype(np.float64)
        layer["gram"] = layer["gram"] + r.T @ r
        layer["rows"] += r.shape[0]
        return x

    def tensors(self, num_timesteps, form):
        out = {}
        for name, layer in self.layers.items():
            per_t = layer["per_t"]
            c = next(iter(per_t.values()))[2].shape[0]
            lo = np.full(num_timesteps, np.nan, np.float32)
            hi = np.full(num_timesteps, np.nan, np.float32)
            absmax = np.zeros((num_timesteps, c), np.float32)
            sq = np.zeros((num_timesteps, c), np.float32)
            samples = np.zeros(num_timesteps, np.int64)
            for t, (a, b, m, s, n, k) in per_t.items():
                lo[t], hi[t], absmax[t], sq[t], samples[t] = a, b, m, s / n, k
            out.update({f"{name}.act_min": lo, f"{name}.act_max": hi, f"{name}.channel_absmax": absmax, f"{name}.samples": samples})
            if form == "ranges":
                continue
            out[f"{name}.sq_mean"] = sq
            if form == "diag":
                continue
            g = layer["gram"] / layer["rows"]
            n = g.shape[0]
            out[f"{name}.gram_rows"] = np.array([layer["rows"]], np.int64)
            kind, _, arg = form.partition(":")
            if kind == "full":
                out[f"{name}.gram"] = g.astype(np.float32)
            elif kind == "blocks":
                b = int(arg)
                nb = -(-n // b)
                padded = np.zeros((nb * b, nb * b))
                padded[:n, :n] = g
                out[f"{name}.gram_blocks"] = np.stack([padded[i * b : (i + 1) * b, i * b : (i + 1) * b] for i in range(nb)]).astype(np.float32)
            elif kind == "lowrank":
                k = min(int(arg), n)
                vals, vecs = np.linalg.eigh(g)
                top = np.argsort(vals)[::-1][:k]
                v, lam = vecs[:, top], np.clip(vals[top], 0, None)
                out[f"{name}.gram_eigvecs"] = v.astype(np.float32)
                out[f"{name}.gram_eigvals"] = lam.astype(np.float32)
                out[f"{name}.gram_diag"] = np.clip(np.diag(g) - (v**2) @ lam, 0, None).astype(np.float32)
            else:
                raise ValueError(form)
        return out


def write_safetensors(path, tensors, metadata):
    header, offset, blobs = {}, 0, []
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        dtype = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        raw = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blobs.append(raw)
    header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    text += b" " * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def ddim_timesteps(steps, train_steps=1000):
    """DDIMScheduler's default ("leading") spacing: [950, 900, …, 0] for 20 steps."""
    return (np.arange(steps) * (train_steps // steps))[::-1]


def record(model_cls, weights, abar, steps=20, samples=64, seed=0):
    """Run the DDIM trajectory from noise (η = 0, x₀ clipped to [−1, 1], as diffusers' DDIM
    defaults) and record every layer's input at each step."""
    rec = Recorder()
    model = model_cls(weights, hook=rec)
    ts = ddim_timesteps(steps)
    x = np.random.default_rng(seed).standard_normal((samples, 1, 8, 8)).astype(np.float32)
    for i, t in enumerate(ts):
        rec.t = i
        eps = model(x, np.full(samples, t))
        rec.t = None
        a, a_prev = abar[t], (abar[t - len(abar) // steps] if t - len(abar) // steps >= 0 else 1.0)
        x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), -1, 1)
        x = (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)
    return rec, [float(t) for t in ts]


def save(rec, timesteps, path, form, extra=None):
    """Write the recording in `form`, plus `extra` tensors (e.g. per-layer sensitivity)."""
    meta = {"format": "arrowquant-calibration", "version": "2", "timesteps": json.dumps(timesteps), "source": f"tools/eval numpy recorder, {form}"}
    write_safetensors(path, {**rec.tensors(len(timesteps), form), **(extra or {})}, meta)
