// Byte helpers shared by the entries.

/** The chunks back to back in one Uint8Array. */
export function concat(chunks) {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

/**
 * Where a run's output goes: `emit(chunk)` hands each non-empty chunk to `onChunk` (awaited), or,
 * without it, collects them for `result()` to return as one array (`undefined` with `onChunk`).
 */
export function outputSink(onChunk) {
  const collected = onChunk ? null : [];
  const emit = async (chunk) => {
    if (chunk.length === 0) return;
    if (collected) collected.push(chunk);
    else await onChunk(chunk);
  };
  return { emit, result: () => (collected ? concat(collected) : undefined) };
}
