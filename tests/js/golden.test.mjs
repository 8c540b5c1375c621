// Output bytes locked: SHA-256 of the Parquet file (and of a dequantized export) for a matrix of
// configs over the bundled real models and synthetic edge cases. A refactor must leave every hash
// as it is; a deliberate format or algorithm change regenerates them with
//   UPDATE_GOLDEN=1 node --test tests/js/golden.test.mjs
// and says why in its commit.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { bytesSource, openQuantized, quantizeModel, quantizeStream, quantizeTensor } from 'arrowquant';
import { DDPM, DDPM_CAL, MINILM, ROOT, SAMPLE, randomF32, read, safetensors } from './helpers.mjs';

const GOLDEN = join(ROOT, 'tests/js/golden.json');
const sha = (...parts) => {
  const h = createHash('sha256');
  for (const p of parts) h.update(p);
  return h.digest('hex');
};

const F16 = join(ROOT, 'tests/data/rivagan_f16.safetensors');
const BF16 = join(ROOT, 'tests/data/rivagan_bf16.safetensors');

/** Tensors that take every storage path: huge values (raw), short rows (f16), ints, 1-D, constant rows, zeros. */
function edgeModel() {
  const big = randomF32(4 * 64, 3).map((x, i) => (i === 5 ? 1e6 : x));
  const constant = new Float32Array(8 * 64).fill(0.25);
  const tiny = randomF32(16 * 96, 4).map((x) => x * 1e-6);
  const mixed = randomF32(24 * 100, 5).map((x, i) => (i % 37 === 0 ? x * 40 : x));
  return safetensors([
    { name: 'huge.weight', dtype: 'F32', shape: [4, 64], data: big },
    { name: 'short.weight', dtype: 'F32', shape: [64, 4], data: randomF32(256, 6) },
    { name: 'ids', dtype: 'I64', shape: [3], data: new BigInt64Array([1n, 2n, 3n]) },
    { name: 'bias', dtype: 'F32', shape: [64], data: randomF32(64, 7) },
    { name: 'const.weight', dtype: 'F32', shape: [8, 64], data: constant },
    { name: 'zeros.weight', dtype: 'F32', shape: [4, 64], data: new Float32Array(256) },
    { name: 'tiny.weight', dtype: 'F32', shape: [16, 96], data: tiny },
    { name: 'mixed.weight', dtype: 'F32', shape: [24, 100], data: mixed },
    { name: 'conv.weight', dtype: 'F32', shape: [16, 8, 3, 3], data: randomF32(16 * 72, 8) },
  ]);
}

/** More rows than a page holds (parquet-rs closes a page at 20,000 rows), and names that fill a
 * page by size (1 MiB): the descriptive columns' page and row-group boundaries. */
function manyTensors() {
  return safetensors(
    Array.from({ length: 21000 }, (_, i) => ({ name: `b.${i}.weight`, dtype: 'F32', shape: [2, 8], data: randomF32(16, 100 + (i % 50)) })),
  );
}
function longNames() {
  return safetensors(
    Array.from({ length: 1200 }, (_, i) => ({ name: `layer.${i}.${'x'.repeat(1000)}.weight`, dtype: 'F32', shape: [4, 64], data: randomF32(256, 200 + (i % 50)) })),
  );
}

const models = {
  rivagan: () => read(SAMPLE),
  rivaganF16: () => read(F16),
  rivaganBf16: () => read(BF16),
  minilm: () => read(MINILM),
  ddpm: () => read(DDPM),
  edge: edgeModel,
  manyTensors,
  longNames,
};

