// Same-process A/B of two builds of the package: both are loaded into one Node process and run
// alternately (the order flips every round) over the same inputs, so machine noise hits both
// alike. Prints medians, the time ratio B ÷ A and whether the files are byte-identical.
//
//   node bench/ab.mjs <package dir A> <package dir B> [rounds]
//   AB_ONLY=substring runs only the cases whose name contains it.
//
// A package dir is a `pkg/` with its `wasm/` built (`make build`), e.g. a copy of an older commit's.
import { readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';

const [dirA, dirB, roundsArg] = process.argv.slice(2);
if (!dirA || !dirB) {
  console.error('usage: node bench/ab.mjs <package dir A> <package dir B> [rounds]');
  process.exit(2);
}
const A = await import(join(resolve(dirA), 'node.js'));
const B = await import(join(resolve(dirB), 'node.js'));
const ROUNDS = Number(roundsArg ?? 41);
const ROOT = new URL('..', import.meta.url).pathname;

/** A one-tensor f32 model `[rows, cols]` of deterministic values with a few outliers. */
function synthetic(rows, cols) {
  const values = new Float32Array(rows * cols);
  let s = 7;
  for (let i = 0; i < values.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    values[i] = (s / 2 ** 31 - 1) * (1 + (i % 5));
  }
  // The header padded to 8 bytes, as the safetensors library writes it (tensor data aligned).
  const json = JSON.stringify({ 'w.weight': { dtype: 'F32', shape: [rows, cols], data_offsets: [0, values.byteLength] } });
  const header = new TextEncoder().encode(json.padEnd(Math.ceil(json.length / 8) * 8, ' '));
  const m = new Uint8Array(8 + header.length + values.byteLength);
  new DataView(m.buffer).setBigUint64(0, BigInt(header.length), true);
  m.set(header, 8);
  m.set(new Uint8Array(values.buffer), 8 + header.length);
  return m;
}

const big = synthetic(4096, 4096);
const riva = readFileSync(join(ROOT, 'samples/rivagan_f32.safetensors'));
const ddpm = readFileSync(join(ROOT, 'samples/tiny_ddpm_digits.safetensors'));
const calibration = readFileSync(join(ROOT, 'samples/tiny_ddpm_digits.calib.safetensors'));
// Second moments per input column, as tools/calibrate.py records them: the importance-weighted search.
const sqMean = Array.from({ length: 4096 }, (_, j) => 0.1 + ((j * 7919) % 101) / 10);
const importance = { calibration: { timesteps: [0], layers: { w: { actMin: [-1], actMax: [1], samples: [64], sqMean, channelAbsMax: sqMean.map((v) => 2 * Math.sqrt(v)) } } } };
const noTime = { enableSpatial: false, enableTimeAware: false, minAccuracy: 0, groupSize: 64 };
const allCases = [
  ['64 MiB f32, 4-bit g64 min/max', big, { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }, {}, 21],
  ['64 MiB f32, 4-bit g64 search', big, { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }, {}, 21],
  ['64 MiB f32, 8-bit g64 default (scaleSearch auto = search)', big, { bitWidth: 8, groupSize: 64, minAccuracy: 0 }, {}, 21],
  ['RivaGAN, edge', riva, { profile: 'edge' }, {}, ROUNDS],
  ['tiny DDPM, 4-bit g64 search', ddpm, { bitWidth: 4, groupSize: 64, minAccuracy: 0 }, {}, ROUNDS],
  ['tiny DDPM, local + calibration', ddpm, { profile: 'local' }, { calibration }, ROUNDS],
  ['64 MiB f32, 4-bit g64 importance', big, { ...noTime, bitWidth: 4 }, importance, 21],
  ['64 MiB f32, 2-bit g64 importance', big, { ...noTime, bitWidth: 2 }, importance, 21],
  ['64 MiB f32, 8-bit g64 importance', big, { ...noTime, bitWidth: 8 }, importance, 11],
  // GGUF output: the config slot holds the type name.
  ...['Q8_0', 'Q4_0', 'Q4_K_M', 'Q6_K', 'Q2_K'].map((ty) => [`64 MiB f32, GGUF ${ty}`, big, ty, undefined, 7]),
];
/** The output file of one case through one build: GGUF when the config is a type name. */
const run = (lib, bytes, config, options) =>
  typeof config === 'string' ? lib.quantizeModelGguf(bytes, config, options?.calibration).gguf : lib.quantizeModel(bytes, config, options).parquet;
const cases = allCases.filter(([name]) => !process.env.AB_ONLY || name.includes(process.env.AB_ONLY));
const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
const same = (a, b) => a.length === b.length && Buffer.compare(Buffer.from(a), Buffer.from(b)) === 0;

console.log(`| input | config | A ms | B ms | B ÷ A | same bytes |\n|---|---|---|---|---|---|`);
for (const [name, bytes, config, options, rounds] of cases) {
  const times = { A: [], B: [] };
  const out = {};
  for (let r = 0; r <= rounds; r++) {
    const order = r % 2 ? [['A', A], ['B', B]] : [['B', B], ['A', A]];
    for (const [k, lib] of order) {
      const t0 = performance.now();
      out[k] = run(lib, bytes, config, options);
      if (r > 0) times[k].push(performance.now() - t0);
    }
  }
  const [a, b] = [median(times.A), median(times.B)];
  const [input, cfg] = name.split(', ');
  console.log(`| ${input} | ${name.slice(input.length + 2) || cfg} | ${a.toFixed(2)} | ${b.toFixed(2)} | ${(b / a).toFixed(3)} | ${same(out.A, out.B)} |`);
}
