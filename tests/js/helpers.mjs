// Shared test helpers: paths, tiny safetensors builder, a temp dir per test file.
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const SAMPLE = join(ROOT, 'samples/rivagan_f32.safetensors');
export const MINILM = join(ROOT, 'tests/data/minilm_l6_bf16_subset.safetensors');
export const DDPM = join(ROOT, 'samples/tiny_ddpm_digits.safetensors');
export const DDPM_CAL = join(ROOT, 'samples/tiny_ddpm_digits.calib.safetensors');
export const CLI = join(ROOT, 'pkg/cli.js');
export const read = (p) => new Uint8Array(readFileSync(p));
// Each test file runs in its own process; its temp dirs go when it exits, pass or fail.
export function tempDir(prefix = 'aq-test-') {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** safetensors bytes from [{ name, dtype, shape, data: TypedArray | Uint8Array }]. */
export function safetensors(tensors, metadata) {
  const header = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  const parts = [];
  for (const t of tensors) {
    const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    header[t.name] = { dtype: t.dtype, shape: t.shape, data_offsets: [offset, offset + bytes.length] };
    offset += bytes.length;
    parts.push(bytes);
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const out = new Uint8Array(8 + json.length + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  let at = 8 + json.length;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** Deterministic pseudo-random Float32Array in [-1, 1). */
export function randomF32(n, seed = 1) {
  const out = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    out[i] = s / 2 ** 31 - 1;
  }
  return out;
}

/**
 * Write a safetensors file of about `targetBytes` to `path`, with the layer shapes of an SD-style
 * UNet block (3×3 convs, attention projections, GEGLU feed-forward, norms) repeated, F16 values
 * drawn from N(0, 0.02²). Written tensor by tensor from one reusable buffer, so it never holds
 * the file in memory. Returns { tensors, bytes, largestBytes }.
 */
export function writeLargeModel(path, targetBytes) {
  const block = [
    ['resnets.0.conv1.weight', [1280, 1280, 3, 3]],
    ['resnets.0.norm1.weight', [1280]],
    ['attentions.0.to_q.weight', [1280, 1280]],
    ['attentions.0.to_k.weight', [1280, 1280]],
    ['attentions.0.to_v.weight', [1280, 1280]],
    ['attentions.0.to_out.0.weight', [1280, 1280]],
    ['attentions.0.to_out.0.bias', [1280]],
    ['attentions.0.ff.net.0.proj.weight', [10240, 1280]],
    ['attentions.0.ff.net.2.weight', [1280, 5120]],
  ];
  const perBlock = block.reduce((n, [, s]) => n + 2 * s.reduce((a, b) => a * b, 1), 0);
  const blocks = Math.max(1, Math.round(targetBytes / perBlock));
  const tensors = [];
  let offset = 0;
  for (let b = 0; b < blocks; b++) {
    for (const [name, shape] of block) {
      const len = 2 * shape.reduce((a, c) => a * c, 1);
      tensors.push({ name: `down_blocks.${b}.${name}`, shape, start: offset, len });
      offset += len;
    }
  }
  const header = { __metadata__: { modality: 'image', generator: 'tests/js/helpers.mjs writeLargeModel' } };
  for (const t of tensors) header[t.name] = { dtype: 'F16', shape: t.shape, data_offsets: [t.start, t.start + t.len] };
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - ((8 + json.length) % 8)) % 8);
  const head = Buffer.alloc(8 + json.length);
  head.writeBigUInt64LE(BigInt(json.length), 0);
  head.write(json, 8);
  // 32 MiB of F16 noise, more than the largest tensor (so no tensor repeats itself, which zstd
  // would exploit), reused with a rotating start so neighbouring tensors differ.
  const pool = new Uint16Array(16 * 1024 * 1024);
  let s = 12345;
  const f32 = new Float32Array(1);
  const u32 = new Uint32Array(f32.buffer);
  const f16 = (x) => {
    f32[0] = x;
    const u = u32[0];
    const sign = (u >>> 16) & 0x8000;
    const e = ((u >>> 23) & 0xff) - 127 + 15;
    if (e <= 0) return sign;
    return sign | (e << 10) | ((u >>> 13) & 0x3ff);
  };
  for (let i = 0; i < pool.length; i += 2) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const u1 = (s + 1) / 4294967297;
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    const u2 = s / 4294967296;
    const r = Math.sqrt(-2 * Math.log(u1)) * 0.02;
    pool[i] = f16(r * Math.cos(2 * Math.PI * u2));
    pool[i + 1] = f16(r * Math.sin(2 * Math.PI * u2));
  }
  const poolBytes = new Uint8Array(pool.buffer);
  const fd = openSync(path, 'w');
  writeSync(fd, head);
  let largest = 0;
  tensors.forEach((t, k) => {
    largest = Math.max(largest, t.len);
    let left = t.len;
    let at = (k * 7919 * 64) % poolBytes.length;
    while (left > 0) {
      const n = Math.min(left, poolBytes.length - at);
      writeSync(fd, poolBytes, at, n);
      left -= n;
      at = 0;
    }
  });
  closeSync(fd);
  return { tensors: tensors.length, bytes: head.length + offset, largestBytes: largest };
}

/** Flags for Debian's headless Chromium under playwright-core (no sandbox in CI containers). */
export const CHROMIUM_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

/**
 * Split a safetensors file into shards of `counts[i]` consecutive tensors (file order), as
 * transformers/diffusers save big models: `{ shards: [{ name, bytes }], index }` with the index
 * JSON's `weight_map`. Every shard keeps the source `__metadata__`.
 */
export function splitSafetensors(whole, counts, stem = 'model') {
  const view = new DataView(whole.buffer, whole.byteOffset, whole.byteLength);
  const n = Number(view.getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(whole.subarray(8, 8 + n)));
  const metadata = header.__metadata__;
  delete header.__metadata__;
  const names = Object.keys(header).sort((a, b) => header[a].data_offsets[0] - header[b].data_offsets[0]);
  const shards = [];
  const weightMap = {};
  let at = 0;
  counts.forEach((count, i) => {
    const name = `${stem}-${String(i + 1).padStart(5, '0')}-of-${String(counts.length).padStart(5, '0')}.safetensors`;
    const part = names.slice(at, at + count);
    at += count;
    const tensors = part.map((t) => {
      const [b, e] = header[t].data_offsets;
      return { name: t, dtype: header[t].dtype, shape: header[t].shape, data: whole.subarray(8 + n + b, 8 + n + e) };
    });
    part.forEach((t) => (weightMap[t] = name));
    shards.push({ name, bytes: safetensors(tensors, metadata) });
  });
  return { shards, index: { metadata: { total_size: whole.length - 8 - n }, weight_map: weightMap } };
}

/** A source over `bytes` that records every read's length in `reads`. */
export function countingSource(bytes) {
  const s = { size: bytes.length, reads: [] };
  s.read = (a, b) => {
    s.reads.push(b - a);
    return bytes.subarray(a, b);
  };
  return s;
}
