// The deno entry under a real Deno (npm package `deno`, pinned in the root package.json).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { ROOT, tempDir } from './helpers.mjs';

test('deno entry: quantize, open, stream, error codes under Deno', () => {
  const deno = join(ROOT, 'node_modules/.bin/deno');
  const r = spawnSync(deno, ['run', '--allow-read', join(ROOT, 'tests/deno/smoke.mjs')], {
    encoding: 'utf8',
    env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', DENO_DIR: tempDir(), NO_COLOR: '1' },
  });
  assert.equal(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout.trim().split('\n').at(-1));
  assert.equal(out.deno, '2.9.6');
  assert.equal(out.simd, true);
  assert.equal(out.layers, 40);
  assert.equal(out.tensors, 40);
  assert.equal(out.bitWidth, 2);
  assert.equal(out.sameAsStreamed, true);
  assert.equal(out.codeError, 'E_SAFETENSORS');
});
