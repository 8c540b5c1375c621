// Web byte carriers as sources: a ReadableStream / fetch Response (read once, front to back), a
// URL read with HTTP range requests from a local server (one file, and a sharded model through its
// index), and the output as a ReadableStream. Each writes the bytes the in-memory source writes.
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { after, before, test } from 'node:test';
import {
  bytesSource,
  huggingFaceUrl,
  quantizeGguf,
  quantizeGgufReadable,
  quantizeReadable,
  quantizeStream,
  shardedSource,
  streamSource,
  urlShardedSource,
  urlSource,
} from '../../pkg/node.js';
import { DDPM, read, splitSafetensors } from './helpers.mjs';

const whole = read(DDPM);
const cfg = { profile: 'edge' };
let server, base, expected, requests;
const files = new Map();

before(async () => {
  const { shards, index } = splitSafetensors(whole, [48, 48, 48]);
  files.set('/model.safetensors', whole);
  for (const s of shards) files.set(`/sharded/${s.name}`, s.bytes);
  files.set('/sharded/model.safetensors.index.json', new TextEncoder().encode(JSON.stringify(index)));
  files.set('/norange/model.safetensors', whole);
  files.set('/liar/model.safetensors', whole);
  requests = [];
  server = createServer((req, res) => {
    const body = files.get(req.url);
    requests.push({ url: req.url, range: req.headers.range });
    if (!body) return res.writeHead(404).end();
    const m = /^bytes=(\d+)-(\d+)$/.exec(req.headers.range ?? '');
    if (req.url.startsWith('/liar/')) {
      // 206 with the whole file whatever range was asked for
      res.writeHead(206, { 'content-range': `bytes 0-7/${body.length}` });
      return res.end(body);
    }
    if (m && !req.url.startsWith('/norange/')) {
      const [a, b] = [Number(m[1]), Math.min(Number(m[2]), body.length - 1)];
      res.writeHead(206, { 'content-range': `bytes ${a}-${b}/${body.length}`, 'content-length': b - a + 1 });
      return res.end(body.subarray(a, b + 1));
    }
    res.writeHead(200, { 'content-length': body.length });
    res.end(body);
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${server.address().port}`;
  expected = {
    parquet: (await quantizeStream(bytesSource(whole), cfg)).parquet,
    gguf: (await quantizeGguf(bytesSource(whole), 'Q4_0')).gguf,
    sharded: (await quantizeStream(await shardedSource(shards.map((s) => ({ name: s.name, ...bytesSource(s.bytes) })), index), cfg)).parquet,
  };
});

after(() => server?.close());

/** A ReadableStream over `bytes` in uneven chunks (1 byte, then 7, then 4099, …). */
function chunkedStream(bytes) {
  let at = 0;
  const sizes = [1, 7, 4099, 65536, 3];
  let k = 0;
  return new ReadableStream({
    pull(c) {
      if (at >= bytes.length) return c.close();
      const n = sizes[k++ % sizes.length];
      c.enqueue(bytes.slice(at, at + n));
      at += n;
    },
  });
}

test('a ReadableStream or a fetch Response is a source: the same bytes as in memory', async () => {
  const a = await quantizeStream(streamSource(chunkedStream(whole), whole.length), cfg);
  assert.deepEqual(a.parquet, expected.parquet);
  const b = await quantizeStream(await fetch(`${base}/model.safetensors`), cfg); // size from Content-Length
  assert.deepEqual(b.parquet, expected.parquet);
  const g = await quantizeGguf(streamSource(chunkedStream(whole), whole.length), 'Q4_0');
  assert.deepEqual(g.gguf, expected.gguf);
});

test('stream sources refuse what they cannot do, with documented codes', async () => {
  const cases = [
    ['no size', () => quantizeStream(chunkedStream(whole), cfg), 'E_USAGE', /size/],
    ['short stream', () => quantizeStream(streamSource(chunkedStream(whole.subarray(0, 5000)), whole.length), cfg), 'E_SAFETENSORS', /ended at byte 5000/],
    ['second pass', () => quantizeStream(streamSource(chunkedStream(whole), whole.length), { ...cfg, targetSizeMb: 0.5 }), 'E_STATE', /read once, front to back/],
    ['404 response', async () => quantizeStream(await fetch(`${base}/missing`), cfg), 'E_IO', /404/],
    ['not a stream', () => Promise.resolve().then(() => streamSource({}, 10)), 'E_USAGE'],
  ];
  for (const [name, f, code, re] of cases) {
    await assert.rejects(f, (e) => {
      assert.equal(e.code, code, `${name}: ${e.message}`);
      if (re) assert.match(e.message, re, name);
      return true;
    }, name);
  }
});

test('a URL is read with range requests: one file, and a sharded model through its index', async () => {
  requests.length = 0;
  const source = await urlSource(`${base}/model.safetensors`);
  assert.equal(source.size, whole.length);
  const a = await quantizeStream(source, cfg);
  assert.deepEqual(a.parquet, expected.parquet);
  assert.ok(requests.length >= 2 && requests.every((r) => /^bytes=\d+-\d+$/.test(r.range)), JSON.stringify(requests.slice(0, 4)));
  const sharded = await urlShardedSource(`${base}/sharded/model.safetensors.index.json`);
  assert.deepEqual(sharded.shards.map((s) => s.tensors), [48, 48, 48]);
  assert.deepEqual((await quantizeStream(sharded, cfg)).parquet, expected.sharded);
  await assert.rejects(urlSource(`${base}/norange/model.safetensors`), (e) => e.code === 'E_IO' && /range requests/.test(e.message));
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(urlSource(`${base}/model.safetensors`, { signal: ac.signal }), (e) => e.code === 'E_CANCELLED');
  await assert.rejects(urlSource(`${base}/liar/model.safetensors`), (e) => e.code === 'E_IO' && /more than the 8 bytes/.test(e.message));
  await assert.rejects(urlSource(`${base}/nothing.safetensors`), (e) => e.code === 'E_IO' && /404/.test(e.message));
  await assert.rejects(urlShardedSource(`${base}/sharded/missing.json`), (e) => e.code === 'E_IO');
  for (const shard of ['../model.safetensors', 'http://elsewhere.test/x.safetensors', 'sub/x.safetensors']) {
    files.set('/evil/index.json', new TextEncoder().encode(JSON.stringify({ weight_map: { 'a.weight': shard } })));
    requests.length = 0;
    await assert.rejects(urlShardedSource(`${base}/evil/index.json`), (e) => e.code === 'E_SAFETENSORS' && /beside the index/.test(e.message), shard);
    assert.deepEqual(requests.map((r) => r.url), ['/evil/index.json'], shard);
  }
  assert.equal(huggingFaceUrl('org/model', 'unet/diffusion model.safetensors'), 'https://huggingface.co/org/model/resolve/main/unet/diffusion%20model.safetensors');
  assert.equal(huggingFaceUrl('org/model', 'x.json', { revision: 'v1.0' }), 'https://huggingface.co/org/model/resolve/v1.0/x.json');
});

test('the output as a ReadableStream, with backpressure, cancellation and errors', async () => {
  const collect = async (readable) => new Uint8Array(await new Response(readable).arrayBuffer());
  const p = quantizeReadable(bytesSource(whole), cfg);
  assert.deepEqual(await collect(p.readable), expected.parquet);
  assert.equal((await p.report).bitWidth, 2);
  const g = quantizeGgufReadable(streamSource(chunkedStream(whole), whole.length), 'Q4_0');
  assert.deepEqual(await collect(g.readable), expected.gguf);
  assert.equal((await g.report).ggmlType, 'Q4_0');
  // A reader that stops: the run ends with E_CANCELLED.
  const c = quantizeReadable(bytesSource(whole), cfg, { rowGroupBytes: 4096 });
  const reader = c.readable.getReader();
  await reader.read();
  await reader.cancel('enough');
  await assert.rejects(c.report, (e) => e.code === 'E_CANCELLED');
  // A bad file: the stream errors with the same code the report rejects with.
  const bad = quantizeReadable(bytesSource(new Uint8Array([1, 2, 3])), cfg);
  await assert.rejects(collect(bad.readable), (e) => e.code === 'E_SAFETENSORS');
  await assert.rejects(bad.report, (e) => e.code === 'E_SAFETENSORS');
  // An aborted signal: E_CANCELLED, not a DOMException.
  const ac = new AbortController();
  ac.abort();
  await assert.rejects(quantizeStream(await fetch(`${base}/model.safetensors`), cfg, { signal: ac.signal }), (e) => e.code === 'E_CANCELLED');
});
