// Sources over the web platform's byte carriers: a WHATWG ReadableStream (or a fetch Response),
// read once front to back, and a URL read with HTTP range requests (a single file, or the shards
// of a sharded model through its index). They are `{ size, read(start, end) }` like every source;
// the wasm plans the reads (in file order) and decides what the bytes are.
import { aqError, throwIfAborted } from './errors.js';

/** Whether `x` is a ReadableStream or a Response (what `toSource` wraps). */
export const isStreamLike = (x) => typeof x?.getReader === 'function' || (typeof Response === 'function' && x instanceof Response);

/** The safetensors header is at most 100 MB; re-reads of the file's start are served from here. */
const PREFIX_LIMIT = 100_000_008;

/**
 * A source over a ReadableStream of bytes, or a fetch Response (its `body`; the size from
 * `Content-Length` when not given). A stream is read once, front to back: the quantizers read in
 * file order, so only the header (kept) and the bytes of the current read are held. A read behind
 * what was already consumed — a second pass, as `targetSizeMb` planning needs — is `E_STATE`.
 */
export function streamSource(input, size) {
  let stream = input;
  if (typeof Response === 'function' && input instanceof Response) {
    if (!input.ok) throw aqError('E_IO', `the response is ${input.status} ${input.statusText}`.trim());
    if (!input.body) throw aqError('E_IO', 'the response has no body');
    stream = input.body;
    size ??= contentLength(input.headers);
  }
  if (typeof stream?.getReader !== 'function') throw aqError('E_USAGE', 'streamSource needs a ReadableStream or a Response');
  if (!Number.isSafeInteger(size) || size < 0) {
    throw aqError('E_USAGE', 'streamSource needs the stream\'s size in bytes (no Content-Length): pass it as the second argument');
  }
  const reader = stream.getReader();
  let pending = []; // chunks from `base` on
  let pendingBytes = 0;
  let base = 0; // file offset of pending[0][0]
  let prefix = new Uint8Array(0); // the file's first bytes, for re-reads of the header
  let done = false;
  let chain = Promise.resolve();

  async function fill(end) {
    while (!done && base + pendingBytes < end) {
      const { value, done: finished } = await reader.read();
      if (finished) done = true;
      else if (value?.length) {
        const chunk = value instanceof Uint8Array ? value : new Uint8Array(value);
        pending.push(chunk);
        pendingBytes += chunk.length;
      }
    }
    if (base + pendingBytes < end) {
      throw aqError('E_SAFETENSORS', `the stream ended at byte ${base + pendingBytes}, before byte ${end} (the size given is ${size})`);
    }
  }

  /** Drop the bytes before `to` (file offset). */
  function discard(to) {
    while (pending.length && base + pending[0].length <= to) {
      base += pending[0].length;
      pendingBytes -= pending[0].length;
      pending.shift();
    }
    if (pending.length && base < to) {
      pending[0] = pending[0].subarray(to - base);
      pendingBytes -= to - base;
      base = to;
    }
    if (!pending.length) base = Math.max(base, to);
  }

  function copy(start, end) {
    const out = new Uint8Array(end - start);
    let at = base;
    for (const c of pending) {
      const a = Math.max(start, at);
      const b = Math.min(end, at + c.length);
      if (a < b) out.set(c.subarray(a - at, b - at), a - start);
      at += c.length;
      if (at >= end) break;
    }
    return out;
  }

  async function readOnce(start, end) {
    if (end > size) throw aqError('E_SAFETENSORS', `read past the end of the stream (byte ${end} of ${size})`);
    if (end <= prefix.length) return prefix.slice(start, end);
    if (start < base) {
      throw aqError('E_STATE', `a stream is read once, front to back: bytes ${start}–${end} were already passed (byte ${base} is next); a second pass (targetSizeMb) needs a random-access source`);
    }
    await fill(end);
    const out = copy(start, end);
    // The header is read twice from byte 0 (its length, then all of it): keep the file's start.
    if (start === 0 && end <= PREFIX_LIMIT) prefix = out;
    else discard(end);
    return out;
  }

  return {
    size,
    // Reads are served one at a time, in the order they are asked for.
    read(start, end) {
      const r = chain.then(() => readOnce(start, end));
      chain = r.catch(() => {});
      return r;
    },
    cancel: (reason) => reader.cancel(reason),
  };
}

function contentLength(headers) {
  const v = headers.get('content-length');
  return v !== null && /^\d+$/.test(v) ? Number(v) : undefined;
}

/**
 * A source over a URL, read with HTTP range requests (the header first, then the planned ranges);
 * the server must answer `Range` with 206. `options.fetch` replaces the global fetch, and
 * `options.headers` are sent with every request (an `Authorization` for a private model).
 */
export async function urlSource(url, { fetch: fetchFn = globalThis.fetch, headers = {}, signal } = {}) {
  const get = async (start, end) => {
    let res;
    try {
      res = await fetchFn(url, { headers: { ...headers, range: `bytes=${start}-${end - 1}` }, signal });
    } catch (e) {
      throwIfAborted(signal);
      throw aqError('E_IO', `fetching ${url} failed: ${e?.message ?? e}`);
    }
    if (res.status !== 206) {
      res.body?.cancel?.().catch(() => {});
      throw aqError('E_IO', res.ok
        ? `${url} does not answer range requests (status ${res.status}, expected 206)`
        : `${url}: ${res.status} ${res.statusText}`.trim());
    }
    return res;
  };
  // A range's body, read up to the bytes asked for: a server that sends more (or less) is an
  // error, never a buffer of whatever it chose to send.
  const body = async (res, start, end) => {
    const want = end - start;
    const out = new Uint8Array(want);
    let got = 0;
    const reader = res.body.getReader();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      if (got + value.length > want) {
        reader.cancel().catch(() => {});
        throw aqError('E_IO', `${url} sent more than the ${want} bytes of the range ${start}–${end}`);
      }
      out.set(value, got);
      got += value.length;
    }
    if (got !== want) throw aqError('E_IO', `${url} sent ${got} bytes for the range ${start}–${end}`);
    return out;
  };
  const first = await get(0, 8);
  const total = /\/(\d+)\s*$/.exec(first.headers.get('content-range') ?? '')?.[1];
  const size = Number(total);
  if (total === undefined || !Number.isSafeInteger(size)) {
    first.body?.cancel?.().catch(() => {});
    throw aqError('E_IO', `${url} gave no usable total size in Content-Range`);
  }
  const head = await body(first, 0, Math.min(8, size));
  return {
    size,
    async read(start, end) {
      if (end > size) throw aqError('E_SAFETENSORS', `read past the end of ${url} (byte ${end} of ${size})`);
      if (end <= head.length) return head.slice(start, end);
      return body(await get(start, end), start, end);
    },
  };
}

/** The download URL of a file in a Hugging Face repository (`resolve/<revision>/<file>`). */
export function huggingFaceUrl(repo, file, { revision = 'main', endpoint = 'https://huggingface.co' } = {}) {
  const path = file.split('/').map(encodeURIComponent).join('/');
  return `${endpoint}/${repo}/resolve/${encodeURIComponent(revision)}/${path}`;
}