const cases = [
  ['rivagan local', 'rivagan', { profile: 'local' }],
  ['rivagan edge', 'rivagan', { profile: 'edge' }],
  ['rivagan cloud', 'rivagan', { profile: 'cloud' }],
  ['rivagan base', 'rivagan', { profile: 'base' }],
  ['rivagan 4-bit g32 no search', 'rivagan', { bitWidth: 4, groupSize: 32, scaleSearch: 'off', minAccuracy: 0 }],
  ['rivagan 2-bit g256 search on, strict fallback', 'rivagan', { bitWidth: 2, groupSize: 256, scaleSearch: 'on', minAccuracy: 0.999 }],
  ['rivagan 8-bit search on', 'rivagan', { bitWidth: 8, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ['rivagan overrides', 'rivagan', { layerBitWidths: { 'encoder.*': 2, 'decoder._conv.0.weight': 16, '*conv.3*': 8 }, sensitiveLayerPatterns: ['*decoder._conv.1*'] }],
  ['rivagan sensitive f16', 'rivagan', { sensitiveBits: 16, sensitiveLayerPatterns: ['encoder._conv.2*'] }],
  ['rivagan target size', 'rivagan', { targetSizeMb: 0.3 }],
  ['rivagan target size from 2 bits', 'rivagan', { bitWidth: 2, targetSizeMb: 0.2, minAccuracy: 0.9 }],
  ['rivagan f16 source', 'rivaganF16', { profile: 'edge' }],
  ['rivagan bf16 source', 'rivaganBf16', { profile: 'local', groupSize: 64 }],
  ['minilm local', 'minilm', { profile: 'local' }],
  ['minilm edge', 'minilm', { profile: 'edge' }],
  ['minilm modality text, no sensitive', 'minilm', { modality: 'text', skipSensitiveLayers: false, bitWidth: 4 }],
  ['ddpm local, no calibration', 'ddpm', { profile: 'local' }],
  ['ddpm local + calibration', 'ddpm', { profile: 'local' }, true],
  ['ddpm edge + calibration', 'ddpm', { profile: 'edge' }, true],
  ['ddpm cloud + calibration', 'ddpm', { profile: 'cloud' }, true],
  ['ddpm uniform smoothed A4 + calibration', 'ddpm', { timeGrouping: 'uniform', timeSmoothing: 0.5, activationBits: 4, numTimeGroups: 4, spatialAlpha: 0.8, calibrationSamples: 1000 }, true],
  ['ddpm spatial off + calibration', 'ddpm', { enableSpatial: false, bitWidth: 2, minAccuracy: 0.95 }, true],
  ['ddpm alpha searched + calibration', 'ddpm', { spatialAlpha: 'search', bitWidth: 2, minAccuracy: 0.95 }, true],
  ['ddpm target size + calibration', 'ddpm', { targetSizeMb: 0.5 }, true],
  ['edge cases local', 'edge', { profile: 'local' }],
  ['edge cases 2-bit strict', 'edge', { bitWidth: 2, minAccuracy: 0.9999, groupSize: 32 }],
  ['edge cases 8-bit', 'edge', { bitWidth: 8, minAccuracy: 0 }],
  ['21,000 small tensors', 'manyTensors', { profile: 'local' }],
  ['1 MiB of names', 'longNames', { bitWidth: 2, groupSize: 64 }],
];

const golden = (() => {
  try {
    return JSON.parse(readFileSync(GOLDEN, 'utf8'));
  } catch {
    return {};
  }
})();
const seen = {};

async function runCase(model, config, withCalibration) {
  const bytes = models[model]();
  const calibration = withCalibration ? read(DDPM_CAL) : undefined;
  const whole = quantizeModel(bytes, config, { calibration });
  const streamed = await quantizeStream(bytesSource(bytes), config, { calibration, rowGroupBytes: 64 << 10 });
  const file = openQuantized(whole.parquet);
  let exported;
  try {
    const parts = [file.exportHeader('f32')];
    for (const t of file.tensors()) parts.push(file.exportTensor(t.name, 'f32'));
    exported = sha(...parts);
  } finally {
    file.free();
  }
  return {
    parquet: sha(whole.parquet),
    // The stream's smaller row groups give another file; it is locked too.
    streamed: sha(streamed.parquet),
    dequantized: exported,
    reasons: sha(whole.report.layers.map((l) => `${l.name}\t${l.reason}`).join('\n')),
  };
}

for (const [name, model, config, withCalibration] of cases) {
  test(`golden: ${name}`, async () => {
    const got = await runCase(model, config, withCalibration);
    seen[name] = got;
    if (process.env.UPDATE_GOLDEN) return;
    assert.ok(golden[name], `no golden hashes for '${name}': run with UPDATE_GOLDEN=1`);
    assert.deepEqual(got, golden[name]);
  });
}

test('golden: quantizeTensor outputs', () => {
  const v = randomF32(32 * 200, 11);
  const got = {};
  for (const [bits, groupSize, scaleSearch] of [[2, 64, 'on'], [4, 32, 'off'], [4, 128, 'auto'], [8, 256, 'on']]) {
    const r = quantizeTensor(v, [32, 200], { bitWidth: bits, groupSize, scaleSearch, minAccuracy: 0 });
    got[`${bits}/${groupSize}/${scaleSearch}`] = sha(r.codes, new Uint8Array(r.scales.buffer), new Uint8Array(r.mins.buffer));
  }
  seen['quantizeTensor'] = got;
  if (process.env.UPDATE_GOLDEN) return;
  assert.deepEqual(got, golden['quantizeTensor']);
});

test('golden: write hashes when asked', { skip: !process.env.UPDATE_GOLDEN }, () => {
  writeFileSync(GOLDEN, JSON.stringify(seen, null, 1) + '\n');
});
