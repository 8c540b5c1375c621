// Compiled (not run) by tests/js/types.test.mjs: the published TypeScript types must accept real usage.
import { quantizeModel, openQuantized, ModelQuantizer, quantizeStream, bytesSource, resolveConfig, type ModelReport, type QuantConfigInput } from '../../pkg/index.js';
import { createWorkerQuantizer } from '../../pkg/browser.js';
import { createHandler } from '../../pkg/http.js';
const cfg: QuantConfigInput = { profile: 'edge', groupSize: 64, scaleSearch: 'off', layerBitWidths: { 'a.*': 8 } };
const out = quantizeModel(new Uint8Array(8), cfg, { onProgress: (p) => p.done + p.total });
const r: ModelReport = out.report;
const f = openQuantized(out.parquet);
const x: Float32Array = f.dequantize('w');
const q = new ModelQuantizer(cfg);
const h = q.begin(new Uint8Array(8), 100);
h.tensors[0].start.toFixed();
quantizeStream(bytesSource(new Uint8Array(8)), cfg).then(({ report }) => report.compressionRatio);
resolveConfig({ bits: 4 }).bitWidth.toFixed();
createWorkerQuantizer().then((w) => w.info.reason);
createHandler({ maxBodyBytes: 1 });
console.log(r.snrDb, x.length);
