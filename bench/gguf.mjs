// `make bench`, GGUF section: safetensors → GGUF through the shipped package (one thread, wasm
// SIMD128 build), beside safetensors → Parquet on the same input in the same run, and the peak
// wasm memory of the streamed writer (fresh process per type). The ggml block kernels are scalar
// Rust so far; the ratio to the Parquet path is the number to watch.
//   BENCH_MELEMS (default 16) — size of the synthetic f32 tensor in millions of elements
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { quantizeModel, quantizeModelGguf } from '../pkg/node.js';

const ROOT = new URL('..', import.meta.url).pathname;
const MELEMS = Number(process.env.BENCH_MELEMS ?? 16);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ROW = 4096;
const n = Math.floor((MELEMS * 1e6) / ROW) * ROW;
const values = new Float32Array(n);
let seed = 11;
for (let i = 0; i < n; i += 2) {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  const u = (seed + 1) / 4294967297;
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  const r = Math.sqrt(-2 * Math.log(u)) * 0.02;
  values[i] = r * Math.cos((2 * Math.PI * seed) / 4294967296);
  values[i + 1] = r * Math.sin((2 * Math.PI * seed) / 4294967296);
}
const header = new TextEncoder().encode(JSON.stringify({ 'w.weight': { dtype: 'F32', shape: [n / ROW, ROW], data_offsets: [0, n * 4] } }));
const file = new Uint8Array(8 + header.length + n * 4);
new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
file.set(header, 8);
file.set(new Uint8Array(values.buffer), 8 + header.length);
const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const seconds = (f) => {
  const times = [];
  for (let r = 0; r < RUNS; r++) {
    const t = performance.now();
    f();
    times.push((performance.now() - t) / 1000);
  }
  return median(times);
};
const path = join(mkdtempSync(join(tmpdir(), 'aq-gguf-')), 'w.safetensors');
writeFileSync(path, file);

console.log(`\n## GGUF output (one thread, wasm SIMD128 build, ${n / 1048576}M-element f32 tensor = ${(n * 4) / 1048576} MiB; median of ${RUNS})\n`);
console.log('| output | GB/s | ÷ Parquet 4-bit min/max | SNR dB | bits/param | peak wasm MiB (streamed) |\n|---|---|---|---|---|---|');
const parquet = seconds(() => quantizeModel(file, { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }));
const rate = (s) => (n * 4) / s / 1e9;
console.log(`| Parquet 4-bit g64 min/max | ${rate(parquet).toFixed(3)} | 1.00 | | | |`);
for (const ty of ['Q8_0', 'Q4_0', 'Q4_1', 'Q5_K_M', 'Q4_K_M', 'Q6_K']) {
  let report;
  const s = seconds(() => ({ report } = quantizeModelGguf(file, ty)));
  const mem = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bench/memory.mjs'), 'gguf', path, ty], { encoding: 'utf8' }));
  console.log(`| GGUF ${ty} | ${rate(s).toFixed(3)} | ${(parquet / s).toFixed(2)} | ${report.snrDb.toFixed(2)} | ${((8 * report.outputBytes) / n).toFixed(3)} | ${(mem.wasmBytes / 1048576).toFixed(0)} |`);
}
