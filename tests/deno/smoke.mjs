// Runs under Deno (spawned by tests/js/deno.test.mjs): the package's deno entry, the real wasm.
import { buildInfo, openQuantized, quantizeModel, quantizeStream, bytesSource } from '../../pkg/deno.js';

const bytes = await Deno.readFile(new URL('../../samples/rivagan_f32.safetensors', import.meta.url));
const { parquet, report } = quantizeModel(bytes, { profile: 'edge' });
const file = openQuantized(parquet);
const streamed = await quantizeStream(bytesSource(bytes), { profile: 'edge' });
let codeError = null;
try {
  quantizeModel(bytes.subarray(0, 100), {});
} catch (e) {
  codeError = e.code;
}
console.log(JSON.stringify({
  deno: Deno.version.deno,
  simd: buildInfo().simd,
  layers: report.layers.length,
  tensors: file.tensors().length,
  bitWidth: report.bitWidth,
  sameAsStreamed: streamed.parquet.length === parquet.length && streamed.parquet.every((b, i) => b === parquet[i]),
  codeError,
}));
