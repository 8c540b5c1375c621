#!/usr/bin/env python3
"""Quality where it matters: the diffusion model's output (`make eval`).

For each bundled diffusion model (a DiT and a UNet, both trained on digits 0..1499) and each
config, the model is quantized with the CLI (the real wasm package), the file is dequantized by
the independent reader of tests/py/check_format.py, and the dequantized model's noise prediction
is compared with the source model's on the 297 held-out digits:

  ε-MSE ratio = E‖ε̂_q(x_t, t) − ε‖² / E‖ε̂(x_t, t) − ε‖², averaged over t ∈ {10, 100, 250, 500,
                750, 990} (1.0 = lossless; fixed noise per t)
  sample MSE  = mean squared difference of 64 DDIM samples (50 steps, fixed noise) from the source
                model's, images in [−1, 1]

W+A rows also fake-quantize every Linear/Conv input with the file's own activation params for the
timestep (`time_groups`, after dividing by the equalization scales `s` as FORMAT.md says).
Calibration files are recorded with the numpy models (tools/eval/calib.py) in each carrier form.

    python tools/eval/run.py                 # the full table, both models (a few minutes)
    python tools/eval/run.py --check         # the fast regression check of `make test`

Needs numpy, pyarrow and gguf (llama.cpp's gguf-py, for the GGUF rows).
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)

import calib  # noqa: E402
import dit  # noqa: E402
import unet  # noqa: E402
from weights import read_gguf, read_quantized, read_safetensors  # noqa: E402

CLI = os.path.join(ROOT, "pkg", "cli.js")
TIMESTEPS = [10, 100, 250, 500, 750, 990]
MODELS = {
    "dit": ("tiny DiT (35 Linear/Conv layers)", "samples/tiny_dit_digits.safetensors", dit.Model),
    "ddpm": ("tiny DDPM UNet (51 Conv/Linear layers)", "samples/tiny_ddpm_digits.safetensors", unet.Model),
}
EVERY = ["--profile", "base", "--min-accuracy", "0"]  # every ≥2-D layer quantized, no fallback
# (label, CLI flags, calibration form or None, activation bits or None). A flag "{f}" is f times the
# source file's size in MiB; a form "X+sensitivity" adds the per-layer sensitivity tools/calibrate.py
# measured with PyTorch (the bundled calibration file's `sensitivity` tensors) to form X.
CONFIGS = [
    ("8-bit", EVERY + ["--bits", "8", "--group-size", "64"], None, None),
    ("8-bit importance (E[x²] per channel)", EVERY + ["--bits", "8", "--group-size", "64"], "diag", None),
    ("8-bit, GPTQ (full Gram)", EVERY + ["--bits", "8", "--group-size", "64"], "full", None),
    ("4-bit min/max", EVERY + ["--bits", "4", "--group-size", "64", "--scale-search", "off"], None, None),
    ("4-bit search, least-squares params (matchGain off)", EVERY + ["--bits", "4", "--group-size", "64", "--match-gain", "off"], None, None),
    ("4-bit search", EVERY + ["--bits", "4", "--group-size", "64"], None, None),
    ("4-bit importance (E[x²] per channel)", EVERY + ["--bits", "4", "--group-size", "64"], "diag", None),
    ("4-bit GPTQ, Gram blocks of 64", EVERY + ["--bits", "4", "--group-size", "64"], "blocks:64", None),
    ("4-bit GPTQ, Gram top-32 + diagonal", EVERY + ["--bits", "4", "--group-size", "64"], "lowrank:32", None),
    ("4-bit GPTQ, full Gram", EVERY + ["--bits", "4", "--group-size", "64"], "full", None),
    ("4-bit GPTQ in index order (gptqActOrder off), full Gram", EVERY + ["--bits", "4", "--group-size", "64", "--gptq-act-order", "off"], "full", None),
    ("4-bit search, codec ggml (Q4_K)", EVERY + ["--bits", "4", "--group-size", "64", "--codec", "ggml"], None, None),
    ("4-bit search, codec auto", EVERY + ["--bits", "4", "--group-size", "64", "--codec", "auto"], None, None),
    ("4-bit GPTQ, full Gram, codec ggml (Q4_K)", EVERY + ["--bits", "4", "--group-size", "64", "--codec", "ggml"], "full", None),
    ("4-bit GPTQ, full Gram, codec auto", EVERY + ["--bits", "4", "--group-size", "64", "--codec", "auto"], "full", None),
    ("2-bit min/max", EVERY + ["--bits", "2", "--group-size", "64", "--scale-search", "off"], None, None),
    ("2-bit search, least-squares params (matchGain off)", EVERY + ["--bits", "2", "--group-size", "64", "--match-gain", "off"], None, None),
    ("2-bit search", EVERY + ["--bits", "2", "--group-size", "64"], None, None),
    ("2-bit importance (E[x²] per channel)", EVERY + ["--bits", "2", "--group-size", "64"], "diag", None),
    ("2-bit GPTQ, full Gram, no row gain (matchGain off)", EVERY + ["--bits", "2", "--group-size", "64", "--match-gain", "off"], "full", None),
    ("2-bit GPTQ, full Gram", EVERY + ["--bits", "2", "--group-size", "64"], "full", None),
    ("2-bit GPTQ, full Gram, codec ggml (Q2_K)", EVERY + ["--bits", "2", "--group-size", "64", "--codec", "ggml"], "full", None),
    ("2-bit GPTQ in index order (gptqActOrder off), full Gram", EVERY + ["--bits", "2", "--group-size", "64", "--gptq-act-order", "off"], "full", None),
    ("4-bit importance + equalization α 0.5", EVERY + ["--bits", "4", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "0.5"], "diag", None),
    ("4-bit importance + equalization, α searched", EVERY + ["--bits", "4", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "search"], "diag", None),
    ("4-bit search + equalization, α searched (activation maxima)", EVERY + ["--bits", "4", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "search", "--importance", "off"], "ranges", None),
    ("4-bit GPTQ + equalization, α searched", EVERY + ["--bits", "4", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "search"], "full", None),
    ("2-bit importance + equalization α 0.5", EVERY + ["--bits", "2", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "0.5"], "diag", None),
    ("2-bit importance + equalization, α searched", EVERY + ["--bits", "2", "--group-size", "64", "--enable-spatial", "on", "--spatial-alpha", "search"], "diag", None),
    ("profile local, no calibration", ["--profile", "local"], None, None),
    ("profile local, no calibration, codec auto", ["--profile", "local", "--codec", "auto"], None, None),
    ("profile edge, no calibration (codec auto)", ["--profile", "edge"], None, None),
    ("profile edge, no calibration, codec groups", ["--profile", "edge", "--codec", "groups"], None, None),
    ("profile local + calibration", ["--profile", "local"], "full", None),
    ("profile local + calibration, codec auto", ["--profile", "local", "--codec", "auto"], "full", None),
    ("profile local + calibration, α searched", ["--profile", "local", "--spatial-alpha", "search"], "full", None),
    ("profile edge + calibration", ["--profile", "edge"], "full", None),
    ("profile edge + calibration, codec groups", ["--profile", "edge", "--codec", "groups"], "full", None),
    ("profile cloud, no calibration", ["--profile", "cloud"], None, None),
    ("profile cloud, no calibration, codec auto", ["--profile", "cloud", "--codec", "auto"], None, None),
    ("size plan at 0.22× the source, weight errors", EVERY + ["--target-size-mb", "{0.22}"], "full", None),
    ("size plan at 0.22× the source, measured sensitivity", EVERY + ["--target-size-mb", "{0.22}"], "full+sensitivity", None),
    ("size plan at 0.18× the source, weight errors", EVERY + ["--target-size-mb", "{0.18}"], "full", None),
    ("size plan at 0.18× the source, measured sensitivity", EVERY + ["--target-size-mb", "{0.18}"], "full+sensitivity", None),
    ("W4A8, 10 time groups", ["--profile", "local", "--activation-bits", "8", "--num-time-groups", "10"], "full", 8),
    ("W4A8, 1 time group", ["--profile", "local", "--activation-bits", "8", "--num-time-groups", "1"], "full", 8),
    ("W4A4, 10 time groups", ["--profile", "local", "--activation-bits", "4", "--num-time-groups", "10"], "full", 4),
    ("W4A4, 1 time group", ["--profile", "local", "--activation-bits", "4", "--num-time-groups", "1"], "full", 4),
    ("W4A4, 10 time groups, α searched", ["--profile", "local", "--activation-bits", "4", "--num-time-groups", "10", "--spatial-alpha", "search"], "full", 4),
    # GGUF (docs/GGUF.md), read back by gguf-py; "+ importance": the calibration's per-channel
    # second moments weight the block searches (llama.cpp's imatrix).
    ("GGUF Q8_0", ["--gguf-type", "Q8_0"], None, None),
    ("GGUF Q4_K_M", ["--gguf-type", "Q4_K_M"], None, None),
    ("GGUF Q4_K_M + importance", ["--gguf-type", "Q4_K_M"], "diag", None),
    ("GGUF Q4_0", ["--gguf-type", "Q4_0"], None, None),
    ("GGUF Q4_0 + importance", ["--gguf-type", "Q4_0"], "diag", None),
    ("GGUF Q3_K_M", ["--gguf-type", "Q3_K_M"], None, None),
    ("GGUF Q3_K_M + importance", ["--gguf-type", "Q3_K_M"], "diag", None),
    ("GGUF Q2_K", ["--gguf-type", "Q2_K"], None, None),
    ("GGUF Q2_K + importance", ["--gguf-type", "Q2_K"], "diag", None),
    # "+ GPTQ": the calibration's Gram matrices; each block's params from the type's own search
    # when GPTQ reaches it, each value coded on them with its error compensated.
    ("GGUF Q8_0 + GPTQ", ["--gguf-type", "Q8_0"], "full", None),
    ("GGUF Q4_K_M + GPTQ", ["--gguf-type", "Q4_K_M"], "full", None),
    ("GGUF Q4_0 + GPTQ", ["--gguf-type", "Q4_0"], "full", None),
    ("GGUF Q4_0 + GPTQ, Gram blocks of 64", ["--gguf-type", "Q4_0"], "blocks:64", None),
    ("GGUF Q3_K_M + GPTQ", ["--gguf-type", "Q3_K_M"], "full", None),
    ("GGUF Q2_K + GPTQ", ["--gguf-type", "Q2_K"], "full", None),
    # targetSizeMb for GGUF: by size (largest first), or by the calibration's measured sensitivity;
    # the block searches importance-weighted (no Gram matrices: no GPTQ) in both.
    ("GGUF Q8_0 size plan at 0.36× the source, by size", ["--gguf-type", "Q8_0", "--target-size-mb", "{0.36}"], "diag", None),
    ("GGUF Q8_0 size plan at 0.36× the source, measured sensitivity", ["--gguf-type", "Q8_0", "--target-size-mb", "{0.36}"], "diag+sensitivity", None),
    ("GGUF Q8_0 size plan at 0.31× the source, by size", ["--gguf-type", "Q8_0", "--target-size-mb", "{0.31}"], "diag", None),
    ("GGUF Q8_0 size plan at 0.31× the source, measured sensitivity", ["--gguf-type", "Q8_0", "--target-size-mb", "{0.31}"], "diag+sensitivity", None),
]
CHECK = ["8-bit", "4-bit search", "4-bit GPTQ, full Gram", "4-bit GPTQ in index order (gptqActOrder off), full Gram", "GGUF Q4_0", "GGUF Q4_0 + importance", "GGUF Q4_0 + GPTQ",
         "size plan at 0.22× the source, weight errors", "size plan at 0.22× the source, measured sensitivity",
         "W4A8, 10 time groups", "W4A4, 10 time groups", "W4A4, 1 time group"]


def heldout(n=None):
    x = np.load(os.path.join(ROOT, "tests", "data", "digits_heldout.npy")).astype(np.float32)
    x = (x / 16.0 * 2.0 - 1.0)[:, None]
    return x[:n] if n else x


class Problem:
    """Held-out digits with fixed noise per timestep, the source model's errors, its samples."""

    def __init__(self, model_cls, weights, n_images, n_samples):
        self.model_cls = model_cls
        self.abar = unet.linear_betas()
        self.x0 = heldout(n_images)
        rng = np.random.default_rng(1234)
        self.noise = {t: rng.standard_normal(self.x0.shape).astype(np.float32) for t in TIMESTEPS}
        self.sample_noise = rng.standard_normal((n_samples, 1, 8, 8)).astype(np.float32) if n_samples else None
        self.src_mse = self.mse(weights)
        self.src_samples = self.samples(weights) if n_samples else None

    def xt(self, t):
        a = self.abar[t]
        return (np.sqrt(a) * self.x0 + np.sqrt(1 - a) * self.noise[t]).astype(np.float32)

    def mse(self, weights, hook_for=None):
        out = {}
        for t in TIMESTEPS:
            model = self.model_cls(weights, hook=hook_for(t) if hook_for else None)
            out[t] = float(((model(self.xt(t), np.full(len(self.x0), t)) - self.noise[t]) ** 2).mean())
        return out

    def samples(self, weights, hook_for=None, steps=50):
        x = self.sample_noise.copy()
        stride = 1000 // steps
        for t in (np.arange(steps) * stride)[::-1]:
            model = self.model_cls(weights, hook=hook_for(int(t)) if hook_for else None)
            eps = model(x, np.full(len(x), t))
            a, a_prev = self.abar[t], (self.abar[t - stride] if t - stride >= 0 else 1.0)
            x0 = np.clip((x - np.sqrt(1 - a) * eps) / np.sqrt(a), -1, 1)
            x = (np.sqrt(a_prev) * x0 + np.sqrt(1 - a_prev) * eps).astype(np.float32)
        return x


