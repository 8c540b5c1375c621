// A GGUF file read by byte range: the wasm says how many first bytes its header needs and checks
// it; each tensor is then read from its own range when asked for, so inspecting, dequantizing or
// converting a file larger than memory holds one tensor at a time.
import { outputSink } from './bytes.js';
import { aqError, throwIfAborted } from './errors.js';

/** First read of the header: most GGUF headers fit; a longer one is read again, doubled. */
const FIRST_READ = 1 << 20;

/** Open `source` as a GGUF file; see `openGgufSource` in api.js. */
export async function openGgufSourceWith(lib, source) {
  let n = Math.min(source.size, FIRST_READ);
  let prefix = await source.read(0, n);
  for (let need = lib.ggufHeaderNeeds(prefix, source.size); need > 0; need = lib.ggufHeaderNeeds(prefix, source.size)) {
    n = Math.min(source.size, Math.max(need, 2 * n));
    prefix = await source.read(0, n);
  }
  const index = lib.openGgufIndex(prefix, source.size);
  const tensors = index.tensors();
  const byName = new Map(tensors.map((t) => [t.name, t]));
  const bytesOf = async (name) => {
    const t = byName.get(name);
    if (!t) throw aqError('E_STATE', `no tensor named '${name}' in this file`);
    return source.read(t.start, t.end);
  };
  /** Every tensor in file order through `add(name, bytes)` → output bytes, with progress. */
  async function eachTensor(add, emit, { onProgress, signal }) {
    let done = 0;
    for (const t of tensors) {
      throwIfAborted(signal);
      await emit(add(t.name, await source.read(t.start, t.end)));
      onProgress?.({ done: ++done, total: tensors.length, name: t.name });
    }
    throwIfAborted(signal);
  }
  return {
    metadata: () => index.metadata(),
    tensors: () => tensors,
    async dequantize(name) {
      return index.dequantize(name, await bytesOf(name));
    },
    async toParquet({ onChunk, onProgress, signal } = {}) {
      throwIfAborted(signal);
      const out = outputSink(onChunk);
      const writer = index.parquetWriter();
      try {
        await eachTensor((name, bytes) => writer.add(name, bytes), out.emit, { onProgress, signal });
        await out.emit(writer.finish());
      } finally {
        writer.free();
      }
      return out.result();
    },
    async toSafetensors(dtype = 'f32', { onChunk, onProgress, signal } = {}) {
      throwIfAborted(signal);
      const out = outputSink(onChunk);
      await out.emit(index.safetensorsHeader(dtype));
      await eachTensor((name, bytes) => index.safetensorsTensor(name, bytes, dtype), out.emit, { onProgress, signal });
      return out.result();
    },
    free() {
      index.free();
    },
  };
}
