import type { QuantConfigInput } from './wasm/arrowquant.js';
export interface HandlerOptions {
  /** Largest accepted request body (default 512 MiB); larger bodies get 413 E_TOO_LARGE. */
  maxBodyBytes?: number;
  /** Parquet row-group / output chunk size (default 4 MiB). */
  rowGroupBytes?: number;
}
/** The shared HTTP contract (POST /quantize, GET /, GET /health) as a fetch handler. */
/** Pass the runtime's context (`ctx` in Workers) so a streamed response outlives the handler. */
export function createHandler(options?: HandlerOptions): (request: Request, ctx?: { waitUntil(p: Promise<unknown>): void }) => Promise<Response>;
/** The config a request asks for (query parameters and X-Arrowquant-Config); throws E_CONFIG. */
export function configFromRequest(request: Request): QuantConfigInput;
