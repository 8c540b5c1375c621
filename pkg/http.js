// The HTTP contract shared by the Cloudflare Worker and the Deno server (examples/): one
// implementation, so both runtimes answer the same way. Import it after the wasm is initialised
// by your entry (`arrowquant/web` + initSync in a Worker, `arrowquant/deno` in Deno).
//
//   POST /quantize[?profile=edge&bits=4&group-size=64…]   body: a .safetensors file (streamed)
//        → 200 application/vnd.apache.parquet, streamed as tensors are quantized
//        → with `Accept: application/json`: 200 with the report only
//        → 4xx {code, message[, field, tensor]} for bad config, bad file, too large
//   GET  /         usage text
//   GET  /health   {version, formatVersion, simd, threads, kernels, wasmMemoryBytes}
import { buildInfo, ModelQuantizer, resolveConfig, safetensorsHeaderSize, wasmMemoryBytes } from './api.js';
import { configField, configValue } from './config-text.js';

const STATUS = { E_CONFIG: 400, E_USAGE: 400, E_TOO_LARGE: 413, E_METHOD: 405, E_NOT_FOUND: 404 };

const USAGE = `arrowquant — quantize safetensors weights to 2/4/8-bit Parquet

POST /quantize?profile=edge|local|cloud&bits=2|4|8&group-size=32|64|128|256&…   (body: .safetensors)
     any config field as a query parameter, kebab-case or camelCase; or a JSON object in the
     X-Arrowquant-Config header. Accept: application/json returns the report instead of the file.
GET  /health
`;

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body, (k, v) => (v === Infinity ? 'Infinity' : v)), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

function errorResponse(e) {
  const code = typeof e?.code === 'string' && e.code.startsWith('E_') ? e.code : 'E_INTERNAL';
  const status = STATUS[code] ?? (code === 'E_INTERNAL' ? 500 : 422);
  const body = { code, message: code === 'E_INTERNAL' ? 'internal error' : String(e.message) };
  if (e?.field) body.field = e.field;
  if (e?.tensor) body.tensor = e.tensor;
  return json(status, body);
}

const httpError = (code, message) => Object.assign(new Error(message), { code });

/** Config from the query string (kebab-case or camelCase) and/or the X-Arrowquant-Config header. */
export function configFromRequest(request) {
  const url = new URL(request.url);
  const config = {};
  const header = request.headers.get('x-arrowquant-config');
  if (header) {
    try {
      Object.assign(config, JSON.parse(header));
    } catch {
      throw Object.assign(httpError('E_CONFIG', 'X-Arrowquant-Config is not valid JSON'), { field: 'config' });
    }
  }
  const defaults = resolveConfig({});
  for (const [rawKey, value] of url.searchParams) {
    if (rawKey === 'name') continue; // the output file name, not a config field
    const key = configField(rawKey);
    // A bare `?failFast` means true, as a flag would.
    config[key] = value === '' && typeof defaults[key] === 'boolean' ? true : configValue(key, value, defaults);
  }
  resolveConfig(config); // throws E_CONFIG naming the field
  return config;
}

