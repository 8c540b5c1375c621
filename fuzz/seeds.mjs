// Small seed inputs for `make fuzz` (run from fuzz/): a model that takes every storage path,
// its Parquet files under several configs, and a calibration object in the JSON carrier. Run in fuzz/.
import { writeFileSync } from 'node:fs';
import { quantizeModel, quantizeModelGguf } from '../pkg/node.js';
import { randomF32, safetensors } from '../tests/js/helpers.mjs';
const small = safetensors([
  { name: 'blk.0.proj.weight', dtype: 'F32', shape: [8, 64], data: randomF32(512, 1) },
  { name: 'blk.0.proj.bias', dtype: 'F32', shape: [8], data: randomF32(8, 2) },
  { name: 'blk.0.conv.weight', dtype: 'F16', shape: [4, 2, 3, 3], data: new Uint16Array(72).fill(0x3c00) },
  { name: 'ids', dtype: 'I64', shape: [2], data: new BigInt64Array([1n, 2n]) },
], { modality: 'image' });
writeFileSync('corpus/safetensors/small.safetensors', small);
for (const [k, cfg] of [['local', {}], ['2bit', { bitWidth: 2, minAccuracy: 0 }], ['8bit', { bitWidth: 8, groupSize: 32 }]]) {
  writeFileSync(`corpus/parquet/small-${k}.aq.parquet`, quantizeModel(small, cfg).parquet);
}
const cal = { timesteps: [999, 500, 0], layers: { 'blk.0.proj': { actMin: [-1, -2, -3], actMax: [1, 2, 3], samples: [4, 4, 4], channelAbsMax: Array(64).fill(1), sqMean: Array(64).fill(0.5), gram: { blocks: [[[1, 0], [0, 1]]] }, gramRows: 10, sensitivity: [0.5, 0.1, 0.01] } } };
writeFileSync('corpus/calibration/small.json', JSON.stringify(cal));
writeFileSync('corpus/parquet/small-cal.aq.parquet', quantizeModel(small, {}, { calibration: { timesteps: [999, 500, 0], layers: { 'blk.0.proj': { actMin: [-1, -2, -3], actMax: [1, 2, 3], samples: [4, 4, 4], channelAbsMax: Array(64).fill(1) } } } }).parquet);
for (const ty of ['Q8_0', 'Q4_K_M', 'Q5_1', 'F16']) writeFileSync(`corpus/gguf/small-${ty}.gguf`, quantizeModelGguf(small, ty).gguf);
