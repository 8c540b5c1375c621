// `npm pack` / `npm publish` run this first: the tarball must hold both wasm builds (the
// single-threaded SIMD build every entry loads, and the threaded build the browser Worker uses on
// cross-origin isolated pages), and the repository's README and licence texts.
import { copyFileSync, existsSync, statSync } from 'node:fs';

const here = (p) => new URL(p, import.meta.url);
const required = [
  ['wasm/arrowquant_bg.wasm', 'make build'],
  ['wasm/arrowquant.js', 'make build'],
  ['wasm-mt/arrowquant_bg.wasm', 'make build-threads'],
  ['wasm-mt/arrowquant.js', 'make build-threads'],
];
const missing = required.filter(([p]) => !existsSync(here(p)) || statSync(here(p)).size === 0);
if (missing.length) {
  console.error(`arrowquant prepack: missing ${missing.map(([p, how]) => `${p} (run \`${how}\` in the repository)`).join(', ')}`);
  process.exit(1);
}
for (const f of ['README.md', 'LICENSE-MIT', 'LICENSE-APACHE']) copyFileSync(here(`../${f}`), here(f));
