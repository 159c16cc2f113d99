/**
 * The test suite's invariant check (test/helpers/invariant.ts): a key in both servers is named,
 * and keys moving while it looks (either way) are not reported as in both.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { assertNoKeyInBoth, keysInBoth } from '../helpers/invariant.js';
import { startPair, stopAll, type RedisServer } from '../helpers/redis.js';

let source: RedisServer;
let target: RedisServer;

beforeAll(async () => {
  ({ source, target } = await startPair());
});
afterAll(async () => {
  await stopAll(source, target);
});

/** MIGRATEs `keys` one by one from `from` to `to` until they are all moved. */
async function moveAll(from: RedisServer, to: RedisServer, keys: string[]): Promise<void> {
  const c = from.client();
  try {
    for (const k of keys) await c.migrate('127.0.0.1', to.port, k, 0, 5000);
  } finally {
    c.disconnect();
  }
}

describe('keysInBoth', () => {
  it('names a key held by both servers, in any db', async () => {
    for (const s of [source, target]) {
      const c = s.client(3);
      await c.set('twice', 'x');
      c.disconnect();
    }
    expect(await keysInBoth(source, target)).toEqual(['db3:twice']);
    await expect(assertNoKeyInBoth(source, target)).rejects.toThrow(/1 key\(s\) exist in both source and target: db3:twice/);
    await source.client(3).del('twice');
    expect(await keysInBoth(source, target)).toEqual([]);
  });

  it('keys moving old -> new, then back, while it looks are never reported', async () => {
    const keys = Array.from({ length: 3000 }, (_, i) => `m:${i}`);
    const s = source.client();
    const p = s.pipeline();
    for (const k of keys) p.set(k, 'v');
    await p.exec();
    s.disconnect();
    for (const [from, to] of [[source, target], [target, source]] as const) {
      const moving = moveAll(from, to, keys);
      let done = false;
      void moving.finally(() => (done = true));
      let looks = 0;
      while (!done) {
        expect(await keysInBoth(source, target, [0])).toEqual([]);
        looks++;
      }
      await moving;
      expect(looks).toBeGreaterThan(0);
    }
  });
});
