// `make bench`, GGUF section: safetensors → GGUF through the shipped package (one thread, wasm
// SIMD128 build), beside safetensors → Parquet on the same input in the same run, and the peak
// wasm memory of the streamed writer (fresh process per type). The block searches run on the
// SIMD128 block-sum kernels; the ratio to the Parquet path is the number to watch.
//   BENCH_MELEMS (default 16) — size of the synthetic f32 tensor in millions of elements
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { quantizeModel, quantizeModelGguf } from '../pkg/node.js';
import { benchDir, gaussian, oneTensorFile } from './synthetic.mjs';
import { median, medianSeconds } from './timing.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const MELEMS = Number(process.env.BENCH_MELEMS ?? 16);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ROW = 4096;
const n = Math.floor((MELEMS * 1e6) / ROW) * ROW;
const file = oneTensorFile('w.weight', gaussian(n, 11, 0.02), ROW);
const seconds = (f) => medianSeconds(RUNS, f);
const path = join(benchDir(), 'w.safetensors');
writeFileSync(path, file);

console.log(`\n## GGUF output (one thread, wasm SIMD128 build, ${n / 1048576}M-element f32 tensor = ${(n * 4) / 1048576} MiB; median of ${RUNS})\n`);
console.log('| output | GB/s | ÷ Parquet 4-bit min/max | SNR dB | bits/param | peak wasm MiB (streamed) |\n|---|---|---|---|---|---|');
const parquet = seconds(() => quantizeModel(file, { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }));
const rate = (s) => (n * 4) / s / 1e9;
console.log(`| Parquet 4-bit g64 min/max | ${rate(parquet).toFixed(3)} | 1.00 | | | |`);
for (const ty of ['Q8_0', 'Q4_0', 'Q4_1', 'Q6_K', 'Q5_K_M', 'Q4_K_M', 'Q3_K_M', 'Q2_K']) {
  let report;
  const s = seconds(() => ({ report } = quantizeModelGguf(file, ty)));
  const mem = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bench/memory.mjs'), 'gguf', path, ty], { encoding: 'utf8' }));
  console.log(`| GGUF ${ty} | ${rate(s).toFixed(3)} | ${(parquet / s).toFixed(2)} | ${report.snrDb.toFixed(2)} | ${((8 * report.outputBytes) / n).toFixed(3)} | ${(mem.wasmBytes / 1048576).toFixed(0)} |`);
}
