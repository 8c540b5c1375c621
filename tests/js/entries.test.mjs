// The web entry (init/initSync) loads in any JS runtime given the .wasm; Deno's entry is covered
// by tests/js/deno.test.mjs when the deno binary is installed.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
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

test('package.json exports every entry with its own types', () => {
  const pkg = JSON.parse(readFileSync(new URL('../../pkg/package.json', import.meta.url)));
  const root = pkg.exports['.'];
  const types = { deno: './deno.d.ts', node: './node.d.ts', browser: './web.d.ts', default: './web.d.ts' };
  for (const [cond, dts] of Object.entries(types)) {
    assert.equal(root[cond].types, dts, cond);
    assert.ok(existsSync(new URL(`../../pkg/${dts}`, import.meta.url)), dts);
  }
  for (const sub of ['./web', './node', './deno', './browser', './http']) assert.ok(pkg.exports[sub].types, sub);
  assert.equal(pkg.bin.arrowquant, './cli.js');
});

test('arrowquant/http alone in Node: the handler loads the wasm itself and answers', async () => {
  const { execFileSync } = await import('node:child_process');
  const script = `
    import { createHandler } from 'arrowquant/http';
    import { existsSync, readFileSync } from 'node:fs';
    const handle = createHandler();
    const body = readFileSync(${JSON.stringify(SAMPLE)});
    const r = await handle(new Request('http://x/quantize?profile=edge', { method: 'POST', body, duplex: 'half' }));
    const h = await handle(new Request('http://x/health'));
    console.log(JSON.stringify({ status: r.status, type: r.headers.get('content-type'), bytes: (await r.arrayBuffer()).byteLength, health: h.status }));`;
  const out = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', script], { cwd: new URL('../../', import.meta.url), encoding: 'utf8' }));
  assert.equal(out.status, 200);
  assert.equal(out.type, 'application/vnd.apache.parquet');
  assert.ok(out.bytes > 1000);
  assert.equal(out.health, 200);
});
