// GGUF output through the JS API: the streamed writer (quantizeGguf) and the whole-file one
// (quantizeModelGguf) give the same bytes; the file reads back (openGguf) with the report's types
// and shapes; hostile inputs get their documented codes, and a seeded mutation loop over a GGUF
// file never traps and never decodes a damaged tensor table silently. gguf-py's bit-exact
// check of the same files is tests/py/check_gguf.py.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { bytesSource, GgufQuantizer, openGguf, quantizeGguf, quantizeModelGguf, wasmMemoryBytes } from '../../pkg/node.js';
import { DDPM, DDPM_CAL, randomF32, read, safetensors, tempDir } from './helpers.mjs';

const TYPES = ['Q8_0', 'Q6_K', 'Q5_K_M', 'Q5_K_S', 'Q5_1', 'Q5_0', 'Q4_K_M', 'Q4_K_S', 'Q4_1', 'Q4_0', 'Q3_K_L', 'Q3_K_M', 'Q3_K_S', 'Q2_K', 'F16', 'BF16', 'F32'];

test('the TypeScript GgmlTypeName lists exactly the mixes the library accepts', () => {
  const dts = readFileSync(new URL('../../pkg/wasm/arrowquant.d.ts', import.meta.url), 'utf8');
  const union = /export type GgmlTypeName = ([^;]+);/.exec(dts)[1].split('|').map((t) => t.trim().replace(/'/g, ''));
  assert.deepEqual([...union].sort(), [...TYPES].sort());
});

test('streamed and whole-file GGUF are the same bytes, and read back with the report', async () => {
  const model = read(DDPM);
  for (const ty of TYPES) {
    const chunks = [];
    const progress = [];
    const { report } = await quantizeGguf(bytesSource(model), ty, { onChunk: (c) => chunks.push(c.slice()), onProgress: (p) => progress.push(p.done) });
    const streamed = Buffer.concat(chunks);
    const whole = quantizeModelGguf(model, ty);
    assert.ok(Buffer.from(whole.gguf).equals(streamed), ty);
    assert.equal(report.outputBytes, streamed.length);
    assert.deepEqual(progress, report.layers.map((_, i) => i + 1));
    const f = openGguf(streamed);
    const tensors = f.tensors();
    assert.equal(f.metadata()['general.architecture'], report.architecture);
    assert.equal(f.metadata()['arrowquant.ggml_type'], ty);
    for (const [i, t] of tensors.entries()) {
      assert.equal(t.name, report.layers[i].name);
      assert.equal(t.ggmlType, report.layers[i].ggmlType);
      assert.deepEqual(t.shape, report.layers[i].shape);
      assert.equal(f.dequantize(t.name).length, report.layers[i].params);
      assert.ok(Number.isFinite(report.layers[i].quantizeMs) && report.layers[i].quantizeMs >= 0, t.name);
    }
    f.free();
  }
});

test('calibration weights the GGUF block searches (importance) and the report measures the layer outputs', async () => {
  const model = read(DDPM);
  const cal = read(DDPM_CAL);
  const plain = quantizeModelGguf(model, 'Q4_0');
  // Importance alone (GPTQ, below, takes over where the calibration has Gram matrices).
  const weighted = quantizeModelGguf(model, 'Q4_0', cal, { gptq: 'off' });
  assert.equal(plain.report.calibration, null);
  assert.ok(!Buffer.from(plain.gguf).equals(Buffer.from(weighted.gguf)), 'importance changes the blocks');
  assert.equal(weighted.gguf.length, plain.gguf.length, 'the same types and layout');
  const { report } = weighted;
  const searched = report.layers.filter((l) => l.ggmlType === 'Q4_0');
  assert.ok(searched.length > 20);
  assert.equal(report.calibration.weighted + report.calibration.withoutStatistics.length, searched.length);
  assert.ok(report.calibration.weighted >= searched.length - 2, JSON.stringify(report.calibration));
  let tradedWeightSnr = 0;
  const plainLayers = new Map(plain.report.layers.map((l) => [l.name, l]));
  for (const l of searched.filter((x) => x.importanceFrom)) {
    assert.match(l.reason, /weighted by the input second moments of calibration layer/);
    assert.equal(l.importanceFrom, l.name.replace(/\.weight$/, ''));
    assert.ok(Number.isFinite(l.outputSnrDb), l.name);
    assert.equal(plainLayers.get(l.name).outputSnrDb, null);
    // The weight SNR may drop a little; the point is the error the layer's output sees.
    if (l.snrDb <= plainLayers.get(l.name).snrDb) tradedWeightSnr++;
  }
  assert.ok(tradedWeightSnr > 0, 'the weighted search trades weight SNR for output error somewhere');
  assert.ok(Number.isFinite(report.calibration.outputSnrDb));
  // Streamed with the same calibration: the same bytes; a float-only mix ignores it.
  const chunks = [];
  await quantizeGguf(bytesSource(model), 'Q4_0', { calibration: cal, gptq: 'off', onChunk: (c) => chunks.push(c.slice()) });
  assert.ok(Buffer.concat(chunks).equals(Buffer.from(weighted.gguf)));
  const f16 = quantizeModelGguf(model, 'F16', cal);
  assert.ok(Buffer.from(f16.gguf).equals(Buffer.from(quantizeModelGguf(model, 'F16').gguf)));
  assert.equal(f16.report.calibration.weighted, 0);
  // Damaged calibration: its own code, nothing written.
  assert.throws(() => quantizeModelGguf(model, 'Q4_0', cal.subarray(0, 100)), (e) => e.code === 'E_CALIBRATION');
});

test('with Gram matrices in the calibration, GPTQ codes the block types and wins at the layer outputs', async () => {
  const model = read(DDPM);
  const cal = read(DDPM_CAL);
  for (const ty of ['Q4_0', 'Q4_K_M', 'Q8_0']) {
    const importance = quantizeModelGguf(model, ty, cal, { gptq: 'off' });
    const gptq = quantizeModelGguf(model, ty, cal);
    assert.equal(gptq.gguf.length, importance.gguf.length, `${ty}: the same types and layout`);
    assert.equal(importance.report.calibration.gptq, 0);
    const coded = gptq.report.layers.filter((l) => l.gptq);
    assert.equal(gptq.report.calibration.gptq, coded.length);
    assert.ok(coded.length >= 40, `${ty}: ${coded.length} GPTQ tensors`);
    const before = new Map(importance.report.layers.map((l) => [l.name, l]));
    let better = 0;
    for (const l of coded) {
      assert.match(l.reason, /GPTQ with the calibration's Gram matrix over \d+ columns/);
      assert.ok(Number.isFinite(l.outputSnrDb), l.name);
      if (l.outputSnrDb > before.get(l.name).outputSnrDb) better++;
    }
    assert.ok(better >= coded.length - 2, `${ty}: GPTQ better at the output in ${better} of ${coded.length} layers`);
    assert.ok(gptq.report.calibration.outputSnrDb > importance.report.calibration.outputSnrDb + 1, `${ty}: ${gptq.report.calibration.outputSnrDb} vs ${importance.report.calibration.outputSnrDb} dB`);
    // Streamed: the same bytes; `gptq: 'on'` is the default here.
    const chunks = [];
    await quantizeGguf(bytesSource(model), ty, { calibration: cal, gptq: 'on', onChunk: (c) => chunks.push(c.slice()) });
    assert.ok(Buffer.concat(chunks).equals(Buffer.from(gptq.gguf)), ty);
    // The file reads back as the report says.
    const f = openGguf(gptq.gguf);
    for (const l of coded.slice(0, 5)) assert.equal(f.dequantize(l.name).length, l.params);
    f.free();
  }
  // The CLI takes the same switch.
  const { execFileSync } = await import('node:child_process');
  const { join } = await import('node:path');
  const out = join(tempDir(), 'm.gguf');
  execFileSync(process.execPath, [new URL('../../pkg/cli.js', import.meta.url).pathname, 'quantize', DDPM, '-o', out, '--gguf-type', 'Q4_0', '--calibration', DDPM_CAL, '--gptq', 'off', '--quiet']);
  assert.ok(readFileSync(out).equals(Buffer.from(quantizeModelGguf(model, 'Q4_0', cal, { gptq: 'off' }).gguf)), 'CLI --gptq off');
  // Bad values are E_CONFIG naming the field; the damping and the order reach the run.
  assert.throws(() => quantizeModelGguf(model, 'Q4_0', cal, { gptq: 'maybe' }), (e) => e.code === 'E_CONFIG' && e.field === 'gptq');
  assert.throws(() => quantizeModelGguf(model, 'Q4_0', cal, { gptqDamp: 0 }), (e) => e.code === 'E_CONFIG' && e.field === 'gptqDamp');
  const damped = quantizeModelGguf(model, 'Q4_0', cal, { gptqDamp: 0.1, gptqActOrder: false });
  assert.ok(damped.report.layers.some((l) => /GPTQ .*damp 0\.1\b/.test(l.reason)), 'gptqDamp reaches the run');
});

test('with measured sensitivities in the calibration, targetSizeMb moves the layers the output minds least', () => {
  const model = read(DDPM);
  const cal = read(DDPM_CAL);
  const full = quantizeModelGguf(model, 'Q8_0', cal, { gptq: 'off' });
  const target = (full.gguf.length / 1048576) * 0.6;
  const bySize = quantizeModelGguf(model, 'Q8_0', undefined, { targetSizeMb: target });
  const measured = quantizeModelGguf(model, 'Q8_0', cal, { targetSizeMb: target, gptq: 'off' });
  for (const r of [bySize, measured]) assert.ok(r.gguf.length <= target * 1048576, `${r.gguf.length} > ${target} MiB`);
  const moved = measured.report.layers.filter((l) => /moved down from/.test(l.reason));
  assert.ok(moved.length > 0 && moved.every((l) => /where the measured sensitivity says it costs least/.test(l.reason)), JSON.stringify(moved.map((l) => l.reason)));
  assert.ok(bySize.report.layers.every((l) => !/measured sensitivity/.test(l.reason)));
  // Not the same choice as by size: the plan follows the measurements.
  const types = (r) => r.report.layers.map((l) => l.ggmlType).join();
  assert.notEqual(types(measured), types(bySize));
});

test('layerBitWidths and targetSizeMb choose GGUF types: API, CLI and HTTP agree', async () => {
  const model = read(DDPM);
  const plain = quantizeModelGguf(model, 'Q8_0');
  const target = (plain.gguf.length / 1048576) * 0.7;
  const config = { layerBitWidths: { 'up_blocks.*.conv1.weight': 2, 'nothing.here': 8 }, targetSizeMb: target };
  const whole = quantizeModelGguf(model, 'Q8_0', undefined, config);
  assert.ok(whole.gguf.length <= target * 1048576, `${whole.gguf.length} > ${target} MiB`);
  const conv = whole.report.layers.find((l) => /^up_blocks\.\d+\.resnets\.\d+\.conv1\.weight$/.test(l.name));
  assert.match(conv.reason, /layerBitWidths 'up_blocks\.\*\.conv1\.weight' = 2/);
  assert.ok(whole.report.layers.some((l) => /moved down from Q8_0 to fit targetSizeMb/.test(l.reason)));
  assert.deepEqual(whole.report.warnings.map((w) => [w.code, w.pattern]), [['unmatched_pattern', 'nothing.here']]);
  const streamed = await quantizeGguf(bytesSource(model), 'Q8_0', config);
  assert.ok(Buffer.from(streamed.gguf).equals(Buffer.from(whole.gguf)));
  // Parquet-only fields and bad values are E_CONFIG naming the field.
  assert.throws(() => quantizeModelGguf(model, 'Q8_0', undefined, { bitWidth: 4 }), (e) => e.code === 'E_CONFIG' && e.field === 'bitWidth');
  assert.throws(() => quantizeModelGguf(model, 'Q8_0', undefined, { layerBitWidths: { x: 5 } }), (e) => e.code === 'E_CONFIG' && /layerBitWidths/.test(e.field));
  assert.throws(() => quantizeModelGguf(model, 'Q8_0', undefined, { targetSizeMb: 0.001 }), (e) => e.code === 'E_CONFIG' && e.field === 'targetSizeMb' && /at least/.test(e.message));
  // The CLI and the HTTP handler take the same two fields.
  const { execFileSync } = await import('node:child_process');
  const { readFileSync: readFile } = await import('node:fs');
  const { join } = await import('node:path');
  const out = join(tempDir(), 'm.gguf');
  execFileSync(process.execPath, [new URL('../../pkg/cli.js', import.meta.url).pathname, 'quantize', DDPM, '-o', out, '--gguf-type', 'Q8_0', '--layer-bit-widths', 'up_blocks.*.conv1.weight=2,nothing.here=8', '--target-size-mb', String(target), '--quiet']);
  assert.ok(readFile(out).equals(Buffer.from(whole.gguf)), 'CLI bytes');
  const { createHandler } = await import('../../pkg/http.js');
  const handle = createHandler();
  const q = new URLSearchParams({ format: 'gguf', 'gguf-type': 'Q8_0', 'layer-bit-widths': 'up_blocks.*.conv1.weight=2,nothing.here=8', 'target-size-mb': String(target) });
  const res = await handle(new Request(`http://x/quantize?${q}`, { method: 'POST', body: model, duplex: 'half' }));
  assert.equal(res.status, 200);
  assert.ok(Buffer.from(await res.arrayBuffer()).equals(Buffer.from(whole.gguf)), 'HTTP bytes');
});

test('GGUF hostile input: documented codes naming the field or tensor', async () => {
  const good = safetensors([{ name: 'w', dtype: 'F32', shape: [64, 64], data: randomF32(4096, 1) }]);
  const cases = [
    ['unknown type', () => quantizeModelGguf(good, 'Q3_K_XL'), 'E_CONFIG', /ggufType/],
    ['not safetensors', () => quantizeModelGguf(new Uint8Array([1, 2, 3]), 'Q4_0'), 'E_SAFETENSORS'],
    ['non-finite weight', () => { const w = randomF32(4096, 2); w[7] = NaN; return quantizeModelGguf(safetensors([{ name: 'w', dtype: 'F32', shape: [64, 64], data: w }]), 'Q8_0'); }, 'E_NONFINITE', /'w'/],
    ['U8 tensor', () => quantizeModelGguf(safetensors([{ name: 'u', dtype: 'U8', shape: [4], data: new Uint8Array(4) }]), 'Q8_0'), 'E_DTYPE', /'u'/],
    ['not GGUF', () => openGguf(new Uint8Array([1, 2, 3, 4, 5, 6, 7, 8])), 'E_GGUF'],
    ['truncated GGUF', () => openGguf(quantizeModelGguf(good, 'Q4_0').gguf.subarray(0, 200)), 'E_GGUF'],
    ['out of order', () => { const q = new GgufQuantizer(good, good.length, 'Q4_0'); try { q.addTensor('x', new Uint8Array(4)); } finally { q.free(); } }, 'E_STATE', /'w'/],
    ['wrong byte count', () => { const q = new GgufQuantizer(good, good.length, 'Q4_0'); try { q.addTensor('w', new Uint8Array(4)); } finally { q.free(); } }, 'E_DTYPE', /'w'/],
    ['finish early', () => { const q = new GgufQuantizer(good, good.length, 'Q4_0'); try { q.finish(); } finally { q.free(); } }, 'E_STATE'],
    ['used after free', () => { const q = new GgufQuantizer(good, good.length, 'Q4_0'); q.free(); q.nextTensor(); }, 'E_STATE'],
  ];
  const reference = Buffer.from(quantizeModelGguf(good, 'Q4_0').gguf);
  for (const [name, f, code, re] of cases) {
    let err;
    try {
      await f();
    } catch (e) {
      err = e;
    }
    assert.ok(err, `${name}: accepted`);
    assert.equal(err.code, code, `${name}: ${err.message}`);
    if (re) assert.match(err.message + (err.field ?? ''), re, name);
    assert.ok(Buffer.from(quantizeModelGguf(good, 'Q4_0').gguf).equals(reference), `${name}: the instance changed its output`);
  }
});

test('GGUF reader mutation loop: no trap, and what opens decodes every tensor', () => {
  const file = quantizeModelGguf(read(DDPM), 'Q4_0').gguf;
  let s = 12345;
  const rand = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  const outcomes = {};
  const before = wasmMemoryBytes();
  for (let i = 0; i < 1500; i++) {
    // Flips in the header and tensor table (GGUF has no checksums: flips in tensor data decode to
    // other numbers, as in any GGUF reader); one run in eight is also truncated.
    const m = rand() % 8 === 0 ? file.slice(0, rand() % file.length) : file.slice();
    for (let k = 0; k <= rand() % 4; k++) m[rand() % Math.min(m.length, 12288)] ^= 1 << (rand() % 8);
    let outcome;
    try {
      const f = openGguf(m);
      for (const t of f.tensors()) f.dequantize(t.name);
      f.free();
      outcome = 'ok';
    } catch (e) {
      assert.ok(e.code?.startsWith('E_'), `iteration ${i}: ${e.message}`);
      outcome = e.code;
    }
    outcomes[outcome] = (outcomes[outcome] ?? 0) + 1;
  }
  console.log(`# gguf mutations by outcome: ${JSON.stringify(outcomes)}`);
  assert.ok(outcomes.E_GGUF > 300 && outcomes.ok > 100, JSON.stringify(outcomes));
  assert.ok(wasmMemoryBytes() - before < 16 << 20, 'wasm memory grew across failing opens');
});

test('the HTTP handler writes GGUF with ?format=gguf, streamed, the same bytes', async () => {
  const { createHandler } = await import('../../pkg/http.js');
  const handle = createHandler();
  const model = read(DDPM);
  const post = (query, init = {}) =>
    handle(new Request(`http://x/quantize?${query}`, { method: 'POST', body: model, duplex: 'half', ...init }));
  const res = await post('format=gguf&gguf-type=Q4_K_M&name=unet');
  assert.equal(res.status, 200, await res.clone().text());
  assert.match(res.headers.get('content-disposition'), /unet-Q4_K_M\.gguf/);
  const got = new Uint8Array(await res.arrayBuffer());
  assert.equal(Number(res.headers.get('x-arrowquant-output-bytes')), got.length);
  assert.ok(Buffer.from(got).equals(Buffer.from(quantizeModelGguf(model, 'Q4_K_M').gguf)));
  const report = await (await post('format=gguf&gguf-type=Q6_K', { headers: { accept: 'application/json' } })).json();
  assert.equal(report.ggmlType, 'Q6_K');
  for (const [query, field] of [['format=gguf&bits=4', 'bits'], ['format=gguf&gguf-type=Q3_K', 'ggufType'], ['format=onnx', 'format'], ['gguf-type=Q4_0', 'ggufType']]) {
    const r = await post(query);
    assert.equal(r.status, 400, query);
    const body = await r.json();
    assert.equal(body.code, 'E_CONFIG', query);
    assert.equal(body.field, field, query);
  }
});

test('toParquet / toGguf re-container without re-quantizing; E_CONVERT names what cannot go', async () => {
  const { openQuantized, quantizeModel } = await import('../../pkg/node.js');
  const gguf = quantizeModelGguf(read(DDPM), 'Q3_K_S').gguf;
  const source = openGguf(gguf);
  const parquet = source.toParquet();
  const file = openQuantized(parquet);
  assert.equal(file.metadata().formatVersion, '2.4');
  for (const t of source.tensors()) assert.deepEqual(file.dequantize(t.name), source.dequantize(t.name), t.name);
  assert.ok(Buffer.from(file.toGguf()).equals(Buffer.from(gguf)));
  const g64 = openQuantized(quantizeModel(read(DDPM), { bitWidth: 4, groupSize: 64, minAccuracy: 0 }).parquet);
  assert.throws(() => g64.toGguf(), (e) => e.code === 'E_CONVERT' && typeof e.tensor === 'string' && e.message.includes(e.tensor));
  for (const f of [source, file, g64]) f.free();
});