/** Exact-length reads over a byte stream, holding at most one pending chunk. */
class StreamReader {
  constructor(stream, limit) {
    this.reader = stream.getReader();
    this.pending = new Uint8Array(0);
    this.position = 0;
    this.limit = limit;
  }
  async #more() {
    const { done, value } = await this.reader.read();
    if (done) return false;
    this.position += value.length;
    if (this.position > this.limit) throw httpError('E_TOO_LARGE', `request body exceeds the ${this.limit}-byte limit of this server`);
    this.pending = this.pending.length ? concat([this.pending, value]) : value;
    return true;
  }
  /** Exactly n bytes (a fresh array), or E_SAFETENSORS if the body ends first. */
  async read(n, what) {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.pending.length === 0 && !(await this.#more())) {
        throw httpError('E_SAFETENSORS', `request body ended after ${this.position} bytes, inside ${what} (truncated file?)`);
      }
      const take = Math.min(n - got, this.pending.length);
      out.set(this.pending.subarray(0, take), got);
      this.pending = this.pending.subarray(take);
      got += take;
    }
    return out;
  }
  async skip(n, what) {
    while (n > 0) {
      if (this.pending.length === 0 && !(await this.#more())) throw httpError('E_SAFETENSORS', `request body ended inside ${what}`);
      const take = Math.min(n, this.pending.length);
      this.pending = this.pending.subarray(take);
      n -= take;
    }
  }
  cancel() {
    this.reader.cancel().catch(() => {});
  }
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * Build the request handler. Options: `maxBodyBytes` (default 512 MiB), `rowGroupBytes`
 * (default 4 MiB: the output chunk size, and a bound on buffered output in wasm memory).
 */
export function createHandler({ maxBodyBytes = 512 * 1024 * 1024, rowGroupBytes = 4 * 1024 * 1024 } = {}) {
  return async function handle(request, ctx) {
    try {
      const url = new URL(request.url);
      if (url.pathname === '/' && request.method === 'GET') return new Response(USAGE, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
      if (url.pathname === '/health' && request.method === 'GET') return json(200, { ...buildInfo(), wasmMemoryBytes: wasmMemoryBytes() });
      if (url.pathname !== '/quantize') throw httpError('E_NOT_FOUND', `no route ${request.method} ${url.pathname}; try GET /`);
      if (request.method !== 'POST') throw httpError('E_METHOD', 'use POST /quantize with a .safetensors body');
      return await quantize(request, url, { maxBodyBytes, rowGroupBytes, waitUntil: ctx?.waitUntil?.bind(ctx) });
    } catch (e) {
      return errorResponse(e);
    }
  };
}

async function quantize(request, url, { maxBodyBytes, rowGroupBytes, waitUntil }) {
  const declared = request.headers.get('content-length');
  const length = declared === null ? undefined : Number(declared);
  if (length !== undefined && length > maxBodyBytes) {
    throw httpError('E_TOO_LARGE', `request body of ${length} bytes exceeds the ${maxBodyBytes}-byte limit of this server`);
  }
  if (!request.body) throw httpError('E_SAFETENSORS', 'empty request body; POST a .safetensors file');
  const config = configFromRequest(request);
  if (config.targetSizeMb != null) {
    // A size plan reads the model twice; a request body can be read only once.
    throw Object.assign(new Error('invalid config: targetSizeMb: not available over HTTP (a size plan reads the model twice, a request body streams once); use bitWidth/layerBitWidths here, or plan locally'), { code: 'E_CONFIG', field: 'targetSizeMb' });
  }
  const body = new StreamReader(request.body, maxBodyBytes);
  const q = new ModelQuantizer(config);
  let header;
  try {
    q.setRowGroupBytes(rowGroupBytes);
    const prefix = await body.read(8, 'the header length');
    const rest = await body.read(safetensorsHeaderSize(prefix) - 8, 'the header');
    header = q.begin(concat([prefix, rest]), length);
  } catch (e) {
    q.free();
    body.cancel();
    throw e;
  }
  // Tensors arrive in file order; gaps between them are skipped.
  let at = header.headerSize;
  const next = async (t) => {
    await body.skip(t.start - at, `the gap before '${t.name}'`);
    const bytes = await body.read(t.end - t.start, `tensor '${t.name}'`);
    at = t.end;
    q.addTensor(t.name, bytes);
  };

  if ((request.headers.get('accept') ?? '').includes('application/json')) {
    try {
      for (const t of header.tensors) {
        await next(t);
        q.takeOutput();
      }
      const { report } = q.finish();
      return json(200, report);
    } finally {
      q.free();
      body.cancel();
    }
  }

  // Stream the Parquet file out as row groups close. Errors before the first byte still become
  // a JSON 4xx: the first tensor is quantized before the response starts.
  const tensors = header.tensors.slice();
  let first;
  try {
    await next(tensors.shift());
    first = q.takeOutput();
  } catch (e) {
    q.free();
    body.cancel();
    throw e;
  }
  const name = (url.searchParams.get('name') ?? 'model').replace(/[^\w.-]/g, '_');
  // A TransformStream with a pump writing into it (the pattern Workers document for streamed
  // responses); `await writer.write` applies the client's back-pressure to the quantizer.
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const pump = async () => {
    try {
      if (first.length) await writer.write(first);
      for (const t of tensors) {
        await next(t);
        const chunk = q.takeOutput();
        if (chunk.length) await writer.write(chunk);
      }
      const { parquet } = q.finish();
      if (parquet.length) await writer.write(parquet);
      await writer.close();
    } catch (e) {
      // Past the status line an error can only end the stream: the client sees a truncated
      // body, which no Parquet reader accepts (the footer is missing).
      body.cancel();
      await writer.abort(e).catch(() => {});
    } finally {
      q.free();
    }
  };
  const done = pump();
  waitUntil?.(done);
  const stream = readable;
  return new Response(stream, {
    status: 200,
    headers: {
      'content-type': 'application/vnd.apache.parquet',
      'content-disposition': `attachment; filename="${name}.aq.parquet"`,
      'x-arrowquant-tensors': String(header.tensors.length),
      'x-arrowquant-config': JSON.stringify(q.config),
    },
  });
}
