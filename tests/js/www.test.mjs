// The demo page (www/) in real headless Chromium, served with COOP/COEP by a server this test
// starts: drop the bundled diffusion model and its calibration through the file input, run,
// download the Parquet file and check it with hyparquet and with the library's reader; a field
// error from the library's own validation; Cancel; screenshots of the loaded and finished states.
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { parquetMetadata, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { chromium } from 'playwright-core';
import { openGguf, openQuantized, quantizeModel, quantizeModelGguf } from '../../pkg/node.js';
import { serve } from '../browser/server.mjs';
import { CHROMIUM_ARGS, DDPM, DDPM_CAL, ROOT, splitSafetensors, tempDir } from './helpers.mjs';

export const SHOTS = join(ROOT, 'target', 'test-output', 'www');
let browser, site;

before(async () => {
  mkdirSync(SHOTS, { recursive: true });
  site = await serve(ROOT, { isolated: true });
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  site?.server.close();
});

export async function openPage(b = browser, url = site.url) {
  const context = await b.newContext({ acceptDownloads: true, viewport: { width: 1200, height: 900 } });
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${url}/www/`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  return { page, errors, context };
}

test('drop the diffusion model + calibration, run, download, read back', { timeout: 180000 }, async () => {
  const { page, errors, context } = await openPage();
  assert.match(await page.textContent('#build'), /threaded build · 2 threads/);
  await page.setInputFiles('#files', [DDPM, DDPM_CAL]);
  await page.waitForSelector('#model:not([hidden])');
  await page.waitForSelector('#config:not([hidden])');
  const facts = await page.$$eval('#model-facts div', (ds) => Object.fromEntries(ds.map((d) => [d.dataset.fact, d.querySelector('dd').textContent])));
  assert.match(facts.tensors, /^144 \(51 weights\)/);
  assert.equal(facts.parameters, '701,345');
  assert.match(facts.modality, /^image/);
  assert.match(await page.textContent('#calibration-facts'), /20 timesteps/);
  assert.equal(await page.$$eval('#estimates tbody tr', (r) => r.length), 3);
  await page.screenshot({ path: join(SHOTS, 'loaded.png'), fullPage: true });

  await page.selectOption('select[name=profile]', 'edge');
  await page.waitForFunction(() => document.querySelector('select[name=bitWidth]').value === '2');
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
  assert.match(await page.textContent('#status'), /^Done in/);
  assert.match(await page.textContent('#features'), /Time-aware: 47 layer\(s\) got up to \d+ adaptive time group\(s\) over 20 calibrated timesteps \(4 sensitive layer input\(s\) left in float\)/);
  assert.equal(await page.$$eval('#layers tbody tr', (r) => r.length), 144);
  assert.ok((await page.$$eval('#snr-plot circle', (c) => c.length)) >= 51);
  // the worst layer is selected and its error histogram drawn
  await page.waitForFunction(() => /RMSE/.test(document.getElementById('hist-title').textContent));
  // sorting by SNR puts the lowest first
  await page.click('#layers th[data-key=snrDb]');
  const firstSnr = await page.$eval('#layers tbody tr td:nth-child(6)', (td) => Number(td.textContent));
  const snrs = await page.$$eval('#layers tbody tr td:nth-child(6)', (tds) => tds.map((t) => Number(t.textContent)).filter(Number.isFinite));
  assert.equal(firstSnr, Math.min(...snrs));
  await page.$eval('#results', (el) => el.scrollIntoView());
  await page.screenshot({ path: join(SHOTS, 'finished.png') });

  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  const path = join(tempDir(), 'page.parquet');
  await download.saveAs(path);
  const bytes = new Uint8Array(readFileSync(path));
  // independent reader
  const ab = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
  const meta = parquetMetadata(ab);
  assert.equal(Number(meta.num_rows), 144);
  const rows = await parquetReadObjects({ file: ab, compressors, columns: ['name', 'storage', 'bits'] });
  assert.equal(rows.filter((r) => r.storage === 'quantized').length, 51);
  // the library's reader, and the same bytes as the Node API with the same inputs
  const file = openQuantized(bytes);
  assert.equal(file.metadata().calibration.timesteps.length, 20);
  file.free();
  const node = quantizeModel(readFileSync(DDPM), { ...(await page.evaluate(() => window.lastRunConfig?.() ?? null)) ?? { profile: 'edge' } }, { calibration: readFileSync(DDPM_CAL) });
  assert.deepEqual(rows.map((r) => r.bits ?? null), node.report.layers.map((l) => l.bits));
  assert.deepEqual(errors, []);
  await context.close();
});

test('an invalid value is explained next to its field, by the library', { timeout: 60000 }, async () => {
  const { page, context } = await openPage();
  await page.setInputFiles('#files', [DDPM]);
  await page.waitForSelector('#config:not([hidden])');
  await page.fill('input[name=minAccuracy]', '1.5');
  await page.waitForFunction(() => document.querySelector('[data-error-for=minAccuracy]').textContent !== '');
  assert.match(await page.textContent('[data-error-for=minAccuracy]'), /minAccuracy = 1\.5: a number in 0\.\.=1/);
  assert.equal(await page.$eval('#run', (b) => b.disabled), true);
  assert.equal(await page.$eval('input[name=minAccuracy]', (i) => i.classList.contains('invalid')), true);
  await page.fill('input[name=minAccuracy]', '0.9');
  await page.waitForFunction(() => !document.querySelector('#run').disabled);
  await page.fill('input[name=targetSizeMb]', 'small');
  await page.waitForFunction(() => document.querySelector('[data-error-for=targetSizeMb]').textContent !== '');
  assert.match(await page.textContent('[data-error-for=targetSizeMb]'), /targetSizeMb/);
  await context.close();
});

test('the page needs no network beyond its own origin (no CDN, nothing uploaded)', { timeout: 120000 }, async () => {
  const context = await browser.newContext();
  const origins = new Set();
  const posts = [];
  context.on('request', (r) => {
    origins.add(new URL(r.url()).origin);
    if (r.method() !== 'GET') posts.push(r.url());
  });
  const page = await context.newPage();
  await page.goto(`${site.url}/www/`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  await page.setInputFiles('#files', [DDPM, DDPM_CAL]);
  await page.waitForSelector('#config:not([hidden])');
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 60000 });
  assert.deepEqual([...origins].filter((o) => o !== site.url && !o.startsWith('blob:') && o !== 'null'), []);
  assert.deepEqual(posts, [], 'nothing is sent anywhere');
  await context.close();
});

test('sharded model + index on a page without COOP/COEP: single-threaded build, says why', { timeout: 120000 }, async () => {
  // the bundled model as two shards + index, as transformers/diffusers save big models
  const dir = tempDir();
  const { shards, index } = splitSafetensors(readFileSync(DDPM), [70, 74], 'diffusion_pytorch_model');
  const files = shards.map((sh) => {
    writeFileSync(join(dir, sh.name), sh.bytes);
    return join(dir, sh.name);
  });
  writeFileSync(join(dir, 'diffusion_pytorch_model.safetensors.index.json'), JSON.stringify(index));
  const plain = await serve(ROOT, { isolated: false });
  try {
    const { page, errors, context } = await openPage(browser, plain.url);
    assert.match(await page.textContent('#build'), /single-threaded SIMD128 build — page is not cross-origin isolated \(no COOP\/COEP\)/);
    await page.setInputFiles('#files', [...files, join(dir, 'diffusion_pytorch_model.safetensors.index.json')]);
    await page.waitForSelector('#config:not([hidden])');
    const facts = await page.$$eval('#model-facts div', (ds) => Object.fromEntries(ds.map((d) => [d.dataset.fact, d.querySelector('dd').textContent])));
    assert.equal(facts.file, '2 shards + index');
    assert.match(facts.tensors, /^144 /);
    assert.match(facts.shards, /-00001-of-00002\.safetensors: 70/);
    await page.click('#run');
    await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 60000 });
    assert.equal(await page.$$eval('#layers tbody tr', (r) => r.length), 144);
    assert.deepEqual(errors, []);
    await context.close();
  } finally {
    plain.server.close();
  }
});

test('GGUF from the page: choose the output, run, download a file named like the community files', { timeout: 180000 }, async () => {
  const { page, errors, context } = await openPage();
  await page.setInputFiles('#files', [DDPM]);
  await page.waitForSelector('#config:not([hidden])');
  await page.selectOption('select[name=output]', 'Q4_K_M');
  await page.click('#run');
  await page.waitForFunction(() => document.body.dataset.state === 'done', null, { timeout: 120000 });
  assert.equal(await page.$$eval('#layers tbody tr', (r) => r.length), 144);
  assert.match(await page.textContent('#features'), /Architecture sd1/);
  assert.equal(await page.textContent('#download'), 'Download GGUF');
  const [download] = await Promise.all([page.waitForEvent('download'), page.click('#download')]);
  assert.equal(download.suggestedFilename(), 'tiny_ddpm_digits-Q4_K_M.gguf');
  const path = join(tempDir(), 'page.gguf');
  await download.saveAs(path);
  const bytes = new Uint8Array(readFileSync(path));
  const expected = quantizeModelGguf(new Uint8Array(readFileSync(DDPM)), 'Q4_K_M').gguf;
  assert.ok(Buffer.from(bytes).equals(Buffer.from(expected)), `the page wrote other bytes than the library (${bytes.length} vs ${expected.length})`);
  assert.deepEqual(openGguf(bytes).tensors().length, 144);
  assert.deepEqual(errors, []);
  await context.close();
});
