// Compiled (not run) by tests/js/types.test.mjs, which expects exactly the errors marked below:
// the types must refuse what the library refuses.
import { quantizeModel, quantizeGguf, bytesSource } from '../../pkg/index.js';
import { createWorkerQuantizer } from '../../pkg/browser.js';
// Each entry declares only what it exports (resolved through package.json `exports`, Node conditions).
import { init as nodeInit } from 'arrowquant'; // @expect-error Node's entry has no init
import { fileSource as webFileSource } from 'arrowquant/web'; // @expect-error the web entry has no fileSource
import { threadsSeen, ModelQuantizer } from 'arrowquant/web';
import { fileSource as denoFileSource } from 'arrowquant/deno'; // @expect-error Deno's entry has no fileSource

quantizeModel(new Uint8Array(8), { bitWidth: 3 }); // @expect-error bitWidth
quantizeModel(new Uint8Array(8), { groupSize: 100 }); // @expect-error groupSize
quantizeModel(new Uint8Array(8), { layerBitWidths: { 'a.*': 5 } }); // @expect-error layerBitWidths
quantizeModel(new Uint8Array(8), { bits: 16 }); // @expect-error bits
quantizeGguf(bytesSource(new Uint8Array(8)), 'Q3_K'); // @expect-error ggmlType
createWorkerQuantizer({ wasmPaths: 42 }); // @expect-error wasmPaths
threadsSeen(); // @expect-error the glue's internals are not exported
new ModelQuantizer().free();
