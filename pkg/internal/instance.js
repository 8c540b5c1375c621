// A trap inside wasm (an allocation the 4 GiB address space cannot hold, a stack overflow, a bug)
// unwinds past Rust without restoring its stack pointer or releasing what it held: the instance
// may answer later calls with garbage or "memory access out of bounds". No trap is known to be
// reachable from any input, but should one happen, every later call on that instance throws
// E_INTERNAL saying so, instead of running on a damaged heap. The remedy is a new instance: a new
// Worker in the browser (the browser entry starts one itself), a restarted process or isolate.
import { aqError } from './errors.js';

let poisoned = null;

const isTrap = (e) => typeof WebAssembly !== 'undefined' && e instanceof WebAssembly.RuntimeError;

/** Why this instance can no longer be used (the trap's message), or null while it is healthy. */
export const poisonedBy = () => poisoned;

function unusable() {
  return aqError('E_INTERNAL', `this wasm instance hit a fatal error (${poisoned}) and can no longer be used; load a new one`, {
    detail: 'instance-poisoned',
  });
}

/** The error to throw for `e`: a trap poisons the instance and becomes E_INTERNAL. */
export function afterCall(e) {
  if (!isTrap(e)) return e;
  poisoned ??= String(e?.message ?? e);
  return unusable();
}

function call(fn, self, args) {
  if (poisoned) throw unusable();
  let out;
  try {
    out = fn.apply(self, args);
  } catch (e) {
    throw afterCall(e);
  }
  return out instanceof Promise ? out.catch((e) => Promise.reject(afterCall(e))) : out;
}

function guardFunction(fn) {
  return function (...args) {
    return call(fn, this, args);
  };
}

function guardClass(cls) {
  for (const target of [cls.prototype, cls]) {
    for (const key of Object.getOwnPropertyNames(target)) {
      if (['constructor', 'prototype', 'length', 'name'].includes(key)) continue;
      const desc = Object.getOwnPropertyDescriptor(target, key);
      if (key === 'free' && typeof desc.value === 'function') {
        // Freeing on a poisoned instance would enter it again; its memory is lost with it anyway.
        const free = desc.value;
        desc.value = function () {
          if (!poisoned) free.call(this);
        };
      } else if (typeof desc.value === 'function') desc.value = guardFunction(desc.value);
      else if (desc.get) desc.get = guardFunction(desc.get);
      else continue;
      Object.defineProperty(target, key, desc);
    }
  }
  return new Proxy(cls, {
    construct(target, args, newTarget) {
      return call(() => Reflect.construct(target, args, newTarget), undefined, []);
    },
  });
}

/**
 * The wasm-bindgen module's exports with every function, method, getter and constructor guarded:
 * a call on a poisoned instance throws E_INTERNAL before entering wasm.
 */
export function guardInstance(exports) {
  const out = {};
  for (const [key, value] of Object.entries(exports)) {
    if (typeof value !== 'function' || key === 'default' || key === 'initSync') out[key] = value;
    else if (/^[A-Z]/.test(key) && value.prototype) out[key] = guardClass(value);
    else out[key] = guardFunction(value);
  }
  return out;
}
