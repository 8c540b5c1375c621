// GGUF files read by byte range (openGgufSource, and the CLI's inspect / dequantize / convert):
// the same results as the whole-file reader, with no read larger than the header or one tensor.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { closeSync, ftruncateSync, openSync, readFileSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { bytesSource, openGguf, openGgufSource, openQuantized, quantizeModelGguf } from '../../pkg/node.js';
import { CLI, countingSource as counting, DDPM, read, tempDir } from './helpers.mjs';


/** A GGUF v3 file by hand: one metadata string of `metaBytes` bytes and one F32 tensor of 32 values. */
function ggufWithLongHeader(metaBytes) {
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  parts.push(Buffer.from('GGUF'));
  u32(3); u64(1); u64(1);
  str('general.description'); u32(8); str('x'.repeat(metaBytes));
  str('t'); u32(1); u64(32); u32(0); u64(0);
  const head = Buffer.concat(parts);
  const data = Buffer.alloc(128);
  for (let i = 0; i < 32; i++) data.writeFloatLE(i - 15.5, 4 * i);
  return new Uint8Array(Buffer.concat([head, Buffer.alloc((32 - (head.length % 32)) % 32), data]));
}

test('a GGUF read by range gives what the whole-file reader gives, one tensor in memory at a time', async () => {
  const gguf = quantizeModelGguf(read(DDPM), 'Q4_K_M').gguf;
  const whole = openGguf(gguf);
  const tensors = whole.tensors();
  const largest = Math.max(...tensors.map((t) => t.bytes));
  const src = counting(gguf);
  const file = await openGgufSource(src);
  assert.deepEqual(file.metadata(), whole.metadata());
  assert.deepEqual(file.tensors(), tensors);
  for (const t of tensors.slice(0, 20)) assert.deepEqual(await file.dequantize(t.name), whole.dequantize(t.name), t.name);
  const chunks = [];
  let progress = 0;
  await file.toParquet({ onChunk: (c) => chunks.push(c.slice()), onProgress: (p) => (progress = p.done) });
  assert.equal(progress, tensors.length);
  assert.ok(Buffer.concat(chunks).equals(Buffer.from(whole.toParquet())), 'Parquet bytes');
  for (const dtype of ['f32', 'f16']) assert.ok(Buffer.from(await file.toSafetensors(dtype)).equals(Buffer.from(whole.toSafetensors(dtype))), dtype);
  // The header's first read is at most 1 MiB (here the whole small file); every later read is one tensor.
  assert.equal(src.reads[0], Math.min(gguf.length, 1 << 20));
  assert.ok(src.reads.slice(1).every((n) => n <= largest), `reads ${Math.max(...src.reads.slice(1))} > ${largest}`);
  await assert.rejects(file.dequantize('nope'), (e) => e.code === 'E_STATE' && /nope/.test(e.message));
  const aborted = new AbortController();
  aborted.abort('stop');
  await assert.rejects(file.toParquet({ signal: aborted.signal }), (e) => e.code === 'E_CANCELLED');
  file.free();
  whole.free();
});

test('a header longer than the first read is read again, longer; damage is E_GGUF', async () => {
  const gguf = ggufWithLongHeader(3 << 20);
  const src = counting(gguf);
  const file = await openGgufSource(src);
  assert.equal(file.metadata()['general.description'].length, 3 << 20);
  assert.deepEqual(Array.from(await file.dequantize('t')), Array.from({ length: 32 }, (_, i) => i - 15.5));
  assert.ok(src.reads.length <= 4 && src.reads[0] === 1 << 20, `reads ${src.reads}`);
  file.free();
  // Truncated: the tensor runs past the end; a lying count is refused from the first bytes.
  await assert.rejects(openGgufSource(bytesSource(gguf.subarray(0, gguf.length - 1))), (e) => e.code === 'E_GGUF' && /'t'/.test(e.message));
  const lie = gguf.slice();
  new DataView(lie.buffer).setBigUint64(16, 1n << 50n, true);
  await assert.rejects(openGgufSource(bytesSource(lie)), (e) => e.code === 'E_GGUF' && /too short/.test(e.message));
  await assert.rejects(openGgufSource(bytesSource(new Uint8Array(3))), (e) => e.code === 'E_GGUF');
});

