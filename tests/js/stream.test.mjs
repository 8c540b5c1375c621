// The streaming loop (pkg/internal/stream.js) over an instrumented source: which byte ranges it reads, that
// the next read starts before the current tensors are quantized, that a failed read surfaces (and
// an abandoned one does not), and that the file equals quantizeModel's. Also Node's fileSource.
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bytesSource, fileSource, quantizeModel, quantizeStream } from '../../pkg/node.js';
import { randomF32, safetensors, tempDir } from './helpers.mjs';

const MiB = 1 << 20;
const cfg = { bitWidth: 4, groupSize: 64, minAccuracy: 0 };

// 24 tensors of 1 MiB, one of 20 MiB (larger than a read group), 8 of 1 MiB, and two biases:
// groups of 16 MiB, then the big tensor alone, then the rest.
function model() {
  const tensors = [];
  for (let i = 0; i < 24; i++) tensors.push({ name: `a${i}.weight`, dtype: 'F32', shape: [256, 1024], data: randomF32(256 * 1024, i + 1) });
  tensors.push({ name: 'big.weight', dtype: 'F32', shape: [5 * 256, 4 * 1024], data: randomF32(5 * 256 * 4 * 1024, 99) });
  for (let i = 0; i < 8; i++) tensors.push({ name: `b${i}.weight`, dtype: 'F32', shape: [256, 1024], data: randomF32(256 * 1024, 200 + i) });
  tensors.push({ name: 'b.bias', dtype: 'F32', shape: [1024], data: randomF32(1024, 7) });
  tensors.push({ name: 'c.bias', dtype: 'F32', shape: [1024], data: randomF32(1024, 8) });
  return safetensors(tensors);
}

/** A source that logs each read's range when it starts, and answers after a macrotask (like a Blob or a file). */
function loggingSource(bytes, log, fail = () => null) {
  return {
    size: bytes.length,
    read(start, end) {
      log.push({ read: [start, end] });
      const error = fail(start, end);
      return new Promise((resolve, reject) => setTimeout(() => (error ? reject(error) : resolve(bytes.slice(start, end))), 1));
    },
  };
}

test('reads back-to-back tensors in groups of up to 16 MiB, the next group while this one is quantized', async () => {
  const bytes = model();
  const log = [];
  const { parquet, report } = await quantizeStream(loggingSource(bytes, log), cfg, { onProgress: (p) => log.push({ done: p.name }) });
  assert.deepEqual(parquet, quantizeModel(bytes, cfg).parquet, 'streamed file differs from quantizeModel');
  assert.equal(report.layers.length, 35);
  const reads = log.filter((e) => e.read).map((e) => e.read).slice(2); // after the length prefix and the header
  const sizes = reads.map(([a, b]) => b - a);
  // 16 tensors, 8 tensors (the big one does not fit beside them), the big one, the rest.
  assert.deepEqual(sizes, [16 * MiB, 8 * MiB, 20 * MiB, 8 * MiB + 2 * 4096]);
  for (let i = 1; i < reads.length; i++) assert.equal(reads[i][0], reads[i - 1][1], 'reads are back to back');
  assert.equal(reads.at(-1)[1], bytes.length);
  // Read-ahead: each group's read is logged before the first tensor of the group before it is done.
  const at = (pred) => log.findIndex(pred);
  const firstDone = ['a0.weight', 'a16.weight', 'big.weight', 'b0.weight'].map((n) => at((e) => e.done === n));
  for (let g = 1; g < 4; g++) {
    const readAt = at((e) => e.read && e.read[0] === reads[g][0]);
    assert.ok(readAt < firstDone[g - 1], `group ${g} was read only after group ${g - 1} was quantized`);
  }
});

test('a failed read surfaces as the stream error; a read-ahead left behind by an earlier error does not', async () => {
  const bytes = model();
  const failing = loggingSource(bytes, [], (start) => (start > 8 + 16 * MiB ? Object.assign(new Error('disk gone'), { code: 'E_IO' }) : null));
  await assert.rejects(quantizeStream(failing, cfg), (e) => e.code === 'E_IO' && /disk gone/.test(e.message));

  // The first group holds a NaN, so quantizing it fails while the second group's read is pending
  // (and then fails too): the NaN error is reported and no unhandled rejection follows.
  const tensors = [{ name: 'nan.weight', dtype: 'F32', shape: [256, 1024], data: Float32Array.from(randomF32(256 * 1024), (v, i) => (i === 5 ? NaN : v)) }];
  tensors.push({ name: 'next.weight', dtype: 'F32', shape: [4096, 1024], data: randomF32(4096 * 1024) }); // 16 MiB: its own group
  const bad = safetensors(tensors);
  const unhandled = [];
  const onUnhandled = (e) => unhandled.push(e);
  process.on('unhandledRejection', onUnhandled);
  try {
    const src = loggingSource(bad, [], (start, end) => (end - start === 16 * MiB ? new Error('read-ahead failed') : null));
    await assert.rejects(quantizeStream(src, cfg), (e) => e.code === 'E_NONFINITE' && e.tensor === 'nan.weight');
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off('unhandledRejection', onUnhandled);
  }
  assert.deepEqual(unhandled, []);
});

test('a source that throws at once fails the group it was asked for, after the groups before it', async () => {
  const bytes = model();
  const source = bytesSource(bytes);
  const done = [];
  const throwing = {
    size: source.size,
    read(start, end) {
      if (start > 8 + 20 * MiB) throw Object.assign(new Error('gone'), { code: 'E_IO' });
      return source.read(start, end);
    },
  };
  await assert.rejects(quantizeStream(throwing, cfg, { onProgress: (p) => done.push(p.name) }), (e) => e.code === 'E_IO');
  // The first two groups (16 + 8 tensors) were quantized before the failing read was awaited.
  assert.equal(done.length, 24);
});

test('an abort stops the stream between tensors', async () => {
  const bytes = model();
  const controller = new AbortController();
  let seen = 0;
  const run = quantizeStream(bytesSource(bytes), cfg, {
    signal: controller.signal,
    onProgress: () => {
      if (++seen === 3) controller.abort(new Error('user cancelled'));
    },
  });
  await assert.rejects(run, /user cancelled/);
  assert.equal(seen, 3);
});

test('fileSource reads byte ranges asynchronously and reports a short file', async () => {
  const dir = tempDir();
  const bytes = model();
  const path = join(dir, 'm.safetensors');
  writeFileSync(path, bytes);
  const source = fileSource(path);
  try {
    const pending = source.read(8, 8 + 100);
    assert.ok(pending instanceof Promise);
    assert.deepEqual(await pending, bytes.subarray(8, 108));
    const { parquet } = await quantizeStream(source, cfg);
    assert.deepEqual(parquet, quantizeModel(bytes, cfg).parquet);
    await assert.rejects(source.read(bytes.length - 10, bytes.length + 10), (e) => e.code === 'E_SAFETENSORS' && /unexpected end of file/.test(e.message));
  } finally {
    source.close();
  }
});
