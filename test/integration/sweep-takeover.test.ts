/**
 * A client's touch that takes over a key of the sweeper's batch in flight (docs/DESIGN.md,
 * proxy-side moves: the caller's own claim is taken over at once). The touch's claim then shows
 * up in the sweeper's next step with the touch's token, while the key is still joined to the
 * batch until the step after releases it. Moving it in that step waited for the step itself:
 * the sweep stopped for good, and so did a SIGTERM. Here the touch's takeover is the claim
 * script run by the test with the proxy's owner, right after the sweeper claimed the key.
 */
import { describe, expect, it } from 'vitest';
import { CLAIM_SCRIPT } from '../../src/migration/move-scripts.js';
import { moveKeys } from '../../src/migration/move-keys.js';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';
import { startProxy } from '../helpers/proxy.js';
import { sleep, waitFor } from '../helpers/util.js';

describe('a touch takes over a key of the sweeper batch in flight', () => {
  const ctx = usePair({ autoProxy: false });

  it('the sweep goes on and drains; every key moves once; the proxy stops at once', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    const N = 400;
    const seed = s.pipeline();
    for (let i = 0; i < N; i++) seed.set(`k:${i}`, `v${i}`);
    await seed.exec();
    // Steps of 20 keys, a tenth of a second apart: room to step in between two steps. Every key
    // the sweeper claims is taken over at once, as a touch would; some of their claim keys land
    // where the next step's SCAN looks.
    const p = await startProxy({ source: ctx.source, target: ctx.target, sweep: true, args: ['--move-method', 'copy', '--sweep-rate', '200', '--progress', 'off'] });
    const taken = new Set<string>();
    let stop = false;
    const taker = (async () => {
      while (!stop) {
        for (const record of await s.keys('__rehome:r*')) {
          const key = /^__rehome:r\{(.*)\}$/.exec(record)?.[1];
          if (key === undefined || taken.has(key)) continue;
          const owner = await s.hget(record, 'o');
          if (owner === null) continue; // released meanwhile
          const n = moveKeys(Buffer.from(key));
          const [r] = (await s.eval(CLAIM_SCRIPT, 3, n.key, n.claim, n.record, owner, '10000', '-1')) as Array<[string]>;
          if (String(r![0]) === 'TAKEN') taken.add(key);
        }
        await sleep(2);
      }
    })();
    try {
      await waitFor(async () => (await s.dbsize()) === 0, 'the source to be drained', 30_000, 50);
    } finally {
      stop = true;
      await taker;
    }
    expect(taken.size).toBeGreaterThan(0);
    for (let i = 0; i < N; i++) expect(await t.get(`k:${i}`)).toBe(`v${i}`);
    await assertNoKeyInBoth(ctx.source, ctx.target);
    expect(await p.stop('SIGTERM', 10_000)).toEqual({ code: 0, signal: null });
    s.disconnect();
    t.disconnect();
  }, 60_000);
});
