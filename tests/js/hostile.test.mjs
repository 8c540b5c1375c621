// Hostile and careless input against the built package, on one module instance: every case is
// an Error with its documented code (and the field or tensor it names), and after each one a good
// input on the same instance still gives byte-identical output. Then seeded mutation loops over
// safetensors and calibration inputs, and wasm memory across 1,000 failing calls.
// `make fuzz` runs the same loops for much longer (AQ_FUZZ_ITERATIONS).
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import {
  bytesSource,
  configFromText,
  dequantizeTensor,
  describeModel,
  mergeShards,
  ModelQuantizer,
  openQuantized,
  quantizeModel,
  quantizeStream,
  quantizeTensor,
  readCalibration,
  readSafetensorsHeader,
  resolveConfig,
  safetensorsHeaderSize,
  SizePlanner,
  wasmMemoryBytes,
} from '../../pkg/node.js';
import { createHandler } from '../../pkg/http.js';
import { DDPM_CAL, randomF32, read, safetensors } from './helpers.mjs';

const ITERATIONS = Number(process.env.AQ_FUZZ_ITERATIONS ?? 1500);
const sha = (b) => createHash('sha256').update(b).digest('hex');
const enc = new TextEncoder();

/** safetensors bytes from a header given as JSON text (so it can lie) and a data length. */
function rawSafetensors(headerText, dataLen) {
  const h = enc.encode(headerText);
  const b = new Uint8Array(8 + h.length + dataLen);
  new DataView(b.buffer).setBigUint64(0, BigInt(h.length), true);
  b.set(h, 8);
  return b;
}

const weights = randomF32(32 * 128, 9);
const good = safetensors([
  { name: 'blk.0.proj.weight', dtype: 'F32', shape: [32, 128], data: weights },
  { name: 'blk.0.proj.bias', dtype: 'F32', shape: [32], data: randomF32(32, 10) },
]);
const goodHash = sha(quantizeModel(good, { profile: 'local' }).parquet);
const goodParquet = quantizeModel(good, { profile: 'local' }).parquet;
const stillWorks = (why) => assert.equal(sha(quantizeModel(good, { profile: 'local' }).parquet), goodHash, `after ${why}`);

const deep = (n, leaf = 1) => {
  const root = {};
  let cur = root;
  for (let i = 0; i < n; i++) cur = cur.a = {};
  cur.a = leaf;
  return root;
};
const cyclic = () => {
  const o = { profile: 'local' };
  o.self = o;
  return o;
};
const tiny = (scale) => safetensors([{ name: 't.weight', dtype: 'F32', shape: [2, 64], data: randomF32(128, 3).map((x) => x * scale) }]);

