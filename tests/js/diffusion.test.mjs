// Diffusion features through the JS API (real wasm in Node): calibration as bytes and as a plain
// object, time groups and equalization read back, targetSizeMb planning while streaming, and
// calibration errors with their code.
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { test } from 'node:test';
import { parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { bytesSource, openQuantized, quantizeModel, quantizeStream, readCalibration } from '../../pkg/node.js';
import { CLI, DDPM, DDPM_CAL, read, tempDir } from './helpers.mjs';

const model = read(DDPM);
const calBytes = read(DDPM_CAL);

/** The calibration file as the documented plain object (what a JS caller would build). */
function calibrationObject() {
  const file = openQuantizedSafetensors(calBytes);
  const layers = {};
  const rows = (t, v) => (t.shape.length === 2 ? Array.from({ length: t.shape[0] }, (_, i) => v.slice(i * t.shape[1], (i + 1) * t.shape[1])) : v);
  for (const [name, t] of Object.entries(file.tensors)) {
    const [layer, field] = [name.slice(0, name.lastIndexOf('.')), name.slice(name.lastIndexOf('.') + 1)];
    const entry = (layers[layer] ??= {});
    if (field === 'samples' || field === 'gram_rows') {
      const ints = Array.from(new BigInt64Array(t.bytes.slice().buffer), Number);
      if (field === 'samples') entry.samples = ints;
      else entry.gramRows = ints[0];
      continue;
    }
    const v = rows(t, Array.from(new Float32Array(t.bytes.slice().buffer)));
    const gram = { gram_eigvecs: 'eigvecs', gram_eigvals: 'eigvals', gram_diag: 'diag' }[field];
    if (gram) (entry.gram ??= {})[gram] = v;
    else entry[{ act_min: 'actMin', act_max: 'actMax', channel_absmax: 'channelAbsMax', sq_mean: 'sqMean', sensitivity: 'sensitivity' }[field]] = v;
  }
  return { timesteps: JSON.parse(file.metadata.timesteps), layers };
}

function openQuantizedSafetensors(bytes) {
  const n = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
  const metadata = header.__metadata__;
  delete header.__metadata__;
  const tensors = {};
  for (const [name, h] of Object.entries(header)) {
    tensors[name] = { shape: h.shape, bytes: bytes.subarray(8 + n + h.data_offsets[0], 8 + n + h.data_offsets[1]) };
  }
  return { metadata, tensors };
}

test('calibration as bytes or as a plain object gives the same file', () => {
  const summary = readCalibration(calBytes);
  assert.equal(summary.timesteps.length, 20);
  assert.ok(summary.layers.every((l) => l.missingTimesteps.length === 0 && l.perTimestepChannels));
  const a = quantizeModel(model, { profile: 'local' }, { calibration: calBytes });
  const b = quantizeModel(model, { profile: 'local' }, { calibration: calibrationObject() });
  assert.deepEqual(a.parquet, b.parquet);
  assert.equal(a.report.modality, 'image');
  assert.ok(a.report.timeAware.applied && a.report.spatial.applied);
});

test('time groups, paramsForTimestep and equalization read back from the file', async () => {
  const { parquet, report } = quantizeModel(model, { profile: 'local', numTimeGroups: 4 }, { calibration: calBytes });
  const file = openQuantized(parquet);
  try {
    const meta = file.metadata();
    assert.equal(meta.calibration.timesteps.length, 20);
    const layer = report.layers.find((l) => l.spatial && l.name.startsWith('down_blocks.1'));
    const groups = file.timeGroups(layer.name);
    assert.deepEqual(groups, layer.timeGroups);
    assert.ok(groups.length >= 1 && groups.length <= 4);
    for (let t = 0; t < 20; t++) {
      const g = file.paramsForTimestep(layer.name, t);
      assert.ok(g.tStart <= t && t < g.tEnd);
    }
    assert.throws(() => file.paramsForTimestep(layer.name, 20), { code: 'E_STATE' });
    assert.throws(() => file.paramsForTimestep('conv_in.bias', 0), { code: 'E_STATE' });
    const sp = file.spatial(layer.name);
    assert.ok(sp.scales instanceof Float32Array && sp.scales.length === layer.shape[1]);
    const w = file.dequantize(layer.name);
    const we = file.dequantize(layer.name, { equalized: true });
    const inner = layer.shape.slice(2).reduce((a, b) => a * b, 1);
    for (let k = 0; k < w.length; k += 13) {
      const j = Math.floor(k / inner) % layer.shape[1];
      assert.equal(w[k], Math.fround(we[k] / sp.scales[j]));
    }
    // an independent reader sees the same time groups
    const rows = await parquetReadObjects({ file: parquet.buffer.slice(parquet.byteOffset, parquet.byteOffset + parquet.byteLength), compressors, columns: ['name', 'time_groups'] });
    const row = rows.find((r) => r.name === layer.name);
    assert.deepEqual(row.time_groups.map((g) => [g.t_start, g.t_end, g.zero_point]), groups.map((g) => [g.tStart, g.tEnd, g.zeroPoint]));
  } finally {
    file.free();
  }
});

test('targetSizeMb while streaming: two passes, the file fits', async () => {
  const target = 0.5;
  const { parquet, report } = await quantizeStream(bytesSource(model), { profile: 'local', targetSizeMb: target }, { calibration: calBytes });
  assert.ok(parquet.length <= target * 1048576, `${parquet.length} bytes`);
  assert.equal(report.sizePlan.targetBytes, Math.floor(target * 1048576));
  const planned = report.layers.filter((l) => l.reason.startsWith('targetSizeMb plan'));
  assert.ok(planned.length > 10);
  assert.ok(new Set(planned.map((l) => l.bits)).size >= 2, 'a tight budget mixes widths');
});

test('calibration errors carry E_CALIBRATION and name the layer', () => {
  assert.throws(() => readCalibration(new Uint8Array([1, 2, 3])), { code: 'E_CALIBRATION' });
  assert.throws(() => readCalibration({ timesteps: [1], layers: { 'a.b': { actMin: [0], actMax: [1] } } }), (e) => e.code === 'E_CALIBRATION' && /'a\.b'/.test(e.message) && /samples/.test(e.message));
  assert.throws(() => quantizeModel(model, {}, { calibration: { timesteps: [], layers: {} } }), { code: 'E_CALIBRATION' });
});

test('CLI --calibration and --target-size-mb', () => {
  const out = join(tempDir(), 'ddpm.aq.parquet');
  const r = spawnSync('node', [CLI, 'quantize', DDPM, '-o', out, '--calibration', DDPM_CAL, '--target-size-mb', '0.5', '--time-grouping', 'uniform'], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /time-aware: \d+ layer\(s\) got up to 10 uniform time group/);
  assert.match(r.stdout, /size plan: target 0\.50 MiB/);
  assert.match(r.stdout, /modality rule: safetensors __metadata__\.modality = 'image'/);
});
