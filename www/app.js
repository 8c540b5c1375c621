// The demo page. All work happens in a Web Worker (pkg/browser.js → pkg/worker.js): the threaded
// build when this page is cross-origin isolated, else the single-threaded SIMD build. Files are
// read with File.slice one tensor at a time; the Parquet output streams into the origin-private
// file system (OPFS) when the browser has it, so a model larger than memory fits.
import { createWorkerQuantizer } from '../pkg/browser.js';

const $ = (id) => document.getElementById(id);
const form = $('form');
const BITS_COLOR = { 2: 'var(--b2)', 4: 'var(--b4)', 8: 'var(--b8)', 16: 'var(--b16)' };

const state = {
  q: null, // the worker quantizer
  model: [], // model File(s)
  index: null, // model.safetensors.index.json File
  calibration: null, // { file, summary } of the calibration file
  summary: null,
  config: null, // last valid resolved config
  running: false,
  report: null,
  runConfig: null,
  downloadUrl: null,
  opfsName: null,
  selected: null,
  sort: { key: null, asc: true },
};

const fmtBytes = (n) => (n >= 1 << 30 ? `${(n / 2 ** 30).toFixed(2)} GiB` : n >= 1 << 20 ? `${(n / 2 ** 20).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`);
const fmtNum = (n) => n.toLocaleString('en-US');
const fmtDb = (x) => (x === null || x === undefined ? '—' : x === Infinity ? '∞' : x.toFixed(2));
const fmtTime = (s) => (s < 10 ? `${s.toFixed(1)} s` : s < 60 ? `${s.toFixed(0)} s` : `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`);

// ---- the worker ------------------------------------------------------------------------------

async function startWorker() {
  state.q = await createWorkerQuantizer();
  const i = state.q.info;
  const b = $('build');
  b.textContent = i.threads ? `threaded build · ${i.poolThreads} threads · SIMD128` : `single-threaded SIMD128 build — ${i.reason}`;
  b.classList.toggle('single', !i.threads);
  b.dataset.threads = String(i.threads);
}

// ---- files -----------------------------------------------------------------------------------

async function takeFiles(list) {
  const files = [...list];
  $('drop-error').textContent = '';
  const models = [];
  let index = null;
  let calibration = null;
  // The worker reads each header and says what the file is; a file it cannot read goes on as a
  // model, so that describing it shows the library's error.
  const roles = await state.q.classify(files);
  files.forEach((f, i) => {
    const r = roles[i];
    if (r.role === 'index') index = f;
    else if (r.role === 'calibration') calibration = { file: f, summary: r.calibration };
    else models.push(f);
  });
  if (!models.length && !calibration) {
    $('drop-error').textContent = 'No .safetensors model among the dropped files.';
    return;
  }
  if (calibration) state.calibration = calibration;
  if (models.length) {
    state.model = models.sort((a, b) => a.name.localeCompare(b.name));
    state.index = index;
  }
  if (!state.model.length) {
    showCalibration();
    $('drop-error').textContent = 'Calibration file added; now drop the model.';
    return;
  }
  await describe();
}

async function describe() {
  try {
    const { summary, shards } = await state.q.describe(state.model.length === 1 ? state.model[0] : state.model, { index: state.index ?? undefined });
    state.summary = summary;
    renderModel(summary, shards);
    $('config').hidden = false;
    await applyProfile(form.profile.value, { keepTouched: false });
  } catch (e) {
    $('model').hidden = true;
    $('config').hidden = true;
    $('drop-error').textContent = `${e.code ?? 'Error'}: ${e.message}`;
  }
}

