// The CLI as a user runs it: real processes, real files.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { openGguf, openQuantized } from '../../pkg/node.js';
import { CLI, DDPM, MINILM, randomF32, read, safetensors, SAMPLE, tempDir } from './helpers.mjs';

const run = (...args) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });
const dir = tempDir();

test('quantize prints a per-layer table and a summary, writes the file', () => {
  const out = join(dir, 'riva.aq.parquet');
  const r = run('quantize', SAMPLE, '-o', out, '--profile', 'local');
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /encoder\._conv\.0\.weight\s+\[32,4,1,11,11\]\s+F32\s+int4\/g128/);
  assert.match(r.stdout, /compression \d+\.\d+×/);
  assert.match(r.stdout, /quality: cosine 0\.99/);
  assert.ok(existsSync(out));
});

test('--json gives the machine-readable report; flags map to config fields', () => {
  const out = join(dir, 'minilm.aq.parquet');
  const r = run('quantize', MINILM, '-o', out, '--bits', '2', '--group-size', '32', '--min-accuracy', '0', '--scale-search', 'off', '--json');
  assert.equal(r.status, 0, r.stderr);
  const report = JSON.parse(r.stdout);
  assert.equal(report.output, out);
  assert.equal(report.bitWidth, 2);
  assert.equal(report.groupSize, 32);
  assert.ok(report.layers.filter((l) => l.storage === 'quantized').every((l) => l.bits === 2));
  assert.equal(report.outputBytes, readFileSync(out).length);
  const meta = openQuantized(read(out)).metadata();
  assert.equal(meta.config.scaleSearch, 'off');
  assert.equal(meta.config.minAccuracy, 0);
});

test('layer overrides and sensitive layers from the command line', () => {
  const out = join(dir, 'mixed.aq.parquet');
  const r = run('quantize', MINILM, '-o', out, '--layer-bit-widths', '*.query.weight=8,*.key.weight=16', '--skip-sensitive-layers', '--sensitive-layer-patterns', '*intermediate*', '--json');
  assert.equal(r.status, 0, r.stderr);
  const byName = Object.fromEntries(JSON.parse(r.stdout).layers.map((l) => [l.name, l]));
  assert.equal(byName['encoder.layer.0.attention.self.query.weight'].bits, 8);
  assert.equal(byName['encoder.layer.0.attention.self.key.weight'].storage, 'f16');
  // sensitive layers are kept at sensitiveBits (8 by default)
  assert.equal(byName['encoder.layer.0.intermediate.dense.weight'].bits, 8);
  assert.match(byName['encoder.layer.0.intermediate.dense.weight'].reason, /sensitive layer \(matched '\*intermediate\*', sensitiveLayerPatterns\)/);
  // this subset (attention and MLP of layer 0 only) has one text-name rule: not enough evidence
  const report = JSON.parse(r.stdout);
  assert.equal(report.modality, 'unknown');
  assert.match(report.modalityRule, /inconclusive \(rules matched: text 1/);
});

test('inspect shows version, config and the tensor table; --json too', () => {
  const out = join(dir, 'riva.aq.parquet');
  const r = run('inspect', out);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /arrowquant format 2\.4/);
  assert.match(r.stdout, /"bitWidth":4/);
  assert.match(r.stdout, /decoder\._conv\.0\.weight/);
  const j = JSON.parse(run('inspect', out, '--json').stdout);
  assert.equal(j.tensors.length, 40);
  assert.equal(j.config.groupSize, 128);
});

test('dequantize writes a safetensors file equal to the reader output (f32 and f16)', () => {
  const src = join(dir, 'riva.aq.parquet');
  const file = openQuantized(read(src));
  for (const dtype of ['f32', 'f16']) {
    const out = join(dir, `restored.${dtype}.safetensors`);
    const r = run('dequantize', src, '-o', out, '--dtype', dtype);
    assert.equal(r.status, 0, r.stderr);
    const bytes = read(out);
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const t = header['encoder._conv.0.weight'];
    assert.equal(t.dtype, dtype.toUpperCase());
    assert.deepEqual(t.shape, [32, 4, 1, 11, 11]);
    if (dtype === 'f32') {
      const data = bytes.slice(8 + n + t.data_offsets[0], 8 + n + t.data_offsets[1]);
      assert.deepEqual(new Float32Array(data.buffer), file.dequantize('encoder._conv.0.weight'));
    }
    // and the restored file quantizes again (it is a valid safetensors file)
    assert.equal(run('quantize', out, '-o', join(dir, `again.${dtype}.parquet`), '--quiet').status, 0);
  }
});