def fake_quant_hook(rows, cal_timesteps, bits):
    """A hook factory: at timestep t, every layer input is divided by the layer's equalization
    scales and quantized with its time group's params for the nearest calibration timestep (left
    in float where the file has no time groups for the layer)."""
    qmax = 2**bits - 1

    def for_t(t):
        index = int(np.argmin(np.abs(np.asarray(cal_timesteps) - t)))

        def hook(name, x, conv):
            row = rows.get(name + ".weight")
            if row is None:
                return x
            sp = row["spatial"]
            if sp is not None:
                s = np.asarray(sp["equalization_scales"], np.float32)
                x = x / (s[None, :, None, None] if conv else s)
            if row["time_groups"] is None:  # an input the file says to leave in float
                return x
            g = next(g for g in row["time_groups"] if g["t_start"] <= index < g["t_end"])
            q = np.clip(np.round(x / np.float32(g["scale"])) + g["zero_point"], 0, qmax)
            return ((q - g["zero_point"]) * np.float32(g["scale"])).astype(np.float32)

        return hook

    return for_t


def quantize(model_path, flags, calibration, out):
    args = ["node", CLI, "quantize", os.path.join(ROOT, model_path), "-o", out, "--json", *flags]
    if calibration:
        args += ["--calibration", calibration]
    t0 = time.time()
    r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"quantize failed ({' '.join(flags)}): {r.stdout}{r.stderr}")
    return json.loads(r.stdout), time.time() - t0


