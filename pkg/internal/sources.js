// Byte sources: `{ size, read(start, end) }`, where `read` returns (a promise of) a Uint8Array of
// exactly those bytes. What a file holds is decided by the wasm (header size, the shard map); this
// module only reads.
import { aqError } from './errors.js';

/** A source over bytes already in memory. */
export function bytesSource(bytes) {
  return { size: bytes.length, read: (start, end) => bytes.subarray(start, end) };
}

/** A Blob read failure as `E_IO`. */
export const readFailed = (name, message) => aqError('E_IO', `reading the file failed: ${name}: ${message}`);

/** A source over a Blob/File: reads byte ranges with `slice`, never the whole file. */
export function blobSource(blob) {
  return {
    size: blob.size,
    async read(start, end) {
      try {
        return new Uint8Array(await blob.slice(start, end).arrayBuffer());
      } catch (e) {
        throw readFailed(e?.name ?? 'Error', String(e?.message ?? e));
      }
    },
  };
}

/** The first bytes of a safetensors source holding its whole header (as `lib` measures it). */
export async function readHeaderBytes(lib, source) {
  const size = lib.safetensorsHeaderSize(await source.read(0, Math.min(8, source.size)));
  return source.read(0, Math.min(size, source.size));
}

/**
 * Several safetensors shards (+ the parsed `model.safetensors.index.json`, optional) as one source.
 * The wasm merges their headers into the header of a virtual file and says where each of its byte
 * ranges lives; reads are copied from the shards along that map.
 * @param shards `[{ name, size, read(start, end) }]`, one per shard, named by file name.
 */
export async function shardedSource(lib, shards, index) {
  const given = [];
  for (const s of shards) {
    if (s.size < 8) given.push({ name: s.name, size: s.size, header: new Uint8Array(0) });
    else given.push({ name: s.name, size: s.size, header: await readHeaderBytes(lib, s) });
  }
  const merged = lib.mergeShards(given, index);
  const { header, size, segments } = merged;
  async function read(start, end) {
    if (end > size) throw aqError('E_SAFETENSORS', `read past the end of the sharded model (byte ${end} of ${size})`);
    const out = new Uint8Array(end - start);
    if (start < header.length) out.set(header.subarray(start, Math.min(end, header.length)), 0);
    for (const g of segments) {
      const a = Math.max(start, g.start);
      const b = Math.min(end, g.end);
      if (a < b) out.set(await shards[g.shard].read(g.offset + a - g.start, g.offset + b - g.start), a - start);
    }
    return out;
  }
  return { size, read, shards: merged.shards };
}
