// A wasm-bindgen object used after `free()` (or after a method that consumed it) would throw
// "null pointer passed to rust"; the library's surfaces answer with a documented code instead.
import { aqError } from './errors.js';

/** Make every method of each class throw E_STATE, naming the class and method, once freed. */
export function guardFreed(...classes) {
  for (const cls of classes) {
    const proto = cls.prototype;
    for (const key of Object.getOwnPropertyNames(proto)) {
      const desc = Object.getOwnPropertyDescriptor(proto, key);
      if (key === 'constructor' || key === 'free') continue;
      const check = (self) => {
        if (!self.__wbg_ptr) throw aqError('E_STATE', `${cls.name}.${key} used after free()`);
      };
      if (typeof desc.value === 'function') {
        const method = desc.value;
        desc.value = function (...args) {
          check(this);
          return method.apply(this, args);
        };
      } else if (desc.get) {
        const get = desc.get;
        desc.get = function () {
          check(this);
          return get.call(this);
        };
      } else continue;
      Object.defineProperty(proto, key, desc);
    }
  }
}
