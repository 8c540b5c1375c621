// arrowquant Parquet files read by byte range (openQuantizedSource, and the CLI's inspect /
// dequantize / convert): the whole-file reader's results, one segment in memory at a time, and
// damage refused as the whole-file reader refuses it.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bytesSource, openGguf, openQuantized, openQuantizedSource, quantizeModelGguf, quantizeStream } from '../../pkg/node.js';
import { CLI, countingSource as counting, DDPM, DDPM_CAL, read, tempDir } from './helpers.mjs';


/** The DDPM with its calibration (time groups, equalization), in row groups of about 64 KiB. */
async function smallRowGroups() {
  const { parquet } = await quantizeStream(bytesSource(read(DDPM)), { profile: 'local' }, { calibration: read(DDPM_CAL), rowGroupBytes: 64 << 10 });
  return parquet;
}

test('a Parquet file read by range gives what the whole-file reader gives, a segment at a time', async () => {
  const parquet = await smallRowGroups();
  const whole = openQuantized(parquet);
  const src = counting(parquet);
  let scanned = 0;
  const file = await openQuantizedSource(src, { onProgress: (p) => (scanned = p.done) });
  assert.ok(scanned > 5, `${scanned} segments`);
  assert.deepEqual(file.metadata(), whole.metadata());
  assert.deepEqual(file.tensors(), whole.tensors());
  for (const t of whole.tensors()) {
    assert.deepEqual(await file.dequantize(t.name), whole.dequantize(t.name), t.name);
    if (t.spatial) assert.deepEqual(await file.dequantize(t.name, { equalized: true }), whole.dequantize(t.name, { equalized: true }), t.name);
  }
  assert.ok(whole.tensors().some((t) => t.spatial), 'some layers equalized');
  for (const dtype of ['f32', 'f16']) {
    const expected = Buffer.concat([Buffer.from(whole.exportHeader(dtype)), ...whole.tensors().map((t) => Buffer.from(whole.exportTensor(t.name, dtype)))]);
    const chunks = [];
    await file.toSafetensors(dtype, { onChunk: (c) => chunks.push(Buffer.from(c)) });
    assert.ok(Buffer.concat(chunks).equals(expected), dtype);
  }
  // No read larger than the footer or a segment (here, row groups of about 64 KiB).
  assert.ok(Math.max(...src.reads) < parquet.length / 4, `largest read ${Math.max(...src.reads)} of ${parquet.length}`);
  // Equalized rows have no GGUF form: the plan says which.
  await assert.rejects(file.toGguf(), (e) => e.code === 'E_CONVERT' && typeof e.tensor === 'string');
  await assert.rejects(file.dequantize('nope'), (e) => e.code === 'E_STATE' && /nope/.test(e.message));
  file.free();
  whole.free();
});

test('a GGUF converted to Parquet goes back to the same GGUF by range', async () => {
  const gguf = quantizeModelGguf(read(DDPM), 'Q4_K_M').gguf;
  const parquet = openGguf(gguf).toParquet();
  const file = await openQuantizedSource(bytesSource(parquet));
  assert.ok(Buffer.from(await file.toGguf()).equals(Buffer.from(gguf)));
  file.free();
});

test('damage is refused by range as it is whole: body checksum, pages, truncation', async () => {
  const parquet = await smallRowGroups();
  const codeOf = (f) => { try { openQuantized(f); return 'ok'; } catch (e) { return e.code; } };
  let flips = 0;
  for (let at = 4; at < parquet.length - 8; at += Math.floor(parquet.length / 97)) {
    const bad = parquet.slice();
    bad[at] ^= 0x5a;
    const whole = codeOf(bad);
    let ranged = 'ok';
    try { (await openQuantizedSource(bytesSource(bad))).free(); } catch (e) { ranged = e.code; }
    assert.equal(ranged, whole, `byte ${at}`);
    if (whole !== 'ok') flips++;
  }
  assert.ok(flips > 80, `${flips} flips refused`);
  await assert.rejects(openQuantizedSource(bytesSource(parquet.subarray(0, parquet.length - 100))), (e) => e.code === 'E_PARQUET');
  await assert.rejects(openQuantizedSource(bytesSource(parquet.subarray(100))), (e) => e.code === 'E_PARQUET');
});

test('the CLI inspects, dequantizes and converts a Parquet file by range', async () => {
  const dir = tempDir();
  const path = join(dir, 'm.parquet');
  writeFileSync(path, await smallRowGroups());
  const whole = openQuantized(readFileSync(path));
  const inspected = JSON.parse(execFileSync(process.execPath, [CLI, 'inspect', path, '--json'], { encoding: 'utf8' }));
  assert.deepEqual(inspected.tensors, whole.tensors());
  execFileSync(process.execPath, [CLI, 'dequantize', path, '-o', join(dir, 'd.safetensors'), '--dtype', 'f16', '--quiet']);
  const expected = Buffer.concat([Buffer.from(whole.exportHeader('f16')), ...whole.tensors().map((t) => Buffer.from(whole.exportTensor(t.name, 'f16')))]);
  assert.ok(readFileSync(join(dir, 'd.safetensors')).equals(expected));
  whole.free();
  const gguf = quantizeModelGguf(read(DDPM), 'Q5_0').gguf;
  writeFileSync(join(dir, 'g.parquet'), openGguf(gguf).toParquet());
  execFileSync(process.execPath, [CLI, 'convert', join(dir, 'g.parquet'), '-o', join(dir, 'g.gguf'), '--quiet']);
  assert.ok(readFileSync(join(dir, 'g.gguf')).equals(Buffer.from(gguf)));
});