test('the CLI inspects, dequantizes and converts a GGUF by range, with the whole-file results', () => {
  const dir = tempDir();
  const gguf = quantizeModelGguf(read(DDPM), 'Q5_K_S').gguf;
  const path = join(dir, 'm.gguf');
  writeFileSync(path, gguf);
  const whole = openGguf(gguf);
  const inspected = JSON.parse(execFileSync(process.execPath, [CLI, 'inspect', path, '--json'], { encoding: 'utf8' }));
  assert.deepEqual(inspected.tensors, whole.tensors().map(({ name, shape, ggmlType, bytes }) => ({ name, shape, ggmlType, bytes })));
  execFileSync(process.execPath, [CLI, 'dequantize', path, '-o', join(dir, 'd.safetensors'), '--dtype', 'f16', '--quiet']);
  assert.ok(readFileSync(join(dir, 'd.safetensors')).equals(Buffer.from(whole.toSafetensors('f16'))));
  execFileSync(process.execPath, [CLI, 'convert', path, '-o', join(dir, 'c.parquet'), '--quiet']);
  assert.ok(readFileSync(join(dir, 'c.parquet')).equals(Buffer.from(whole.toParquet())));
  whole.free();
});

test('the CLI converts a GGUF larger than Node reads whole (2.4 GB, sparse) in memory bounded by its largest tensor', () => {
  const dir = tempDir();
  const path = join(dir, 'big.gguf');
  // Nine Q8_0 tensors of 272 MiB in a sparse file: each starts with 1.2 MB of real blocks (scale
  // 1, random codes), the rest zero blocks that take no disk (and that the reader's bound on
  // decompression still accepts beside the real ones).
  const parts = [];
  const u32 = (v) => { const b = Buffer.alloc(4); b.writeUInt32LE(v); parts.push(b); };
  const u64 = (v) => { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(v)); parts.push(b); };
  const str = (s) => { u64(Buffer.byteLength(s)); parts.push(Buffer.from(s)); };
  const n = 9, side = 16384, bytes = (side * side / 32) * 34;
  parts.push(Buffer.from('GGUF'));
  u32(3); u64(n); u64(1);
  str('general.architecture'); u32(8); str('flux');
  for (let i = 0; i < n; i++) { str(`double_blocks.${i}.img_mlp.0.weight`); u32(2); u64(side); u64(side); u32(8); u64(i * bytes); }
  const head = Buffer.concat(parts);
  const dataStart = Math.ceil(head.length / 32) * 32;
  const fd = openSync(path, 'w');
  writeSync(fd, head);
  const real = Buffer.alloc(34 * 36_000);
  let seed = 5;
  for (let b = 0; b < real.length; b += 34) {
    real.writeUInt16LE(0x3c00, b);
    for (let k = 2; k < 34; k++) real[b + k] = (seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) >>> 24;
  }
  for (let i = 0; i < n; i++) writeSync(fd, real, 0, real.length, dataStart + i * bytes);
  ftruncateSync(fd, dataStart + n * bytes);
  closeSync(fd);
  assert.ok(statSync(path).size > 2 ** 31);
  const inspected = JSON.parse(execFileSync(process.execPath, [CLI, 'inspect', path, '--json'], { encoding: 'utf8' }));
  assert.equal(inspected.tensors.length, n);
  const out = join(dir, 'big.parquet');
  const script = `import { fileSource, openGgufSource, wasmMemoryBytes } from ${JSON.stringify(new URL('../../pkg/node.js', import.meta.url).href)};
    const src = fileSource(${JSON.stringify(path)});
    const f = await openGgufSource(src);
    const { writeFileSync } = await import('node:fs');
    writeFileSync(${JSON.stringify(out)}, await f.toParquet());
    console.log(wasmMemoryBytes());`;
  const peak = Number(execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' }));
  assert.ok(peak < 4 * bytes, `wasm memory ${peak} for tensors of ${bytes}`);
  const back = openQuantized(readFileSync(out));
  assert.deepEqual(back.tensors().map((t) => t.stored), Array(n).fill('Q8_0'));
  back.free();
});
