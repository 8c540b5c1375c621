// The streaming loop, independent of which wasm build runs it (single-threaded or threaded) and
// of where the bytes come from: `lib` is an initialised wasm-bindgen module. The wasm plans the
// reads and the units they are quantized in (`readPlan`) and reports each tensor (`addRange` →
// progress events); this loop reads the planned ranges — the next one while the current one is
// quantized — hands each unit over and moves the output bytes.
import { outputSink } from './bytes.js';
import { throwIfAborted } from './errors.js';
import { readHeaderBytes } from './sources.js';

/**
 * Read the groups of `plan` from `source` in order and hand each to `consume(group, bytes)`. A
 * group marked `readAhead` is read while the one before it is consumed, so a source that reads
 * off this thread (Blob, File, file handle) works while wasm runs.
 */
async function forEachGroup(plan, source, signal, consume) {
  const start = (g) => {
    let p;
    try {
      p = Promise.resolve(source.read(g.start, g.end));
    } catch (e) {
      // A source that throws at once fails this group when it is reached, not the one before.
      p = Promise.reject(e);
    }
    // A read-ahead that is never awaited (an error or abort came first) must not surface as an
    // unhandled rejection.
    p.catch(() => {});
    return p;
  };
  let ahead = plan.length > 0 ? start(plan[0]) : null;
  for (let k = 0; k < plan.length; k++) {
    throwIfAborted(signal);
    const bytes = await ahead;
    const next = plan[k + 1];
    ahead = next?.readAhead ? start(next) : null;
    await consume(plan[k], bytes);
    if (!ahead && next) ahead = start(next);
  }
}

/**
 * The planning pass of `targetSizeMb`: reads every tensor once more (sources are random access:
 * File.slice, file descriptors) and returns the plan for ModelQuantizer.setPlan.
 */
async function planWith(lib, source, config, calibration, signal, onPlanProgress) {
  const planner = new lib.SizePlanner(config);
  try {
    if (calibration) planner.setCalibration(calibration);
    const header = planner.begin(await readHeaderBytes(lib, source), source.size);
    let done = 0;
    await forEachGroup(planner.readPlan(), source, signal, (g, bytes) => {
      planner.addRange(g.start, bytes);
      for (const name of g.tensors) onPlanProgress?.({ done: ++done, total: header.tensors.length, name });
    });
    return planner.finish();
  } finally {
    planner.free();
  }
}

/**
 * Quantize a safetensors source tensor by tensor; see `quantizeStream` in api.js for the options.
 * Output chunks go to `onChunk` as row groups close (or are collected and returned as `parquet`).
 */
export async function quantizeStreamWith(lib, source, config, options = {}) {
  const { onChunk, onProgress, onHeader, signal, rowGroupBytes, calibration, onPlanProgress } = options;
  throwIfAborted(signal);
  const resolved = lib.resolveConfig(config ?? {});
  const plan = resolved.targetSizeMb == null ? null : await planWith(lib, source, config, calibration, signal, onPlanProgress);
  const { emit, result } = outputSink(onChunk);
  const q = new lib.ModelQuantizer(config);
  try {
    if (rowGroupBytes) q.setRowGroupBytes(rowGroupBytes);
    if (calibration) q.setCalibration(calibration);
    if (plan) q.setPlan(plan);
    const header = q.begin(await readHeaderBytes(lib, source), source.size);
    if (onHeader) await onHeader(header);
    await forEachGroup(q.readPlan(), source, signal, async (g, bytes) => {
      for (const [start, end] of g.units) {
        throwIfAborted(signal);
        const events = q.addRange(start, bytes.subarray(start - g.start, end - g.start));
        await emit(q.takeOutput());
        for (const e of events) {
          throwIfAborted(signal);
          onProgress?.(e);
        }
      }
    });
    throwIfAborted(signal);
    const { parquet, report } = q.finish();
    await emit(parquet);
    const whole = result();
    return whole ? { report, parquet: whole } : { report };
  } finally {
    q.free();
  }
}
