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

from check_gguf import write_safetensors  # an input writer (f32 tensors), not a reader of ours

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CLI = os.path.join(ROOT, "pkg", "cli.js")

DDPM = "samples/tiny_ddpm_digits.safetensors"
DDPM_CAL = "samples/tiny_ddpm_digits.calib.safetensors"

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
    # a real trained diffusion UNet with real calibration statistics (docs/CALIBRATION.md)
    (DDPM, ["--profile", "local", "--calibration", DDPM_CAL]),
    (DDPM, ["--profile", "edge", "--min-accuracy", "0", "--calibration", DDPM_CAL, "--enable-spatial", "on", "--spatial-alpha", "0.8", "--time-smoothing", "0.5"]),
    (DDPM, ["--profile", "cloud", "--calibration", DDPM_CAL, "--time-grouping", "uniform", "--num-time-groups", "6", "--activation-bits", "4"]),
    (DDPM, ["--profile", "local", "--calibration", DDPM_CAL, "--enable-spatial", "off"]),
    (DDPM, ["--bits", "4", "--group-size", "64", "--calibration", DDPM_CAL, "--spatial-alpha", "search", "--gptq", "off"]),
    # §4.4 blocks from the quantizer: ggml block types instead of groups, per layer with `auto`
    (DDPM, ["--profile", "local", "--calibration", DDPM_CAL, "--codec", "auto"]),
    (DDPM, ["--bits", "2", "--group-size", "64", "--calibration", DDPM_CAL, "--enable-spatial", "off", "--codec", "ggml", "--min-accuracy", "0"]),
    ("samples/rivagan_f32.safetensors", ["--bits", "4", "--codec", "ggml", "--min-accuracy", "0"]),
]

DTYPES = {"F32": np.float32, "F16": np.float16, "F64": np.float64, "I64": np.int64, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path, with_metadata=False):
    """{name: (dtype, shape, raw bytes)} — the safetensors layout is 8-byte length + JSON + data."""
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8 : 8 + n])
    meta = header.pop("__metadata__", None)
    if with_metadata:
        base = 8 + n
        return meta, {k: (v["dtype"], v["shape"], blob[base + v["data_offsets"][0] : base + v["data_offsets"][1]]) for k, v in header.items()}
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


def dequantize_blocks(row):
    """§4.4: the blocks of `block_type`, decoded by llama.cpp's own Python reader (gguf-py)."""
    from gguf import GGMLQuantizationType
    from gguf.quants import dequantize as gguf_dequantize

    qt = GGMLQuantizationType[row["block_type"]]
    return gguf_dequantize(np.frombuffer(row["data"], np.uint8), qt).astype(np.float32).reshape(-1)


def row_crc(row):
    """FORMAT.md §4.3: CRC-32 of every column but `data` (covered by data_crc32) and `modality`."""
    u8, u32, u64 = (lambda v: struct.pack("<B", v)), (lambda v: struct.pack("<I", v)), (lambda v: struct.pack("<Q", v))
    NULL32 = 0xFFFFFFFF
    b = bytearray()
    for text in (row["name"], row["dtype"], row["storage"]):
        b += text.encode() + b"\0"
    b += u32(len(row["shape"])) + b"".join(u64(d) for d in row["shape"])
    b += u8(0xFF if row["requested_bits"] is None else row["requested_bits"])
    b += u8(0xFF if row["bits"] is None else row["bits"])
    b += u32(NULL32 if row["group_size"] is None else row["group_size"])
    b += u32(row["data_crc32"])
    for col in ("scales", "mins"):
        v = row[col]
        b += u32(NULL32) if v is None else u32(len(v)) + np.asarray(v, dtype="<f2").tobytes()
    tg = row["time_groups"]
    if tg is None:
        b += u32(NULL32)
    else:
        b += u32(len(tg))
        for g in tg:
            b += struct.pack("<IIfi", g["t_start"], g["t_end"], g["scale"], g["zero_point"])
    for col in ("cosine", "snr_db", "rel_rmse", "max_abs_error", "weighted_snr_db", "output_snr_db"):
        b += u8(0) if row[col] is None else u8(1) + struct.pack("<d", row[col])
    b += row["reason"].encode() + b"\0"
    sp = row["spatial"]
    if sp is None:
        b += u8(0)
    else:
        b += bytes([1, sp["enabled"], sp["channel_equalization"], sp["activation_smoothing"]])
        b += struct.pack("<f", sp["alpha"]) + u32(len(sp["equalization_scales"]))
        b += np.asarray(sp["equalization_scales"], dtype="<f4").tobytes()
    if row.get("block_type") is not None:  # 2.4: nothing for null
        b += row["block_type"].encode() + b"\0"
    return zlib.crc32(bytes(b))


