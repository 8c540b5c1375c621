"""Weights as float32 numpy arrays: from a safetensors file, or dequantized from an arrowquant
Parquet file by the independent reader of tests/py/check_format.py (written from docs/FORMAT.md)."""
import json
import os
import struct
import sys

import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": None, "I64": np.int64, "I32": np.int32}


def read_safetensors(path):
    """{name: float32 array} for the float tensors, plus the `__metadata__` dict."""
    data = open(path, "rb").read()
    n = struct.unpack("<Q", data[:8])[0]
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    out = {}
    for name, t in header.items():
        a, b = t["data_offsets"]
        raw = data[8 + n + a : 8 + n + b]
        if t["dtype"] == "BF16":
            v = (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        else:
            v = np.frombuffer(raw, dtype=DTYPES[t["dtype"]])
        out[name] = v.reshape(t["shape"]).astype(np.float32) if v.dtype.kind == "f" else v.reshape(t["shape"])
    return out, meta


def read_quantized(path, equalized=False):
    """{name: float32 array} of an arrowquant Parquet file, dequantized by the independent reader of
    tests/py/check_format.py (written from docs/FORMAT.md alone) — in the original weight space, or
    as stored (W·diag(s)) with `equalized` — and the rows themselves {name: row}."""
    import pyarrow.parquet as pq

    sys.path.insert(0, os.path.join(ROOT, "tests", "py"))
    import check_format  # noqa: E402

    weights, rows = {}, {}
    for row in pq.ParquetFile(path).read().to_pylist():
        shape = row["shape"]
        if row["storage"] == "quantized":
            w = check_format.dequantize(row)
            sp = row["spatial"]
            if sp is not None and not equalized:
                scales = np.asarray(sp["equalization_scales"], dtype=np.float32)
                w = (w / scales[check_format.channel_of(shape)]).astype(np.float32)
        elif row["storage"] == "f16":
            w = np.frombuffer(row["data"], dtype="<f2").astype(np.float32)
        elif row["storage"] == "blocks":
            w = check_format.dequantize_blocks(row)
        elif row["dtype"] in ("F32", "F16", "BF16"):
            w = check_format.as_f32(row["dtype"], row["data"])
        else:
            w = np.frombuffer(row["data"], dtype=check_format.DTYPES[row["dtype"]])
        weights[row["name"]] = w.reshape(shape)
        rows[row["name"]] = row
    return weights, rows


def read_gguf(path):
    """{name: float32 array} of a GGUF file, dequantized by llama.cpp's own gguf-py (PyPI `gguf`),
    in the source's shapes (ComfyUI-GGUF's `comfy.gguf.orig_shape.*` keys honoured)."""
    import gguf
    from gguf.quants import dequantize

    reader = gguf.GGUFReader(path)
    orig = {}
    for field in reader.fields.values():
        if field.name.startswith("comfy.gguf.orig_shape."):
            orig[field.name[len("comfy.gguf.orig_shape."):]] = [int(field.parts[i][0]) for i in field.data]
    out = {}
    for t in reader.tensors:
        shape = orig.get(t.name, [int(d) for d in reversed(t.shape)])
        out[t.name] = dequantize(t.data, t.tensor_type).astype(np.float32).reshape(shape)
    return out
