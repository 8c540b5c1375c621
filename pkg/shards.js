// A sharded safetensors model (several files + an optional `model.safetensors.index.json`) seen as
// one safetensors file: a synthetic header lists every tensor with offsets into the shards' data
// sections laid end to end, and `read(start, end)` maps each range back to its shard. The
// quantizer streams it like any single file, one tensor at a time, so the shards are never
// concatenated in memory.

const fail = (message) => Object.assign(new Error(message), { code: 'E_SAFETENSORS' });

async function readHeader(shard) {
  if (shard.size < 8) throw fail(`shard '${shard.name}': ${shard.size} bytes, too short for a safetensors file`);
  const prefix = await shard.read(0, 8);
  const n = Number(new DataView(prefix.buffer, prefix.byteOffset, 8).getBigUint64(0, true));
  if (n > 100 * 1024 * 1024 || 8 + n > shard.size) throw fail(`shard '${shard.name}': header length ${n} does not fit its ${shard.size} bytes`);
  let json;
  try {
    json = JSON.parse(new TextDecoder().decode(await shard.read(8, 8 + n)));
  } catch (e) {
    throw fail(`shard '${shard.name}': header is not JSON (${e.message})`);
  }
  return { json, dataStart: 8 + n, dataLength: shard.size - 8 - n };
}

/**
 * @param shards `[{ name, size, read(start, end) }]` — one ByteSource per shard, named by file name.
 * @param index  the parsed `model.safetensors.index.json` (`{ weight_map: { tensor: file }, metadata? }`),
 *               optional: it fixes the shard order and is checked against what the shards hold.
 * @returns a ByteSource over the combined file, plus `shards` (name → tensor count).
 */
export async function shardedSource(shards, index) {
  if (!shards.length) throw fail('no shards given');
  const byName = new Map(shards.map((s) => [s.name, s]));
  let order = shards;
  if (index) {
    const map = index.weight_map;
    if (!map || typeof map !== 'object') throw fail('the index JSON has no weight_map object');
    const listed = [...new Set(Object.values(map))];
    const missing = listed.filter((f) => !byName.has(f));
    if (missing.length) throw fail(`the index lists shard(s) that were not given: ${missing.join(', ')}`);
    order = listed.map((f) => byName.get(f));
    const extra = shards.filter((s) => !listed.includes(s.name)).map((s) => s.name);
    if (extra.length) throw fail(`file(s) not in the index's weight_map: ${extra.join(', ')}`);
  }
  const header = {};
  const metadata = { ...(index?.metadata ?? {}) };
  const parts = [];
  let base = 0;
  const seen = new Map();
  for (const shard of order) {
    const { json, dataStart, dataLength } = await readHeader(shard);
    for (const [k, v] of Object.entries(json.__metadata__ ?? {})) if (!(k in metadata)) metadata[k] = v;
    let count = 0;
    for (const [name, t] of Object.entries(json)) {
      if (name === '__metadata__') continue;
      if (seen.has(name)) throw fail(`tensor '${name}' is in both '${seen.get(name)}' and '${shard.name}'`);
      if (index && index.weight_map[name] !== shard.name) {
        throw fail(`tensor '${name}' is in '${shard.name}' but the index says '${index.weight_map[name] ?? '(not listed)'}'`);
      }
      seen.set(name, shard.name);
      const [b, e] = t.data_offsets ?? [];
      header[name] = { dtype: t.dtype, shape: t.shape, data_offsets: [base + b, base + e] };
      count++;
    }
    parts.push({ shard, dataStart, dataLength, base, count });
    base += dataLength;
  }
  if (index) {
    const absent = Object.keys(index.weight_map).filter((n) => !seen.has(n));
    if (absent.length) throw fail(`the index lists ${absent.length} tensor(s) no shard holds, e.g. '${absent[0]}'`);
  }
  // Strings only in __metadata__ (the safetensors rule); the index's non-string values become JSON.
  const meta = Object.fromEntries(Object.entries(metadata).map(([k, v]) => [k, typeof v === 'string' ? v : JSON.stringify(v)]));
  let text = JSON.stringify(Object.keys(meta).length ? { __metadata__: meta, ...header } : header);
  text += ' '.repeat((8 - ((8 + new TextEncoder().encode(text).length) % 8)) % 8);
  const json = new TextEncoder().encode(text);
  const head = new Uint8Array(8 + json.length);
  new DataView(head.buffer).setBigUint64(0, BigInt(json.length), true);
  head.set(json, 8);
  const size = head.length + base;

  async function read(start, end) {
    const out = new Uint8Array(end - start);
    let at = start;
    while (at < end) {
      if (at < head.length) {
        const n = Math.min(end, head.length) - at;
        out.set(head.subarray(at, at + n), at - start);
        at += n;
        continue;
      }
      const v = at - head.length;
      const p = parts.find((x) => v >= x.base && v < x.base + x.dataLength);
      if (!p) throw fail(`read past the end of the sharded model (byte ${at} of ${size})`);
      const n = Math.min(end - at, p.base + p.dataLength - v);
      out.set(await p.shard.read(p.dataStart + v - p.base, p.dataStart + v - p.base + n), at - start);
      at += n;
    }
    return out;
  }
  return { size, read, shards: parts.map((p) => ({ name: p.shard.name, tensors: p.count })) };
}
