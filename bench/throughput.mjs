// End-to-end quantize throughput of the wasm package in Node (GB/s of f32 input):
// quantizeModel on one synthetic [rows, 4096] f32 tensor, median of several runs.
// Each row is timed with the SIMD128 kernels and with the scalar reference kernels in the same
// run; the ratio is SIMD speed-up end to end.
// Usage: node bench/throughput.mjs [MiB=64] [runs=3]
import { quantizeModel, setReferenceKernels } from '../pkg/node.js';

const mib = Number(process.argv[2] ?? 64);
const runs = Number(process.argv[3] ?? 3);
const n = (mib * 1048576) / 4;
const values = new Float32Array(n);
let s = 7;
for (let i = 0; i < n; i += 2) {
  // Box–Muller from a small LCG: Gaussian weights, like a trained layer's bulk.
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  const u = (s + 1) / 4294967297;
  s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
  const v = s / 4294967296;
  const r = Math.sqrt(-2 * Math.log(u));
  values[i] = r * Math.cos(2 * Math.PI * v);
  values[i + 1] = r * Math.sin(2 * Math.PI * v);
}
const header = new TextEncoder().encode(JSON.stringify({ w: { dtype: 'F32', shape: [n / 4096, 4096], data_offsets: [0, n * 4] } }));
const file = new Uint8Array(8 + header.length + n * 4);
new DataView(file.buffer).setBigUint64(0, BigInt(header.length), true);
file.set(header, 8);
file.set(new Uint8Array(values.buffer), 8 + header.length);

const median = (xs) => xs.sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| config (${mib} MiB f32, median of ${runs}) | scalar GB/s | SIMD128 GB/s | SIMD ÷ scalar |`);
console.log('|---|---|---|---|');
for (const [label, cfg] of [
  ['4-bit g64 min/max', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
  ['4-bit g64 scale search', { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ['2-bit g64 scale search', { bitWidth: 2, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ['8-bit g64 min/max', { bitWidth: 8, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
]) {
  const gbps = {};
  for (const reference of [true, false]) {
    setReferenceKernels(reference);
    const times = [];
    for (let r = 0; r < runs; r++) {
      const t = performance.now();
      quantizeModel(file, cfg);
      times.push((performance.now() - t) / 1000);
    }
    gbps[reference ? 'scalar' : 'simd'] = (n * 4) / median(times) / 1e9;
  }
  setReferenceKernels(false);
  console.log(`| ${label} | ${gbps.scalar.toFixed(3)} | ${gbps.simd.toFixed(3)} | ${(gbps.simd / gbps.scalar).toFixed(2)}× |`);
}
