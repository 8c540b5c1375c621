// Node entry: loads the wasm synchronously from the package folder.
import { closeSync, fstatSync, openSync, read, readFileSync } from 'node:fs';
import { aqError } from './internal/errors.js';
import { initSync } from './wasm/arrowquant.js';

initSync({ module: readFileSync(new URL('./wasm/arrowquant_bg.wasm', import.meta.url)) });

export * from './api.js';

/**
 * A source over a file on disk, read by byte range (positions are exact up to 2^53). Reads run on
 * libuv's thread pool, so the stream's read-ahead of the next tensors overlaps the quantizing.
 */
export function fileSource(path) {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  const readAt = (buf, offset, position) =>
    new Promise((resolve, reject) => read(fd, buf, offset, buf.length - offset, position, (err, n) => (err ? reject(err) : resolve(n))));
  return {
    size,
    async read(start, end) {
      const buf = new Uint8Array(end - start);
      let got = 0;
      while (got < buf.length) {
        const n = await readAt(buf, got, start + got);
        if (n === 0) throw aqError('E_SAFETENSORS', `unexpected end of file at byte ${start + got} of ${path}`);
        got += n;
      }
      return buf;
    },
    close() {
      closeSync(fd);
    },
  };
}