function renderModel(s, shards) {
  const facts = [
    ['file', state.model.length === 1 ? state.model[0].name : `${state.model.length} shards${state.index ? ' + index' : ''}`],
    ['tensors', `${fmtNum(s.tensors)} (${fmtNum(s.weights)} weights)`],
    ['parameters', fmtNum(s.params)],
    ['size', fmtBytes(s.tensorBytes)],
    ['dtypes', Object.entries(s.dtypes).map(([d, n]) => `${d} ×${n}`).join(', ')],
    ['modality', `${s.modality} (${s.modalitySource})`],
    ['largest tensor', `${s.largestTensor} (${fmtBytes(s.largestTensorBytes)})`],
  ];
  if (shards) facts.push(['shards', shards.map((x) => `${x.name}: ${x.tensors}`).join(', ')]);
  $('model-facts').innerHTML = '';
  for (const [k, v] of facts) {
    const d = document.createElement('div');
    d.innerHTML = '<dt></dt><dd></dd>';
    d.firstChild.textContent = k;
    d.lastChild.textContent = v;
    d.dataset.fact = k;
    $('model-facts').append(d);
  }
  $('model-facts').title = s.modalityRule;
  const rows = s.estimates.filter((e) => e.profile !== 'current');
  $('estimates').innerHTML = `<thead><tr><th>profile</th><th class="num">bits</th><th class="num" title="at the requested widths, before zstd; layers that miss minAccuracy move up and cost more">estimated output</th><th class="num">vs source</th></tr></thead><tbody>${rows
    .map((e) => `<tr><td>${e.profile}</td><td class="num">${e.bitWidth}</td><td class="num">≈ ${fmtBytes(e.bytes)}</td><td class="num">${(s.tensorBytes / e.bytes).toFixed(1)}× smaller</td></tr>`)
    .join('')}</tbody>`;
  $('model').hidden = false;
  showCalibration();
}

async function showCalibration() {
  const p = $('calibration-facts');
  if (!state.calibration) {
    p.textContent = 'No calibration statistics: time-aware groups and channel equalization will be reported as not applied.';
    return;
  }
  const { file, summary } = state.calibration;
  p.textContent = `Calibration: ${file.name} (${summary.timesteps.length} timesteps, ${summary.layers.length} layers) — used for time-aware groups and channel equalization.`;
  $('model').hidden = false;
}

// ---- settings --------------------------------------------------------------------------------

/** The form as a config object (text fields as typed; the library validates). */
function formConfig() {
  const f = form.elements;
  const c = {
    profile: f.profile.value,
    bitWidth: Number(f.bitWidth.value),
    groupSize: Number(f.groupSize.value),
    scaleSearch: f.scaleSearch.value,
    codec: f.codec.value,
    enableTimeAware: f.enableTimeAware.checked,
    enableSpatial: f.enableSpatial.checked,
    sensitiveLayerPatterns: f.sensitiveLayerPatterns.value.split(',').map((s) => s.trim()).filter(Boolean),
  };
  const num = (v) => (v.trim() === '' ? null : Number.isNaN(Number(v)) ? v : Number(v));
  c.minAccuracy = num(f.minAccuracy.value);
  const t = num(f.targetSizeMb.value);
  if (t !== null) c.targetSizeMb = t;
  return c;
}

