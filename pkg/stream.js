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
/** Small consecutive tensors are read together up to this many bytes, threads or not. */
const READ_BYTES = 1 << 20;

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
    // Consecutive tensors that sit back to back in the file are read with one `read` (small ones
    // up to READ_BYTES together: one Blob slice instead of one per tensor). With a thread pool a
    // group of up to BATCH_BYTES is also quantized together, so many small tensors keep every
    // thread busy; without one each tensor goes alone. The file is the same either way.
    const batchBytes = lib.buildInfo().threads ? BATCH_BYTES : 0;
    const limit = Math.max(batchBytes, READ_BYTES);
    const tensors = header.tensors;
    const size = (t) => t.end - t.start;
    const progressOne = (t, layer) => {
      if (onProgress) onProgress({ ...q.progress(), name: t.name, layer });
    };
    for (let i = 0; i < tensors.length; ) {
      let j = i + 1;
      let bytes = size(tensors[i]);
      while (j < tensors.length && tensors[j].start === tensors[j - 1].end && bytes + size(tensors[j]) <= limit) {
        bytes += size(tensors[j]);
        j += 1;
      }
      signal?.throwIfAborted();
      const first = tensors[i].start;
      const data = await source.read(first, tensors[j - 1].end);
      const group = tensors.slice(i, j).map((t) => ({ t, bytes: data.subarray(t.start - first, t.end - first) }));
      if (batchBytes > 0 && group.length > 1) {
        const layers = q.addTensors(group.map((g) => g.t.name), group.map((g) => g.bytes));
        await emit(q.takeOutput());
        if (onProgress) {
          // Progress as if the tensors had gone one by one.
          const p = q.progress();
          let later = bytes;
          layers.forEach((layer, k) => {
            later -= size(group[k].t);
            onProgress({ ...p, done: p.done - layers.length + k + 1, name: group[k].t.name, bytesDone: p.bytesDone - later, layer });
          });
        }
      } else {
        for (const { t, bytes: b } of group) {
          signal?.throwIfAborted();
          const layer = q.addTensor(t.name, b);
          await emit(q.takeOutput());
          progressOne(t, layer);
        }
      }
      i = j;
    }
    signal?.throwIfAborted();
    const { parquet, report } = q.finish();
    await emit(parquet);
    return collected ? { report, parquet: concat(collected) } : { report };
  } finally {
    q.free();
  }
}
