// The package as a web developer meets it: `npm pack`ed, installed into a fresh app
// (tests/bundlers/app), bundled by Vite (build and dev server), webpack and esbuild, and run in
// headless Chromium on a plain and a cross-origin isolated page. The main-thread API and the
// Worker API must write the bytes Node writes; the threaded build runs where the bundle keeps it
// working and otherwise gives way to the single-threaded build with the reason in `info`.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { build as esbuild } from 'esbuild';
import { chromium } from 'playwright-core';
import { build as viteBuild, createServer as viteServer } from 'vite';
import webpack from 'webpack';
import { quantizeModel, quantizeModelGguf } from '../../pkg/node.js';
import { serve } from '../browser/server.mjs';
import { CHROMIUM_ARGS, ROOT, SAMPLE, read } from './helpers.mjs';

const ISOLATION = { 'Cross-Origin-Opener-Policy': 'same-origin', 'Cross-Origin-Embedder-Policy': 'require-corp' };
const sha256 = (b) => createHash('sha256').update(b).digest('hex');
let tmp, app, tarball, browser, expected;

before(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'aq-bundlers-'));
  const name = execFileSync('npm', ['pack', '--silent', '--pack-destination', tmp], { cwd: join(ROOT, 'pkg'), encoding: 'utf8' }).trim().split('\n').pop();
  tarball = join(tmp, name);
  app = join(tmp, 'app');
  cpSync(join(ROOT, 'tests/bundlers/app'), app, { recursive: true });
  execFileSync('npm', ['install', '--no-audit', '--no-fund', '--silent', '--prefer-offline', tarball], { cwd: app });
  copyFileSync(SAMPLE, join(app, 'model.safetensors'));
  const model = read(SAMPLE);
  expected = { parquet: sha256(quantizeModel(model, { profile: 'edge' }).parquet), gguf: sha256(quantizeModelGguf(model, 'Q4_K_M').gguf) };
  browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: CHROMIUM_ARGS });
});

