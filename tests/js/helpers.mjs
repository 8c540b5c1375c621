// Shared test helpers: paths, tiny safetensors builder, a temp dir per test file.
import { mkdtempSync, readFileSync } from 'node:fs';
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
export const tempDir = () => mkdtempSync(join(tmpdir(), 'aq-test-'));

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
