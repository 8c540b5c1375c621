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

/**
 * Consecutive tensors are read together up to this many bytes (and, with threads, quantized
 * together: the same figure as the Rust `BATCH_BYTES`).
 */
const READ_BYTES = 16 << 20;
/** The next group is read while the current one is quantized only up to this size. */
const READ_AHEAD_BYTES = 64 << 20;

const size = (t) => t.end - t.start;
const groupBytes = (g) => g[g.length - 1].end - g[0].start;

/** Tensors in runs that sit back to back in the file, each run at most `limit` bytes (or one tensor). */
function readGroups(tensors, limit) {
  const groups = [];
  for (let i = 0; i < tensors.length; ) {
    let j = i + 1;
    let bytes = size(tensors[i]);
    while (j < tensors.length && tensors[j].start === tensors[j - 1].end && bytes + size(tensors[j]) <= limit) {
      bytes += size(tensors[j]);
      j += 1;
    }
    groups.push(tensors.slice(i, j));
    i = j;
  }
  return groups;
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
    // Consecutive tensors that sit back to back in the file are read with one `read` of up to
    // READ_BYTES (a larger tensor alone): one Blob slice costs far less than many small ones. With
    // a thread pool such a group is also quantized together (`addTensors`), so many small tensors
    // keep every thread busy; without one each tensor goes alone. The next group's read is started
    // before the current group is quantized (when it is at most READ_AHEAD_BYTES), so a source
    // that reads off the calling thread (Blob, File, file handle) works while wasm runs. The file
    // is the same either way.
    const threaded = lib.buildInfo().threads;
    const groups = readGroups(header.tensors, READ_BYTES);
    const readGroup = (g) => {
      let p;
      try {
        p = Promise.resolve(source.read(g[0].start, g[g.length - 1].end));
      } catch (e) {
        // A source that throws at once fails this group when it is reached, not the one before.
        p = Promise.reject(e);
      }
      // A read-ahead that is never awaited (an error or abort came first) must not surface as an
      // unhandled rejection.
      p.catch(() => {});
      return p;
    };
    let ahead = groups.length > 0 ? readGroup(groups[0]) : null;
    for (let k = 0; k < groups.length; k++) {
      signal?.throwIfAborted();
      const group = groups[k];
      const data = await ahead;
      const next = groups[k + 1];
      ahead = next && groupBytes(next) <= READ_AHEAD_BYTES ? readGroup(next) : null;
      const first = group[0].start;
      const parts = group.map((t) => ({ t, bytes: data.subarray(t.start - first, t.end - first) }));
      if (threaded && parts.length > 1) {
        const layers = q.addTensors(parts.map((g) => g.t.name), parts.map((g) => g.bytes));
        await emit(q.takeOutput());
        if (onProgress) {
          // Progress as if the tensors had gone one by one.
          const p = q.progress();
          let later = groupBytes(group);
          layers.forEach((layer, i) => {
            later -= size(parts[i].t);
            onProgress({ ...p, done: p.done - layers.length + i + 1, name: parts[i].t.name, bytesDone: p.bytesDone - later, layer });
          });
        }
      } else {
        for (const { t, bytes: b } of parts) {
          signal?.throwIfAborted();
          const layer = q.addTensor(t.name, b);
          await emit(q.takeOutput());
          if (onProgress) onProgress({ ...q.progress(), name: t.name, layer });
        }
      }
      if (!ahead && next) ahead = readGroup(next);
    }
    signal?.throwIfAborted();
    const { parquet, report } = q.finish();
    await emit(parquet);
    return collected ? { report, parquet: concat(collected) } : { report };
  } finally {
    q.free();
  }
}