after(async () => {
  await browser?.close();
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/** Open `url`, run the app, and return its result with every page error and failed request. */
async function runApp(url) {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (e) => errors.push(e.message));
  page.on('response', (r) => r.status() >= 400 && !r.url().endsWith('/favicon.ico') && errors.push(`${r.status()} ${r.url()}`));
  try {
    await page.goto(url);
    await page.waitForFunction(() => document.body.dataset.ready === '1', null, { timeout: 30000 });
    return { ...(await page.evaluate(() => window.runApp())), errors };
  } finally {
    await page.close();
  }
}

function checkRun(label, r, { threaded }) {
  console.log(`# ${label}: threads ${r.threads} (${r.reason})`);
  assert.deepEqual(r.errors, [], label);
  assert.equal(r.main, expected.parquet, `${label}: main-thread Parquet bytes differ from Node's`);
  assert.equal(r.worker, expected.parquet, `${label}: Worker Parquet bytes differ from Node's`);
  assert.equal(r.gguf, expected.gguf, `${label}: Worker GGUF bytes differ from Node's`);
  if (threaded === true) assert.equal(r.threads, true, `${label}: ${r.reason}`);
  else if (threaded === false) assert.equal(r.threads, false, label);
  else {
    assert.equal(r.threads, false, label);
    assert.match(r.reason, threaded, label);
  }
}

/** Serve a built app folder plain and isolated; `threaded` is what the isolated page gets. */
async function checkBuilt(label, dir, threaded) {
  copyFileSync(join(app, 'model.safetensors'), join(dir, 'model.safetensors'));
  for (const isolated of [false, true]) {
    const s = await serve(dir, { isolated });
    try {
      checkRun(`${label}, ${isolated ? 'isolated' : 'plain'}`, await runApp(`${s.url}/index.html`), { threaded: isolated ? threaded : false });
    } finally {
      s.server.close();
    }
  }
}

test('the tarball holds the product, its README and licences, and both wasm builds', () => {
  const files = execFileSync('tar', ['-tzf', tarball], { encoding: 'utf8' }).split('\n').filter(Boolean).map((f) => f.replace(/^package\//, ''));
  for (const f of ['README.md', 'LICENSE-MIT', 'LICENSE-APACHE', 'package.json', 'web.js', 'browser.js', 'worker.js', 'node.js', 'deno.js', 'http.js', 'cli.js', 'index.d.ts', 'wasm/arrowquant_bg.wasm', 'wasm-mt/arrowquant_bg.wasm']) {
    assert.ok(files.includes(f), `${f} missing from the tarball`);
  }
  for (const f of files) assert.ok(!/^(wasm-bench|prepack\.mjs|node_modules)/.test(f), `${f} should not ship`);
  console.log(`# tarball: ${files.length} files`);
});

test('installed from the tarball: the README\'s Node, CLI and Deno snippets run', { timeout: 120000 }, () => {
  const node = `
    import { quantizeModel, quantizeStream, openQuantized, quantizeGguf, openGguf, fileSource } from 'arrowquant';
    import { readFileSync } from 'node:fs';
    const { parquet, report } = quantizeModel(new Uint8Array(readFileSync('model.safetensors')), { profile: 'edge' });
    const streamed = await quantizeStream(fileSource('model.safetensors'), { profile: 'edge' });
    const f = openQuantized(parquet);
    const { gguf } = await quantizeGguf(fileSource('model.safetensors'), 'Q4_K_M');
    console.log(JSON.stringify({ bits: report.bitWidth, same: Buffer.from(streamed.parquet).equals(Buffer.from(parquet)), tensors: f.tensors().length, gguf: openGguf(gguf).tensors().length }));`;
  const n = JSON.parse(execFileSync(process.execPath, ['--input-type=module', '-e', node], { cwd: app, encoding: 'utf8' }));
  assert.deepEqual(n, { bits: 2, same: true, tensors: n.tensors, gguf: n.tensors });
  const cli = join(app, 'node_modules/.bin/arrowquant');
  assert.match(execFileSync(cli, ['--version'], { encoding: 'utf8' }), /^\d+\.\d+\.\d+/);
  const out = join(tmp, 'cli.aq.parquet');
  const report = JSON.parse(execFileSync(cli, ['quantize', 'model.safetensors', '-o', out, '--profile', 'edge', '--json'], { cwd: app, encoding: 'utf8' }));
  assert.equal(sha256(readFileSync(out)), expected.parquet);
  assert.equal(report.bitWidth, 2);
  const deno = `
    import { quantizeModel } from 'arrowquant';
    const { parquet } = quantizeModel(await Deno.readFile('model.safetensors'), { profile: 'edge' });
    const d = new Uint8Array(await crypto.subtle.digest('SHA-256', parquet));
    console.log([...d].map((b) => b.toString(16).padStart(2, '0')).join(''));`;
  writeFileSync(join(app, 'deno-snippet.mjs'), deno);
  const denoOut = execFileSync(join(ROOT, 'node_modules/.bin/deno'), ['run', '--allow-read', '--node-modules-dir=manual', 'deno-snippet.mjs'], { cwd: app, encoding: 'utf8' });
  assert.equal(denoOut.trim(), expected.parquet);
});

test('Vite: production build (the literal Worker URL is bundled, the threaded build runs)', { timeout: 180000 }, async () => {
  const out = join(tmp, 'vite-dist');
  await viteBuild({ root: app, logLevel: 'warn', build: { outDir: out, emptyOutDir: true }, worker: { format: 'es' } });
  await checkBuilt('vite build', out, true);
});

test('webpack 5: production build (threads give way to the single-threaded build, saying why)', { timeout: 180000 }, async () => {
  const out = join(tmp, 'webpack-dist');
  await new Promise((resolve, reject) =>
    webpack({ mode: 'production', context: app, entry: './main.js', output: { path: out, filename: 'main.js' }, performance: { hints: false } }, (err, stats) => {
      if (err) reject(err);
      else if (stats.hasErrors()) reject(new Error(stats.toString('errors-only')));
      else resolve();
    }),
  );
  writeFileSync(join(out, 'index.html'), '<!doctype html><html><head><meta charset="utf-8"></head><body><script src="./main.js"></script></body></html>');
  // webpack rewrites the thread pool's `import.meta.url` to a file: URL it cannot fetch.
  await checkBuilt('webpack', out, /^threaded build unavailable \(/);
});

test('esbuild: bundle plus a copy of the package under wasmPaths (the threaded build runs)', { timeout: 180000 }, async () => {
  const out = join(tmp, 'esbuild-dist');
  mkdirSync(out, { recursive: true });
  await esbuild({ entryPoints: [join(app, 'main.js')], bundle: true, format: 'esm', outdir: out, absWorkingDir: app, logLevel: 'warning' });
  cpSync(join(app, 'node_modules/arrowquant'), join(out, 'arrowquant'), { recursive: true });
  writeFileSync(join(out, 'index.html'), '<!doctype html><html><head><meta charset="utf-8"></head><body data-wasm-paths="/arrowquant/"><script type="module" src="./main.js"></script></body></html>');
  assert.ok(readdirSync(out).includes('main.js'));
  await checkBuilt('esbuild', out, true);
});

test('Vite dev server: works plain; isolated, a thread pool that cannot start falls back after the timeout', { timeout: 180000 }, async () => {
  for (const isolated of [false, true]) {
    const server = await viteServer({
      root: app,
      logLevel: 'warn',
      server: { host: '127.0.0.1', port: 0, headers: isolated ? ISOLATION : {} },
      optimizeDeps: { exclude: ['arrowquant'] },
      worker: { format: 'es' },
    });
    await server.listen();
    try {
      const url = `${server.resolvedUrls.local[0]}?threadStartTimeoutMs=3000`;
      checkRun(`vite dev, ${isolated ? 'isolated' : 'plain'}`, await runApp(url), { threaded: isolated ? /thread pool did not start within 3000 ms/ : false });
    } finally {
      await server.close();
    }
  }
});
