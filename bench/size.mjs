// .wasm size as shipped: raw, gzip -9 and brotli (quality 11), for every built module.
import { existsSync, readFileSync } from 'node:fs';
import { brotliCompressSync, gzipSync } from 'node:zlib';

const kib = (n) => `${(n / 1024).toFixed(0)} KiB`;
for (const path of process.argv.slice(2)) {
  if (!existsSync(path)) continue;
  const b = readFileSync(path);
  console.log(`${path}: raw ${kib(b.length)}, gzip -9 ${kib(gzipSync(b, { level: 9 }).length)}, brotli ${kib(brotliCompressSync(b).length)}`);
}
