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
    for (const t of header.tensors) {
      signal?.throwIfAborted();
      const layer = q.addTensor(t.name, await source.read(t.start, t.end));
      await emit(q.takeOutput());
      if (onProgress) onProgress({ ...q.progress(), layer });
    }
    signal?.throwIfAborted();
    const { parquet, report } = q.finish();
    await emit(parquet);
    return collected ? { report, parquet: concat(collected) } : { report };
  } finally {
    q.free();
  }
}
