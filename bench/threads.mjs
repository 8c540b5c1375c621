// `make bench`, part 2: threaded (2 workers) vs single-threaded, both in headless Chromium on the
// same page (cross-origin isolated), same synthetic model, median of BENCH_RUNS runs.
import { chromium } from 'playwright-core';
import { serve } from '../tests/browser/server.mjs';

const ROOT = new URL('..', import.meta.url).pathname;
const RUNS = Number(process.env.BENCH_RUNS ?? 3);
const ROWS = Number(process.env.BENCH_THREAD_ROWS ?? 4096); // × 4096 f32 = 64 MiB by default
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'];

const { server, url } = await serve(ROOT, { isolated: true });
const browser = await chromium.launch({ executablePath: '/usr/bin/chromium', args: ARGS });
try {
  const page = await browser.newPage();
  await page.goto(`${url}/tests/browser/threads.html`);
  await page.waitForFunction(() => document.body.dataset.ready === '1');
  const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(`\n## Threads in Chromium (${ROWS}×4096 f32 = ${((ROWS * 4096 * 4) / 1048576).toFixed(0)} MiB, median of ${RUNS})\n`);
  console.log('| config | single-threaded GB/s | threaded (2 workers) GB/s | threaded ÷ single | threads seen | identical bytes |\n|---|---|---|---|---|---|');
  for (const [label, tensors, config] of [
    ['4-bit g64 min/max, one tensor', 1, { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
    ['4-bit g64 scale search, one tensor', 1, { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
    [`4-bit g64 min/max, ${ROWS / 16} tensors of 256 KiB`, ROWS / 16, { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
    [`4-bit g64 scale search, ${ROWS / 16} tensors of 256 KiB`, ROWS / 16, { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
  ]) {
    const single = [], threaded = [];
    let last;
    for (let r = 0; r < RUNS; r++) {
      last = await page.evaluate((args) => window.runThreadsTest(args), { rows: ROWS, tensors, config });
      single.push(last.single.seconds);
      threaded.push(last.threaded.seconds);
    }
    const bytes = ROWS * 4096 * 4;
    const s = median(single), t = median(threaded);
    console.log(`| ${label} | ${(bytes / s / 1e9).toFixed(3)} | ${(bytes / t / 1e9).toFixed(3)} | ${(s / t).toFixed(2)}× | ${last.threaded.threadsSeen} | ${last.identicalBig && last.identicalSample} |`);
  }
  // GGUF: one tensor, quantized in 64Ki-value chunks across the workers.
  for (const ggmlType of ['Q8_0', 'Q4_K_M', 'Q2_K']) {
    const single = [], threaded = [];
    let last;
    for (let r = 0; r < RUNS; r++) {
      last = await page.evaluate((args) => window.runGgufThreads(args), { rows: ROWS, ggmlType });
      single.push(last.single.seconds);
      threaded.push(last.threaded.seconds);
    }
    const bytes = ROWS * 4096 * 4;
    const s = median(single), t = median(threaded);
    console.log(`| GGUF ${ggmlType}, one tensor | ${(bytes / s / 1e9).toFixed(3)} | ${(bytes / t / 1e9).toFixed(3)} | ${(s / t).toFixed(2)}× | ${last.threaded.threadsSeen} | ${last.identical} |`);
  }
  // The bundled real models: many small tensors, each one block, quantized in batches across workers.
  const REAL_RUNS = Math.max(RUNS, 15);
  for (const [label, path] of [
    ['RivaGAN (F32, 1.7 MB)', '/samples/rivagan_f32.safetensors'],
    ['tiny DDPM UNet (F16, 1.4 MB)', '/samples/tiny_ddpm_digits.safetensors'],
  ]) {
    for (const [cfgLabel, config] of [
      ['4-bit g64 min/max', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
      ['4-bit g64 scale search', { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
    ]) {
      const r = await page.evaluate((args) => window.runModelFile(args), { path, config, runs: REAL_RUNS });
      console.log(`| ${label}, ${cfgLabel} (median of ${REAL_RUNS}) | ${(r.bytes / r.single / 1e9).toFixed(3)} | ${(r.bytes / r.threaded / 1e9).toFixed(3)} | ${(r.single / r.threaded).toFixed(2)}× | ${r.threadsSeen} | ${r.identical} |`);
    }
  }
  // The first run in a fresh Worker (what a page's user waits for), with the Worker's start-up
  // warm-up turned off and on; runs alternate so both see the same machine.
  console.log(`\n### First run in a fresh Worker (single-threaded build, one ${((ROWS * 4096 * 4) / 1048576).toFixed(0)} MiB tensor, median of ${RUNS})\n`);
  console.log('| config | no warm-up: run s | with warm-up: run s | warm-up s | run speed-up |\n|---|---|---|---|---|');
  for (const [label, config] of [
    ['4-bit g64 scale search', { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
    ['4-bit g64 min/max', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
  ]) {
    const cold = [], warm = [], warmUp = [];
    for (let r = 0; r < RUNS; r++) {
      cold.push((await page.evaluate((args) => window.runFirstRun(args), { rows: ROWS, config, warmUp: false })).seconds);
      const w = await page.evaluate((args) => window.runFirstRun(args), { rows: ROWS, config, warmUp: true });
      warm.push(w.seconds);
      warmUp.push(w.warmUpSeconds);
    }
    const c = median(cold), w = median(warm);
    console.log(`| ${label} | ${c.toFixed(3)} | ${w.toFixed(3)} | ${median(warmUp).toFixed(3)} | ${(c / w).toFixed(2)}× |`);
  }
  // Reading the File: in the helper Worker while the quantizing Worker runs wasm (the default),
  // against reads on the quantizing Worker itself (`readerWorker: false`), single-threaded build.
  const READ_RUNS = Math.max(RUNS, 7);
  console.log(`\n### Reading the File (single-threaded build, ${((ROWS * 4096 * 4) / 1048576).toFixed(0)} MiB f32, median of ${READ_RUNS})\n`);
  const blobReads = await page.evaluate((args) => window.runBlobReads(args), { rows: ROWS, sliceBytes: 1 << 20, runs: READ_RUNS });
  console.log(`A ${(blobReads.bytes / 1048576).toFixed(0)} MiB Blob read in a Worker: ${blobReads.whole.toFixed(1)} ms in one slice, ${blobReads.sliced.toFixed(1)} ms in 1 MiB slices (${(blobReads.sliced / blobReads.whole).toFixed(2)}×).\n`);
  console.log('| model | 4-bit g64 | reads in the quantizing Worker GB/s | reads in a helper Worker GB/s | helper ÷ same thread | identical bytes |\n|---|---|---|---|---|---|');
  for (const tensors of [1, ROWS / 64, ROWS / 16]) {
    for (const [cfgLabel, config] of [
      ['min/max', { bitWidth: 4, groupSize: 64, scaleSearch: 'off', minAccuracy: 0 }],
      ['scale search', { bitWidth: 4, groupSize: 64, scaleSearch: 'on', minAccuracy: 0 }],
    ]) {
      const r = await page.evaluate((args) => window.runReadPaths(args), { rows: ROWS, tensors, config, runs: READ_RUNS });
      const label = tensors === 1 ? 'one tensor' : `${tensors} tensors of ${(ROWS * 4096 * 4) / tensors / 1024} KiB`;
      console.log(`| ${label} | ${cfgLabel} | ${(r.bytes / r.direct / 1e9).toFixed(3)} | ${(r.bytes / r.helper / 1e9).toFixed(3)} | ${(r.direct / r.helper).toFixed(2)}× | ${r.identical} |`);
    }
  }
} finally {
  await browser.close();
  server.close();
}
