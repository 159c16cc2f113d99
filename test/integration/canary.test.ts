/**
 * Canary migration by scope (docs/DESIGN.md "Scope"), three rehome processes on one pair under
 * the counter workload: migrate one prefix, widen twice, narrow once (keys come back), then the
 * full migration to drained. At every step no key is in both servers and the new server holds
 * only keys of the scope (or, while they come back, of the scope before); at the end no
 * acknowledged INCR is lost.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { noKeyInBoth, useAdminProxies } from '../helpers/admin.js';
import { dataKeys, newHoldsOnly, phaseCli, waitAll } from '../helpers/canary.js';
import { usePair } from '../helpers/fixture.js';
import { keysByDb } from '../helpers/invariant.js';
import { runCli } from '../helpers/proxy.js';
import { encodeCommand } from '../helpers/resp.js';
import { errorOf, waitFor } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

describe('canary migration by scope', () => {
  it('migrates one prefix, widens twice, narrows once, then migrates all; nothing lost, no key out of scope on the new server', async () => {
    const old = ctx.source.client();
    const N = 400;
    const bases = {
      a: await seedCounters(old, { counters: N, prefix: 'a:', seed: 1 }),
      b: await seedCounters(old, { counters: N, prefix: 'b:', seed: 2 }),
      c: await seedCounters(old, { counters: N, prefix: 'c:', seed: 3 }),
    };
    const aps = await Promise.all([0, 1, 2].map(() => startAdminProxy(ctx, ['--phase', 'hold'])));
    const urls = aps.map((a) => a.proxy.url);
    const ws = (['a', 'b', 'c'] as const).map((p, i) =>
      startCounterWorkload({ urls, clients: 3, counters: N, prefix: `${p}:`, seed: 10 + i, bases: bases[p] }));
    const port = ctx.target.port;
    // Every prefix's clients under way before the first switch.
    await waitFor(() => ws.every((w) => w.ackedSoFar() > 20) || null, 'the workloads under way', 30_000, 20);

    // 1. One prefix.
    let sw = await phaseCli(aps[0]!, 'migrate', '--scope', 'a:*');
    expect(sw).toMatchObject({ from: 'hold', to: 'migrate', scope: 'a:*', returning: [] });
    let st = await waitAll(aps, 'scope a:* drained', (s) => s.scope?.scope === 'a:*' && s.scope.drained === true);
    expect(st[0]!.phase).toBe('migrate');
    expect(st[0]!.scope.summary).toMatch(/^scope a:\* drained; \d+ keys outside the scope still on the old server/);
    expect(st[0]!.drained_at).toBeNull();
    await newHoldsOnly(port, ['a:']);
    expect((await dataKeys(ctx.source.port)).filter((k) => k.startsWith('a:'))).toEqual([]);
    await noKeyInBoth(ctx, aps);

    // Keys on both sides of the scope are refused, naming both and the scope.
    const c = aps[1]!.proxy.client();
    const err = await errorOf(c.mget('a:1', 'b:1'));
    expect(err).toMatch(/^CROSSSCOPE .*'a:1' is in scope a:\*, 'b:1' is not/);
    expect(await c.get('b:1')).not.toBeNull(); // served by the old server
    await c.set('b:new', 'x');
    expect(await old.get('b:new')).toBe('x');
    await c.del('b:new');

    // verify, status and /metrics per scope.
    let v = await runCli(['verify', '--source', ctx.source.url, '--target', ctx.target.url, '--scope', 'a:*']);
    expect(v.code, v.stderr + v.stdout).toBe(0);
    expect(v.stdout).toMatch(/^scope a:\* drained: no key of it on the source .*; \d+ keys outside the scope still on the old server/);
    v = await runCli(['verify', '--source', ctx.source.url, '--target', ctx.target.url]);
    expect(v.code).toBe(1); // the whole dataset is not migrated
    const text = await runCli(['status', '--admin', aps[2]!.admin]);
    expect(text.stdout).toMatch(/^scope\s+scope a:\* drained; \d+ keys outside the scope still on the old server/m);
    const metrics = await (await fetch(`http://${aps[1]!.admin}/metrics`)).text();
    expect(metrics).toMatch(/^rehome_scope_commands_total\{side="out"\} [1-9]/m);
    expect(metrics).toMatch(/^rehome_scope_commands_total\{side="cross"\} [1-9]/m);
    expect(metrics).toMatch(/^rehome_scope_drained 1$/m);
    expect(metrics).toMatch(/^rehome_drained 0$/m);

    // 2. Widen: b:* joins.
    sw = await phaseCli(aps[1]!, 'migrate', '--scope', 'a:*', '--scope', 'b:*');
    expect(sw).toMatchObject({ scope: 'a:*, b:*', returning: [] });
    await waitAll(aps, 'scope a:*, b:* drained', (s) => s.scope?.scope === 'a:*, b:*' && s.scope.drained === true);
    await newHoldsOnly(port, ['a:', 'b:']);
    await noKeyInBoth(ctx, aps);

    // 3. Widen again: c:* joins.
    await phaseCli(aps[2]!, 'migrate', '--scope', 'a:*', '--scope', 'b:*', '--scope', 'c:*');
    await waitAll(aps, 'scope a:*, b:*, c:* drained', (s) => s.scope?.scope === 'a:*, b:*, c:*' && s.scope.drained === true);
    await noKeyInBoth(ctx, aps);

    // 4. Narrow back to a:*: b: and c: keys come home to the old server.
    sw = await phaseCli(aps[0]!, 'migrate', '--scope', 'a:*');
    expect(sw).toMatchObject({ scope: 'a:*', returning: ['a:*, b:*, c:*'] });
    await waitAll(aps, 'keys that left the scope back home', (s) => s.scope?.scope === 'a:*' && s.scope.returning.length === 0);
    await newHoldsOnly(port, ['a:']);
    expect((await dataKeys(ctx.source.port)).filter((k) => k.startsWith('b:')).length).toBe(N);
    await noKeyInBoth(ctx, aps);

    // 5. The full migration: drained only now.
    sw = await phaseCli(aps[1]!, 'migrate');
    expect(sw).toMatchObject({ scope: 'everything' });
    await waitAll(aps, 'drained', (s) => s.phase === 'drained');
    // Traffic in the drained phase too, before the tallies.
    const ackedAtDrain = ws.map((w) => w.ackedSoFar());
    await waitFor(() => ws.every((w, i) => w.ackedSoFar() > ackedAtDrain[i]! + 20) || null, 'the workloads served once drained', 30_000, 20);
    const results = await Promise.all(ws.map((w) => w.stop()));
    const neu: Redis = ctx.target.client();
    for (const r of results) {
      expect(r.totals.acked).toBeGreaterThan(50);
      const summary = await checkCounters(r, async (k) => Number(await neu.get(k)));
      expect(summary.acked).toBe(r.totals.acked);
    }
    expect(await dataKeys(ctx.source.port)).toEqual([]);
    await noKeyInBoth(ctx, aps);
  }, 180_000);

  it('with the proxy-side move (dump): the sweep claims only the scope, narrowing brings keys back', async () => {
    const old = ctx.source.client();
    for (const p of ['s:', 'o:']) {
      const m = old.multi();
      for (let i = 0; i < 300; i++) m.set(`${p}${i}`, `${p}v${i}`);
      await m.exec();
    }
    const aps = await Promise.all([0, 1].map(() => startAdminProxy(ctx, ['--phase', 'hold', '--move-method', 'dump'])));
    await phaseCli(aps[0]!, 'migrate', '--scope', 's:*', '--scope', 'o:[0-4]*');
    await waitAll(aps, 'scope drained', (s) => s.scope?.drained === true);
    // o:0.. o:49 and o:0..o:4 prefixes: o:0-o:4 and o:00-o:49 and o:000-o:299 starting 0-4.
    const inO = Array.from({ length: 300 }, (_, i) => `o:${i}`).filter((k) => /^o:[0-4]/.test(k));
    expect((await dataKeys(ctx.target.port)).filter((k) => k.startsWith('o:')).sort()).toEqual(inO.sort());
    await phaseCli(aps[1]!, 'migrate', '--scope', 's:*');
    await waitAll(aps, 'o: keys home', (s) => s.scope?.returning?.length === 0);
    await newHoldsOnly(ctx.target.port, ['s:']);
    const c = aps[0]!.proxy.client();
    expect(await c.get('o:42')).toBe('o:v42');
    expect(await c.get('s:42')).toBe('s:v42');
    await noKeyInBoth(ctx, aps);
    // In again: a key that crossed twice crosses a third time whole (no stale publish-once marker
    // may make its move delete it).
    await phaseCli(aps[1]!, 'migrate', '--scope', 's:*', '--scope', 'o:[0-4]*');
    await waitAll(aps, 'scope drained again', (s) => s.scope?.scope === 'o:[0-4]*, s:*' && s.scope.drained === true);
    const neu = ctx.target.client();
    for (const k of inO) expect(await neu.get(k), k).toBe(`o:v${k.slice(2)}`);
    await noKeyInBoth(ctx, aps);
  }, 120_000);

  it('a scope of one db: only its keys move; MOVE across the scope is refused; its drained comes although other dbs hold keys', async () => {
    const old = ctx.source.client();
    await seedCounters(old, { counters: 300, prefix: 'x:', seed: 5, db: 0 });
    await seedCounters(old, { counters: 300, prefix: 'x:', seed: 6, db: 1 });
    const aps = [await startAdminProxy(ctx, ['--phase', 'hold'])];
    await phaseCli(aps[0]!, 'migrate', '--scope-db', '1');
    // (The count of keys left on the old server follows within a second.)
    await waitAll(aps, 'db 1 drained', (s) => /^scope \* in db 1 drained; 300 keys outside the scope still on the old server/.test(s.scope?.summary ?? ''));
    const m = await keysByDb(ctx.target.port, [0, 1]);
    expect(m.get(0) ?? []).toEqual([]);
    expect((m.get(1) ?? []).filter((k) => k.startsWith('x:')).length).toBe(300);
    const c = aps[0]!.proxy.client();
    expect(await errorOf(c.move('x:1', 1))).toMatch(/^CROSSSCOPE .*'x:1' is in scope \* in db 1, 'x:1' is not/);
    expect(await c.incr('x:2')).toBeGreaterThan(1000); // db 0: the old server
    // A transaction runs on the new server: a key out of scope inside it is refused, EXEC aborts.
    const tx = await c.multi().incr('x:3').exec().catch((e: Error) => e);
    expect(String(tx)).toMatch(/EXECABORT/);
    const raw = await aps[0]!.proxy.raw();
    raw.write(encodeCommand(['MULTI']));
    raw.write(encodeCommand(['INCR', 'x:3']));
    raw.write(encodeCommand(['EXEC']));
    const replies = (await raw.readReplies(3, 10_000)).map((b) => b.toString('latin1'));
    expect(replies[1]).toMatch(/^-CROSSSCOPE rehome: 'INCR' inside MULTI or WATCH names 'x:3', outside the migration's scope \* in db 1/);
    expect(replies[2]).toMatch(/^-EXECABORT/);
    raw.close();
    // Client-side caching: reads of keys out of scope would never be invalidated; refused.
    const t = await aps[0]!.proxy.raw();
    t.write(encodeCommand(['HELLO', '3']));
    t.write(encodeCommand(['CLIENT', 'TRACKING', 'ON']));
    t.write(encodeCommand(['GET', 'x:4']));
    const tr = (await t.readReplies(3, 10_000)).map((b) => b.toString('latin1'));
    expect(tr[1]).toBe('+OK\r\n');
    expect(tr[2]).toMatch(/^-CROSSSCOPE rehome: 'x:4' is outside the migration's scope \* in db 1, and client-side caching/);
    t.close();
    await c.select(1);
    expect(await c.incr('x:2')).toBeGreaterThan(1000); // db 1: the new server
    await noKeyInBoth(ctx, aps);
  }, 60_000);

  it('a scoped rollback of 10,000 keys under load finishes, and no acknowledged write is lost', async () => {
    const old = ctx.source.client();
    const N = 10_000;
    const bases = await seedCounters(old, { counters: N, prefix: 'r:', seed: 21 });
    const keep = await seedCounters(old, { counters: 200, prefix: 'keep:', seed: 22 });
    const aps = await Promise.all([0, 1].map(() => startAdminProxy(ctx, ['--phase', 'hold'])));
    const urls = aps.map((a) => a.proxy.url);
    await phaseCli(aps[0]!, 'migrate', '--scope', 'r:*', '--scope', 'keep:*');
    await waitAll(aps, 'scope r:*, keep:* drained', (s) => s.scope?.drained === true, 60_000);
    expect((await dataKeys(ctx.target.port)).length).toBe(N + 200);

    const w = startCounterWorkload({ urls, clients: 6, counters: N, prefix: 'r:', seed: 23, bases });
    const wk = startCounterWorkload({ urls, clients: 2, counters: 200, prefix: 'keep:', seed: 24, bases: keep });
    // Both workloads under way before the switch.
    await waitFor(() => (w.ackedSoFar() > 20 && wk.ackedSoFar() > 5) || null, 'the workloads under way', 30_000, 20);
    const t0 = Date.now();
    const sw = await phaseCli(aps[1]!, 'migrate', '--scope', 'keep:*');
    expect(sw).toMatchObject({ scope: 'keep:*', returning: ['keep:*, r:*'] });
    await waitAll(aps, 'r:* back on the old server', (s) => s.scope?.returning?.length === 0, 120_000);
    const ms = Date.now() - t0;
    console.log(`scoped rollback of ${N} keys under load (8 clients): ${ms} ms from the switch to every key home`);
    const [res, resKeep] = await Promise.all([w.stop(), wk.stop()]);
    expect(res.totals.acked).toBeGreaterThan(100);
    await newHoldsOnly(ctx.target.port, ['keep:']);
    const neu = ctx.target.client();
    // Rolled back keys are read on the old server, the slice still in scope on the new one.
    const summary = await checkCounters(res, async (k) => Number(await old.get(k)));
    expect(summary.acked).toBe(res.totals.acked);
    const sk = await checkCounters(resKeep, async (k) => Number(await neu.get(k)));
    expect(sk.acked).toBe(resKeep.totals.acked);
    await noKeyInBoth(ctx, aps);
  }, 240_000);
});
