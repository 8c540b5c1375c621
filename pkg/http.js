// The HTTP contract shared by the Cloudflare Worker and the Deno server (examples/): one
// implementation, so both runtimes answer the same way. Under Node and Deno, `arrowquant/http`
// loads the wasm itself (http-node.js, http-deno.js); in a Worker, initialise it first
// (`arrowquant/web` + initSync).
//
//   POST /quantize[?profile=edge&bits=4&group-size=64…]   body: a .safetensors file (streamed)
//        → 200 application/vnd.apache.parquet, streamed as tensors are quantized
//   POST /quantize?format=gguf[&gguf-type=Q4_K_M]  → 200 a GGUF file (docs/GGUF.md), streamed
//        → with `Accept: application/json`: 200 with the report only
//        → 4xx {code, message[, field, tensor]} for bad config, bad file, too large
//   GET  /         usage text
//   GET  /health   {version, formatVersion, simd, threads, kernels, wasmMemoryBytes}
import { buildInfo, configFromText, GgufQuantizer, ModelQuantizer, resolveSinglePassConfig, safetensorsHeaderSize, wasmMemoryBytes } from './api.js';
import { concat } from './internal/bytes.js';
import { aqError, errorFields } from './internal/errors.js';
import { afterCall, poisonedBy } from './internal/instance.js';

const STATUS = { E_CONFIG: 400, E_USAGE: 400, E_IO: 400, E_TOO_LARGE: 413, E_METHOD: 405, E_NOT_FOUND: 404 };

// Should a trap ever poison the instance (internal/instance.js), this handler stops serving from
// it: every later request (and /health, so an orchestrator restarts it) gets 503.

const USAGE = `arrowquant — quantize safetensors weights to 2/4/8-bit Parquet

POST /quantize?profile=edge|local|cloud&bits=2|4|8&group-size=32|64|128|256&…   (body: .safetensors)
     any config field as a query parameter, kebab-case or camelCase; or a JSON object in the
     X-Arrowquant-Config header. Accept: application/json returns the report instead of the file.
POST /quantize?format=gguf&gguf-type=Q8_0|Q6_K|Q5_K_M|Q5_K_S|Q5_1|Q5_0|Q4_K_M|Q4_K_S|Q4_1|Q4_0|Q3_K_L|Q3_K_M|Q3_K_S|Q2_K|F16|BF16|F32
     a GGUF file instead (docs/GGUF.md); of the config fields only layer-bit-widths and
     target-size-mb apply.
GET  /health
`;

function json(status, body, headers = {}) {
  return new Response(JSON.stringify(body, (k, v) => (v === Infinity ? 'Infinity' : v)), {
    status,
    headers: { 'content-type': 'application/json; charset=utf-8', ...headers },
  });
}

function errorResponse(e) {
  afterCall(e);
  const body = errorFields(e);
  if (!body.code.startsWith('E_')) body.code = 'E_INTERNAL';
  const status = STATUS[body.code] ?? (body.code === 'E_INTERNAL' ? 500 : 422);
  if (body.code === 'E_INTERNAL') body.message = 'internal error';
  return json(status, body);
}

/**
 * Config from the X-Arrowquant-Config header (a JSON object) and the query string (any field,
 * camelCase or kebab-case, as text; the library converts and validates it). A size plan is
 * refused: the body can be read only once.
 */
