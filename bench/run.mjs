// `make bench`: every performance number of the README, as ratios measured in one run.
//   BENCH_MELEMS (default 64) — size of the synthetic f32 tensor in millions of elements
//   BENCH_RUNS   (default 3)  — runs per measurement; the median is reported
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import { bytesSource, quantizeModel, quantizeStream, setReferenceKernels, wasmMemoryBytes } from '../pkg/node.js';
import { benchKernels, benchStages, initSync as initBenchModule } from '../pkg/wasm-bench/arrowquant.js';
import { quantize4, quantizeSafetensors4 } from './plain-js-quantizer.mjs';
import { benchDir, gaussian, oneTensorFile } from './synthetic.mjs';
import { median, medianSeconds } from './timing.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
// The kernel and stage timings live in their own module (`make bench` builds it); the end-to-end
// numbers come from the shipped package.
initBenchModule({ module: readFileSync(join(ROOT, 'pkg/wasm-bench/arrowquant_bg.wasm')) });
const MELEMS = Number(process.env.BENCH_MELEMS ?? 64);
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ROW = 4096;
const n = Math.floor((MELEMS * 1e6) / ROW) * ROW;
const timeIt = (f) => medianSeconds(RUNS, f);
const gbps = (bytes, s) => (bytes / s / 1e9).toFixed(3);

// Synthetic model: Gaussian f32 weights [n/4096, 4096].
const values = gaussian(n, 7);
const synthetic = oneTensorFile('w.weight', values, ROW);
const dir = benchDir();
const syntheticPath = join(dir, 'synthetic.safetensors');
writeFileSync(syntheticPath, synthetic);
const realPath = join(ROOT, 'samples/rivagan_f32.safetensors');

console.log(`# arrowquant benchmark — ${new Date().toISOString().slice(0, 10)}, Node ${process.version}, ${RUNS} runs (median)\n`);

// The machine's copy bandwidth, measured in this run: throughput targets in GB/s only mean
// something beside it (the same VM kind has measured twice the bandwidth on one day than on another).
const COPY_RUNS = 7;
const copyTimes = [];
{
  const dst = new Float32Array(values.length);
  for (let r = 0; r <= COPY_RUNS; r++) {
    const t = performance.now();
    dst.set(values);
    if (r > 0) copyTimes.push((performance.now() - t) / 1000); // the first run maps the pages
  }
}
const copyGbps = values.byteLength / median(copyTimes) / 1e9;
console.log(`Machine: ${cpus()[0]?.model ?? 'unknown CPU'}, ${cpus().length} cores. Copy bandwidth (Float32Array.set of ${(values.byteLength / 2 ** 20).toFixed(0)} MiB, median of ${COPY_RUNS}): ${copyGbps.toFixed(1)} GB/s read (+ the same written).\n`);

// 1. Kernels, SIMD128 vs scalar twin, on 4M values in groups of 64. A kernel pass is short, so it
// is timed more often than the end-to-end runs (the median of KERNEL_RUNS).
const KERNEL_RUNS = Math.max(RUNS, 7);
console.log(`## Kernels (wasm in Node, single thread, 4M f32 values, group 64; median of ${KERNEL_RUNS} passes)\n`);
console.log('| kernel | scalar GB/s | SIMD128 GB/s | SIMD ÷ scalar |\n|---|---|---|---|');
const kv = values.subarray(0, 4 * 1024 * 1024);
const kernelRow = (r) => `| ${r.kernel} | ${gbps(r.inputBytes, r.scalarMs / 1000)} | ${gbps(r.inputBytes, r.simdMs / 1000)} | ${(r.scalarMs / r.simdMs).toFixed(2)}× |`;
const kernelRows = benchKernels(kv, 64, 4, KERNEL_RUNS);
for (const r of kernelRows) console.log(kernelRow(r));
const share = (name) => {
  const r = kernelRows.find((k) => k.kernel === name);
  return `${gbps(r.inputBytes, r.simdMs / 1000)} GB/s = ${((100 * r.inputBytes) / (r.simdMs / 1000) / 1e9 / copyGbps).toFixed(1)} % of copy bandwidth`;
};
console.log(`\nAgainst this run's copy bandwidth: 4-bit min/max quantize ${share('quantize 4-bit min/max (params + codes + pack)')}; 4-bit scale search ${share('quantize 4-bit scale search (params + codes + pack)')}; dequantize ${share('unpack + dequantize 4-bit')}.`);
console.log('\n### The whole per-group quantizer (params + codes + pack) by bit width and group size\n');
console.log('| bits | group | kernel | scalar GB/s | SIMD128 GB/s | SIMD ÷ scalar |\n|---|---|---|---|---|---|');
for (const [bits, group] of [[4, 32], [4, 128], [2, 64], [2, 128], [8, 64]]) {
  for (const r of benchKernels(kv, group, bits, KERNEL_RUNS).filter((r) => r.kernel.startsWith('quantize ') && r.kernel.includes('params'))) {
    console.log(`| ${bits} | ${group} ${kernelRow(r)}`);
  }
}

