"""Independent check of our GGUF files with llama.cpp's own Python package (`gguf` from PyPI).

For every bundled model and every type we write, and for a model of adversarial tensors:
  * gguf-py's GGUFReader opens the file; names, shapes and types match our report;
  * gguf-py's `dequantize` equals, bit for bit, what arrowquant's reader exports
    (`arrowquant dequantize x.gguf`), and our report's SNR is the SNR of those values;
  * every block-quantized tensor is also quantized by ggml's own reference quantizers (C, built
    from the llama-cpp-python source package by tools/ggml_ref.py, `quantize_row_*_ref`: what
    llama.cpp runs for these types without an importance matrix), and our pooled SNR over those
    tensors is at least ggml's minus 0.05 dB, per model and type.
Run by `make test` (target test-py).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile

import numpy as np
import gguf
from gguf.quants import dequantize

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "tools"))
import ggml_ref  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "pkg", "cli.js")

MODELS = [
    "samples/rivagan_f32.safetensors",
    "samples/tiny_ddpm_digits.safetensors",
    "tests/data/rivagan_bf16.safetensors",
    "tests/data/minilm_l6_bf16_subset.safetensors",
]
# Models with a bundled calibration that has Gram matrices: their files are written by GPTQ.
CALIBRATED = ["samples/tiny_ddpm_digits.safetensors", "samples/tiny_dit_digits.safetensors"]
TYPES = ["Q8_0", "Q6_K", "Q5_K_M", "Q5_K_S", "Q5_1", "Q5_0", "Q4_K_M", "Q4_K_S", "Q4_1", "Q4_0", "Q3_K_L", "Q3_K_M", "Q3_K_S", "Q2_K", "F16", "BF16", "F32"]
ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None}


def read_safetensors(path):
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8 : 8 + n])
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        data = raw[8 + n + a : 8 + n + b]
        if info["dtype"] == "BF16":
            v = (np.frombuffer(data, np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            v = np.frombuffer(data, ST_DTYPES[info["dtype"]]).astype(np.float32)
        out[name] = v.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    header, blobs, at = {}, [], 0
    for name, v in tensors.items():
        b = np.ascontiguousarray(v, np.float32).tobytes()
        header[name] = {"dtype": "F32", "shape": list(v.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def snr(w, q):
    w = w.astype(np.float64).ravel()
    e = np.sum((w - q.astype(np.float64).ravel()) ** 2)
    return float("inf") if e == 0 else 10 * np.log10(np.sum(w * w) / e)


def adversarial():
    rng = np.random.default_rng(7)
    t = {}
    t["constant.weight"] = np.full((4, 64), 1.5, np.float32)
    t["zeros.weight"] = np.zeros((4, 64), np.float32)
    t["negzero.weight"] = np.full((4, 64), -0.0, np.float32)
    t["subnormal.weight"] = (rng.standard_normal((4, 64)) * 1e-40).astype(np.float32)
    t["tiny.weight"] = (rng.standard_normal((4, 64)) * 1e-7).astype(np.float32)
    t["huge.weight"] = (rng.standard_normal((4, 64)) * 3e4).astype(np.float32)
    spikes = (rng.standard_normal((8, 128)) * 0.01).astype(np.float32)
    spikes[::3, ::17] = 7.0
    t["spikes.weight"] = spikes
    t["ties.weight"] = (np.arange(256, dtype=np.float32).reshape(4, 64) % 16 - 8) * 0.5 + 0.25
    t["odd_rows.weight"] = rng.standard_normal((40, 48)).astype(np.float32)  # 48: not whole blocks
    t["five_d.weight"] = rng.standard_normal((2, 2, 2, 4, 64)).astype(np.float32)
    t["gaussian.weight"] = rng.standard_normal((64, 256)).astype(np.float32)
    return t


def run(*args):
    r = subprocess.run(["node", CLI, *args], capture_output=True, text=True, cwd=ROOT)
    if r.returncode != 0:
        sys.exit(f"arrowquant {' '.join(args)} failed:\n{r.stderr}")
    return r.stdout


def check(model_path, ty, tmp, totals, totals_all, lib, calibration=None):
    """With `calibration` (Gram matrices: GPTQ), the bit-exact read only: GPTQ trades weight SNR
    for the layer outputs' error, so ggml's weight-space reference is no yardstick there."""
    out = os.path.join(tmp, f"m-{ty}.gguf")
    extra = ["--calibration", calibration] if calibration else []
    report = json.loads(run("quantize", model_path, "-o", out, "--gguf-type", ty, "--json", "--quiet", *extra))
    if calibration and ty not in ("F16", "BF16", "F32"):
        assert report["calibration"]["gptq"] > 0, (model_path, ty, report["calibration"])
    exported = os.path.join(tmp, f"m-{ty}.safetensors")
    run("dequantize", out, "-o", exported)
    ours = read_safetensors(exported)
    source = read_safetensors(model_path)
    if not calibration:
        totals_all.append((os.path.basename(model_path), ty, float("inf") if report["snrDb"] is None else report["snrDb"], 8 * report["outputBytes"] / max(1, report["paramsTotal"])))
    reader = gguf.GGUFReader(out)
    layers = {l["name"]: l for l in report["layers"]}
    assert len(reader.tensors) == len(layers), (model_path, ty)
    orig_shapes = {}
    for field in reader.fields.values():
        if field.name.startswith("comfy.gguf.orig_shape."):
            orig_shapes[field.name[len("comfy.gguf.orig_shape.") :]] = [int(field.parts[i][0]) for i in field.data]
    arch = reader.fields["general.architecture"]
    assert bytes(arch.parts[arch.data[0]]).decode() == report["architecture"]
    sums = {"ours": [0.0, 0.0], "ref": [0.0, 0.0]}
    for t in reader.tensors:
        layer = layers[t.name]
        assert t.tensor_type.name == layer["ggmlType"], (t.name, t.tensor_type.name, layer["ggmlType"])
        shape = orig_shapes.get(t.name, [int(d) for d in reversed(t.shape)])
        assert shape == layer["shape"], (t.name, shape, layer["shape"])
        theirs = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
        mine = ours[t.name]
        if not np.array_equal(theirs.view(np.uint32), mine.view(np.uint32)):
            bad = np.flatnonzero(theirs.view(np.uint32).ravel() != mine.view(np.uint32).ravel())
            sys.exit(f"{model_path} {ty} {t.name}: gguf-py dequantizes {len(bad)} values differently, first at {bad[0]}: {theirs.ravel()[bad[0]]!r} vs ours {mine.ravel()[bad[0]]!r}")
        w = source[t.name]
        s = snr(w, theirs)
        if layer["snrDb"] is not None and np.isfinite(s):
            assert abs(s - layer["snrDb"]) < 1e-6, (t.name, s, layer["snrDb"])
        if t.tensor_type.name in ggml_ref.BLOCKS and not calibration:
            ref_bytes = ggml_ref.quantize(lib, w.reshape(-1, int(t.shape[0])), t.tensor_type.name)
            ref = dequantize(ref_bytes, t.tensor_type)
            w64 = w.astype(np.float64).ravel()
            sig = float(np.sum(w64 * w64))
            for key, q in (("ours", theirs), ("ref", ref)):
                sums[key][0] += sig
                sums[key][1] += float(np.sum((w64 - q.astype(np.float64).ravel()) ** 2))
    if sums["ref"][1] > 0:
        ours_db = 10 * np.log10(sums["ours"][0] / sums["ours"][1])
        ref_db = 10 * np.log10(sums["ref"][0] / sums["ref"][1])
        totals.append((os.path.basename(model_path), ty, ours_db, ref_db))


def main():
    totals, totals_all = [], []
    lib = ggml_ref.library()
    with tempfile.TemporaryDirectory() as tmp:
        adv = os.path.join(tmp, "adversarial.safetensors")
        write_safetensors(adv, adversarial())
        for model in [adv] + [os.path.join(ROOT, m) for m in MODELS]:
            for ty in TYPES:
                check(model, ty, tmp, totals, totals_all, lib)
        for model in CALIBRATED:
            calibration = os.path.join(ROOT, model.replace(".safetensors", ".calib.safetensors"))
            for ty in TYPES:
                    check(os.path.join(ROOT, model), ty, tmp, totals, totals_all, lib, calibration)
    print("pooled SNR over the block-quantized tensors, ours against ggml's reference quantizers:")
    for name, ty, ours_db, ref_db in totals:
        print(f"  {name:40s} {ty:7s} ours {ours_db:7.3f} dB  ggml {ref_db:7.3f} dB  ({ours_db - ref_db:+.3f})")
    worse = [f"{name} {ty}: {ours_db - ref_db:+.3f} dB" for name, ty, ours_db, ref_db in totals if ours_db < ref_db - 0.05]
    if worse:
        sys.exit("below ggml's reference by more than 0.05 dB: " + "; ".join(worse))
    print("pooled SNR of every float tensor by type (bits per parameter, whole file):")
    for name, ty, snr_db, bpp in totals_all:
        print(f"  {name:40s} {ty:7s} {snr_db:8.3f} dB  {bpp:6.3f} bits/param")
    print(f"gguf: {len(MODELS) + 1} models × {len(TYPES)} types read by gguf-py, dequantized bit for bit (and with GPTQ from the bundled calibrations)")


if __name__ == "__main__":
    main()
