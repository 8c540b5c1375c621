// Compiled (not run) by tests/js/types.test.mjs, which expects exactly the errors marked below:
// the types must refuse what the library refuses.
import { quantizeModel, quantizeGguf, bytesSource } from '../../pkg/index.js';
import { createWorkerQuantizer } from '../../pkg/browser.js';

quantizeModel(new Uint8Array(8), { bitWidth: 3 }); // @expect-error bitWidth
quantizeModel(new Uint8Array(8), { groupSize: 100 }); // @expect-error groupSize
quantizeModel(new Uint8Array(8), { layerBitWidths: { 'a.*': 5 } }); // @expect-error layerBitWidths
quantizeModel(new Uint8Array(8), { bits: 16 }); // @expect-error bits
quantizeGguf(bytesSource(new Uint8Array(8)), 'Q3_K'); // @expect-error ggmlType
createWorkerQuantizer({ wasmPaths: 42 }); // @expect-error wasmPaths
