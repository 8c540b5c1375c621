// shardedSource: a model split into shards + index quantizes to the same bytes as the whole file,
// and inconsistent shard sets are E_SAFETENSORS errors that name the file or tensor.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { bytesSource, quantizeModel, quantizeStream, shardedSource } from '../../pkg/node.js';
import { DDPM, read, safetensors, splitSafetensors } from './helpers.mjs';

const whole = read(DDPM);
/** The bundled model split into `k` shards of consecutive tensors, as in-memory sources. */
function split(k) {
  const per = Math.ceil(144 / k);
  const { shards, index } = splitSafetensors(whole, Array.from({ length: k }, (_, i) => Math.min(per, 144 - i * per)));
  return { shards: shards.map((s) => ({ name: s.name, ...bytesSource(s.bytes) })), index };
}

test('three shards + index quantize to the same tensors as the whole file', async () => {
  const { shards, index } = split(3);
  const source = await shardedSource(shards, index);
  assert.deepEqual(source.shards.map((s) => s.tensors), [48, 48, 48]);
  const cfg = { profile: 'edge' };
  const a = quantizeModel(whole, cfg);
  const b = await quantizeStream(source, cfg);
  // Timings differ run to run; everything else in the layer reports is the same.
  const untimed = (layers) => layers.map(({ quantizeMs, ...rest }) => (assert.ok(quantizeMs >= 0), rest));
  assert.deepEqual(untimed(b.report.layers), untimed(a.report.layers));
  assert.equal(b.report.modality, 'image');
  // shards given in any order: the index fixes it
  const c = await quantizeStream(await shardedSource([...shards].reverse(), index), cfg);
  assert.deepEqual(c.parquet, b.parquet);
  // without an index the given order is kept
  const d = await quantizeStream(await shardedSource(shards), cfg);
  assert.deepEqual(untimed(d.report.layers), untimed(a.report.layers));
});

test('inconsistent shard sets are named errors', async () => {
  const { shards, index } = split(3);
  await assert.rejects(shardedSource(shards.slice(0, 2), index), (e) => e.code === 'E_SAFETENSORS' && /model-00003-of-00003/.test(e.message));
  const extra = { name: 'stray.safetensors', ...bytesSource(safetensors([{ name: 'x', dtype: 'F32', shape: [1], data: new Float32Array(1) }])) };
  await assert.rejects(shardedSource([...shards, extra], index), /stray\.safetensors/);
  await assert.rejects(shardedSource([shards[0], shards[0]]), /is in both/);
  const lying = { ...index, weight_map: { ...index.weight_map, 'conv_in.weight': 'model-00002-of-00003.safetensors' } };
  await assert.rejects(shardedSource(shards, lying), /conv_in\.weight/);
  const short = { name: 'bad.safetensors', size: 4, read: () => new Uint8Array(4) };
  await assert.rejects(shardedSource([short]), (e) => e.code === 'E_SAFETENSORS' && /bad\.safetensors/.test(e.message));
});