def evaluate(key, tmp, configs, n_images, n_samples):
    title, path, model_cls = MODELS[key]
    source, _ = read_safetensors(os.path.join(ROOT, path))
    problem = Problem(model_cls, source, n_images, n_samples)
    rec, cal_ts = calib.record(model_cls, source, problem.abar)
    grams = {name + ".weight": layer["gram"] / layer["rows"] for name, layer in rec.layers.items()}
    forms = {}

    def output_snr(weights):
        """Pooled over layers: Σ E‖W x‖² / Σ E‖(W − Ŵ) x‖² with the recorded Gram matrices."""
        signal = error = 0.0
        for name, g in grams.items():
            w = source[name].reshape(source[name].shape[0], -1).astype(np.float64)
            e = w - weights[name].reshape(w.shape).astype(np.float64)
            signal += np.einsum("ri,ij,rj->", w, g, w)
            error += np.einsum("ri,ij,rj->", e, g, e)
        return 10 * np.log10(signal / error) if error > 0 else float("inf")

    def calibration(form):
        if form is None:
            return None
        if form not in forms:
            forms[form] = os.path.join(tmp, f"{key}.{form.replace(':', '').replace('+', '_')}.calib.safetensors")
            base, _, extra = form.partition("+")
            sensitivity = None
            if extra == "sensitivity":
                bundled, _ = read_safetensors(os.path.join(ROOT, path.replace(".safetensors", ".calib.safetensors")))
                sensitivity = {k: v for k, v in bundled.items() if k.endswith(".sensitivity")}
            calib.save(rec, cal_ts, forms[form], base, extra=sensitivity)
        return forms[form]

    results = []
    for label, flags, form, abits in configs:
        gguf_out = "--gguf-type" in flags
        out = os.path.join(tmp, f"{key}.{len(results)}.{'gguf' if gguf_out else 'parquet'}")
        size_mb = os.path.getsize(os.path.join(ROOT, path)) / 2**20
        flags = [f"{float(f[1:-1]) * size_mb:.6f}" if f.startswith("{") else f for f in flags]
        report, seconds = quantize(path, flags, calibration(form), out)
        if gguf_out:
            weights, rows = read_gguf(out), None
        else:
            weights, rows = read_quantized(out, equalized=abits is not None)
        layer_out = output_snr(weights if abits is None else read_quantized(out)[0])
        hook = fake_quant_hook(rows, cal_ts, abits) if abits else None
        mse = problem.mse(weights, hook)
        ratio = float(np.mean([mse[t] / problem.src_mse[t] for t in TIMESTEPS]))
        sample = float(((problem.samples(weights, hook) - problem.src_samples) ** 2).mean()) if n_samples else None
        results.append({
            "label": label, "ratio": ratio, "per_t": [mse[t] / problem.src_mse[t] for t in TIMESTEPS], "sample_mse": sample,
            "weight_snr": report["snrDb"], "output_snr": layer_out,
            "compression": report["compressionRatio"], "seconds": seconds,
        })
        print(f"  {key}: {label}: ε-MSE ratio {ratio:.4f}", file=sys.stderr, flush=True)
    return title, problem, results


