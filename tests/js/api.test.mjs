// The JS API of the built package (pkg/node.js → the real wasm), in Node.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { crc32 } from 'node:zlib';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import {
  buildInfo,
  bytesSource,
  dequantizeTensor,
  ModelQuantizer,
  openQuantized,
  quantizeModel,
  quantizeStream,
  quantizeTensor,
  readSafetensorsHeader,
  resolveConfig,
  safetensorsHeaderSize,
} from '../../pkg/node.js';
import { MINILM, randomF32, read, safetensors, SAMPLE } from './helpers.mjs';

const sample = read(SAMPLE);

test('buildInfo reports the SIMD build', () => {
  const info = buildInfo();
  assert.equal(info.simd, true);
  assert.equal(info.threads, false);
  assert.match(info.version, /^\d+\.\d+\.\d+/);
});

test('quantizeModel: parquet bytes and a camelCase report', () => {
  const progress = [];
  const { parquet, report } = quantizeModel(sample, { profile: 'local', groupSize: 64 }, { onProgress: (p) => progress.push(p) });
  assert.ok(parquet instanceof Uint8Array);
  assert.equal(report.outputBytes, parquet.length);
  assert.equal(report.groupSize, 64);
  assert.equal(report.bitWidth, 4);
  assert.equal(report.layers.length, 40);
  assert.equal(progress.length, 40);
  assert.deepEqual(progress.at(-1).done, 40);
  assert.equal(progress.at(-1).bytesDone, progress.at(-1).bytesTotal);
  assert.ok(Math.abs(report.compressionRatio - report.sourceBytes / report.outputBytes) < 1e-12);
  assert.ok(report.cosineSimilarity > 0.99 && report.cosineSimilarity <= 1);
  assert.equal(report.timeAware.applied, false);
  assert.match(report.timeAware.note, /no calibration statistics/);
  const conv = report.layers.find((l) => l.name === 'encoder._conv.0.weight');
  assert.equal(conv.storage, 'quantized');
  assert.equal(conv.bits, 4);
  assert.equal(conv.requestedBits, 4);
  assert.ok(conv.snrDb > 15);
  const bias = report.layers.find((l) => l.name === 'encoder._conv.0.bias');
  assert.equal(bias.storage, 'raw');
  assert.equal(bias.cosine, null);
});

test('a throwing onProgress cancels and rethrows its own error', () => {
  const boom = new Error('stop here');
  assert.throws(() => quantizeModel(sample, {}, { onProgress: () => { throw boom; } }), (e) => e === boom);
  // and the module keeps working
  assert.ok(quantizeModel(sample, { profile: 'cloud' }).parquet.length > 0);
});

test('streaming equals whole-buffer, and output arrives in chunks', async () => {
  const bytes = read(MINILM);
  const whole = quantizeModel(bytes, { profile: 'edge' }).parquet;
  const chunks = [];
  let maxTensor = 0;
  const source = bytesSource(bytes);
  const counting = { size: source.size, read: (a, b) => { maxTensor = Math.max(maxTensor, b - a); return source.read(a, b); } };
  const { report } = await quantizeStream(counting, { profile: 'edge' }, { onChunk: (c) => chunks.push(c.slice()), rowGroupBytes: 64 * 1024 });
  assert.ok(chunks.length >= 4, `expected several chunks, got ${chunks.length}`);
  // One tensor at a time, or consecutive small tensors up to 16 MiB together.
  assert.ok(maxTensor <= Math.max(1536 * 384 * 2, 16 << 20), `reads one tensor or 16 MiB of small ones at a time (read ${maxTensor})`);
  const streamed = Buffer.concat(chunks);
  assert.equal(report.outputBytes, streamed.length);
  const a = openQuantized(streamed);
  const b = openQuantized(whole);
  for (const t of b.tensors()) {
    if (t.dtype === 'BF16') assert.deepEqual(a.dequantize(t.name), b.dequantize(t.name));
  }
  a.free();
  b.free();
});

test('ModelQuantizer by hand: begin / addTensor / takeOutput / finish', () => {
  const size = safetensorsHeaderSize(sample.subarray(0, 8));
  const q = new ModelQuantizer({ profile: 'edge' });
  assert.equal(q.config.bitWidth, 2);
  const header = q.begin(sample.subarray(0, size), sample.length);
  assert.equal(header.tensors.length, 40);
  assert.equal(header.headerSize, size);
  const parts = [];
  for (const t of header.tensors) {
    const layer = q.addTensor(t.name, sample.subarray(t.start, t.end));
    assert.equal(layer.name, t.name);
    parts.push(q.takeOutput());
  }
  const { parquet, report } = q.finish();
  parts.push(parquet);
  const file = Buffer.concat(parts);
  assert.equal(report.outputBytes, file.length);
  assert.equal(openQuantized(file).tensors().length, 40);
  q.free();
});

