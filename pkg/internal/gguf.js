// GGUF output over a byte source: the wasm plans every tensor's type and offset from the header
// (so the GGUF header is written first), then each tensor is read, quantized and emitted in the
// source's order; memory holds one tensor at a time.
import { outputSink } from './bytes.js';
import { throwIfAborted } from './errors.js';
import { readHeaderBytes } from './sources.js';

/**
 * Quantize a safetensors source into a GGUF file of `ggmlType`; see `quantizeGguf` in api.js.
 * @returns `{ report, gguf? }` (`gguf` only without `onChunk`)
 */
export async function quantizeGgufWith(lib, source, ggmlType, { onChunk, onProgress, signal, calibration, layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder } = {}) {
  throwIfAborted(signal);
  const { emit, result } = outputSink(onChunk);
  // Only the fields given: the wasm validates them as config fields (E_CONFIG naming the field).
  const config = Object.fromEntries(Object.entries({ layerBitWidths, targetSizeMb, gptq, gptqDamp, gptqActOrder }).filter(([, v]) => v !== undefined));
  const q = new lib.GgufQuantizer(await readHeaderBytes(lib, source), source.size, ggmlType, calibration, Object.keys(config).length ? config : undefined);
  try {
    const bytesTotal = q.outputBytes;
    const total = q.tensorCount;
    const header = q.takeHeader();
    let bytesDone = header.length;
    await emit(header);
    let done = 0;
    for (let t = q.nextTensor(); t; t = q.nextTensor()) {
      throwIfAborted(signal);
      const { bytes, layer } = q.addTensor(t.name, await source.read(t.start, t.end));
      await emit(bytes);
      done++;
      bytesDone += bytes.length;
      onProgress?.({ done, total, name: t.name, layer, bytesDone, bytesTotal });
    }
    throwIfAborted(signal);
    const report = q.finish();
    const gguf = result();
    return gguf ? { report, gguf } : { report };
  } finally {
    q.free();
  }
}
