// Real headless Chromium (Debian's, driven by playwright-core): the threaded build in a
// cross-origin isolated page runs on more than one thread and writes the same bytes as the
// single-threaded build; without COOP/COEP the package falls back to the single-threaded build.
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { serve } from '../browser/server.mjs';
import { CHROMIUM_ARGS, ROOT } from './helpers.mjs';

let browser, isolated, plain;

before(async () => {
  isolated = await serve(ROOT, { isolated: true });
  plain = await serve(ROOT, { isolated: false });
  // launch() gives every run a fresh, empty profile directory.
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  isolated?.server.close();
  plain?.server.close();
});

async function open(url) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}/tests/browser/threads.html`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  return { page, errors };
}

test('threaded build: more than one thread, same bytes as single-threaded', { timeout: 180000 }, async () => {
  const { page, errors } = await open(isolated.url);
  const r = await page.evaluate(() => window.runThreadsTest({ rows: 2048, config: { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 } }));
  console.log(`# chromium threads: ${JSON.stringify(r)}`);
  assert.equal(r.crossOriginIsolated, true);
  assert.equal(r.threaded.threads, true, r.threaded.reason);
  assert.equal(r.threaded.poolThreads, 2);
  assert.ok(r.threaded.threadsSeen >= 2, `threads seen: ${r.threaded.threadsSeen}`);
  assert.equal(r.single.threads, false);
  assert.equal(r.single.threadsSeen, 0);
  assert.equal(r.threaded.readVia, 'reader worker');
  assert.equal(r.single.readVia, 'reader worker');
  assert.equal(r.identicalBig, true, 'threaded and single-threaded Parquet bytes differ (synthetic model)');
  assert.equal(r.identicalSample, true, 'threaded and single-threaded Parquet bytes differ (sample model)');
  assert.ok(r.warmUpSeconds.threaded > 0 && r.warmUpSeconds.single > 0, `warm-up did not run: ${JSON.stringify(r.warmUpSeconds)}`);
  // Many tensors of one block each: the only parallelism is across tensors (batched addTensors).
  const m = await page.evaluate(() => window.runThreadsTest({ rows: 1024, tensors: 64, config: { bitWidth: 2, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 } }));
  console.log(`# chromium threads, 64 small tensors: ${JSON.stringify(m)}`);
  assert.ok(m.threaded.threadsSeen >= 2, `threads seen across small tensors: ${m.threaded.threadsSeen}`);
  assert.equal(m.identicalBig, true, 'threaded and single-threaded Parquet bytes differ (64 small tensors)');
  // GGUF: a tensor's chunks are spread over the pool and joined in order: the same bytes.
  for (const ggmlType of ['Q4_K_M', 'Q2_K']) {
    const g = await page.evaluate((args) => window.runGgufThreads(args), { rows: 512, tensors: 4, ggmlType });
    console.log(`# chromium threads, GGUF ${ggmlType}: ${JSON.stringify(g)}`);
    assert.equal(g.threaded.threads, true);
    assert.ok(g.threaded.threadsSeen >= 2, `threads seen (GGUF ${ggmlType}): ${g.threaded.threadsSeen}`);
    assert.equal(g.identical, true, `threaded and single-threaded GGUF ${ggmlType} bytes differ`);
  }
  assert.deepEqual(errors, []);
  await page.close();
});

test('the File is read in a helper Worker, with the same bytes as reading it in the quantizing Worker', { timeout: 120000 }, async () => {
  const { page, errors } = await open(plain.url);
  // 48 tensors of 512 KiB: several reads of up to 16 MiB, each read while the previous is quantized.
  const r = await page.evaluate(() => window.runReadPaths({ rows: 1536, tensors: 48, config: { bitWidth: 4, groupSize: 64, minAccuracy: 0 }, runs: 1 }));
  console.log(`# chromium read paths: ${JSON.stringify(r)}`);
  assert.deepEqual(r.readVia, { helper: 'reader worker', direct: 'this worker' });
  assert.equal(r.identical, true, 'reading in the helper Worker changed the Parquet bytes');
  assert.deepEqual(errors, []);
  await page.close();
});

test('without COOP/COEP the package uses the single-threaded build and says why', { timeout: 120000 }, async () => {
  const { page } = await open(plain.url);
  const info = await page.evaluate(async () => {
    const { createWorkerQuantizer } = await import('/pkg/browser.js');
    const q = await createWorkerQuantizer();
    const i = q.info;
    q.terminate();
    return { isolated: self.crossOriginIsolated, ...i };
  });
  assert.equal(info.isolated, false);
  assert.equal(info.threads, false);
  assert.equal(info.simd, true);
  assert.match(info.reason, /not cross-origin isolated/);
  await page.close();
});

test('in the Worker: a bad file is refused with its code, the same worker then quantizes, a signal and terminate() cancel with E_CANCELLED', { timeout: 120000 }, async () => {
  const { page, errors } = await open(plain.url);
  const r = await page.evaluate(async () => {
    const { createWorkerQuantizer } = await import('/pkg/browser.js');
    const model = await (await fetch('/samples/tiny_ddpm_digits.safetensors')).blob();
    const q = await createWorkerQuantizer({ warmUp: false });
    const bad = await q.quantize(new Blob([new Uint8Array([9, 0, 0, 0, 0, 0, 0, 0, 1, 2])]), {}).then(() => 'accepted', (e) => e.code);
    const good = await q.quantize(model, { bitWidth: 4 }).then((v) => v.parquet.size, (e) => `${e.code}: ${e.message}`);
    // An AbortSignal stops a run with E_CANCELLED (also one already aborted), and the client
    // goes on with a fresh worker that writes the same bytes.
    const ac = new AbortController();
    const stopped = q.quantizeGguf(model, 'Q4_K_M', { signal: ac.signal, onProgress: () => ac.abort('enough') });
    const aborted = await stopped.then(() => 'finished', (e) => `${e.code}: ${e.message}`);
    const early = await q.quantize(model, {}, { signal: ac.signal }).then(() => 'finished', (e) => e.code);
    const again = await q.quantize(model, { bitWidth: 4 }).then((v) => v.parquet.size, (e) => `${e.code}: ${e.message}`);
    const restarts = q.info.restarts;
    const running = q.quantize(model, { bitWidth: 4 });
    q.terminate();
    const cancelled = await running.then(() => 'finished', (e) => e.code);
    return { bad, good, aborted, early, again, restarts, cancelled };
  });
  assert.equal(r.bad, 'E_SAFETENSORS');
  assert.ok(typeof r.good === 'number' && r.good > 1000, String(r.good));
  assert.equal(r.aborted, 'E_CANCELLED: cancelled: enough');
  assert.equal(r.early, 'E_CANCELLED');
  assert.equal(r.again, r.good);
  assert.equal(r.restarts, 1);
  assert.equal(r.cancelled, 'E_CANCELLED');
  assert.deepEqual(errors, []);
  await page.close();
});
