/**
 * A canary with --workers 2 (docs/DESIGN.md "Scope"; src/workers.ts): two rehome proxies of two
 * worker processes each, under the counter workload: migrate one prefix, widen, narrow (keys come
 * back), then the full migration to drained. Every worker routes by the scope of the epoch; at
 * every step no key is in both servers and the new server holds only keys of the scope (or,
 * while they come back, of the scope before); no acknowledged INCR is lost.
 */
import { describe, expect, it } from 'vitest';
import { noKeyInBoth, useAdminProxies } from '../helpers/admin.js';
import { dataKeys, newHoldsOnly, phaseCli, waitAll } from '../helpers/canary.js';
import { usePair } from '../helpers/fixture.js';
import { connect } from '../helpers/invariant.js';
import { errorOf, sleep } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

describe('canary migration with --workers 2', () => {
  it('migrates a prefix, widens, narrows, then migrates all; nothing lost, no key out of scope on the new server', async () => {
    const old = connect(ctx.source);
    const N = 300;
    const bases = {
      a: await seedCounters(old, { counters: N, prefix: 'a:', seed: 31 }),
      b: await seedCounters(old, { counters: N, prefix: 'b:', seed: 32 }),
    };
    const aps = await Promise.all([0, 1].map(() => startAdminProxy(ctx, ['--phase', 'hold', '--workers', '2'])));
    const urls = aps.map((a) => a.proxy.url);
    // Several clients per proxy: the primary spreads them over both workers.
    const ws = (['a', 'b'] as const).map((p, i) =>
      startCounterWorkload({ urls, clients: 4, counters: N, prefix: `${p}:`, seed: 40 + i, bases: bases[p] }));
    const port = ctx.target.port;
    await sleep(300);

    await phaseCli(aps[0]!, 'migrate', '--scope', 'a:*');
    await waitAll(aps, 'scope a:* drained', (s) => s.scope?.scope === 'a:*' && s.scope.drained === true);
    await newHoldsOnly(port, ['a:']);
    await noKeyInBoth(ctx, aps);
    // Every worker routes by the scope: a cross-scope command is refused on each connection.
    const clients = Array.from({ length: 4 }, () => aps[1]!.proxy.client());
    for (const c of clients) expect(await errorOf(c.mget('a:1', 'b:1'))).toMatch(/^CROSSSCOPE /);
    for (const c of clients) c.disconnect();

    await phaseCli(aps[1]!, 'migrate', '--scope', 'a:*', '--scope', 'b:*');
    await waitAll(aps, 'scope a:*, b:* drained', (s) => s.scope?.scope === 'a:*, b:*' && s.scope.drained === true);
    await newHoldsOnly(port, ['a:', 'b:']);
    await noKeyInBoth(ctx, aps);

    const sw = await phaseCli(aps[0]!, 'migrate', '--scope', 'a:*');
    expect(sw).toMatchObject({ scope: 'a:*', returning: ['a:*, b:*'] });
    await waitAll(aps, 'b: keys back home', (s) => s.scope?.scope === 'a:*' && s.scope.returning.length === 0);
    await newHoldsOnly(port, ['a:']);
    expect((await dataKeys(ctx.source.port)).filter((k) => k.startsWith('b:')).length).toBe(N);
    await noKeyInBoth(ctx, aps);

    await phaseCli(aps[1]!, 'migrate');
    await waitAll(aps, 'drained', (s) => s.phase === 'drained');
    const results = await Promise.all(ws.map((w) => w.stop()));
    const neu = connect(ctx.target);
    for (const r of results) {
      expect(r.totals.acked).toBeGreaterThan(50);
      const summary = await checkCounters(r, async (k) => Number(await neu.get(k)));
      expect(summary.acked).toBe(r.totals.acked);
    }
    expect(await dataKeys(ctx.source.port)).toEqual([]);
    await noKeyInBoth(ctx, aps);
    old.disconnect();
    neu.disconnect();
  }, 180_000);
});