test('openQuantized: tensors, metadata, dequantize matches the reported metrics', () => {
  const { parquet, report } = quantizeModel(sample, { profile: 'edge', minAccuracy: 0 });
  const file = openQuantized(parquet);
  const meta = file.metadata();
  assert.equal(meta.formatVersion, '2.4');
  assert.equal(meta.config.bitWidth, 2);
  assert.equal(meta.sourceMetadata.dtype ?? 'F32', meta.sourceMetadata.dtype ?? 'F32');
  const header = readSafetensorsHeader(sample);
  for (const t of file.tensors()) {
    const h = header.tensors.find((x) => x.name === t.name);
    const orig = new Float32Array(sample.slice(h.start, h.end).buffer);
    const back = file.dequantize(t.name);
    assert.equal(back.length, orig.length);
    if (t.storage === 'raw') {
      assert.deepEqual(back, orig);
      continue;
    }
    let w2 = 0, q2 = 0, wq = 0, e2 = 0;
    for (let i = 0; i < orig.length; i++) {
      const a = orig[i], b = back[i];
      w2 += a * a; q2 += b * b; wq += a * b; e2 += (b - a) ** 2;
    }
    const layer = report.layers.find((l) => l.name === t.name);
    assert.ok(Math.abs(wq / Math.sqrt(w2 * q2) - layer.cosine) < 1e-9, t.name);
    assert.ok(Math.abs(10 * Math.log10(w2 / e2) - layer.snrDb) < 1e-6, t.name);
  }
  file.free();
});

test('hyparquet (an independent JS reader) reads our file', async () => {
  const { parquet, report } = quantizeModel(sample, { profile: 'local' });
  const buf = parquet.buffer.slice(parquet.byteOffset, parquet.byteOffset + parquet.byteLength);
  const meta = parquetMetadata(buf);
  const kv = Object.fromEntries(meta.key_value_metadata.map((e) => [e.key, e.value]));
  assert.equal(kv['arrowquant.format'], 'arrowquant-v2-extended');
  const rows = await parquetReadObjects({ file: buf, compressors, utf8: false, columns: ['name', 'storage', 'bits', 'group_size', 'data', 'cosine'] });
  assert.equal(rows.length, report.layers.length);
  for (const [i, row] of rows.entries()) {
    const layer = report.layers[i];
    assert.equal(row.name, layer.name);
    assert.equal(row.storage, layer.storage);
    assert.equal(row.bits ?? null, layer.bits);
    if (layer.storage === 'quantized') {
      const rowsN = layer.shape[0], rowLen = layer.params / rowsN;
      assert.equal(row.data.length, rowsN * Math.ceil((rowLen * layer.bits) / 8));
      assert.equal(row.cosine, layer.cosine);
    }
  }
});

test('hyparquet reads codes stored uncompressed (zstd would barely shrink them) beside zstd chunks', async () => {
  // 8-bit codes of uniform values spread evenly over 0..255: 2 MiB that zstd cannot shrink.
  const model = safetensors([
    { name: 'a.weight', dtype: 'F32', shape: [64, 64], data: randomF32(64 * 64, 3) },
    { name: 'big.weight', dtype: 'F32', shape: [1024, 2048], data: randomF32(1024 * 2048, 4) },
    { name: 'z.weight', dtype: 'F32', shape: [64, 128], data: randomF32(64 * 128, 5) },
  ]);
  const { parquet } = quantizeModel(model, { bitWidth: 8, groupSize: 64, minAccuracy: 0 });
  const buf = parquet.buffer.slice(parquet.byteOffset, parquet.byteOffset + parquet.byteLength);
  const codecs = parquetMetadata(buf).row_groups.map((g) => g.columns.find((c) => c.meta_data.path_in_schema[0] === 'data').meta_data.codec);
  assert.ok(codecs.includes('UNCOMPRESSED') && codecs.includes('ZSTD'), codecs.join());
  const rows = await parquetReadObjects({ file: buf, compressors, utf8: false, columns: ['name', 'data', 'data_crc32'] });
  assert.deepEqual(rows.map((r) => r.name), ['a.weight', 'big.weight', 'z.weight']);
  for (const row of rows) assert.equal(crc32(row.data), Number(row.data_crc32));
  assert.equal(rows[1].data.length, 1024 * 2048);
  const file = openQuantized(parquet);
  const back = file.dequantize('big.weight');
  const src = randomF32(1024 * 2048, 4);
  let w2 = 0, e2 = 0;
  for (let i = 0; i < src.length; i++) { w2 += src[i] ** 2; e2 += (back[i] - src[i]) ** 2; }
  assert.ok(10 * Math.log10(w2 / e2) > 45, `SNR ${10 * Math.log10(w2 / e2)} dB`);
  file.free();
});

