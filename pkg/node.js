// Node entry: loads the wasm synchronously from the package folder.
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { initSync } from './wasm/arrowquant.js';

initSync({ module: readFileSync(new URL('./wasm/arrowquant_bg.wasm', import.meta.url)) });

export * from './api.js';

/** A source over a file on disk, read by byte range (positions are exact up to 2^53). */
export function fileSource(path) {
  const fd = openSync(path, 'r');
  const size = fstatSync(fd).size;
  return {
    size,
    read(start, end) {
      const buf = new Uint8Array(end - start);
      let got = 0;
      while (got < buf.length) {
        const n = readSync(fd, buf, got, buf.length - got, start + got);
        if (n === 0) throw Object.assign(new Error(`unexpected end of file at byte ${start + got} of ${path}`), { code: 'E_SAFETENSORS' });
        got += n;
      }
      return buf;
    },
    close() {
      closeSync(fd);
    },
  };
}
