// The edge examples in their real runtimes: the Cloudflare Worker in workerd (Miniflare's API,
// no port) and the Deno server under `deno serve` on 127.0.0.1. Same HTTP contract for both.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { Miniflare } from 'miniflare';
import { openQuantized, quantizeModelGguf } from '../../pkg/node.js';
import { DDPM, randomF32, read, ROOT, safetensors, SAMPLE, tempDir } from './helpers.mjs';

const sample = read(SAMPLE);
const ddpm = read(DDPM);
const PKG = join(ROOT, 'pkg');

/** The Worker's modules, named the way wrangler resolves `arrowquant/...` imports. */
function workerModules() {
  const root = '/worker';
  const js = (name, file) => ({ type: 'ESModule', path: `${root}/${name}`, contents: readFileSync(file, 'utf8') });
  return [
    js('worker.js', join(ROOT, 'examples/cloudflare-worker/src/worker.js')),
    js('arrowquant/web', join(PKG, 'web.js')),
    js('arrowquant/http', join(PKG, 'http.js')),
    js('arrowquant/api.js', join(PKG, 'api.js')),
    ...readdirSync(join(PKG, 'internal')).map((f) => js(`arrowquant/internal/${f}`, join(PKG, 'internal', f))),
    js('arrowquant/wasm/arrowquant.js', join(PKG, 'wasm/arrowquant.js')),
    { type: 'CompiledWasm', path: `${root}/arrowquant/arrowquant_bg.wasm`, contents: readFileSync(join(PKG, 'wasm/arrowquant_bg.wasm')) },
  ];
}

function startWorker(bindings = {}) {
  return new Miniflare({ modules: workerModules(), modulesRoot: '/worker', compatibilityDate: '2026-08-01', bindings });
}

/** A realistic large model streamed from a generator: [2560, 1024] f32 weights plus biases. */
function bigModel(layers) {
  const tensors = [];
  for (let i = 0; i < layers; i++) {
    tensors.push({ name: `blocks.${i}.ff.weight`, shape: [2560, 1024], bytes: 2560 * 1024 * 4 });
    tensors.push({ name: `blocks.${i}.ff.bias`, shape: [2560], bytes: 2560 * 4 });
  }
  const header = {};
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + t.bytes] };
    offset += t.bytes;
  }
  const json = new TextEncoder().encode(JSON.stringify(header));
  const prefix = new Uint8Array(8 + json.length);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(json.length), true);
  prefix.set(json, 8);
  const size = prefix.length + offset;
  let t = -1;
  const stream = new ReadableStream({
    pull(controller) {
      if (t === -1) {
        controller.enqueue(prefix);
      } else if (t < tensors.length) {
        controller.enqueue(new Uint8Array(randomF32(tensors[t].bytes / 4, t + 1).buffer));
      } else {
        controller.close();
      }
      t++;
    },
  });
  return { stream, size, tensors: tensors.length };
}

// Like curl --data-binary: a Content-Length header with the body.
const post = (fetcher, base, body, query = '', headers = {}) =>
  fetcher(`${base}/quantize${query}`, { method: 'POST', body, headers: { 'content-length': String(body.length), ...headers }, duplex: 'half' });