// [label, thunk, code, { field, tensor, message }]. Thunks may be async.
const catalogue = [
  // Config objects from JS.
  ['config nested 5,000 deep', () => quantizeModel(good, deep(5000)), 'E_CONFIG'],
  ['config nested 100,000 deep', () => quantizeModel(good, { layerBitWidths: deep(100000) }), 'E_CONFIG'],
  ['cyclic config', () => quantizeModel(good, cyclic()), 'E_CONFIG'],
  ['bits 260 (would wrap to 4)', () => quantizeModel(good, { bitWidth: 260 }), 'E_CONFIG', { field: 'bitWidth' }],
  ['bits 258 (would wrap to 2)', () => quantizeModel(good, { bitWidth: 258 }), 'E_CONFIG', { field: 'bitWidth' }],
  ['bits NaN', () => quantizeModel(good, { bitWidth: NaN }), 'E_CONFIG', { field: 'bitWidth' }],
  ['groupSize Infinity', () => quantizeModel(good, { groupSize: Infinity }), 'E_CONFIG', { field: 'groupSize' }],
  ['minAccuracy -Infinity', () => quantizeModel(good, { minAccuracy: -Infinity }), 'E_CONFIG', { field: 'minAccuracy' }],
  ['targetSizeMb NaN', () => quantizeModel(good, { targetSizeMb: NaN }), 'E_CONFIG', { field: 'targetSizeMb' }],
  ['spatialAlpha 2', () => quantizeModel(good, { spatialAlpha: 2 }), 'E_CONFIG', { field: 'spatialAlpha' }],
  ['gptqDamp 0', () => quantizeModel(good, { gptqDamp: 0 }), 'E_CONFIG', { field: 'gptqDamp' }],
  ['layerBitWidths value NaN', () => quantizeModel(good, { layerBitWidths: { 'blk.*': NaN } }), 'E_CONFIG'],
  ['layerBitWidths value 3', () => quantizeModel(good, { layerBitWidths: { 'blk.*': 3 } }), 'E_CONFIG', { field: "layerBitWidths['blk.*']" }],
  ['unknown field', () => quantizeModel(good, { bitwidth: 4 }), 'E_CONFIG', { field: 'bitwidth' }],
  ['profile typo', () => quantizeModel(good, { profile: 'edgy' }), 'E_CONFIG', { field: 'profile' }],
  ['BigInt in config', () => quantizeModel(good, { bitWidth: 4n }), 'E_CONFIG', { field: 'bitWidth' }],
  ['function in config', () => quantizeModel(good, { bitWidth: () => 4 }), 'E_CONFIG', { field: 'bitWidth' }],
  ['throwing getter', () => quantizeModel(good, { get bitWidth() { throw new Error('boom'); } }), 'E_CONFIG', { field: 'bitWidth' }],
  ['config a string', () => quantizeModel(good, 'local'), 'E_CONFIG'],
  // Proxies whose traps throw: the exception must not unwind through wasm frames.
  ['config Proxy, ownKeys throws', () => quantizeModel(good, new Proxy({}, { ownKeys() { throw new Error('trap'); } })), 'E_CONFIG'],
  ['config revoked Proxy', () => { const r = Proxy.revocable({}, {}); r.revoke(); return quantizeModel(good, r.proxy); }, 'E_CONFIG'],
  ['patterns Proxy, length throws', () => quantizeModel(good, { sensitiveLayerPatterns: new Proxy(['a'], { get() { throw new Error('trap'); } }) }), 'E_CONFIG', { field: 'sensitiveLayerPatterns' }],
  ['calibration Proxy, ownKeys throws', () => readCalibration(new Proxy({}, { ownKeys() { throw new Error('trap'); } })), 'E_CALIBRATION'],
  ['resolveConfig deep', () => resolveConfig(deep(3000)), 'E_CONFIG'],
  ['configFromText not pairs', () => configFromText([[1, 2, 3]]), 'E_CONFIG'],
  ['configFromText deep', () => configFromText(deep(3000)), 'E_CONFIG'],
  ['ModelQuantizer deep config', () => new ModelQuantizer(deep(3000)), 'E_CONFIG'],
  ['SizePlanner cyclic config', () => new SizePlanner(cyclic()), 'E_CONFIG'],
  ['setPlan deep', () => new ModelQuantizer({}).setPlan(deep(3000)), 'E_CONFIG'],
  // Calibration objects.
  ['calibration nested deep', () => quantizeModel(good, {}, { calibration: deep(5000) }), 'E_CALIBRATION'],
  ['calibration cyclic', () => quantizeModel(good, {}, { calibration: cyclic() }), 'E_CALIBRATION'],
  ['calibration NaN timestep', () => readCalibration({ timesteps: [NaN], layers: {} }), 'E_CALIBRATION'],
  ['calibration a number', () => readCalibration(42), 'E_CALIBRATION'],
  ['calibration bytes garbage', () => readCalibration(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8, 9])), 'E_CALIBRATION'],
  ['calibration truncated file', () => readCalibration(read(DDPM_CAL).subarray(0, 5000)), 'E_CALIBRATION'],
  // Safetensors containers.
  ['empty file', () => quantizeModel(new Uint8Array(0), {}), 'E_SAFETENSORS'],
  ['header length 2^64-1', () => quantizeModel(new Uint8Array([255, 255, 255, 255, 255, 255, 255, 255, 0]), {}), 'E_SAFETENSORS'],
  ['header not JSON', () => quantizeModel(rawSafetensors('{"a":', 0), {}), 'E_SAFETENSORS'],
  ['header JSON nested 10,000 deep', () => quantizeModel(rawSafetensors('['.repeat(10000) + ']'.repeat(10000), 0), {}), 'E_SAFETENSORS'],
  ['header an array', () => quantizeModel(rawSafetensors('[1,2]', 0), {}), 'E_SAFETENSORS'],
  ['duplicate tensor name', () => quantizeModel(rawSafetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8), {}), 'E_SAFETENSORS', { message: /'a' twice/ }],
  ['shape overflows u64', () => quantizeModel(rawSafetensors('{"a":{"dtype":"F32","shape":[4294967296,4294967296,2],"data_offsets":[0,8]}}', 8), {}), 'E_SAFETENSORS', { message: /overflows/ }],
  ['shape 2^63+5 with 10 bytes', () => quantizeModel(rawSafetensors('{"a":{"dtype":"U8","shape":[9223372036854775813],"data_offsets":[0,10]}}', 10), {}), 'E_SAFETENSORS'],
  ['negative dimension', () => quantizeModel(rawSafetensors('{"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}}', 4), {}), 'E_SAFETENSORS'],
  ['fractional offset', () => quantizeModel(rawSafetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4.5]}}', 4), {}), 'E_SAFETENSORS'],
  ['offsets past the end', () => quantizeModel(rawSafetensors('{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}', 8), {}), 'E_SAFETENSORS'],
  ['overlapping tensors', () => quantizeModel(rawSafetensors('{"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},"b":{"dtype":"U8","shape":[4],"data_offsets":[2,6]}}', 6), {}), 'E_SAFETENSORS', { message: /overlap/ }],
  ['unknown dtype', () => quantizeModel(rawSafetensors('{"a":{"dtype":"Q4_K","shape":[2],"data_offsets":[0,2]}}', 2), {}), 'E_DTYPE', { tensor: 'a' }],
  ['metadata not strings', () => quantizeModel(rawSafetensors('{"__metadata__":{"a":1},"b":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}}', 1), {}), 'E_SAFETENSORS'],
  ['NaN weight', () => quantizeModel(safetensors([{ name: 'n.weight', dtype: 'F32', shape: [2, 64], data: randomF32(128).map((x, i) => (i === 70 ? NaN : x)) }]), {}), 'E_NONFINITE', { tensor: 'n.weight', message: /70/ }],
  ['Infinity weight', () => quantizeModel(safetensors([{ name: 'i.weight', dtype: 'F32', shape: [2, 64], data: randomF32(128).map((x, i) => (i === 3 ? Infinity : x)) }]), {}), 'E_NONFINITE', { tensor: 'i.weight' }],
  ['describeModel NaN file size', () => describeModel(good.subarray(0, safetensorsHeaderSize(good)), NaN), 'E_CONFIG', { field: 'fileSize' }],
  ['readSafetensorsHeader fractional size', () => readSafetensorsHeader(good, 12.5), 'E_CONFIG', { field: 'fileSize' }],
  ['mergeShards not an array', () => mergeShards(7), 'E_SAFETENSORS'],
  ['mergeShards deep index', () => mergeShards([{ name: 'a', size: good.length, header: good.subarray(0, safetensorsHeaderSize(good)) }], deep(3000)), 'E_CONFIG'],
  // quantizeTensor / dequantizeTensor.
  ['quantizeTensor shape 2^32×2^32 of no values', () => quantizeTensor(new Float32Array(0), [2 ** 32, 2 ** 32, 1], {}), 'E_CONFIG', { field: 'shape' }],
  ['quantizeTensor shape NaN', () => quantizeTensor(new Float32Array(64), [NaN, 64], {}), 'E_CONFIG', { field: 'shape[0]' }],
  ['quantizeTensor shape negative', () => quantizeTensor(new Float32Array(64), [-1, -64], {}), 'E_CONFIG', { field: 'shape[0]' }],
  ['quantizeTensor shape fraction', () => quantizeTensor(new Float32Array(64), [0.5, 128], {}), 'E_CONFIG', { field: 'shape[0]' }],
  ['quantizeTensor 1-D', () => quantizeTensor(new Float32Array(64), [64], {}), 'E_CONFIG', { field: 'shape' }],
  ['quantizeTensor NaN value', () => quantizeTensor(new Float32Array(64).fill(NaN), [1, 64], {}), 'E_NONFINITE'],
  ['dequantizeTensor bits 260', () => dequantizeTensor(new Uint8Array(32), new Uint16Array(1), new Uint16Array(1), [1, 64], 260, 64), 'E_CONFIG'],
  ['dequantizeTensor groupSize 2^32+64', () => dequantizeTensor(new Uint8Array(32), new Uint16Array(1), new Uint16Array(1), [1, 64], 4, 2 ** 32 + 64), 'E_CONFIG'],
  ['dequantizeTensor shape 2^63', () => dequantizeTensor(new Uint8Array(10), new Uint16Array(1), new Uint16Array(1), [2 ** 63], 8, 64), 'E_CONFIG'],
  ['dequantizeTensor short codes', () => dequantizeTensor(new Uint8Array(3), new Uint16Array(1), new Uint16Array(1), [1, 64], 4, 64), 'E_CONFIG'],
  // The reader.
  ['openQuantized 3 bytes', () => openQuantized(new Uint8Array([1, 2, 3])), 'E_PARQUET'],
  ['openQuantized footer length 0xFFFFFFFF', () => {
    const b = goodParquet.slice();
    new DataView(b.buffer).setUint32(b.length - 8, 0xffffffff, true);
    return openQuantized(b);
  }, 'E_PARQUET'],
  ['openQuantized truncated', () => openQuantized(goodParquet.subarray(0, goodParquet.length - 20)), 'E_PARQUET'],
  ['openQuantized a safetensors file', () => openQuantized(good), 'E_PARQUET'],
  ['dequantize unknown tensor', () => openQuantized(goodParquet).dequantize('nope'), 'E_STATE'],
  ['export dtype bf17', () => openQuantized(goodParquet).exportHeader('bf17'), 'E_CONFIG'],
  // Use after free, out of order.
  ['QuantizedFile after free()', () => {
    const f = openQuantized(goodParquet);
    f.free();
    return f.tensors();
  }, 'E_STATE', { message: /after free/ }],
  ['ModelQuantizer after free()', () => {
    const q = new ModelQuantizer({});
    q.free();
    return q.readPlan();
  }, 'E_STATE', { message: /after free/ }],
  ['ModelQuantizer finish before begin', () => new ModelQuantizer({}).finish(), 'E_STATE'],
  ['ModelQuantizer addRange before begin', () => new ModelQuantizer({}).addRange(0, new Uint8Array(4)), 'E_STATE'],
  ['ModelQuantizer tensor added twice', () => {
    const q = new ModelQuantizer({});
    q.begin(good.subarray(0, safetensorsHeaderSize(good)), good.length);
    const hdr = readSafetensorsHeader(good.subarray(0, safetensorsHeaderSize(good)));
    const t = hdr.tensors[0];
    const bytes = good.subarray(t.start, t.end);
    q.addTensor(t.name, bytes);
    return q.addTensor(t.name, bytes);
  }, 'E_STATE'],
  ['ModelQuantizer wrong byte count', () => {
    const q = new ModelQuantizer({});
    q.begin(good.subarray(0, safetensorsHeaderSize(good)), good.length);
    return q.addTensor('blk.0.proj.weight', new Uint8Array(7));
  }, 'E_SAFETENSORS', { message: /blk\.0\.proj\.weight/ }],
  // Streaming.
  ['stream: a source shorter than it says', () => quantizeStream({ size: good.length, read: (a, b) => good.slice(a, Math.min(b, 40)) }, {}), 'E_SAFETENSORS'],
  ['stream: aborted', () => quantizeStream(bytesSource(good), {}, { signal: AbortSignal.abort() }), 'E_CANCELLED'],
  ['stream: abort with a reason', () => {
    const c = new AbortController();
    c.abort(new Error('user left'));
    return quantizeStream(bytesSource(good), {}, { signal: c.signal });
  }, 'E_CANCELLED', { message: /user left/ }],
  ['stream: deep config', () => quantizeStream(bytesSource(good), deep(5000)), 'E_CONFIG'],
];

