// Types of the Node entry (`arrowquant` under the `node` condition, `arrowquant/node`): the wasm is
// loaded on import, and files are read by byte range.
import type { ByteSource } from './api.js';
export * from './api.js';

/** A source over a file on disk, read by byte range (positions exact up to 2^53). */
export function fileSource(path: string): ByteSource & { close(): void };
