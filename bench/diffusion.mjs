// Diffusion features on the bundled real UNet (samples/tiny_ddpm_digits.safetensors) with its real
// calibration statistics: what channel equalization does to weight SNR and to activation-weighted
// SNR, what time groups do to the activation quantization step, and how many layers each rule
// touched. Run after `make build`: node bench/diffusion.mjs  (also part of `make bench`)
import { readFileSync } from 'node:fs';
import { openQuantized, quantizeModel } from '../pkg/node.js';

const read = (p) => new Uint8Array(readFileSync(new URL(`../${p}`, import.meta.url)));
const model = read('samples/tiny_ddpm_digits.safetensors');
const calibration = read('samples/tiny_ddpm_digits.calib.safetensors');
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;
const pooledDb = (layers, key) => mean(layers.map((l) => l[key]));

console.log('## Channel equalization (fallback off, group 64, per-layer means over the layers with channel statistics)\n');
console.log('| bits | α | layers equalized | weight SNR dB | activation-weighted SNR dB | weighted SNR better in |');
console.log('|---|---|---|---|---|---|');
for (const bits of [2, 4, 8]) {
  const base = { bitWidth: bits, groupSize: 64, minAccuracy: 0 };
  const off = quantizeModel(model, { ...base, enableSpatial: false }, { calibration }).report;
  const offBy = Object.fromEntries(off.layers.map((l) => [l.name, l]));
  const stats = off.layers.filter((l) => l.weightedSnrDb !== null);
  console.log(`| ${bits} | off | 0 | ${pooledDb(stats, 'snrDb').toFixed(2)} | ${pooledDb(stats, 'weightedSnrDb').toFixed(2)} | — |`);
  for (const alpha of [0.25, 0.5, 0.75]) {
    const on = quantizeModel(model, { ...base, enableSpatial: true, spatialAlpha: alpha }, { calibration }).report;
    const eq = on.layers.filter((l) => l.spatial);
    const same = on.layers.filter((l) => offBy[l.name].weightedSnrDb !== null && l.weightedSnrDb !== null);
    const better = same.filter((l) => l.weightedSnrDb > offBy[l.name].weightedSnrDb).length;
    console.log(`| ${bits} | ${alpha} | ${eq.length} | ${pooledDb(same, 'snrDb').toFixed(2)} | ${pooledDb(same, 'weightedSnrDb').toFixed(2)} | ${better} of ${same.length} |`);
  }
}


// Activation side: how far the largest input channel sticks out above the median channel, before
// and after dividing by s (a per-tensor activation quantizer's step is set by the largest channel,
// so this is the precision the typical channel loses to outliers).
function channelMax(bytes) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const out = {};
  for (const [name, h] of Object.entries(header)) {
    if (!name.endsWith('.channel_absmax')) continue;
    const v = new Float32Array(bytes.slice(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]).buffer);
    const [T, C] = h.shape;
    const agg = new Float32Array(C);
    for (let t = 0; t < T; t++) for (let j = 0; j < C; j++) agg[j] = Math.max(agg[j], v[t * C + j]);
    out[name.slice(0, -'.channel_absmax'.length)] = agg;
  }
  return out;
}
const amax = channelMax(calibration);
console.log('\n| α | largest ÷ median channel max of the layer input: before → after equalization (mean over layers) |');
console.log('|---|---|');
for (const alpha of [0.25, 0.5, 0.75]) {
  const { parquet, report } = quantizeModel(model, { bitWidth: 4, groupSize: 64, minAccuracy: 0, spatialAlpha: alpha }, { calibration });
  const file = openQuantized(parquet);
  const spreads = [];
  for (const l of report.layers.filter((x) => x.spatial)) {
    const a = amax[l.name.slice(0, -'.weight'.length)];
    const s = file.spatial(l.name).scales;
    const after = Array.from(a, (x, j) => x / s[j]);
    const spread = (xs) => { const v = [...xs].sort((p, q) => p - q); return v.at(-1) / Math.max(v[v.length >> 1], 1e-12); };
    spreads.push([spread(after), spread(a)]);
  }
  file.free();
  console.log(`| ${alpha} | ${mean(spreads.map((x) => x[1])).toFixed(2)} → ${mean(spreads.map((x) => x[0])).toFixed(2)} |`);
}

console.log('\n## Time groups (8-bit activations, no equalization): activation step vs one group for all timesteps\n');
console.log('| grouping | groups (max) | mean groups used | mean step² ÷ single-group step² |');
console.log('|---|---|---|---|');
const single = quantizeModel(model, { numTimeGroups: 1, enableSpatial: false, minAccuracy: 0 }, { calibration }).report;
const singleScale = Object.fromEntries(single.layers.filter((l) => l.timeGroups).map((l) => [l.name, l.timeGroups[0].scale]));
for (const timeGrouping of ['uniform', 'adaptive']) {
  for (const g of [2, 5, 10]) {
    const r = quantizeModel(model, { numTimeGroups: g, timeGrouping, enableSpatial: false, minAccuracy: 0 }, { calibration }).report;
    const layers = r.layers.filter((l) => l.timeGroups);
    const ratio = mean(layers.map((l) => {
      const T = l.timeGroups.at(-1).tEnd;
      let s = 0;
      for (const grp of l.timeGroups) s += (grp.tEnd - grp.tStart) * (grp.scale / singleScale[l.name]) ** 2;
      return s / T;
    }));
    console.log(`| ${timeGrouping} | ${g} | ${mean(layers.map((l) => l.timeGroups.length)).toFixed(2)} | ${ratio.toFixed(3)} |`);
  }
}

console.log('\n## Rules touched (profile local, calibrated)\n');
const r = quantizeModel(model, { profile: 'local' }, { calibration }).report;
const count = (f) => r.layers.filter(f).length;
console.log(`- modality: ${r.modality} (${r.modalitySource}: ${r.modalityRule})`);
for (const origin of ['image default', 'generic default', 'sensitiveLayerPatterns']) {
  const hit = r.layers.filter((l) => l.reason.includes(`, ${origin})`));
  if (hit.length) console.log(`- sensitive (${origin}): ${hit.length} — ${hit.map((l) => l.name).join(', ')}`);
}
console.log(`- time groups: ${count((l) => l.timeGroups)} layers; equalized: ${count((l) => l.spatial)} layers; fallback: ${count((l) => /fallback/.test(l.reason))} layers`);
console.log(`- ${r.timeAware.note}`);
console.log(`- result: ${r.layerCounts.bits4} int4, ${r.layerCounts.bits8} int8, ${r.layerCounts.f16} f16, ${r.layerCounts.raw} raw; cosine ${r.cosineSimilarity.toFixed(5)}, SNR ${r.snrDb.toFixed(2)} dB, ${r.compressionRatio.toFixed(2)}×`);