test(`catalogue: ${catalogue.length} hostile inputs, each with its code, the instance unharmed`, async () => {
  assert.ok(catalogue.length >= 60);
  for (const [label, run, code, expect = {}] of catalogue) {
    let error;
    try {
      await run();
    } catch (e) {
      error = e;
    }
    assert.ok(error instanceof Error, `${label}: must fail with an Error (got ${error === undefined ? 'success' : typeof error})`);
    assert.equal(error.code, code, `${label}: code ${error.code} (${error.message})`);
    if (expect.field) assert.equal(error.field, expect.field, `${label}: field (${error.message})`);
    if (expect.tensor) assert.equal(error.tensor, expect.tensor, `${label}: tensor (${error.message})`);
    if (expect.message) assert.match(error.message, expect.message, label);
    stillWorks(label);
  }
});

test('accepted but surprising input is named in the report', () => {
  const r = quantizeModel(good, { layerBitWidths: { 'blk.0.proj.weigth': 8 }, sensitiveLayerPatterns: ['*nothing*'] }).report;
  const unmatched = r.warnings.filter((w) => w.code === 'unmatched_pattern');
  assert.deepEqual(unmatched.map((w) => [w.field, w.pattern]), [['layerBitWidths', 'blk.0.proj.weigth'], ['sensitiveLayerPatterns', '*nothing*']]);
  const clean = quantizeModel(good, { layerBitWidths: { 'blk.*': 8 } }).report;
  assert.deepEqual(clean.warnings, []);
  const low = quantizeModel(good, { bitWidth: 2, minAccuracy: 0 }).report;
  assert.ok(low.warnings.some((w) => w.code === 'low_precision'), JSON.stringify(low.warnings));
});

