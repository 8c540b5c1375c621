"""stable-diffusion.cpp loads our GGUF files, and its ggml decodes them to our values bit for bit.

For every bundled model and an SD-1.x-named one (its 3×3 convolutions re-rowed), at every block
type we write: stable-diffusion.cpp's `sd-cli` (built from the
stable-diffusion-cpp-python source package by tools/sdcpp_ref.py) reads the file through its model
loader and converts it to an f32 GGUF — the tensors it converts dequantized by ggml's own
routines, the ones it keeps by design (biases, embeddings) copied. Every tensor must come out: a
converted one equal bit for bit to `arrowquant dequantize` of the same file (flattened — our reader
applies `comfy.gguf.orig_shape`, stable-diffusion.cpp does not), a kept one with our type and bytes.
Run by `make eval` (the first run builds stable-diffusion.cpp: several minutes).
"""
import os
import sys
import tempfile
from collections import Counter

import numpy as np
import gguf

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(HERE)), "tools"))
from check_gguf import ROOT, read_safetensors, run, write_safetensors  # noqa: E402
import sdcpp_ref  # noqa: E402

MODELS = [
    "samples/tiny_ddpm_digits.safetensors",
    "samples/tiny_dit_digits.safetensors",
    "samples/rivagan_f32.safetensors",
    "tests/data/minilm_l6_bf16_subset.safetensors",
]
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_1", "Q5_0", "Q4_K_M", "Q4_1", "Q4_0", "Q3_K_M", "Q2_K", "F16", "BF16"]


def sd1_shaped():
    """A small model with SD-1.x UNet names, so its 3×3 convolutions are re-rowed to 256 values (and
    K-quantized) as ComfyUI-GGUF's converter does for `sd1`; stable-diffusion.cpp sees the rows."""
    rng = np.random.default_rng(5)
    shapes = {
        "down_blocks.0.downsamplers.0.conv.weight": (32, 32, 3, 3),
        "down_blocks.0.downsamplers.0.conv.bias": (32,),
        "down_blocks.0.resnets.0.conv1.weight": (64, 32, 3, 3),
        "down_blocks.0.attentions.0.proj_in.weight": (256, 256),
        "time_embedding.linear_1.weight": (512, 256),
    }
    return {k: (rng.standard_normal(v) * 0.05).astype(np.float32) for k, v in shapes.items()}


def check(exe, model, ty, tmp, decoded):
    name = os.path.basename(model).replace(".safetensors", "")
    ours = os.path.join(tmp, f"{name}-{ty}.gguf")
    run("quantize", model, "-o", ours, "--gguf-type", ty)
    ours_f32 = os.path.join(tmp, f"{name}-{ty}.f32.safetensors")
    run("dequantize", ours, "-o", ours_f32)
    theirs = os.path.join(tmp, f"{name}-{ty}.sdcpp.gguf")
    try:
        sdcpp_ref.convert(exe, ours, theirs)
    except Exception as e:
        sys.exit(f"stable-diffusion.cpp could not load {name} {ty}: {getattr(e, 'stderr', b'').decode()[-2000:]}")
    written = {t.name: t for t in gguf.GGUFReader(ours).tensors}
    values = read_safetensors(ours_f32)
    read = gguf.GGUFReader(theirs).tensors
    if sorted(t.name for t in read) != sorted(written):
        sys.exit(f"{name} {ty}: stable-diffusion.cpp read {len(read)} of our {len(written)} tensors")
    for t in read:
        o = written[t.name]
        if t.tensor_type == gguf.GGMLQuantizationType.F32 and o.tensor_type != gguf.GGMLQuantizationType.F32:
            a = np.asarray(t.data, np.float32).ravel().view(np.uint32)
            b = values[t.name].astype(np.float32).ravel().view(np.uint32)
            if a.shape != b.shape or not np.array_equal(a, b):
                sys.exit(f"{name} {ty} {t.name}: ggml's {o.tensor_type.name} decode differs from ours")
            decoded[o.tensor_type.name] += 1
        elif t.tensor_type != o.tensor_type or t.data.tobytes() != o.data.tobytes():
            sys.exit(f"{name} {ty} {t.name}: stable-diffusion.cpp kept it, but not as we wrote it")


def main():
    exe = sdcpp_ref.sd_cli()
    decoded = Counter()
    with tempfile.TemporaryDirectory() as tmp:
        sd1 = os.path.join(tmp, "sd1_shaped.safetensors")
        write_safetensors(sd1, sd1_shaped())
        models = [os.path.join(ROOT, m) for m in MODELS] + [sd1]
        for model in models:
            for ty in TYPES:
                check(exe, model, ty, tmp, decoded)
    per_type = ", ".join(f"{k} {v}" for k, v in sorted(decoded.items()))
    print(f"stable-diffusion.cpp {sdcpp_ref.VERSION}: {len(MODELS) + 1} models × {len(TYPES)} types loaded, every tensor read;")
    print(f"  tensors ggml dequantized bit for bit equal to ours, by type: {per_type}")


if __name__ == "__main__":
    main()