/** The contract checks, run against both runtimes. */
function contract(label, getFetch) {
  test('GET / and GET /health', async () => {
    const { fetch, base } = getFetch();
    const usage = await fetch(`${base}/`);
    assert.equal(usage.status, 200);
    assert.match(await usage.text(), /POST \/quantize/);
    const health = await (await fetch(`${base}/health`)).json();
    assert.equal(health.simd, true);
    assert.equal(health.threads, false);
    assert.match(health.version, /^\d+\.\d+\.\d+$/);
  });

  test('POST /quantize streams a Parquet file the reader opens', async () => {
    const { fetch, base } = getFetch();
    const r = await post(fetch, base, sample, '?profile=edge&group-size=32&name=riva');
    assert.equal(r.status, 200, await r.clone().text());
    assert.equal(r.headers.get('content-type'), 'application/vnd.apache.parquet');
    assert.match(r.headers.get('content-disposition'), /filename="riva\.aq\.parquet"/);
    const file = openQuantized(new Uint8Array(await r.arrayBuffer()));
    assert.equal(file.tensors().length, 40);
    assert.equal(file.metadata().config.groupSize, 32);
    assert.equal(file.metadata().config.bitWidth, 2);
    assert.equal(file.dequantize('encoder._conv.0.weight').length, 32 * 4 * 11 * 11);
    file.free();
  });

  test('POST /quantize?format=gguf streams a GGUF file, the same bytes as the library', async () => {
    const { fetch, base } = getFetch();
    const r = await post(fetch, base, ddpm, '?format=gguf&gguf-type=Q4_K_M&name=unet');
    assert.equal(r.status, 200, await r.clone().text());
    assert.match(r.headers.get('content-disposition'), /filename="unet-Q4_K_M\.gguf"/);
    const got = new Uint8Array(await r.arrayBuffer());
    assert.equal(Number(r.headers.get('x-arrowquant-output-bytes')), got.length);
    assert.ok(Buffer.from(got).equals(Buffer.from(quantizeModelGguf(ddpm, 'Q4_K_M').gguf)));
    const bad = await post(fetch, base, ddpm, '?format=gguf&bits=4');
    assert.equal(bad.status, 400);
    assert.equal((await bad.json()).code, 'E_CONFIG');
  });

  test('Accept: application/json returns the report', async () => {
    const { fetch, base } = getFetch();
    const r = await post(fetch, base, sample, '?bits=8', { accept: 'application/json' });
    assert.equal(r.status, 200);
    const report = await r.json();
    assert.equal(report.bitWidth, 8);
    assert.equal(report.layers.length, 40);
    assert.ok(report.compressionRatio > 1);
  });

  test('errors are 4xx JSON with the library codes, never a 500', async () => {
    const { fetch, base } = getFetch();
    const w = randomF32(64 * 64);
    w[5] = NaN;
    const nan = safetensors([{ name: 'a.weight', dtype: 'F32', shape: [64, 64], data: w }]);
    const late = safetensors([
      { name: 'a.weight', dtype: 'F32', shape: [64, 64], data: randomF32(64 * 64) },
      { name: 'b.weight', dtype: 'F32', shape: [64, 64], data: w },
    ]);
    const dupHeader = new TextEncoder().encode('{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}');
    const dup = new Uint8Array(8 + dupHeader.length + 8);
    new DataView(dup.buffer).setBigUint64(0, BigInt(dupHeader.length), true);
    dup.set(dupHeader, 8);
    const cases = [
      [post(fetch, base, sample, '?group-size=48'), 400, 'E_CONFIG', (b) => b.field === 'groupSize'],
      [post(fetch, base, sample, '', { 'x-arrowquant-config': '{"bitWidth":3}' }), 400, 'E_CONFIG', (b) => b.field === 'bitWidth'],
      [post(fetch, base, sample, '?colour=blue'), 400, 'E_CONFIG', (b) => b.field === 'colour'],
      [post(fetch, base, sample, '?target-size-mb=1'), 400, 'E_CONFIG', (b) => b.field === 'targetSizeMb' && /HTTP/.test(b.message)],
      [post(fetch, base, sample.subarray(0, 20000)), 422, 'E_SAFETENSORS', (b) => /truncated|ends at byte|ended/.test(b.message)],
      [post(fetch, base, new TextEncoder().encode('hello world, not a model')), 422, 'E_SAFETENSORS', () => true],
      [post(fetch, base, nan), 422, 'E_NONFINITE', (b) => b.tensor === 'a.weight'],
      [post(fetch, base, late, '', { accept: 'application/json' }), 422, 'E_NONFINITE', (b) => b.tensor === 'b.weight'],
      // Hostile requests: a config nested 5,000 deep (used to overflow the wasm stack and poison
      // the instance), NaN, a wrapping width, a duplicate tensor name, a Content-Length that is no number.
      [post(fetch, base, sample, '', { 'x-arrowquant-config': '{"a":'.repeat(5000) + '1' + '}'.repeat(5000) }), 400, 'E_CONFIG', () => true],
      [post(fetch, base, sample, '?bits=NaN'), 400, 'E_CONFIG', (b) => b.field === 'bitWidth'],
      [post(fetch, base, sample, '?bits=260'), 400, 'E_CONFIG', (b) => b.field === 'bitWidth'],
      [post(fetch, base, sample, '?group-size=4294967360'), 400, 'E_CONFIG', (b) => b.field === 'groupSize'],
      [post(fetch, base, dup), 422, 'E_SAFETENSORS', (b) => /twice/.test(b.message)],
      [fetch(`${base}/quantize`), 405, 'E_METHOD', () => true],
      [fetch(`${base}/nope`), 404, 'E_NOT_FOUND', () => true],
    ];
    for (const [pending, status, code, check] of cases) {
      const r = await pending;
      const body = await r.json();
      assert.equal(r.status, status, JSON.stringify(body));
      assert.equal(body.code, code, JSON.stringify(body));
      assert.ok(check(body), JSON.stringify(body));
      assert.equal(body.stack, undefined);
    }
    // Still serving, with the same bytes as before the hostile requests.
    const again = await post(fetch, base, sample, '', { accept: 'application/json' });
    assert.equal(again.status, 200);
  });

  test('a 300 MB model streams through with wasm memory under 96 MB', async () => {
    const { stream, size, tensors } = bigModel(28);
    assert.ok(size > 290e6, `${size}`);
    const { fetch, base } = getFetch();
    const r = await fetch(`${base}/quantize?bits=4&scale-search=off&group-size=128`, {
      method: 'POST',
      body: stream,
      duplex: 'half',
      headers: { 'content-length': String(size) },
    });
    assert.equal(r.status, 200);
    const bytes = new Uint8Array(await r.arrayBuffer());
    const file = openQuantized(bytes);
    assert.equal(file.tensors().length, tensors);
    file.free();
    const health = await (await fetch(`${base}/health`)).json();
    console.log(`# ${label}: 300 MB model: ${(size / 1e6).toFixed(0)} MB in, ${(bytes.length / 1e6).toFixed(1)} MB out, wasm memory ${(health.wasmMemoryBytes / 1048576).toFixed(1)} MiB`);
    assert.ok(health.wasmMemoryBytes < 96 * 1024 * 1024, `wasm memory ${health.wasmMemoryBytes}`);
  });
}