// 2. End to end, safetensors bytes → Parquet bytes.
const configs = [
  ['4-bit g64 min/max', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
  ['4-bit g64 scale search', { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ['2-bit g64 scale search', { bitWidth: 2, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ['8-bit g64 min/max', { bitWidth: 8, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
];
const native = {};
try {
  const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'bench_native', '--', syntheticPath, String(RUNS), ...configs.map(([, c]) => JSON.stringify(c))], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
  out.trim().split('\n').forEach((line, i) => (native[configs[i][0]] = JSON.parse(line).seconds));
} catch (e) {
  console.error(`native benchmark failed: ${e.message}`);
}
const bytes = n * 4;
console.log(`\n## End to end: ${(n / 1e6).toFixed(0)}M-element f32 tensor (${(bytes / 1048576).toFixed(0)} MiB), safetensors → Parquet\n`);
console.log('| config | wasm scalar GB/s | wasm SIMD128 GB/s | SIMD ÷ scalar | native GB/s | wasm SIMD ÷ native |\n|---|---|---|---|---|---|');
const e2e = {};
for (const [label, cfg] of configs) {
  setReferenceKernels(true);
  const scalar = timeIt(() => quantizeModel(synthetic, cfg));
  setReferenceKernels(false);
  const simd = timeIt(() => quantizeModel(synthetic, cfg));
  e2e[label] = simd;
  const nat = native[label];
  console.log(`| ${label} | ${gbps(bytes, scalar)} | ${gbps(bytes, simd)} | ${(scalar / simd).toFixed(2)}× | ${nat ? gbps(bytes, nat) : '—'} | ${nat ? (nat / simd).toFixed(2) + '×' : '—'} |`);
}

// 2b. The importance-weighted search (calibration second moments per input column) against the
// plain search on the same tensor, same run. The rows with calibration also measure each layer's
// output SNR, which the quality report needs.
{
  // Both per-column statistics tools/calibrate.py records: the second moments weight the search
  // and the output SNR, the channel maxima the activation-weighted SNR.
  const sqMean = Array.from({ length: ROW }, (_, j) => 0.1 + ((j * 7919) % 101) / 10);
  const channelAbsMax = sqMean.map((v) => 2 * Math.sqrt(v));
  const calibration = { timesteps: [0], layers: { w: { actMin: [-1], actMax: [1], samples: [64], sqMean, channelAbsMax } } };
  const base = { profile: 'base', groupSize: 64, minAccuracy: 0, enableSpatial: false, enableTimeAware: false, scaleSearch: 'on' };
  console.log('\n## Importance-weighted search (second moments from calibration) vs the plain search, same tensor\n');
  // "Same report": the plain search with the same calibration (`importance: 'off'`), so the layer's
  // output and activation-weighted SNR are measured in both — the search's own cost apart.
  console.log('| bits | plain search GB/s | plain search, same report GB/s | importance-weighted GB/s | importance ÷ plain time | importance ÷ plain, same report |\n|---|---|---|---|---|---|');
  // At 8 bits the weighted search ranks with fewer importance levels (32 for groups of 64).
  for (const bits of [4, 2, 8]) {
    const cfg = { ...base, bitWidth: bits };
    const plain = timeIt(() => quantizeModel(synthetic, cfg));
    const sameReport = timeIt(() => quantizeModel(synthetic, { ...cfg, importance: 'off' }, { calibration }));
    const weighted = timeIt(() => quantizeModel(synthetic, cfg, { calibration }));
    console.log(`| ${bits} | ${gbps(bytes, plain)} | ${gbps(bytes, sameReport)} | ${gbps(bytes, weighted)} | ${(weighted / plain).toFixed(2)}× | ${(weighted / sameReport).toFixed(2)}× |`);
  }
}

// 3. Against a plain-JavaScript quantizer of the same algorithm (4-bit, group 64).
// The JS search is ~30× slower than wasm: it runs on the first 4M elements only (GB/s is a rate).
console.log('\n## wasm vs plain JavaScript (same algorithm, 4-bit g64; JS times the quantizer alone, wasm end to end)\n');
console.log('| config | plain JS GB/s | wasm SIMD128 GB/s | wasm ÷ JS |\n|---|---|---|---|');
for (const [label, search] of [['4-bit g64 min/max', false], ['4-bit g64 scale search', true]]) {
  const m = search ? Math.min(n, 1024 * ROW) : n;
  const js = timeIt(() => quantize4(values.subarray(0, m), m / ROW, ROW, 64, search));
  const jsRate = (m * 4) / js;
  const wasmRate = bytes / e2e[label];
  console.log(`| ${label} | ${(jsRate / 1e9).toFixed(3)} | ${(wasmRate / 1e9).toFixed(3)} | ${(wasmRate / jsRate).toFixed(2)}× |`);
}

// 4. Where the time goes: the quantizer's stages vs the whole pipeline, on a 16M-element tensor.
{
  const m = Math.min(4096 * 4096, n);
  const sub = values.subarray(0, m);
  const file = oneTensorFile('w.weight', sub, ROW);
  console.log(`\n## Where the time goes (one thread, 4-bit g64, ${m / 1048576}M-element f32 tensor = ${(m * 4) / 1048576} MiB; ms, medians)\n`);
  console.log('| stage | min/max ms | scale search ms |\n|---|---|---|');
  const cols = [false, true].map((search) => {
    const stages = benchStages(sub, 64, 4, search, RUNS);
    const whole = timeIt(() => quantizeModel(file, { bitWidth: 4, groupSize: 64, scaleSearch: search ? 'on' : 'off', minAccuracy: 0 })) * 1000;
    const inside = stages[stages.length - 1].ms;
    return [...stages.map((s) => [s.stage, s.ms]), ['outside the quantizer: copies into/out of wasm, Parquet, zstd, CRC, report', whole - inside], ['quantizeModel end to end', whole]];
  });
  // Rows by stage name: the search has a stage min/max does not (gain matching).
  const names = [...new Set(cols[1].map(([stage]) => stage))];
  const cell = (col, stage) => col.find(([s]) => s === stage)?.[1].toFixed(1) ?? '—';
  for (const stage of names) console.log(`| ${stage} | ${cell(cols[0], stage)} | ${cell(cols[1], stage)} |`);
}

// The bundled real models, the same comparisons as the synthetic tensor. A run takes milliseconds,
// so each time is the median of REAL_RUNS runs, and wasm/native/JS alternate per config.
const REAL_RUNS = Math.max(RUNS, 21);
const realModels = [
  ['RivaGAN (F32, 40 tensors)', realPath],
  ['tiny DDPM UNet (F16, 144 tensors)', join(ROOT, 'samples/tiny_ddpm_digits.safetensors')],
];
console.log(`\n## Bundled real models, safetensors → Parquet (one thread, weights only, median of ${REAL_RUNS} runs)\n`);
console.log('| model | config | wasm scalar ms | wasm SIMD128 ms | SIMD ÷ scalar | native ms | wasm SIMD ÷ native | plain JS ms | wasm ÷ JS | peak wasm MiB |\n|---|---|---|---|---|---|---|---|---|---|');
for (const [model, path] of realModels) {
  const file = new Uint8Array(readFileSync(path));
  const nat = {};
  try {
    const out = execFileSync('cargo', ['run', '--quiet', '--release', '--example', 'bench_native', '--', path, String(REAL_RUNS), ...configs.map(([, c]) => JSON.stringify(c))], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    out.trim().split('\n').forEach((line, i) => (nat[configs[i][0]] = JSON.parse(line).seconds));
  } catch (e) {
    console.error(`native benchmark failed: ${e.message}`);
  }
  for (const [label, cfg] of configs) {
    const time = (f) => {
      const times = [];
      for (let r = 0; r < REAL_RUNS; r++) {
        const t = performance.now();
        f();
        times.push(performance.now() - t);
      }
      return median(times);
    };
    setReferenceKernels(true);
    const scalar = time(() => quantizeModel(file, cfg));
    setReferenceKernels(false);
    const simd = time(() => quantizeModel(file, cfg));
    const natMs = nat[label] === undefined ? undefined : nat[label] * 1000;
    // The plain-JS baseline is a 4-bit quantizer (decode + quantize, no Parquet).
    const js = cfg.bitWidth === 4 ? time(() => quantizeSafetensors4(file, cfg.groupSize, cfg.scaleSearch === 'on')) : undefined;
    const mem = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bench/memory.mjs'), 'model', 'file', path, JSON.stringify(cfg)], { encoding: 'utf8' }));
    const ms = (x) => (x === undefined ? '—' : x.toFixed(2));
    const ratio = (x, y) => (x === undefined ? '—' : `${(x / y).toFixed(2)}×`);
    console.log(`| ${model} | ${label} | ${ms(scalar)} | ${ms(simd)} | ${ratio(scalar, simd)} | ${ms(natMs)} | ${ratio(natMs, simd)} | ${ms(js)} | ${ratio(js, simd)} | ${(mem.wasmBytes / 1048576).toFixed(0)} |`);
  }
}
console.log(`\nPeak wasm memory of a fresh process that has only loaded the module: ${(JSON.parse(execFileSync(process.execPath, ['-e', "import('./pkg/node.js').then((m) => console.log(JSON.stringify(m.wasmMemoryBytes())))"], { cwd: ROOT, encoding: 'utf8' })) / 1048576).toFixed(1)} MiB.`);

// Peak wasm memory, each run in a fresh Node process (memory only grows, so its final size is the peak).
console.log('\n## Peak wasm memory (fresh process per run, 256 MiB F32 input)\n');
console.log('| input | config | API | output MiB | peak wasm MiB | peak ÷ input |\n|---|---|---|---|---|---|');
for (const [shape, label] of [[[16384, 4096, 1], 'one 256 MiB tensor'], [[2048, 4096, 8], '8 tensors of 32 MiB']]) {
  for (const [cfgLabel, cfg] of [['4-bit g64', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }], ['8-bit g64', { bitWidth: 8, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }]]) {
    for (const api of ['model', 'stream']) {
      const out = JSON.parse(execFileSync(process.execPath, [join(ROOT, 'bench/memory.mjs'), api, ...shape.map(String), JSON.stringify(cfg)], { encoding: 'utf8' }));
      const mib = (b) => (b / 1048576).toFixed(0);
      console.log(`| ${label} | ${cfgLabel} | ${api === 'model' ? 'quantizeModel' : 'quantizeStream'} | ${mib(out.outputBytes)} | ${mib(out.wasmBytes)} | ${(out.wasmBytes / out.inputBytes).toFixed(2)}× |`);
    }
  }
}

// Cost per tensor as the tensor count grows (real checkpoints have thousands): many 1-D tensors,
// so the time is the per-tensor bookkeeping, not quantization. Flat µs per tensor = linear.
console.log('\n## Time per tensor by tensor count (1-D U8 tensors of 64 bytes; µs per tensor, one run each)\n');
console.log('| tensors | quantizeModel | quantizeStream | quantizeStream + onProgress |\n|---|---|---|---|');
for (const count of [1000, 10000, 100000]) {
  const header = {};
  for (let i = 0; i < count; i++) header[`blocks.${i}.scale`] = { dtype: 'U8', shape: [64], data_offsets: [i * 64, i * 64 + 64] };
  const json = new TextEncoder().encode(JSON.stringify(header));
  const file = new Uint8Array(8 + json.length + count * 64);
  new DataView(file.buffer).setBigUint64(0, BigInt(json.length), true);
  file.set(json, 8);
  const us = async (fn) => {
    const t0 = performance.now();
    await fn();
    return (((performance.now() - t0) * 1000) / count).toFixed(1);
  };
  const whole = await us(() => quantizeModel(file, {}));
  const stream = await us(() => quantizeStream(bytesSource(file), {}));
  const progress = await us(() => quantizeStream(bytesSource(file), {}, { onProgress: () => {} }));
  console.log(`| ${count.toLocaleString('en-US')} | ${whole} | ${stream} | ${progress} |`);
}

// 5. Sizes.
console.log('\n## .wasm size\n');
console.log('| build | raw KiB | gzip KiB | brotli KiB |\n|---|---|---|---|');
for (const [label, path] of [['single-threaded SIMD128', 'pkg/wasm/arrowquant_bg.wasm'], ['threaded SIMD128', 'pkg/wasm-mt/arrowquant_bg.wasm']]) {
  try {
    const b = readFileSync(join(ROOT, path));
    console.log(`| ${label} | ${(b.length / 1024).toFixed(0)} | ${(gzipSync(b, { level: 9 }).length / 1024).toFixed(0)} | ${(brotliCompressSync(b).length / 1024).toFixed(0)} |`);
  } catch {
    console.log(`| ${label} | not built | | |`);
  }
}