test('tiny magnitudes are stored exactly, not flushed to zero', () => {
  for (const scale of [1e-38, 1e-20, 1e-7]) {
    const bytes = tiny(scale);
    const { parquet, report } = quantizeModel(bytes, { minAccuracy: 0 });
    assert.equal(report.layers[0].storage, 'raw', `scale ${scale}: ${report.layers[0].reason}`);
    const f = openQuantized(parquet);
    const back = f.dequantize('t.weight');
    f.free();
    assert.deepEqual(back, new Float32Array(bytes.slice(bytes.length - 512).buffer), `scale ${scale}`);
  }
  // Small but normal magnitudes still quantize.
  assert.equal(quantizeModel(tiny(1e-3), {}).report.layers[0].storage, 'quantized');
});

test('HTTP handler: hostile requests get 4xx with codes, and it keeps serving', async () => {
  const handle = createHandler({ maxBodyBytes: 1 << 20 });
  const post = (body, headers = {}, query = '') =>
    handle(new Request(`http://x/quantize${query}`, { method: 'POST', body, headers, duplex: 'half' }));
  const cases = [
    [() => post(good, { 'x-arrowquant-config': '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) }), 400, 'E_CONFIG'],
    [() => post(good, { 'x-arrowquant-config': '[' }), 400, 'E_CONFIG'],
    [() => post(good, { 'content-length': 'abc' }), 400, 'E_USAGE'],
    [() => post(good, {}, '?bits=260'), 400, 'E_CONFIG'],
    [() => post(good, {}, '?bits=NaN'), 400, 'E_CONFIG'],
    [() => post(rawSafetensors('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}', 8)), 422, 'E_SAFETENSORS'],
    [() => {
      // A client that goes away mid-upload.
      const body = new ReadableStream({
        start(c) {
          c.enqueue(good.subarray(0, 100));
          c.error(new Error('connection reset'));
        },
      });
      return post(body);
    }, 400, 'E_IO'],
  ];
  for (const [send, status, code] of cases) {
    const res = await send();
    const body = await res.json();
    assert.equal(res.status, status, JSON.stringify(body));
    assert.equal(body.code, code, JSON.stringify(body));
    const ok = await post(good, { accept: 'application/json' });
    assert.equal(ok.status, 200, `still serving after ${code}`);
  }
});

/** Seeded xorshift. */
function rng(seed) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s ^= s >>> 17;
    s ^= s << 5;
    return (s >>> 0) / 2 ** 32;
  };
}

/** A random mutation: byte flips, a cut, a splice of random bytes or a duplicated span. */
function mutate(bytes, r) {
  const b = bytes.slice();
  const kind = Math.floor(r() * 4);
  const at = Math.floor(r() * b.length);
  if (kind === 0) {
    for (let k = 0; k < 1 + Math.floor(r() * 4); k++) b[Math.floor(r() * b.length)] ^= 1 << Math.floor(r() * 8);
    return b;
  }
  if (kind === 1) return b.subarray(0, at);
  if (kind === 2) {
    const junk = Uint8Array.from({ length: 1 + Math.floor(r() * 16) }, () => Math.floor(r() * 256));
    b.set(junk.subarray(0, b.length - at), at);
    return b;
  }
  const len = Math.floor(r() * 32);
  const out = new Uint8Array(b.length + len);
  out.set(b.subarray(0, at));
  out.set(b.subarray(at, at + len), at);
  out.set(b.subarray(at), at + Math.min(len, b.length - at));
  return out;
}

const DOCUMENTED = new Set(['E_CONFIG', 'E_SAFETENSORS', 'E_DTYPE', 'E_NONFINITE', 'E_ACCURACY', 'E_PARQUET', 'E_CALIBRATION', 'E_STATE', 'E_TOO_LARGE']);

test(`mutation loop: ${ITERATIONS} mutated safetensors files, no trap, no undocumented error`, () => {
  const r = rng(20261206);
  // Mutate mostly the header (where the parser is), sometimes anywhere.
  const headerEnd = safetensorsHeaderSize(good);
  const outcomes = {};
  for (let i = 0; i < ITERATIONS; i++) {
    const m = r() < 0.8 ? new Uint8Array([...mutate(good.subarray(0, headerEnd), r), ...good.subarray(headerEnd)]) : mutate(good, r);
    let outcome = 'ok';
    try {
      const { parquet } = quantizeModel(m, { profile: 'local' });
      assert.ok(parquet.length > 0);
    } catch (e) {
      assert.ok(DOCUMENTED.has(e.code), `iteration ${i}: ${e.code}: ${e.message}`);
      outcome = e.code;
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  stillWorks('the safetensors mutation loop');
  console.log('safetensors mutations by outcome:', JSON.stringify(outcomes));
});

test(`mutation loop: ${ITERATIONS} mutated calibration files`, () => {
  const cal = read(DDPM_CAL);
  const r = rng(7);
  const headerEnd = safetensorsHeaderSize(cal);
  const outcomes = {};
  for (let i = 0; i < ITERATIONS; i++) {
    const m = r() < 0.8 ? new Uint8Array([...mutate(cal.subarray(0, headerEnd), r), ...cal.subarray(headerEnd)]) : mutate(cal, r);
    let outcome = 'ok';
    try {
      readCalibration(m);
    } catch (e) {
      assert.equal(e.code, 'E_CALIBRATION', `iteration ${i}: ${e.code}: ${e.message}`);
      outcome = e.code;
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  stillWorks('the calibration mutation loop');
  console.log('calibration mutations by outcome:', JSON.stringify(outcomes));
});

test(`mutation loop: ${ITERATIONS} mutated Parquet files are refused or read back exactly`, () => {
  const r = rng(99);
  const f0 = openQuantized(goodParquet);
  const names = f0.tensors().map((t) => t.name);
  const want = names.map((n) => sha(new Uint8Array(f0.dequantize(n).buffer)));
  f0.free();
  const outcomes = {};
  for (let i = 0; i < ITERATIONS; i++) {
    const m = mutate(goodParquet, r);
    let outcome = 'identical';
    let f;
    try {
      f = openQuantized(m);
      const got = f.tensors().map((t) => t.name);
      assert.deepEqual(got, names, `iteration ${i}: accepted with other tensors`);
      names.forEach((n, k) => assert.equal(sha(new Uint8Array(f.dequantize(n).buffer)), want[k], `iteration ${i}: '${n}' reads back differently`));
    } catch (e) {
      if (e instanceof assert.AssertionError) throw e;
      assert.equal(e.code, 'E_PARQUET', `iteration ${i}: ${e.code}: ${e.message}`);
      outcome = e.code;
    } finally {
      f?.free();
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  stillWorks('the Parquet mutation loop');
  console.log('Parquet mutations by outcome:', JSON.stringify(outcomes));
});

test('wasm memory stays flat across 1,000 failing calls', () => {
  const footer = goodParquet.slice();
  new DataView(footer.buffer).setUint32(footer.length - 8, 0xffffffff, true);
  const failing = [
    () => openQuantized(footer),
    () => quantizeModel(rawSafetensors('{"a":', 0), {}),
    () => quantizeModel(good, { bitWidth: NaN }),
    () => quantizeModel(good, deep(100)),
    () => readCalibration(new Uint8Array(64)),
  ];
  const call = (k) => {
    try {
      failing[k % failing.length]();
      assert.fail('must fail');
    } catch (e) {
      assert.ok(e.code, e.message);
    }
  };
  for (let k = 0; k < 100; k++) call(k); // settle the allocator
  const before = wasmMemoryBytes();
  for (let k = 0; k < 1000; k++) call(k);
  const after = wasmMemoryBytes();
  console.log(`wasm memory before/after 1,000 failing calls: ${(before / 2 ** 20).toFixed(1)} / ${(after / 2 ** 20).toFixed(1)} MiB`);
  assert.ok(after <= before + (1 << 20), `wasm memory grew from ${before} to ${after}`);
  stillWorks('1,000 failing calls');
});