def table(title, problem, results):
    src = np.mean([problem.src_mse[t] for t in TIMESTEPS])
    lines = [f"**{title}** — source ε-MSE {src:.4f} on the held-out digits", "",
             "| config | ε-MSE ratio | sample MSE | weight SNR dB | layer-output SNR dB (pooled) | compression | quantize s |",
             "|---|---|---|---|---|---|---|"]
    fmt = lambda v, d: "—" if v is None else f"{v:.{d}f}"  # noqa: E731
    for r in results:
        lines.append(f"| {r['label']} | {r['ratio']:.4f} | {fmt(r['sample_mse'], 5)} | {r['weight_snr']:.2f} | "
                     f"{fmt(r['output_snr'], 2)} | {r['compression']:.2f}× | {r['seconds']:.2f} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--check", action="store_true", help="the fast regression check (make test)")
    ap.add_argument("--models", default="dit,ddpm")
    ap.add_argument("--only", help="run only the configs whose label contains one of these comma-separated words")
    ap.add_argument("--samples", type=int, default=64, help="DDIM samples per config (0 = none)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.check:
            configs = [c for c in CONFIGS if c[0] in CHECK]
            _, _, results = evaluate("dit", tmp, configs, n_images=96, n_samples=0)
            r = {x["label"]: x for x in results}
            print(" ".join(f"{k}: {v['ratio']:.4f}" for k, v in r.items()))
            assert r["8-bit"]["ratio"] < 1.02, r["8-bit"]
            assert r["4-bit GPTQ, full Gram"]["ratio"] < r["4-bit search"]["ratio"], "GPTQ must beat the search at the output"
            assert r["4-bit GPTQ, full Gram"]["output_snr"] > r["4-bit search"]["output_snr"] + 1.0
            index_order = r["4-bit GPTQ in index order (gptqActOrder off), full Gram"]
            assert r["4-bit GPTQ, full Gram"]["output_snr"] > index_order["output_snr"] + 0.5, "act-order must pay at the layer outputs"
            assert r["GGUF Q4_0 + importance"]["output_snr"] > r["GGUF Q4_0"]["output_snr"] + 0.3, "importance must pay at the layer outputs"
            assert r["GGUF Q4_0 + importance"]["ratio"] < r["GGUF Q4_0"]["ratio"], "importance must pay at the model's output"
            gptq = r["GGUF Q4_0 + GPTQ"]
            assert gptq["output_snr"] > r["GGUF Q4_0 + importance"]["output_snr"] + 3.0, "GPTQ must pay at the layer outputs of a block type"
            assert gptq["ratio"] < r["GGUF Q4_0 + importance"]["ratio"], "GPTQ must pay at the model's output of a block type"
            plain, measured = r["size plan at 0.22× the source, weight errors"], r["size plan at 0.22× the source, measured sensitivity"]
            assert measured["ratio"] < 0.8 * plain["ratio"], "a size plan must spend bits where the measured sensitivity says"
            assert abs(measured["compression"] - plain["compression"]) < 0.1 * plain["compression"], "same budget, same size"
            # The input image and the output head's input stay in float (floatSensitiveInputs):
            # quantizing them at 8 bits alone made W4A8 1.8.
            assert r["W4A8, 10 time groups"]["ratio"] < 1.2, "W4A8 must stay close to weight-only"
            assert r["W4A4, 10 time groups"]["ratio"] < 0.5 * r["W4A4, 1 time group"]["ratio"], "time groups must pay at 4-bit activations"
            print("eval check passed")
            return
        configs = CONFIGS
        if args.only:
            words = args.only.split(",")
            configs = [c for c in CONFIGS if any(w in c[0] for w in words)]
        for key in args.models.split(","):
            title, problem, results = evaluate(key, tmp, configs, n_images=None, n_samples=args.samples)
            print(table(title, problem, results))
            print()


if __name__ == "__main__":
    main()