function showFieldError(field, message) {
  for (const el of form.querySelectorAll('.field-error')) el.textContent = '';
  for (const el of form.querySelectorAll('.invalid')) el.classList.remove('invalid');
  if (!field) return;
  const base = field.replace(/\[.*$/, '');
  const slot = form.querySelector(`[data-error-for="${base}"]`);
  if (slot) slot.textContent = message;
  form.elements[base]?.classList.add('invalid');
  if (!slot) $('status').textContent = message;
}

/** Validate with the library itself (resolveConfig in the worker): errors name their field. */
async function validate() {
  try {
    state.config = await state.q.resolveConfig(formConfig());
    showFieldError(null);
    $('run').disabled = state.running || !state.model.length;
    return true;
  } catch (e) {
    state.config = null;
    showFieldError(e.field ?? 'config', e.detail ?? e.message);
    $('run').disabled = true;
    return false;
  }
}

async function applyProfile(profile) {
  const c = await state.q.resolveConfig({ profile });
  const f = form.elements;
  f.bitWidth.value = String(c.bitWidth);
  f.groupSize.value = String(c.groupSize);
  f.scaleSearch.value = c.scaleSearch;
  f.codec.value = c.codec;
  f.minAccuracy.value = String(c.minAccuracy);
  f.enableTimeAware.checked = c.enableTimeAware;
  f.enableSpatial.checked = c.enableSpatial;
  await validate();
}

// ---- the run ---------------------------------------------------------------------------------

const canUseOpfs = () => typeof navigator.storage?.getDirectory === 'function';

/** Delete an OPFS output. Right after a cancel the stopped worker's file lock may still be held
 * for a moment, so retry briefly. */
async function removeOpfs(name) {
  if (!name || !canUseOpfs()) return;
  const root = await navigator.storage.getDirectory();
  for (let attempt = 0; attempt < 50; attempt++) {
    try {
      await root.removeEntry(name);
      return;
    } catch (e) {
      if (e.name === 'NotFoundError') return;
      await new Promise((r) => setTimeout(r, 100));
    }
  }
}

async function run() {
  if (!(await validate())) return;
  state.running = true;
  $('run').disabled = true;
  $('cancel').hidden = false;
  $('results').hidden = true;
  $('status').className = 'status';
  $('status').textContent = '';
  $('progress').hidden = false;
  $('bar').style.width = '0';
  if (state.downloadUrl) URL.revokeObjectURL(state.downloadUrl);
  await removeOpfs(state.opfsName);
  const ggmlType = form.elements.output.value === 'parquet' ? null : form.elements.output.value;
  state.opfsName = canUseOpfs() ? `arrowquant-${Date.now()}.${ggmlType ? 'gguf' : 'parquet'}` : null;
  $('output-mode').textContent = state.opfsName
    ? 'Output streams to this browser’s private storage (OPFS), not memory.'
    : 'Output is assembled in memory (this browser has no OPFS).';
  const config = formConfig();
  state.runConfig = config;
  const t0 = performance.now();
  let peak = 0;
  const onProgress = (p) => {
    const secs = (performance.now() - t0) / 1000;
    if (p.planning) {
      $('progress-text').textContent = `planning the size budget: ${p.done}/${p.total} tensors measured`;
      return;
    }
    peak = Math.max(peak, p.wasmMemoryBytes ?? 0);
    const frac = p.bytesTotal ? p.bytesDone / p.bytesTotal : p.done / p.total;
    const rate = p.bytesDone / 2 ** 20 / Math.max(secs, 1e-3);
    const left = frac > 0 ? (secs / frac) * (1 - frac) : 0;
    $('bar').style.width = `${(frac * 100).toFixed(1)}%`;
    $('progress-text').textContent = `${p.done} / ${p.total} tensors · ${rate.toFixed(1)} MB/s · ${fmtTime(left)} left · wasm memory ${fmtBytes(peak)} · ${p.name}`;
  };
  try {
    const model = state.model.length === 1 ? state.model[0] : state.model;
    const output = state.opfsName ? { opfs: state.opfsName } : undefined;
    const result = ggmlType
      ? await state.q.quantizeGguf(model, ggmlType, { index: state.index ?? undefined, calibration: state.calibration?.file, output, onProgress })
      : await state.q.quantize(model, config, { index: state.index ?? undefined, calibration: state.calibration?.file, output, onProgress });
    let blob = result.parquet ?? result.gguf;
    if (!blob && result.output?.opfs) blob = await (await (await navigator.storage.getDirectory()).getFileHandle(result.output.opfs)).getFile();
    if (result.output?.spilled) {
      $('output-mode').textContent = `The browser's private storage (OPFS) ran out of room after ${fmtBytes(result.output.bytes)}; the rest of the output was kept in memory.`;
    }
    state.report = result.report;
    state.downloadUrl = URL.createObjectURL(blob);
    $('status').textContent = `Done in ${fmtTime(result.stats.seconds)}.`;
    $('bar').style.width = '100%';
    if (ggmlType) renderGgufResults(result.report, result.stats, blob);
    else renderResults(result.report, result.stats, blob);
    document.body.dataset.state = 'done';
  } catch (e) {
    await removeOpfs(state.opfsName);
    state.opfsName = null;
    $('status').className = 'status error';
    $('status').textContent = e.code === 'E_CANCELLED' ? 'Cancelled: the worker was stopped and the partial output deleted.' : `${e.code ?? 'Error'}: ${e.message}`;
    if (e.field) showFieldError(e.field, e.detail ?? e.message);
    document.body.dataset.state = e.code === 'E_CANCELLED' ? 'cancelled' : 'error';
  } finally {
    state.running = false;
    $('cancel').hidden = true;
    $('run').disabled = !state.config;
  }
}

async function cancel() {
  // Terminating the worker stops the work at once (wasm cannot be interrupted otherwise); a
  // fresh worker is started for the next run.
  state.q.terminate();
  await startWorker();
}

// ---- results ---------------------------------------------------------------------------------

function renderResults(r, stats, blob) {
  const cells = [
    [`${r.compressionRatio.toFixed(2)}×`, 'smaller than the source tensors'],
    [fmtBytes(blob.size), 'Parquet file'],
    [r.cosineSimilarity.toFixed(5), 'cosine (parameter-weighted)'],
    [`${fmtDb(r.snrDb)} dB`, 'SNR (pooled)'],
    [fmtTime(stats.seconds), `${stats.threadsSeen > 1 ? `${stats.threadsSeen} threads` : '1 thread'}`],
    [fmtBytes(stats.wasmMemoryBytes), 'peak wasm memory'],
    [`${r.layerCounts.bits2}/${r.layerCounts.bits4}/${r.layerCounts.bits8}/${r.layerCounts.f16}`, 'layers int2/int4/int8/f16'],
  ];
  $('summary').innerHTML = cells.map(([v, k]) => `<div><b>${v}</b><span>${k}</span></div>`).join('');
  $('summary').dataset.compression = r.compressionRatio.toFixed(4);
  $('summary').dataset.peakWasmMemory = String(stats.wasmMemoryBytes);
  const name = (state.model.length === 1 ? state.model[0].name : 'model').replace(/\.safetensors$/, '');
  $('download').href = state.downloadUrl;
  $('download').download = `${name}.aq.parquet`;
  $('download').textContent = 'Download Parquet';
  $('download-note').textContent = `${fmtBytes(blob.size)}, made in this tab.`;
  $('features').textContent = `Modality ${r.modality} (${r.modalityRule}). Time-aware: ${r.timeAware.note}. Spatial: ${r.spatial.note}.${r.sizePlan ? ` Size plan: ≤ ${fmtBytes(r.sizePlan.plannedBytes)} of ${fmtBytes(r.sizePlan.targetBytes)}.` : ''}`;
  // textContent, not innerHTML: a warning quotes the user's patterns.
  $('warnings').replaceChildren(...(r.warnings ?? []).map((w) => Object.assign(document.createElement('li'), { textContent: w.message, className: w.code })));
  $('warnings').hidden = !(r.warnings ?? []).length;
  $('results').hidden = false;
  state.selected = null;
  renderPlot(r.layers);
  renderTable(r.layers);
  const worst = r.layers.filter((l) => l.snrDb !== null).sort((a, b) => a.snrDb - b.snrDb)[0];
  if (worst) selectLayer(worst.name);
}

/** GGUF's bits per value, for the plot's colours (the width classes of the Parquet report). */
const GGUF_COLOR_BITS = { Q8_0: 8, Q6_K: 8, Q5_K: 4, Q5_1: 4, Q5_0: 4, Q4_K: 4, Q4_1: 4, Q4_0: 4, Q3_K: 2, Q2_K: 2, F16: 16, BF16: 16, F32: 16 };

function renderGgufResults(r, stats, blob) {
  const counts = {};
  for (const l of r.layers) counts[l.ggmlType] = (counts[l.ggmlType] ?? 0) + 1;
  const cells = [
    [`${r.compressionRatio.toFixed(2)}×`, 'smaller than the source tensors'],
    [fmtBytes(blob.size), `GGUF file (${r.ggmlType})`],
    [r.minCosine.toFixed(5), 'lowest layer cosine'],
    [`${fmtDb(r.snrDb)} dB`, 'SNR (pooled)'],
    [fmtTime(stats.seconds), `${stats.threadsSeen > 1 ? `${stats.threadsSeen} threads` : '1 thread'}`],
    [fmtBytes(stats.wasmMemoryBytes), 'peak wasm memory'],
    [Object.entries(counts).map(([t, n]) => `${t} ×${n}`).join(', '), 'tensors by type'],
  ];
  $('summary').innerHTML = cells.map(([v, k]) => `<div><b>${v}</b><span>${k}</span></div>`).join('');
  $('summary').dataset.compression = r.compressionRatio.toFixed(4);
  $('summary').dataset.peakWasmMemory = String(stats.wasmMemoryBytes);
  const name = (state.model.length === 1 ? state.model[0].name : 'model').replace(/\.safetensors$/, '');
  $('download').href = state.downloadUrl;
  $('download').download = `${name}-${r.ggmlType}.gguf`;
  $('download').textContent = 'Download GGUF';
  $('download-note').textContent = `${fmtBytes(blob.size)}, made in this tab.`;
  $('features').textContent = `Architecture ${r.architecture} (${r.architectureRule}). Types per tensor: docs/GGUF.md.`;
  $('warnings').hidden = true;
  $('results').hidden = false;
  state.selected = null;
  // The Parquet report's shape, so the plot and table render GGUF layers the same way.
  const layers = r.layers.map((l) => ({ ...l, stored: l.ggmlType, bits: GGUF_COLOR_BITS[l.ggmlType], storage: 'gguf' }));
  state.report = { ...r, layers };
  renderPlot(layers);
  renderTable(layers);
  $('hist-title').textContent = 'Error histograms are drawn for Parquet runs';
  const canvas = $('hist');
  canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
}

function renderPlot(layers) {
  const svg = $('snr-plot');
  const pts = layers.map((l, i) => ({ l, i })).filter(({ l }) => l.snrDb !== null && Number.isFinite(l.snrDb));
  const W = 520, H = 240, L = 36, B = 20, T = 10, R = 8;
  svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
  if (!pts.length) {
    svg.innerHTML = `<text x="${W / 2}" y="${H / 2}" text-anchor="middle" fill="#888">no lossy layers</text>`;
    return;
  }
  const top = Math.max(...pts.map((p) => p.l.snrDb), 1);
  const step = [1, 2, 5, 10, 20, 50, 100].find((s) => top / s <= 6) ?? 100;
  const maxY = Math.ceil((top * 1.05) / step) * step;
  const x = (k) => L + (k / Math.max(pts.length - 1, 1)) * (W - L - R);
  const y = (v) => T + (1 - v / maxY) * (H - T - B);
  let g = '';
  for (let v = 0; v <= maxY; v += step) {
    g += `<line x1="${L}" x2="${W - R}" y1="${y(v)}" y2="${y(v)}" stroke="#e6e9ef"/><text x="${L - 4}" y="${y(v) + 4}" font-size="10" text-anchor="end" fill="#777">${v}</text>`;
  }
  g += `<text x="${W / 2}" y="${H - 4}" font-size="10" text-anchor="middle" fill="#777">layers in file order</text>`;
  pts.forEach(({ l }, k) => {
    const title = `${l.name}: ${l.stored}, SNR ${fmtDb(l.snrDb)} dB`;
    g += `<circle cx="${x(k)}" cy="${y(l.snrDb)}" r="4" fill="${BITS_COLOR[l.bits] ?? '#999'}" data-name="${l.name.replace(/"/g, '&quot;')}"><title>${title.replace(/</g, '&lt;')}</title></circle>`;
  });
  svg.innerHTML = g;
}

const COLUMNS = [
  ['name', 'tensor', (l) => l.name],
  ['shape', 'shape', (l) => `[${l.shape.join(', ')}]`],
  ['params', 'params', (l) => l.params, true],
  ['bits', 'stored', (l) => l.bits ?? 99],
  ['cosine', 'cosine', (l) => l.cosine ?? 2, true],
  ['snrDb', 'SNR dB', (l) => l.snrDb ?? Infinity, true],
  ['reason', 'why', (l) => l.reason],
];

function renderTable(layers) {
  const { key, asc } = state.sort;
  const col = COLUMNS.find((c) => c[0] === key);
  const rows = col ? [...layers].sort((a, b) => (col[2](a) < col[2](b) ? -1 : col[2](a) > col[2](b) ? 1 : 0) * (asc ? 1 : -1)) : layers;
  const head = COLUMNS.map(([k, label, , num]) => `<th data-key="${k}" class="${num ? 'num ' : ''}${k === key ? `sorted${asc ? ' asc' : ''}` : ''}">${label}</th>`).join('');
  const esc = (s) => String(s).replace(/&/g, '&amp;').replace(/</g, '&lt;');
  const body = rows
    .map((l) => `<tr data-name="${esc(l.name)}"${l.name === state.selected ? ' class="selected"' : ''}><td>${esc(l.name)}</td><td>[${l.shape.join(', ')}]</td><td class="num">${fmtNum(l.params)}</td><td>${l.stored}</td><td class="num">${l.cosine === null ? '—' : l.cosine.toFixed(5)}</td><td class="num">${fmtDb(l.snrDb)}</td><td class="why">${esc(l.reason)}</td></tr>`)
    .join('');
  $('layers').innerHTML = `<thead><tr>${head}</tr></thead><tbody>${body}</tbody>`;
}

async function selectLayer(name) {
  state.selected = name;
  for (const tr of $('layers').querySelectorAll('tr[data-name]')) tr.classList.toggle('selected', tr.dataset.name === name);
  for (const c of $('snr-plot').querySelectorAll('circle')) c.classList.toggle('selected', c.dataset.name === name);
  const l = state.report.layers.find((x) => x.name === name);
  const canvas = $('hist');
  if (l?.storage === 'gguf') {
    $('hist-title').textContent = `${name}: ${l.stored}, SNR ${fmtDb(l.snrDb)} dB (error histograms are drawn for Parquet runs)`;
    return;
  }
  if (!l || l.storage === 'raw') {
    $('hist-title').textContent = `${name}: stored exactly (raw), no error`;
    canvas.getContext('2d').clearRect(0, 0, canvas.width, canvas.height);
    return;
  }
  $('hist-title').textContent = `Error histogram (ŵ − w) of ${name}: computing…`;
  // Re-quantize this one layer exactly as stored: the run's config, pinned to its stored width.
  const config = { ...state.runConfig, targetSizeMb: null, layerBitWidths: { ...(state.runConfig.layerBitWidths ?? {}), [name]: l.bits } };
  try {
    const h = await state.q.histogram(name, config, 64);
    if (state.selected !== name) return;
    $('hist-title').textContent = `Error histogram (ŵ − w) of ${name} — ${l.stored}, RMSE ${h.rmse.toExponential(2)}, max |w| ${h.weightAbsmax.toExponential(2)}`;
    drawHistogram(canvas, h);
  } catch (e) {
    $('hist-title').textContent = `${name}: ${e.message}`;
  }
}

function drawHistogram(canvas, h) {
  const ctx = canvas.getContext('2d');
  const W = canvas.width, H = canvas.height, B = 22, T = 8;
  ctx.clearRect(0, 0, W, H);
  const max = Math.max(...h.counts);
  const bw = (W - 20) / h.counts.length;
  ctx.fillStyle = '#4a7bd0';
  h.counts.forEach((c, i) => {
    const bh = max ? (c / max) * (H - B - T) : 0;
    ctx.fillRect(10 + i * bw + 0.5, H - B - bh, Math.max(bw - 1, 1), bh);
  });
  ctx.fillStyle = '#777';
  ctx.font = '11px system-ui';
  ctx.textAlign = 'left';
  ctx.fillText(`−${h.limit.toExponential(1)}`, 10, H - 6);
  ctx.textAlign = 'center';
  ctx.fillText('0', W / 2, H - 6);
  ctx.textAlign = 'right';
  ctx.fillText(`+${h.limit.toExponential(1)}`, W - 10, H - 6);
}

// ---- wiring ----------------------------------------------------------------------------------

function wire() {
  const drop = $('drop');
  drop.addEventListener('dragover', (e) => {
    e.preventDefault();
    drop.classList.add('over');
  });
  drop.addEventListener('dragleave', () => drop.classList.remove('over'));
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    drop.classList.remove('over');
    takeFiles(e.dataTransfer.files);
  });
  $('files').addEventListener('change', (e) => takeFiles(e.target.files));
  form.profile.addEventListener('change', () => applyProfile(form.profile.value));
  form.addEventListener('input', (e) => {
    if (e.target.name !== 'profile') validate();
  });
  form.addEventListener('submit', (e) => e.preventDefault());
  $('run').addEventListener('click', run);
  $('cancel').addEventListener('click', cancel);
  $('layers').addEventListener('click', (e) => {
    const th = e.target.closest('th');
    if (th) {
      state.sort = { key: th.dataset.key, asc: state.sort.key === th.dataset.key ? !state.sort.asc : true };
      renderTable(state.report.layers);
      return;
    }
    const tr = e.target.closest('tr[data-name]');
    if (tr) selectLayer(tr.dataset.name);
  });
  $('snr-plot').addEventListener('click', (e) => {
    const c = e.target.closest('circle');
    if (c) selectLayer(c.dataset.name);
  });
}

wire();
startWorker().then(
  () => {
    document.body.dataset.ready = '1';
  },
  (e) => {
    $('build').textContent = `The quantizer failed to load: ${e.message}`;
  },
);
