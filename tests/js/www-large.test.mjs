// The demo page with a model larger than wasm memory could hold: a generated ~3 GB F16 safetensors
// file (SD-UNet-like layer shapes, written by the test, never committed) is read one tensor at a
// time with File.slice and the Parquet output streams into OPFS. The page's reported peak wasm
// memory must stay under 1 GB and the downloaded file must open with the library's reader. The
// same file first checks that Cancel really stops a run (and deletes its partial output).
import assert from 'node:assert/strict';
import { readFileSync, rmSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { chromium } from 'playwright-core';
import { openGguf, openQuantized } from '../../pkg/node.js';
import { serve } from '../browser/server.mjs';
import { CHROMIUM_ARGS, ROOT, tempDir, writeLargeModel } from './helpers.mjs';

const SHOTS = join(ROOT, 'target', 'test-output', 'www');
const dir = tempDir();
const MODEL = join(dir, 'large-unet.safetensors');
let browser, site, model;

before(async () => {
  model = writeLargeModel(MODEL, 3e9);
  site = await serve(ROOT, { isolated: true });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  site?.server.close();
  rmSync(dir, { recursive: true, force: true });
});

async function openPage() {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${site.url}/www/`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  await page.setInputFiles('#files', [MODEL]);
  await page.waitForSelector('#config:not([hidden])');
  const opfsFiles = () => page.evaluate(async () => {
    const names = [];
    for await (const [name] of (await navigator.storage.getDirectory()).entries()) names.push(name);
    return names;
  });
  return { page, errors, context, opfsFiles };
}

/** Run the page's job to its end: its seconds and the peak wasm memory the page reports. */
async function runToDone(page) {
  const t0 = Date.now();
  await page.click('#run');
  await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state), null, { timeout: 880000, polling: 1000 });
  const seconds = (Date.now() - t0) / 1000;
  assert.equal(await page.evaluate(() => document.body.dataset.state), 'done', await page.textContent('#status'));
  return { seconds, peak: Number(await page.$eval('#summary', (s) => s.dataset.peakWasmMemory)) };
}

/** Click the page's download link and save the file as `name` in the test's folder. */
async function download(page, name) {
  const [d] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const out = join(dir, name);
  await d.saveAs(out);
  return { out, outBytes: statSync(out).size, suggested: d.suggestedFilename() };
}

test('Cancel stops a running job at once and leaves no partial output', { timeout: 120000 }, async () => {
  const { page, errors, context, opfsFiles } = await openPage();
  await page.click('#run');
  await page.waitForFunction(() => /^\d+ \/ \d+ tensors/.test(document.getElementById('progress-text').textContent) && !/^0 \//.test(document.getElementById('progress-text').textContent));
  const before = await page.textContent('#progress-text');
  assert.equal((await opfsFiles()).length, 1, 'the run writes into OPFS');
  const t0 = Date.now();
  await page.click('#cancel');
  await page.waitForFunction(() => document.body.dataset.state === 'cancelled');
  const stopMs = Date.now() - t0;
  assert.match(await page.textContent('#status'), /Cancelled/);
  assert.ok(stopMs < 5000, `cancel took ${stopMs} ms`);
  // no more progress after cancelling, no output left behind, and the page can run again
  await page.waitForTimeout(1000);
  const progressAfter = await page.textContent('#progress-text');
  await page.waitForTimeout(1000);
  assert.equal(await page.textContent('#progress-text'), progressAfter);
  assert.deepEqual(await opfsFiles(), []);
  assert.equal(await page.$eval('#run', (b) => b.disabled), false);
  assert.equal(await page.$eval('#cancel', (b) => b.hidden), true);
  console.log(`# cancelled at "${before.slice(0, 40)}…" in ${stopMs} ms`);
  assert.deepEqual(errors, []);
  await context.close();
});

test('a 3 GB model streams through the page with peak wasm memory under 1 GB', { timeout: 900000 }, async () => {
  const { page, errors, context } = await openPage();
  assert.match(await page.textContent('#model-facts'), /2\.8\d GiB/);
  await page.selectOption('select[name=profile]', 'edge');
  await page.waitForFunction(() => document.querySelector('select[name=bitWidth]').value === '2');
  const { seconds, peak } = await runToDone(page);
  await page.$eval('#results', (el) => el.scrollIntoView());
  await page.screenshot({ path: join(SHOTS, 'large-finished.png') });
  const { out, outBytes } = await download(page, 'large.aq.parquet');
  console.log(`# 3 GB model: ${model.tensors} tensors, ${(model.bytes / 2 ** 30).toFixed(2)} GiB in ${seconds.toFixed(1)} s (${(model.bytes / 2 ** 20 / seconds).toFixed(0)} MB/s); peak wasm memory ${(peak / 2 ** 20).toFixed(0)} MiB (largest tensor ${(model.largestBytes / 2 ** 20).toFixed(1)} MiB); output ${(outBytes / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(peak < 2 ** 30, `peak wasm memory ${peak} bytes`);
  const file = openQuantized(readFileSync(out));
  try {
    assert.equal(file.tensors().length, model.tensors);
    const t = file.tensors().find((x) => x.name === 'down_blocks.0.attentions.0.to_q.weight');
    // edge without calibration: uncalibratedBits keeps the layers at 4 bits (2 needs GPTQ).
    assert.equal(t.bits, 4);
    assert.equal(file.dequantize(t.name).length, 1280 * 1280);
  } finally {
    file.free();
  }
  assert.deepEqual(errors, []);
  await context.close();
});

test('the same 3 GB model streams through the page into GGUF Q4_K_M under the same memory bound', { timeout: 900000 }, async () => {
  const { page, errors, context } = await openPage();
  await page.selectOption('select[name=output]', 'Q4_K_M');
  const { seconds, peak } = await runToDone(page);
  const { out, outBytes, suggested } = await download(page, 'large.gguf');
  assert.match(suggested, /-Q4_K_M\.gguf$/);
  // Chromium keeps OPFS in memory for a fresh (incognito-like) context and runs out of room near
  // 1.3 GB: the rest of the file then comes through the page, and the file is still whole.
  console.log(`# output: ${await page.textContent('#output-mode')}`);
  console.log(`# 3 GB model → GGUF Q4_K_M: ${(model.bytes / 2 ** 30).toFixed(2)} GiB in ${seconds.toFixed(1)} s (${(model.bytes / 2 ** 20 / seconds).toFixed(0)} MB/s); peak wasm memory ${(peak / 2 ** 20).toFixed(0)} MiB (largest tensor ${(model.largestBytes / 2 ** 20).toFixed(1)} MiB); output ${(outBytes / 2 ** 20).toFixed(0)} MiB`);
  assert.ok(peak < 2 ** 30, `peak wasm memory ${peak} bytes`);
  const file = openGguf(readFileSync(out));
  try {
    const tensors = file.tensors();
    assert.equal(tensors.length, model.tensors);
    const t = tensors.find((x) => x.name === 'down_blocks.0.attentions.0.to_q.weight');
    assert.equal(t.ggmlType, 'Q4_K');
    assert.equal(file.dequantize(t.name).length, 1280 * 1280);
  } finally {
    file.free();
  }
  assert.deepEqual(errors, []);
  await context.close();
});
