// The streaming loop, independent of which wasm build runs it (single-threaded or threaded):
// `lib` is an initialised wasm-bindgen module exposing ModelQuantizer and safetensorsHeaderSize.

function concat(chunks) {
  const total = chunks.reduce((n, c) => n + c.length, 0);
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * The planning pass of `targetSizeMb`: reads every tensor once more (sources are random access:
 * File.slice, file descriptors) and returns the plan for ModelQuantizer.setPlan.
 */
async function planWith(lib, source, config, calibration, signal, onPlanProgress) {
  const planner = new lib.SizePlanner(config);
  try {
    if (calibration) planner.setCalibration(calibration);
    const headerSize = lib.safetensorsHeaderSize(await source.read(0, Math.min(8, source.size)));
    const header = planner.begin(await source.read(0, Math.min(headerSize, source.size)), source.size);
    let done = 0;
    for (const t of header.tensors) {
      signal?.throwIfAborted();
      planner.addTensor(t.name, await source.read(t.start, t.end));
      onPlanProgress?.({ done: ++done, total: header.tensors.length, name: t.name });
    }
    return planner.finish();
  } finally {
    planner.free();
  }
}

/** Source bytes quantized together when the build has threads (as the Rust `BATCH_BYTES`). */
const BATCH_BYTES = 16 << 20;

export async function quantizeStreamWith(lib, source, config, options = {}) {
  const { onChunk, onProgress, onHeader, signal, rowGroupBytes, calibration, onPlanProgress } = options;
  const resolved = lib.resolveConfig(config ?? {});
  const plan = resolved.targetSizeMb == null ? null : await planWith(lib, source, config, calibration, signal, onPlanProgress);
  const collected = onChunk ? null : [];
  const emit = async (chunk) => {
    if (chunk.length === 0) return;
    if (collected) collected.push(chunk);
    else await onChunk(chunk);
  };
  const q = new lib.ModelQuantizer(config);
  try {
    if (rowGroupBytes) q.setRowGroupBytes(rowGroupBytes);
    if (calibration) q.setCalibration(calibration);
    if (plan) q.setPlan(plan);
    const prefix = await source.read(0, Math.min(8, source.size));
    const headerSize = lib.safetensorsHeaderSize(prefix);
    const header = q.begin(await source.read(0, Math.min(headerSize, source.size)), source.size);
    if (onHeader) await onHeader(header);
    // With a thread pool, consecutive tensors are read into a batch of up to BATCH_BYTES and
    // quantized together, so many small tensors keep every thread busy (same file either way).
    // Without one, each tensor goes alone and memory holds one tensor.
    const batchBytes = lib.buildInfo().threads ? BATCH_BYTES : 0;
    let batch = [];
    let batchSize = 0;
    const flush = async () => {
      if (batch.length === 0) return;
      const layers =
        batch.length === 1
          ? [q.addTensor(batch[0].t.name, batch[0].bytes)]
          : q.addTensors(batch.map((b) => b.t.name), batch.map((b) => b.bytes));
      await emit(q.takeOutput());
      if (onProgress) {
        const p = q.progress();
        let later = batchSize;
        layers.forEach((layer, k) => {
          later -= batch[k].t.end - batch[k].t.start;
          onProgress({ ...p, done: p.done - layers.length + k + 1, name: batch[k].t.name, bytesDone: p.bytesDone - later, layer });
        });
      }
      batch = [];
      batchSize = 0;
    };
    for (const t of header.tensors) {
      signal?.throwIfAborted();
      const size = t.end - t.start;
      if (batch.length > 0 && batchSize + size > batchBytes) await flush();
      batch.push({ t, bytes: await source.read(t.start, t.end) });
      batchSize += size;
      if (batchSize >= batchBytes) await flush();
    }
    await flush();
    signal?.throwIfAborted();
    const { parquet, report } = q.finish();
    await emit(parquet);
    return collected ? { report, parquet: concat(collected) } : { report };
  } finally {
    q.free();
  }
}
