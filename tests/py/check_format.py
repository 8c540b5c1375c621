"""Independent check of the file format, written from docs/FORMAT.md alone.

pyarrow reads our Parquet files; numpy unpacks and dequantizes them following FORMAT.md. The result
must equal, bit for bit, what arrowquant's own reader exports (`arrowquant dequantize`), and the
metrics computed here must match the `cosine`/`snr_db`/... columns within 1e-6.
Run by `make test` (target test-py).
"""
import json
import os
import struct
import subprocess
import sys
import tempfile
import zlib

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "pkg", "cli.js")

CASES = [
    ("samples/rivagan_f32.safetensors", ["--profile", "edge", "--min-accuracy", "0"]),
    ("samples/rivagan_f32.safetensors", ["--profile", "local"]),
    ("samples/rivagan_f32.safetensors", ["--profile", "cloud"]),
    ("samples/rivagan_f32.safetensors", ["--bits", "2", "--group-size", "32", "--scale-search", "off", "--min-accuracy", "0"]),
    ("tests/data/rivagan_f16.safetensors", ["--profile", "local", "--group-size", "256"]),
    ("tests/data/rivagan_bf16.safetensors", ["--profile", "edge"]),
    ("tests/data/minilm_l6_bf16_subset.safetensors", ["--profile", "edge", "--min-accuracy", "0"]),
    ("tests/data/minilm_l6_bf16_subset.safetensors", ["--profile", "local", "--group-size", "64"]),
    ("tests/data/minilm_l6_bf16_subset.safetensors", ["--bits", "8", "--group-size", "128"]),
    ("tests/data/minilm_l6_bf16_subset.safetensors", ["--layer-bit-widths", "*.value.weight=16", "--skip-sensitive-layers"]),
]

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    """{name: (dtype, shape, raw bytes)} — the safetensors layout is 8-byte length + JSON + data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    header.pop("__metadata__", None)
    base = 8 + n
    return {k: (v["dtype"], v["shape"], blob[base + v["data_offsets"][0] : base + v["data_offsets"][1]]) for k, v in header.items()}


def as_f32(dtype, raw):
    if dtype == "BF16":
        return (np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16).view(np.float32)
    return np.frombuffer(raw, dtype=np.dtype(DTYPES[dtype]).newbyteorder("<")).astype(np.float32)


def unpack(data, bits, rows, row_len):
    """FORMAT.md §4 packing: rows start on a byte; element i at bit (i*bits) mod 8 of byte i*bits//8, LSB first."""
    row_bytes = -(-row_len * bits // 8)
    b = np.frombuffer(data, dtype=np.uint8).reshape(rows, row_bytes)
    per_byte = 8 // bits
    shifts = np.arange(per_byte, dtype=np.uint8) * bits
    codes = (b[:, :, None] >> shifts) & ((1 << bits) - 1)
    return codes.reshape(rows, row_bytes * per_byte)[:, :row_len]


def dequantize(row):
    shape = row["shape"]
    rows, row_len = shape[0], int(np.prod(shape[1:]))
    bits, g = row["bits"], row["group_size"]
    q = unpack(row["data"], bits, rows, row_len).astype(np.float32)
    groups = -(-row_len // g)
    scales = np.asarray(row["scales"], dtype=np.float16).astype(np.float32).reshape(rows, groups)
    mins = np.asarray(row["mins"], dtype=np.float16).astype(np.float32).reshape(rows, groups)
    group_of = np.arange(row_len) // g
    s = scales[:, group_of]
    m = mins[:, group_of]
    return (q * s + m).astype(np.float32).reshape(-1)  # float32 multiply, then float32 add


def metrics(w, wh):
    w = w.astype(np.float64)
    wh = wh.astype(np.float64)
    sww, sqq, swq, see = (w * w).sum(), (wh * wh).sum(), (w * wh).sum(), ((wh - w) ** 2).sum()
    if sww == 0 or sqq == 0:
        cos = 1.0 if sww == sqq else 0.0
    else:
        cos = float(np.clip(swq / np.sqrt(sww * sqq), -1, 1))
    snr = float("inf") if see == 0 else 10 * np.log10(sww / see)
    return cos, snr, (0.0 if see == 0 else np.sqrt(see / sww)), float(np.abs(wh - w).max())


def check(model, args, tmp, idx):
    out = os.path.join(tmp, f"case{idx}.parquet")
    subprocess.run(["node", CLI, "quantize", os.path.join(ROOT, model), "-o", out, "--quiet", *args], check=True)
    restored = os.path.join(tmp, f"case{idx}.safetensors")
    subprocess.run(["node", CLI, "dequantize", out, "-o", restored, "--dtype", "f32"], check=True, stdout=subprocess.DEVNULL)

    pf = pq.ParquetFile(out)
    kv = {k.decode(): v.decode() for k, v in pf.metadata.metadata.items()}
    assert kv["arrowquant.format"] == "arrowquant-v2-extended", kv
    assert kv["arrowquant.format_version"].split(".")[0] == "2"
    config = json.loads(kv["arrowquant.config"])
    table = pf.read().to_pylist()
    source = read_safetensors(os.path.join(ROOT, model))
    ours = read_safetensors(restored)
    assert sorted(r["name"] for r in table) == sorted(source), "every source tensor is a row, once"

    counts = {}
    worst = 0.0
    for row in table:
        name = row["name"]
        dtype, shape, raw = source[name]
        assert row["dtype"] == dtype and row["shape"] == shape, name
        assert zlib.crc32(row["data"]) == row["data_crc32"], f"{name}: CRC"
        kind = row["storage"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "raw":
            assert row["data"] == raw, f"{name}: raw bytes differ"
            continue
        if kind == "quantized":
            assert row["group_size"] == config["groupSize"]
            wh = dequantize(row)
        else:
            assert kind == "f16" and row["bits"] == 16
            wh = np.frombuffer(row["data"], dtype="<f2").astype(np.float32)
        lib = as_f32("F32", ours[name][2])
        assert wh.view(np.uint32).tobytes() == lib.view(np.uint32).tobytes(), f"{name}: dequantized floats differ from arrowquant's"
        w = as_f32(dtype, raw)
        cos, snr, rel, mx = metrics(w, wh)
        for got, want, col in [(cos, row["cosine"], "cosine"), (snr, row["snr_db"], "snr_db"), (rel, row["rel_rmse"], "rel_rmse"), (mx, row["max_abs_error"], "max_abs_error")]:
            if np.isinf(want) or np.isinf(got):
                assert got == want, f"{name}: {col} {got} vs {want}"
                continue
            err = abs(got - want)
            worst = max(worst, err)
            assert err <= 1e-6, f"{name}: {col} numpy {got!r} vs file {want!r}"
    print(f"ok  {model} {' '.join(args)}: {len(table)} tensors {counts}, max metric difference {worst:.1e}")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        for i, (model, args) in enumerate(CASES):
            check(model, args, tmp, i)
    print(f"{len(CASES)} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