describe('Cloudflare Worker (workerd via Miniflare)', () => {
  let mf;
  before(async () => {
    mf = startWorker({ MAX_BODY_MB: '512' });
    await mf.ready;
  });
  after(() => mf?.dispose());
  contract('worker', () => ({ fetch: (url, init) => mf.dispatchFetch(url, init), base: 'http://worker.test' }));

  test('a body over MAX_BODY_MB is refused with 413', async () => {
    const small = startWorker({ MAX_BODY_MB: '1' });
    try {
      // The Worker answers before it reads the body; on a loaded machine the client can still be
      // writing when the connection closes ("fetch failed"). Up to three tries for the answer.
      let r;
      for (let attempt = 0; attempt < 3 && !r; attempt++) {
        r = await post((u, i) => small.dispatchFetch(u, i), 'http://worker.test', sample).catch((e) => {
          if (!/fetch failed/.test(e.message) || attempt === 2) throw e;
        });
      }
      assert.equal(r.status, 413);
      assert.equal((await r.json()).code, 'E_TOO_LARGE');
    } finally {
      await small.dispose();
    }
  });

  test('the upload a Worker needs stays under the 3 MB free-plan limit', () => {
    const total = workerModules().reduce((n, m) => n + gzipSync(Buffer.from(m.contents)).length, 0);
    console.log(`# worker upload, gzip: ${(total / 1024).toFixed(0)} KiB`);
    assert.ok(total < 3 * 1024 * 1024, `${total}`);
  });
});

async function freePort() {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

describe('Deno server (deno serve)', () => {
  let proc;
  let base;
  before(async () => {
    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    proc = spawn(join(ROOT, 'node_modules/.bin/deno'), ['serve', '--allow-read', '--allow-env', '--host', '127.0.0.1', '--port', String(port), 'server.js'], {
      cwd: join(ROOT, 'examples/deno'),
      env: { ...process.env, DENO_NO_UPDATE_CHECK: '1', DENO_DIR: tempDir(), NO_COLOR: '1', ARROWQUANT_MAX_BODY_MB: '512' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let log = '';
    proc.stderr.on('data', (d) => (log += d));
    proc.stdout.on('data', (d) => (log += d));
    const deadline = Date.now() + 30000;
    while (Date.now() < deadline) {
      try {
        if ((await fetch(`${base}/health`)).ok) return;
      } catch {}
      if (proc.exitCode !== null) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`deno serve did not start:\n${log}`);
  });
  after(() => proc?.kill());
  // Node's fetch sets Content-Length itself for byte bodies (and refuses a hand-set one).
  const nodeFetch = (url, init = {}) => {
    const { 'content-length': _, ...headers } = init.headers ?? {};
    return fetch(url, { ...init, headers });
  };
  contract('deno', () => ({ fetch: nodeFetch, base }));

  test('a declared body over ARROWQUANT_MAX_BODY_MB is refused with 413 before it is read', async () => {
    const { request } = await import('node:http');
    const res = await new Promise((resolve, reject) => {
      const req = request(`${base}/quantize`, { method: 'POST', headers: { 'content-length': String(600 * 1024 * 1024) } }, resolve);
      req.on('error', reject);
      req.write(sample.subarray(0, 1024));
    });
    let text = '';
    for await (const chunk of res) text += chunk;
    res.destroy();
    assert.equal(res.statusCode, 413);
    assert.equal(JSON.parse(text).code, 'E_TOO_LARGE');
  });
});