export function configFromRequest(request) {
  const url = new URL(request.url);
  let config = {};
  const header = request.headers.get('x-arrowquant-config');
  if (header) {
    try {
      config = JSON.parse(header);
    } catch {
      throw aqError('E_CONFIG', 'X-Arrowquant-Config is not valid JSON', { field: 'config' });
    }
    if (typeof config !== 'object' || config === null || Array.isArray(config)) {
      throw aqError('E_CONFIG', 'X-Arrowquant-Config must be a JSON object of config fields', { field: 'config' });
    }
  }
  // `name` is the output file name and `format`/`gguf-type` choose the container, not config fields.
  const own = new Set(['name', 'format', 'gguf-type', 'ggufType']);
  Object.assign(config, configFromText([...url.searchParams].filter(([k]) => !own.has(k))));
  resolveSinglePassConfig(config); // throws E_CONFIG naming the field
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
    let chunk;
    try {
      chunk = await this.reader.read();
    } catch (e) {
      throw aqError('E_IO', `the request body could not be read after ${this.position} bytes (upload aborted?): ${e?.message ?? e}`);
    }
    const { done, value } = chunk;
    if (done) return false;
    this.position += value.length;
    if (this.position > this.limit) throw aqError('E_TOO_LARGE', `request body exceeds the ${this.limit}-byte limit of this server`);
    this.pending = this.pending.length ? concat([this.pending, value]) : value;
    return true;
  }
  /** Exactly n bytes (a fresh array), or E_SAFETENSORS if the body ends first. */
  async read(n, what) {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      if (this.pending.length === 0 && !(await this.#more())) {
        throw aqError('E_SAFETENSORS', `request body ended after ${this.position} bytes, inside ${what} (truncated file?)`);
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
      if (this.pending.length === 0 && !(await this.#more())) throw aqError('E_SAFETENSORS', `request body ended inside ${what}`);
      const take = Math.min(n, this.pending.length);
      this.pending = this.pending.subarray(take);
      n -= take;
    }
  }
  /** Bytes handed out (read or skipped) so far: the body position of the next byte. */
  get consumed() {
    return this.position - this.pending.length;
  }
  cancel() {
    this.reader.cancel().catch(() => {});
  }
}

/**
 * Build the request handler. Options: `maxBodyBytes` (default 512 MiB), `rowGroupBytes`
 * (default 4 MiB: the output chunk size, and a bound on buffered output in wasm memory).
 */
export function createHandler({ maxBodyBytes = 512 * 1024 * 1024, rowGroupBytes = 4 * 1024 * 1024 } = {}) {
  return async function handle(request, ctx) {
    try {
      if (poisonedBy()) {
        return json(503, { code: 'E_INTERNAL', message: `this instance hit a fatal wasm error and must be restarted (${poisonedBy()})` });
      }
      const url = new URL(request.url);
      if (url.pathname === '/' && request.method === 'GET') return new Response(USAGE, { headers: { 'content-type': 'text/plain; charset=utf-8' } });
      if (url.pathname === '/health' && request.method === 'GET') return json(200, { ...buildInfo(), wasmMemoryBytes: wasmMemoryBytes() });
      if (url.pathname !== '/quantize') throw aqError('E_NOT_FOUND', `no route ${request.method} ${url.pathname}; try GET /`);
      if (request.method !== 'POST') throw aqError('E_METHOD', 'use POST /quantize with a .safetensors body');
      return await quantize(request, url, { maxBodyBytes, rowGroupBytes, waitUntil: ctx?.waitUntil?.bind(ctx) });
    } catch (e) {
      return errorResponse(e);
    }
  };
}

/**
 * The output's first chunks from `head`, made before the status line so that an error there is
 * still a JSON 4xx; on such an error the quantizer is freed and the upload cancelled.
 */
async function beforeStatus(q, body, head) {
  const first = [];
  try {
    for await (const chunk of head) first.push(chunk);
  } catch (e) {
    q.free();
    body.cancel();
    throw e;
  }
  return first;
}

/** The first `n` values of an async iterator, leaving it open for the rest. */
async function* take(it, n) {
  for (let i = 0; i < n; i++) {
    const { value, done } = await it.next();
    if (done) return;
    yield value;
  }
}

/** The output file's base name from `?name=` (safe characters only). */
const outputName = (url) => (url.searchParams.get('name') ?? 'model').replace(/[^\w.-]/g, '_');

/**
 * `?format=gguf[&gguf-type=Q4_K_M]`: the GGUF header first (every tensor's type and offset is
 * planned from the safetensors header), then each tensor's blocks as it is read and quantized.
 * Config fields do not apply (docs/GGUF.md). With `Accept: application/json`, the report only.
 */
async function quantizeGgufResponse(request, url, length, maxBodyBytes, waitUntil) {
  const ggmlType = url.searchParams.get('gguf-type') ?? url.searchParams.get('ggufType') ?? 'Q8_0';
  // The config fields a GGUF run takes (the wasm validates them); the rest describe Parquet.
  const typeFields = ['layer-bit-widths', 'layerBitWidths', 'target-size-mb', 'targetSizeMb'];
  const foreign = [...url.searchParams.keys()].filter((k) => !['name', 'format', 'gguf-type', 'ggufType', ...typeFields].includes(k));
  if (foreign.length || request.headers.get('x-arrowquant-config')) {
    throw aqError('E_CONFIG', `${foreign[0] ?? 'X-Arrowquant-Config'} applies to Parquet output; GGUF output takes gguf-type, layer-bit-widths and target-size-mb`, { field: foreign[0] ?? 'config' });
  }
  const given = [...url.searchParams.entries()].filter(([k]) => typeFields.includes(k));
  const config = given.length ? configFromText(given) : undefined;
  const body = new StreamReader(request.body, maxBodyBytes);
  let q;
  try {
    const prefix = await body.read(8, 'the header length');
    const rest = await body.read(safetensorsHeaderSize(prefix) - 8, 'the header');
    q = new GgufQuantizer(concat([prefix, rest]), length, ggmlType, undefined, config);
  } catch (e) {
    body.cancel();
    throw e;
  }
  async function* outputs() {
    yield q.takeHeader();
    for (let t = q.nextTensor(); t; t = q.nextTensor()) {
      await body.skip(t.start - body.consumed, `the gap before '${t.name}'`);
      yield q.addTensor(t.name, await body.read(t.end - t.start, `tensor '${t.name}'`)).bytes;
    }
  }
  if ((request.headers.get('accept') ?? '').includes('application/json')) {
    try {
      for await (const _ of outputs()) void _;
      return json(200, q.finish());
    } finally {
      q.free();
      body.cancel();
    }
  }
  // The header and the first tensor before the status line, so early errors are still JSON.
  const it = outputs();
  const first = await beforeStatus(q, body, take(it, 2));
  const name = outputName(url);
  async function* rest() {
    yield* first;
    yield* it;
    q.finish();
  }
  return streamedResponse(rest(), {
    body,
    done: () => q.free(),
    waitUntil,
    headers: {
      'content-type': 'application/octet-stream',
      // The size is known from the header; a Content-Length on a streamed body is not honoured
      // alike by every runtime (workerd wants a FixedLengthStream), so it is sent as its own header.
      'x-arrowquant-output-bytes': String(q.outputBytes),
      'content-disposition': `attachment; filename="${name}-${ggmlType.toUpperCase()}.gguf"`,
    },
  });
}

/**
 * A 200 whose body is `chunks` (an async iterable of byte arrays), written into a TransformStream
 * by a pump (the pattern Workers document for streamed responses); `await writer.write` applies
 * the client's back-pressure to the quantizer. Past the status line an error can only end the
 * stream: the client sees a truncated body, which no Parquet or GGUF reader accepts. `done` runs
 * when the pump ends, either way.
 */
function streamedResponse(chunks, { body, done, waitUntil, headers }) {
  const { readable, writable } = new TransformStream();
  const writer = writable.getWriter();
  const pump = async () => {
    try {
      for await (const chunk of chunks) if (chunk.length) await writer.write(chunk);
      await writer.close();
    } catch (e) {
      afterCall(e);
      body.cancel();
      await writer.abort(e).catch(() => {});
    } finally {
      done();
    }
  };
  const running = pump();
  waitUntil?.(running);
  return new Response(readable, { status: 200, headers });
}

async function quantize(request, url, { maxBodyBytes, rowGroupBytes, waitUntil }) {
  const declared = request.headers.get('content-length');
  if (declared !== null && !/^\d{1,16}$/.test(declared.trim())) {
    throw aqError('E_USAGE', `Content-Length '${declared.slice(0, 40)}' is not a byte count`);
  }
  const length = declared === null ? undefined : Number(declared);
  if (length !== undefined && length > maxBodyBytes) {
    throw aqError('E_TOO_LARGE', `request body of ${length} bytes exceeds the ${maxBodyBytes}-byte limit of this server`);
  }
  if (!request.body) throw aqError('E_SAFETENSORS', 'empty request body; POST a .safetensors file');
  const format = (url.searchParams.get('format') ?? 'parquet').toLowerCase();
  if (format === 'gguf') return quantizeGgufResponse(request, url, length, maxBodyBytes, waitUntil);
  if (format !== 'parquet') throw aqError('E_CONFIG', `format '${format.slice(0, 40)}': expected 'parquet' or 'gguf'`, { field: 'format' });
  if (url.searchParams.has('gguf-type') || url.searchParams.has('ggufType')) {
    throw aqError('E_CONFIG', 'gguf-type applies to format=gguf', { field: 'ggufType' });
  }
  const config = configFromRequest(request);
  const body = new StreamReader(request.body, maxBodyBytes);
  const q = new ModelQuantizer(config);
  let plan;
  try {
    q.setRowGroupBytes(rowGroupBytes);
    const prefix = await body.read(8, 'the header length');
    const rest = await body.read(safetensorsHeaderSize(prefix) - 8, 'the header');
    q.begin(concat([prefix, rest]), length);
    plan = q.readPlan();
  } catch (e) {
    q.free();
    body.cancel();
    throw e;
  }
  // The planned ranges arrive in file order; gaps between them are skipped. Each unit's output
  // is handed on as soon as it is quantized.
  async function* outputs(groups) {
    for (const g of groups) {
      await body.skip(g.start - body.consumed, `the gap before '${g.tensors[0]}'`);
      const bytes = await body.read(g.end - g.start, `tensor '${g.tensors[0]}'`);
      for (const [start, end] of g.units) {
        q.addRange(start, bytes.subarray(start - g.start, end - g.start));
        yield q.takeOutput();
      }
    }
  }

  if ((request.headers.get('accept') ?? '').includes('application/json')) {
    try {
      for await (const _ of outputs(plan)) void _;
      const { report } = q.finish();
      return json(200, report);
    } finally {
      q.free();
      body.cancel();
    }
  }

  // Stream the Parquet file out as row groups close. Errors before the first byte still become
  // a JSON 4xx: the first group is quantized before the response starts.
  const first = await beforeStatus(q, body, plan.length ? outputs(plan.slice(0, 1)) : []);
  const name = outputName(url);
  async function* rest() {
    yield* first;
    yield* outputs(plan.slice(1));
    yield q.finish().parquet;
  }
  return streamedResponse(rest(), {
    body,
    done: () => q.free(),
    waitUntil,
    headers: {
      'content-type': 'application/vnd.apache.parquet',
      'content-disposition': `attachment; filename="${name}.aq.parquet"`,
      'x-arrowquant-tensors': String(plan.reduce((n, g) => n + g.tensors.length, 0)),
      'x-arrowquant-config': JSON.stringify(q.config),
    },
  });
}
