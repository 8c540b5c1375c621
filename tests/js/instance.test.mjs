// The poisoned-instance guard (pkg/internal/instance.js) on a stand-in for the wasm-bindgen module:
// a trap raised by one call poisons the instance; every later call, method, getter and constructor
// then throws E_INTERNAL without entering wasm, `free()` becomes a no-op, and the HTTP handler
// (which shares the guard's state) answers 503. No input is known to trap the real module, so the
// trap is thrown by the stand-in.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guardInstance, poisonedBy } from '../../pkg/internal/instance.js';

test('a trap poisons the instance; every later entry throws E_INTERNAL without entering wasm', async () => {
  let entered = 0;
  let freed = 0;
  class Thing {
    constructor() {
      entered++;
    }
    get size() {
      entered++;
      return 1;
    }
    work() {
      entered++;
      return 'ok';
    }
    free() {
      freed++;
    }
    static make() {
      entered++;
      return new Thing();
    }
  }
  let trap = false;
  const fake = {
    run: (x) => {
      entered++;
      if (trap) throw new WebAssembly.RuntimeError('unreachable executed');
      return x * 2;
    },
    later: async () => {
      entered++;
      return 'later';
    },
    Thing,
    initSync: () => 'raw',
  };
  const g = guardInstance(fake);
  assert.equal(g.run(2), 4);
  assert.equal(await g.later(), 'later');
  const t = new g.Thing();
  assert.ok(t instanceof g.Thing);
  assert.equal(t.work(), 'ok');
  assert.equal(t.size, 1);
  assert.ok(g.Thing.make() instanceof g.Thing);
  assert.equal(g.initSync, fake.initSync);
  // ordinary errors pass through and do not poison
  assert.throws(() => g.run(Symbol()), TypeError);
  assert.equal(poisonedBy(), null);

  trap = true;
  assert.throws(() => g.run(1), (e) => e.code === 'E_INTERNAL' && e.detail === 'instance-poisoned' && /unreachable executed/.test(e.message));
  assert.match(poisonedBy(), /unreachable executed/);
  const before = entered;
  for (const f of [() => g.run(1), () => t.work(), () => t.size, () => new g.Thing(), () => g.Thing.make()]) {
    assert.throws(f, (e) => e.code === 'E_INTERNAL' && e.detail === 'instance-poisoned');
  }
  assert.throws(() => g.later(), (e) => e.code === 'E_INTERNAL');
  assert.equal(entered, before, 'no call entered the poisoned instance');
  t.free();
  assert.equal(freed, 0, 'free() does not enter a poisoned instance');
});

test('the HTTP handler stops serving from a poisoned instance', async () => {
  // poisoned by the test above (the guard's state is per JS realm, like the instance it guards)
  await import('../../pkg/node.js');
  const { createHandler } = await import('../../pkg/http.js');
  const handler = createHandler();
  for (const path of ['/health', '/quantize']) {
    const res = await handler(new Request(`http://x${path}`, { method: path === '/health' ? 'GET' : 'POST', body: path === '/health' ? undefined : new Uint8Array(8) }));
    assert.equal(res.status, 503, path);
    assert.equal((await res.json()).code, 'E_INTERNAL');
  }
});