def metadata_crc(kv):
    text = "".join(f"{k}={v}\n" for k, v in sorted((k, v) for k, v in kv.items() if k.startswith("arrowquant.") and k != "arrowquant.metadata_crc32"))
    return zlib.crc32(text.encode())


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


# ---- calibration-dependent columns (FORMAT.md §4.1, §4.2, §5; docs/DIFFUSION.md) ----

def load_calibration(path):
    meta, tensors = read_safetensors(os.path.join(ROOT, path), with_metadata=True)
    assert meta["format"] == "arrowquant-calibration"
    layers = {}
    for name in tensors:
        if name.endswith(".act_min"):
            layer = name[: -len(".act_min")]
            get = lambda suffix: tensors[f"{layer}.{suffix}"]
            samples = np.frombuffer(get("samples")[2], dtype="<i8")
            absmax = None
            if f"{layer}.channel_absmax" in tensors:
                dt, shape, raw = get("channel_absmax")
                absmax = np.frombuffer(raw, dtype="<f4").reshape(shape)
            layers[layer] = {
                "min": np.frombuffer(get("act_min")[2], dtype="<f4"),
                "max": np.frombuffer(get("act_max")[2], dtype="<f4"),
                "samples": samples,
                "absmax": absmax,
            }
    return json.loads(meta["timesteps"]), layers


