// Peak wasm memory of one run in a fresh process (wasm memory only grows, so its size after the
// run is the run's peak). Called by run.mjs:
//   node bench/memory.mjs <model | stream> <rows> <cols> <tensors> <config JSON>
// builds an F32 safetensors file of `tensors` tensors of [rows, cols] (uniform values), runs
// quantizeModel (bytes in, bytes out) or quantizeStream (tensor by tensor, chunks out), prints JSON.
//   node bench/memory.mjs <model | stream> file <path.safetensors> <config JSON>
// quantizes that file instead.
//   node bench/memory.mjs gguf <path.safetensors> <type>
// writes that file as GGUF through the streamed writer (the file read tensor by tensor).
import { readFileSync } from 'node:fs';
import { bytesSource, fileSource, quantizeGguf, quantizeModel, quantizeStream, wasmMemoryBytes } from '../pkg/node.js';

if (process.argv[2] === 'gguf') {
  const source = fileSource(process.argv[3]);
  let outBytes = 0;
  await quantizeGguf(source, process.argv[4], { onChunk: (b) => (outBytes += b.length) });
  console.log(JSON.stringify({ inputBytes: source.size, outputBytes: outBytes, wasmBytes: wasmMemoryBytes() }));
  process.exit(0);
}

function syntheticFile(rows, cols, tensors) {
  const [r, c, k] = [rows, cols, tensors].map(Number);
  const per = r * c * 4;
  const header = {};
  for (let i = 0; i < k; i++) header[`t${i}.weight`] = { dtype: 'F32', shape: [r, c], data_offsets: [i * per, (i + 1) * per] };
  const hj = new TextEncoder().encode(JSON.stringify(header));
  const file = new Uint8Array(8 + hj.length + k * per);
  new DataView(file.buffer).setBigUint64(0, BigInt(hj.length), true);
  file.set(hj, 8);
  const data = new DataView(file.buffer, 8 + hj.length);
  let s = 1;
  for (let i = 0; i < k * r * c; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data.setFloat32(i * 4, s / 4294967296 - 0.5, true);
  }
  return file;
}

const [mode, ...rest] = process.argv.slice(2);
const file = rest[0] === 'file' ? new Uint8Array(readFileSync(rest[1])) : syntheticFile(rest[0], rest[1], rest[2]);
const cfg = JSON.parse(rest[rest.length - 1]);
let outBytes = 0;
if (mode === 'model') outBytes = quantizeModel(file, cfg).parquet.length;
else await quantizeStream(bytesSource(file), cfg, { onChunk: (b) => (outBytes += b.length) });
console.log(JSON.stringify({ inputBytes: file.length, outputBytes: outBytes, wasmBytes: wasmMemoryBytes() }));
