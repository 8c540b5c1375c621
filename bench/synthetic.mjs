// Synthetic inputs shared by the benchmarks: Gaussian f32 weights (Box–Muller over a fixed LCG,
// so every run sees the same values), a one-tensor safetensors file holding them, and a temp dir
// for such files that goes when the benchmark exits.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** A fresh directory under the OS temp dir, removed when the process exits. */
export function benchDir() {
  const dir = mkdtempSync(join(tmpdir(), 'aq-bench-'));
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** `n` (even) Gaussian values times `scale`, from `seed`. */
export function gaussian(n, seed, scale = 1) {
  const values = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i += 2) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const u = (s + 1) / 4294967297;
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    const r = Math.sqrt(-2 * Math.log(u)) * scale;
    values[i] = r * Math.cos((2 * Math.PI * s) / 4294967296);
    values[i + 1] = r * Math.sin((2 * Math.PI * s) / 4294967296);
  }
  return values;
}

/** A safetensors file of one F32 tensor `name` of shape [values.length / cols, cols], its header
 * padded with spaces to a multiple of 8 bytes as the safetensors library writes it. */
export function oneTensorFile(name, values, cols) {
  const json = JSON.stringify({ [name]: { dtype: 'F32', shape: [values.length / cols, cols], data_offsets: [0, values.length * 4] } });
  const header = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 8) * 8, ' '));
  const file = new Uint8Array(8 + header.length + values.length * 4);
  new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
  file.set(header, 8);
  file.set(new Uint8Array(values.buffer, values.byteOffset, values.length * 4), 8 + header.length);
  return file;
}
