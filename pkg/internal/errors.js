// Errors as the library throws them: an Error with a documented `code` (README, "Errors"), and
// `field` / `tensor` / `detail` when known. Every entry builds its errors here.

/** An Error with `code` and any of `field`, `tensor`, `detail`. */
export function aqError(code, message, extra = {}) {
  return Object.assign(new Error(message), { code, ...extra });
}

/** The fields of an error that survive postMessage and JSON. */
export function errorFields(e) {
  const out = { message: String(e?.message ?? e), code: typeof e?.code === 'string' ? e.code : 'E_INTERNAL' };
  for (const k of ['field', 'tensor', 'detail']) if (e?.[k] !== undefined) out[k] = e[k];
  return out;
}

/** An error from its fields (the other side of `errorFields`). */
export const errorFrom = (fields) => Object.assign(new Error(fields.message), fields);

/** Throw `E_CANCELLED` (with the abort reason in the message) once `signal` is aborted. */
export function throwIfAborted(signal) {
  if (!signal?.aborted) return;
  const reason = signal.reason;
  const why = reason instanceof Error ? reason.message : reason === undefined ? 'aborted' : String(reason);
  throw aqError('E_CANCELLED', `cancelled: ${why}`);
}