def channel_of(shape):
    inner = int(np.prod(shape[2:])) if len(shape) > 2 else 1
    return (np.arange(int(np.prod(shape))) // inner) % shape[1]


def aggregate_absmax(stats):
    a = stats["absmax"]
    if a.ndim == 1:
        return a
    return a[stats["samples"] > 0].max(axis=0)


def expected_scales(w, shape, a, alpha):
    wmax = np.zeros(shape[1], dtype=np.float32)
    np.maximum.at(wmax, channel_of(shape), np.abs(w))
    s = np.power(a.astype(np.float64), alpha) / np.power(wmax.astype(np.float64), 1.0 - alpha)
    s = np.clip(s.astype(np.float32), np.float32(2.0**-14), np.float32(2.0**14))
    return np.where((a > 0) & (wmax > 0), s, np.float32(1.0)).astype(np.float32)


def f32_up(x):
    return np.nextafter(np.float32(x), np.float32(np.inf))


def step_ranges(stats, scales):
    """Per-timestep activation range the time groups must cover (docs/DIFFUSION.md)."""
    out = []
    for t in range(len(stats["samples"])):
        if stats["samples"][t] == 0:
            out.append(None)
            continue
        lo, hi = np.float32(stats["min"][t]), np.float32(stats["max"][t])
        if scales is None:
            out.append((lo, hi))
            continue
        smin, smax = scales.min(), scales.max()
        m = None
        if stats["absmax"] is not None and stats["absmax"].ndim == 2:
            m = max(f32_up(np.float32(a) / sj) for a, sj in zip(stats["absmax"][t], scales))
        nhi = f32_up(hi / smin) if hi > 0 else min(f32_up(hi / smax), np.float32(0))
        nlo = np.nextafter(np.float32(lo / smin), np.float32(-np.inf)) if lo < 0 else max(np.nextafter(np.float32(lo / smax), np.float32(-np.inf)), np.float32(0))
        if m is not None:
            nhi = min(nhi, m) if hi > 0 else nhi
            nlo = max(nlo, -m) if lo < 0 else nlo
        out.append((np.float32(nlo), np.float32(nhi)))
    return out


def excess(ranges, spans):
    total = 0.0
    for a, b in spans:
        steps = [(min(float(l), 0.0), max(float(h), 0.0)) for r in ranges[a:b] if r is not None for l, h in [r]]
        lo, hi = min(s[0] for s in steps), max(s[1] for s in steps)
        total += sum((hi - lo) ** 2 - (h - l) ** 2 for l, h in steps)
    return total


def best_excess(ranges, g):
    """Least excess over partitions of the timesteps with data into ≤ g contiguous groups."""
    steps = [(min(float(r[0]), 0.0), max(float(r[1]), 0.0)) for r in ranges if r is not None]
    p = len(steps)
    inf = float("inf")
    best = [[inf] * (p + 1) for _ in range(g + 1)]
    best[0][0] = 0.0
    for k in range(1, g + 1):
        for b in range(1, p + 1):
            for a in range(b):
                lo = min(s[0] for s in steps[a:b]); hi = max(s[1] for s in steps[a:b])
                c = sum((hi - lo) ** 2 - (s[1] - s[0]) ** 2 for s in steps[a:b])
                best[k][b] = min(best[k][b], best[k - 1][a] + c)
    return min(best[k][p] for k in range(1, g + 1))


def act_params(lo, hi, bits):
    qmax = 2**bits - 1
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    if hi - lo == 0:
        return np.float32(1.0), 0
    s0 = (hi - lo) / qmax
    zp = float(np.clip(np.round(-lo / s0), 1 if lo < 0 else 0, qmax - 1 if hi > 0 else qmax))  # numpy rounds half to even
    s = s0
    if zp < qmax:
        s = max(s, hi / (qmax - zp))
    if zp > 0:
        s = max(s, -lo / zp)
    scale = np.float32(s)
    while np.float32(qmax - zp) * scale < np.float32(hi) or -np.float32(zp) * scale > np.float32(lo):
        scale = f32_up(scale)
    return scale, int(zp)


def check_time_groups(name, groups, ranges, config):
    t_count = len(ranges)
    g = config["numTimeGroups"]
    spans = [(x["t_start"], x["t_end"]) for x in groups]
    assert spans[0][0] == 0 and spans[-1][1] == t_count and all(a[1] == b[0] for a, b in zip(spans, spans[1:])), f"{name}: groups must tile 0..T"
    assert len(spans) <= g
    if config["timeGrouping"] == "uniform" and all(r is not None for r in ranges):
        gg = min(g, t_count)
        assert spans == [(i * t_count // gg, (i + 1) * t_count // gg) for i in range(gg)], f"{name}: uniform boundaries"
    else:
        got, opt = excess(ranges, spans), best_excess(ranges, g)
        assert got <= opt * (1 + 1e-9) + 1e-12, f"{name}: adaptive grouping excess {got} > optimum {opt}"
    raw = []
    for a, b in spans:
        data = [r for r in ranges[a:b] if r is not None]
        assert data, f"{name}: group [{a},{b}) has no data"
        raw.append((min(r[0] for r in data), max(r[1] for r in data)))
    lam = np.float32(config["timeSmoothing"])
    for i, (x, (lo, hi)) in enumerate(zip(groups, raw)):
        if lam > 0 and len(raw) > 1:
            nb = [raw[j] for j in (i - 1, i + 1) if 0 <= j < len(raw)]
            n = np.float32(len(nb))
            nlo = np.float32(0); nhi = np.float32(0)
            for l, h in nb:
                nlo = np.float32(nlo + l / n); nhi = np.float32(nhi + h / n)
            lo = min(lo, np.float32((np.float32(1) - lam) * lo + lam * nlo))
            hi = max(hi, np.float32((np.float32(1) - lam) * hi + lam * nhi))
        scale, zp = act_params(lo, hi, config["activationBits"])
        qmax = 2 ** config["activationBits"] - 1
        assert (x["scale"], x["zero_point"]) == (scale, zp), f"{name} group {i}: file ({x['scale']}, {x['zero_point']}) vs numpy ({scale}, {zp})"
        # never clips what its own timesteps saw
        assert -zp * scale <= raw[i][0] and (qmax - zp) * scale >= raw[i][1]
    return len(groups)


def check(model, args, tmp, idx):
    out = os.path.join(tmp, f"case{idx}.parquet")
    subprocess.run(["node", CLI, "quantize", os.path.join(ROOT, model), "-o", out, "--quiet", *args], check=True)
    restored = os.path.join(tmp, f"case{idx}.safetensors")
    subprocess.run(["node", CLI, "dequantize", out, "-o", restored, "--dtype", "f32"], check=True, stdout=subprocess.DEVNULL)

    pf = pq.ParquetFile(out)
    kv = {k.decode(): v.decode() for k, v in pf.metadata.metadata.items()}
    assert kv["arrowquant.format"] == "arrowquant-v2-extended", kv
    assert kv["arrowquant.format_version"].split(".")[0] == "2"
    assert int(kv["arrowquant.metadata_crc32"]) == metadata_crc(kv), "metadata_crc32"
    config = json.loads(kv["arrowquant.config"])
    calib = None
    if "--calibration" in args:
        calib = load_calibration(args[args.index("--calibration") + 1])
        assert json.loads(kv["arrowquant.calibration"])["timesteps"] == calib[0]
    table = pf.read().to_pylist()
    assert int(kv["arrowquant.tensor_count"]) == len(table), "tensor_count"
    with open(out, "rb") as f:
        whole = f.read()
    body = int(kv["arrowquant.body_bytes"])
    assert body <= len(whole) and zlib.crc32(whole[:body]) == int(kv["arrowquant.body_crc32"]), "body_crc32"
    source = read_safetensors(os.path.join(ROOT, model))
    ours = read_safetensors(restored)
    assert sorted(r["name"] for r in table) == sorted(source), "every source tensor is a row, once"

    counts = {}
    # §2: a `data` chunk is zstd, or uncompressed where zstd would barely shrink the codes.
    for g in range(pf.metadata.num_row_groups):
        rg = pf.metadata.row_group(g)
        for c in range(rg.num_columns):
            col = rg.column(c)
            allowed = ("ZSTD", "UNCOMPRESSED") if col.path_in_schema == "data" else ("ZSTD",)
            assert col.compression in allowed, f"{col.path_in_schema}: {col.compression}"
            if col.compression == "UNCOMPRESSED":
                counts["uncompressed data chunks"] = counts.get("uncompressed data chunks", 0) + 1
    worst = 0.0
    for row in table:
        name = row["name"]
        dtype, shape, raw = source[name]
        assert row["dtype"] == dtype and row["shape"] == shape, name
        assert zlib.crc32(row["data"]) == row["data_crc32"], f"{name}: CRC"
        assert row_crc(row) == row["row_crc32"], f"{name}: row_crc32"
        kind = row["storage"]
        counts[kind] = counts.get(kind, 0) + 1
        if kind == "raw":
            assert row["data"] == raw, f"{name}: raw bytes differ"
            continue
        w = as_f32(dtype, raw)
        layer = name[: -len(".weight")] if name.endswith(".weight") else name
        stats = calib[1].get(layer) if calib and len(shape) >= 2 else None
        scales = None
        if kind == "quantized":
            assert row["group_size"] == config["groupSize"]
            wh = dequantize(row)
            sp = row["spatial"]
            if sp is not None:
                # §4.1: recompute the scales from the calibration and the source, then undo them
                assert stats is not None and config["enableSpatial"], f"{name}: spatial without calibration"
                scales = np.asarray(sp["equalization_scales"], dtype=np.float32)
                # a searched α is the row's own, one of the grid's (docs/DIFFUSION.md)
                if config["spatialAlpha"] == "search":
                    assert sp["alpha"] in (0.0, 0.25, 0.5, 0.75, 1.0), f"{name}: searched alpha {sp['alpha']}"
                    assert "alpha searched by" in row["reason"], f"{name}: reason lacks the search"
                else:
                    assert sp["alpha"] == np.float32(config["spatialAlpha"])
                want = expected_scales(w, shape, aggregate_absmax(stats), np.float32(sp["alpha"]))
                assert np.allclose(scales, want, rtol=2e-7, atol=0), f"{name}: equalization scales differ from numpy"
                assert sp["channel_equalization"] and sp["activation_smoothing"] == (sp["alpha"] > 0)
                wh = (wh / scales[channel_of(shape)]).astype(np.float32)
                counts["equalized"] = counts.get("equalized", 0) + 1
        elif kind == "blocks":
            assert config["codec"] in ("ggml", "auto") and row["spatial"] is None, name
            assert row["bits"] == {"Q2_K": 2, "Q4_K": 4, "Q8_0": 8}[row["block_type"]], name
            wh = dequantize_blocks(row)
        else:
            assert kind == "f16" and row["bits"] == 16
            wh = np.frombuffer(row["data"], dtype="<f2").astype(np.float32)
        lib = as_f32("F32", ours[name][2])
        assert wh.view(np.uint32).tobytes() == lib.view(np.uint32).tobytes(), f"{name}: dequantized floats differ from arrowquant's"
        cos, snr, rel, mx = metrics(w, wh)
        if stats is not None and stats["absmax"] is not None and kind == "quantized":
            a2 = aggregate_absmax(stats).astype(np.float64)[channel_of(shape)] ** 2
            ws = (a2 * w.astype(np.float64) ** 2).sum() / (a2 * (wh.astype(np.float64) - w) ** 2).sum()
            assert abs(10 * np.log10(ws) - row["weighted_snr_db"]) <= 1e-6, f"{name}: weighted_snr_db"
        float_input = "input left in float (sensitive layer" in row["reason"]
        if float_input:
            # floatSensitiveInputs: a sensitive layer's input is not to be quantized
            assert config["floatSensitiveInputs"] and row["reason"].startswith("sensitive layer"), f"{name}: {row['reason']}"
            assert row["time_groups"] is None, f"{name}: a float input with time groups"
            counts["float inputs"] = counts.get("float inputs", 0) + 1
        elif stats is not None and config["enableTimeAware"]:
            assert row["time_groups"] is not None, f"{name}: calibrated layer without time groups"
            n = check_time_groups(name, row["time_groups"], step_ranges(stats, scales), config)
            counts["time-grouped"] = counts.get("time-grouped", 0) + 1
        else:
            assert row["time_groups"] is None, f"{name}: time groups without calibration"
        for got, want, col in [(cos, row["cosine"], "cosine"), (snr, row["snr_db"], "snr_db"), (rel, row["rel_rmse"], "rel_rmse"), (mx, row["max_abs_error"], "max_abs_error")]:
            if np.isinf(want) or np.isinf(got):
                assert got == want, f"{name}: {col} {got} vs {want}"
                continue
            err = abs(got - want)
            worst = max(worst, err)
            assert err <= 1e-6, f"{name}: {col} numpy {got!r} vs file {want!r}"
    print(f"ok  {model} {' '.join(args)}: {len(table)} tensors {counts}, max metric difference {worst:.1e}")
    return counts


def check_converted(ty, tmp):
    """§3 `blocks` (2.4): a GGUF file of ours converted to Parquet holds every tensor's bytes as
    stored — read here with pyarrow, the blocks decoded by gguf-py (llama.cpp's own reader) — and
    converts back to the same GGUF file, byte for byte."""
    from gguf import GGUFReader, GGMLQuantizationType
    from gguf.constants import GGML_QUANT_SIZES
    from gguf.quants import dequantize as gguf_dequantize

    src = os.path.join(tmp, f"conv-{ty}.gguf")
    subprocess.run(["node", CLI, "quantize", os.path.join(ROOT, DDPM), "-o", src, "--gguf-type", ty, "--quiet"], check=True)
    out = os.path.join(tmp, f"conv-{ty}.parquet")
    subprocess.run(["node", CLI, "convert", src, "-o", out], check=True, stdout=subprocess.DEVNULL)
    pf = pq.ParquetFile(out)
    kv = {k.decode(): v.decode() for k, v in pf.metadata.metadata.items()}
    assert kv["arrowquant.format_version"] == "2.4" and kv["arrowquant.converted_from"] == "gguf", kv
    assert kv["arrowquant.config"] == "null" and int(kv["arrowquant.metadata_crc32"]) == metadata_crc(kv)
    table = pf.read().to_pylist()
    reader = GGUFReader(src)
    tensors = {t.name: t for t in reader.tensors}
    assert [r["name"] for r in table] == [t.name for t in reader.tensors], "rows in the GGUF's order"
    blocks = 0
    for row in table:
        t = tensors[row["name"]]
        assert zlib.crc32(row["data"]) == row["data_crc32"] and row_crc(row) == row["row_crc32"], row["name"]
        assert row["data"] == bytes(np.asarray(t.data).view(np.uint8).ravel()), f"{row['name']}: bytes differ from the GGUF's"
        assert row["cosine"] is None and row["requested_bits"] is None
        if row["storage"] == "blocks":
            blocks += 1
            qt = GGMLQuantizationType[row["block_type"]]
            assert row["group_size"] == GGML_QUANT_SIZES[qt][0], row["name"]
            mine = gguf_dequantize(np.frombuffer(row["data"], np.uint8), qt).astype(np.float32).ravel()
            theirs = gguf_dequantize(t.data, t.tensor_type).astype(np.float32).ravel()
            assert mine.view(np.uint32).tobytes() == theirs.view(np.uint32).tobytes(), row["name"]
            assert int(np.prod(row["shape"])) == mine.size
        else:
            assert row["storage"] == "raw" and row["block_type"] is None and row["dtype"] == t.tensor_type.name, row["name"]
    back = os.path.join(tmp, f"conv-{ty}-back.gguf")
    subprocess.run(["node", CLI, "convert", out, "-o", back], check=True, stdout=subprocess.DEVNULL)
    with open(src, "rb") as a, open(back, "rb") as b:
        assert a.read() == b.read(), f"{ty}: GGUF → Parquet → GGUF is not the same file"
    print(f"ok  GGUF {ty} → Parquet ({blocks} blocks rows, {len(table) - blocks} raw) → GGUF, same bytes")


def main():
    with tempfile.TemporaryDirectory() as tmp:
        # Codes that zstd barely shrinks (uniform values at 8 bits: 2 MiB of evenly spread codes)
        # between small tensors: an uncompressed `data` chunk in a row group of its own.
        rng = np.random.default_rng(3)
        mixed = os.path.join(tmp, "uncompressed_codes.safetensors")
        write_safetensors(mixed, {
            "a.weight": rng.standard_normal((64, 64)),
            "big.weight": rng.uniform(-1, 1, (1024, 2048)),
            "z.weight": rng.standard_normal((64, 128)),
        })
        cases = CASES + [(mixed, ["--bits", "8", "--group-size", "64", "--min-accuracy", "0"])]
        counts = [check(model, args, tmp, i) for i, (model, args) in enumerate(cases)]
        assert "uncompressed data chunks" in counts[-1], "the uniform codes were compressed"
        for ty in ("Q4_K_M", "Q5_0", "Q2_K", "BF16"):
            check_converted(ty, tmp)
    print(f"{len(cases)} passed, 0 failed")


if __name__ == "__main__":
    sys.exit(main())
