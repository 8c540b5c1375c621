// Quality per bit width on the real weights in the repository: pooled SNR and parameter-weighted
// cosine over the quantized layers, fallback off (minAccuracy 0), scale search auto.
// Run after `make build`: node bench/quality.mjs
import { readFileSync } from 'node:fs';
import { quantizeModel } from '../pkg/node.js';

const models = [
  ['RivaGAN conv (F32)', 'samples/rivagan_f32.safetensors'],
  ['MiniLM linear (BF16)', 'tests/data/minilm_l6_bf16_subset.safetensors'],
];
console.log('| model | bits | group | cosine | SNR dB | compression |');
console.log('|---|---|---|---|---|---|');
for (const [label, path] of models) {
  const bytes = new Uint8Array(readFileSync(new URL(`../${path}`, import.meta.url)));
  for (const group of [64, 128]) {
    for (const bits of [2, 4, 8]) {
      const { report } = quantizeModel(bytes, { bitWidth: bits, groupSize: group, minAccuracy: 0 });
      console.log(`| ${label} | ${bits} | ${group} | ${report.cosineSimilarity.toFixed(5)} | ${report.snrDb.toFixed(2)} | ${report.compressionRatio.toFixed(2)}× |`);
    }
  }
}