test('quantizeTensor / dequantizeTensor round trip', () => {
  const values = randomF32(3 * 200, 9);
  const out = quantizeTensor(values, [3, 200], { bitWidth: 4, groupSize: 64, minAccuracy: 0 });
  assert.equal(out.storage, 'quantized');
  assert.equal(out.codes.length, 3 * 100);
  assert.equal(out.scales.length, 3 * 4);
  assert.ok(out.scales instanceof Uint16Array);
  const back = dequantizeTensor(out.codes, out.scales, out.mins, [3, 200], 4, 64);
  let e2 = 0, w2 = 0;
  for (let i = 0; i < values.length; i++) { e2 += (back[i] - values[i]) ** 2; w2 += values[i] ** 2; }
  assert.ok(Math.abs(10 * Math.log10(w2 / e2) - out.report.snrDb) < 1e-6);
});

test('resolveConfig fills the profile and explains bad fields', () => {
  const c = resolveConfig({ profile: 'cloud' });
  assert.deepEqual([c.bitWidth, c.groupSize, c.numTimeGroups, c.minAccuracy, c.calibrationSamples], [8, 64, 20, 0.9995, 512]);
  for (const [cfg, field] of [
    [{ bitWidth: 3 }, 'bitWidth'],
    [{ groupSize: 100 }, 'groupSize'],
    [{ minAccuracy: 2 }, 'minAccuracy'],
    [{ profile: 'phone' }, 'profile'],
    [{ groupsize: 64 }, 'groupsize'],
    [{ layerBitWidths: { 'a.*': 5 } }, "layerBitWidths['a.*']"],
  ]) {
    assert.throws(() => resolveConfig(cfg), (e) => e instanceof Error && e.code === 'E_CONFIG' && e.field === field && e.message.includes(field));
  }
});

test('bad input: each case is an Error with a stable code, and the module keeps working', () => {
  const w = randomF32(64 * 64);
  const good = safetensors([{ name: 'l.weight', dtype: 'F32', shape: [64, 64], data: w }]);
  const nan = w.slice(); nan[77] = NaN;
  const cases = [
    [good.subarray(0, good.length - 3), 'E_SAFETENSORS', /ends at byte/],
    [good.subarray(0, 4), 'E_SAFETENSORS', /too short/],
    [safetensors([{ name: 'l.weight', dtype: 'F32', shape: [64, 64], data: nan }]), 'E_NONFINITE', /l\.weight.*77/],
    [safetensors([{ name: 'q', dtype: 'Q4_K', shape: [2], data: new Uint8Array(2) }]), 'E_DTYPE', /unknown dtype 'Q4_K'/],
    [safetensors([{ name: 'z', dtype: 'F32', shape: [0, 8], data: new Uint8Array(0) }]), 'E_SAFETENSORS', /zero elements/],
    [safetensors([]), 'E_SAFETENSORS', /no tensors/],
  ];
  for (const [bytes, code, re] of cases) {
    assert.throws(() => quantizeModel(bytes, {}), (e) => e instanceof Error && e.code === code && re.test(e.message), `${code} ${re}`);
  }
  assert.throws(() => quantizeModel(good, { bitWidth: 5 }), (e) => e.code === 'E_CONFIG' && e.field === 'bitWidth');
  assert.throws(() => openQuantized(new Uint8Array([1, 2, 3])), (e) => e.code === 'E_PARQUET');
  const { parquet } = quantizeModel(good, {});
  assert.throws(() => openQuantized(parquet.subarray(0, parquet.length - 20)), (e) => e.code === 'E_PARQUET');
  assert.ok(quantizeModel(good, {}).parquet.length > 0);
});
