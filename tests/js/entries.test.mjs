// The web entry (init/initSync) loads in any JS runtime given the .wasm; Deno's entry is covered
// by tests/js/deno.test.mjs when the deno binary is installed.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { SAMPLE, read } from './helpers.mjs';

test('web entry: initSync with a compiled module, then the same API', async () => {
  const web = await import('../../pkg/web.js');
  const bytes = readFileSync(new URL('../../pkg/wasm/arrowquant_bg.wasm', import.meta.url));
  web.initSync({ module: new WebAssembly.Module(bytes) });
  const { report } = web.quantizeModel(read(SAMPLE), { profile: 'edge' });
  assert.equal(report.bitWidth, 2);
  assert.equal(web.buildInfo().simd, true);
});

test('package.json exports every entry with types', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../pkg/package.json', import.meta.url)));
  const root = pkg.exports['.'];
  for (const cond of ['types', 'deno', 'node', 'browser', 'default']) assert.ok(root[cond], cond);
  assert.equal(pkg.bin.arrowquant, './cli.js');
});