test('convert: GGUF → Parquet → GGUF gives the same file; what has no exact form is refused', () => {
  const gguf = join(dir, 'unet-Q4_K_M.gguf');
  assert.equal(run('quantize', DDPM, '-o', gguf, '--gguf-type', 'Q4_K_M', '--quiet').status, 0);
  const parquet = join(dir, 'unet-Q4_K_M.parquet');
  let r = run('convert', gguf, '-o', parquet, '--json');
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(r.stdout), { output: parquet, format: 'Parquet', bytes: read(parquet).length });
  const file = openQuantized(read(parquet));
  const source = openGguf(read(gguf));
  const blocks = file.tensors().filter((t) => t.storage === 'blocks');
  assert.equal(blocks.length, source.tensors().filter((t) => /^Q/.test(t.ggmlType)).length);
  for (const t of blocks) assert.deepEqual(file.dequantize(t.name), source.dequantize(t.name), t.name);
  const back = join(dir, 'unet-back.gguf');
  r = run('convert', parquet, '-o', back);
  assert.equal(r.status, 0, r.stderr);
  assert.ok(Buffer.from(read(back)).equals(Buffer.from(read(gguf))));
  // A Parquet file of 4-bit codes in groups of 128: no GGUF type has that arithmetic.
  const local = join(dir, 'riva-local.parquet');
  assert.equal(run('quantize', SAMPLE, '-o', local, '--quiet').status, 0);
  r = run('convert', local, '-o', join(dir, 'riva-local.gguf'));
  assert.equal(r.status, 1);
  assert.match(r.stderr, /error \[E_CONVERT\]: tensor '[^']+': 4-bit codes in groups of 128/);
  assert.ok(!existsSync(join(dir, 'riva-local.gguf')));
  r = run('convert', gguf, '-o', join(dir, 'same.gguf'));
  assert.equal(r.status, 2);
  assert.match(r.stderr, /the input is GGUF, so the output is Parquet/);
  assert.equal(run('convert', gguf, '-o', join(dir, 'x.parquet'), '--bits', '4').status, 2);
});

test('errors: code on stderr, exit 1, no partial output left behind', () => {
  const w = randomF32(64 * 64);
  w[10] = Infinity;
  const bad = join(dir, 'bad.safetensors');
  writeFileSync(bad, safetensors([{ name: 'a.weight', dtype: 'F32', shape: [64, 64], data: w }]));
  const out = join(dir, 'bad.parquet');
  const before = readdirSync(dir).length;
  const r = run('quantize', bad, '-o', out);
  assert.equal(r.status, 1);
  assert.match(r.stderr, /\[E_NONFINITE\].*a\.weight.*10/);
  assert.equal(existsSync(out), false);
  assert.equal(readdirSync(dir).length, before, 'temp file removed');
  const j = run('quantize', SAMPLE, '-o', out, '--group-size', '48', '--json');
  assert.equal(j.status, 1);
  assert.deepEqual(JSON.parse(j.stdout).error.code, 'E_CONFIG');
  assert.equal(JSON.parse(j.stdout).error.field, 'groupSize');
  const u = run('quantize', SAMPLE, '-o', out, '--no-such-flag', '3');
  assert.equal(u.status, 2);
  assert.match(u.stderr, /E_USAGE.*unknown flag --no-such-flag/);
  assert.doesNotMatch(u.stderr, /did you mean/);
  for (const [typo, meant] of [['--group-szie', 'group-size'], ['--gguf-typ', 'gguf-type'], ['--calibraton', 'calibration'], ['--bit', 'bits']]) {
    const t = run('quantize', SAMPLE, '-o', out, typo, '4');
    assert.equal(t.status, 2, typo);
    assert.match(t.stderr, new RegExp(`unknown flag ${typo} \\(did you mean --${meant}\\?\\)`), typo);
  }
  const v = run('--version');
  assert.equal(v.status, 0);
  assert.match(v.stdout.trim(), /^\d+\.\d+\.\d+/);
  assert.equal(run('frobnicate').status, 2);
  const none = run();
  assert.equal(none.status, 2);
  assert.match(none.stderr, /usage:/);
  const noOut = run('quantize', SAMPLE);
  assert.equal(noOut.status, 2);
  assert.match(noOut.stderr, /E_USAGE.*-o/);
  const notpq = run('inspect', SAMPLE);
  assert.equal(notpq.status, 1);
  assert.match(notpq.stderr, /E_PARQUET/);
  // Paths that are not files: documented codes, no Node error names or stacks.
  for (const [args, re] of [[['quantize', join(dir, 'missing.safetensors'), '-o', out], /\[E_IO\].*no such file/], [['quantize', dir, '-o', out], /\[E_IO\].*directory/], [['inspect', join(dir, 'missing.parquet')], /\[E_IO\]/]]) {
    const e = run(...args);
    assert.equal(e.status, 1, e.stderr);
    assert.match(e.stderr, re);
    assert.doesNotMatch(e.stderr, /ENOENT|EISDIR|    at /);
  }
});

test('Ctrl-C during quantize leaves neither the output nor a temporary file', async () => {
  const { spawn } = await import('node:child_process');
  const d = tempDir();
  const big = join(d, 'big.safetensors');
  const tensors = Array.from({ length: 24 }, (_, i) => ({ name: `l${i}.weight`, dtype: 'F32', shape: [512, 1024], data: randomF32(512 * 1024, i + 1) }));
  writeFileSync(big, safetensors(tensors));
  const out = join(d, 'big.aq.parquet');
  const child = spawn(process.execPath, [CLI, 'quantize', big, '-o', out, '--scale-search', 'on', '--bits', '8'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  // Interrupt once the temporary output exists (the run is writing).
  const poll = setInterval(() => {
    if (readdirSync(d).some((f) => f.endsWith('.tmp'))) {
      clearInterval(poll);
      child.kill('SIGINT');
    }
  }, 5);
  const code = await new Promise((resolve) => child.on('exit', (c, sig) => resolve(c ?? sig)));
  clearInterval(poll);
  assert.equal(code, 130, stderr);
  assert.deepEqual(readdirSync(d).sort(), ['big.safetensors']);
});

test('-o into a directory that does not exist yet creates it', () => {
  const cwd = tempDir();
  const r = spawnSync(process.execPath, [CLI, 'quantize', SAMPLE, '-o', 'out/rivagan_f32.aq.parquet', '--quiet'], { encoding: 'utf8', cwd });
  assert.equal(r.status, 0, r.stderr);
  assert.ok(existsSync(join(cwd, 'out', 'rivagan_f32.aq.parquet')));
});
