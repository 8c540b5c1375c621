// An arrowquant Parquet file read by byte range: the footer from its last bytes, then its body in
// segments of whole row groups. Opening reads every segment once (its pages and rows checked, the
// body's checksum compared at the end) and keeps the tensor list; dequantizing, exporting or
// converting reads the segments it needs again, so memory holds one segment at a time.
import { outputSink } from './bytes.js';
import { throwIfAborted } from './errors.js';

/** Open `source` as an arrowquant Parquet file; see `openQuantizedSource` in api.js. */
export async function openQuantizedSourceWith(lib, source, { onProgress, signal } = {}) {
  const last = (n) => source.read(source.size - Math.min(n, source.size), source.size);
  const needs = lib.parquetTailNeeds(await last(8), source.size);
  const index = lib.openQuantizedIndex(await last(needs), source.size);
  const segments = index.segments();
  const readSegment = (i) => source.read(segments[i].start, segments[i].end);
  try {
    for (let i = 0; i < segments.length; i++) {
      throwIfAborted(signal);
      index.scan(i, await readSegment(i));
      onProgress?.({ done: i + 1, total: segments.length, bytesDone: segments[i].end, bytesTotal: source.size });
    }
    index.finishScan();
  } catch (e) {
    index.free();
    throw e;
  }
  /** Every segment through `convert(i, bytes)` → output bytes. */
  async function eachSegment(convert, emit, { onProgress, signal }) {
    for (let i = 0; i < segments.length; i++) {
      throwIfAborted(signal);
      await emit(convert(i, await readSegment(i)));
      onProgress?.({ done: i + 1, total: segments.length, bytesDone: segments[i].end, bytesTotal: source.size });
    }
    throwIfAborted(signal);
  }
  return {
    metadata: () => index.metadata(),
    tensors: () => index.tensors(),
    async dequantize(name, { equalized = false } = {}) {
      const i = index.segmentOf(name);
      return index.dequantize(name, i, await readSegment(i), equalized === true);
    },
    async toSafetensors(dtype = 'f32', { onChunk, onProgress, signal } = {}) {
      throwIfAborted(signal);
      const out = outputSink(onChunk);
      await out.emit(index.exportHeader(dtype));
      await eachSegment((i, bytes) => index.exportSegment(i, bytes, dtype), out.emit, { onProgress, signal });
      return out.result();
    },
    async toGguf({ onChunk, onProgress, signal } = {}) {
      throwIfAborted(signal);
      const out = outputSink(onChunk);
      const writer = index.ggufPlan();
      try {
        await out.emit(writer.header());
        await eachSegment((i, bytes) => writer.segment(index, i, bytes), out.emit, { onProgress, signal });
      } finally {
        writer.free();
      }
      return out.result();
    },
    free() {
      index.free();
    },
  };
}
