/**
 * Faults under proxy-side moves (docs/DESIGN.md "Moves"): a process killed while it holds a claim,
 * a mover stopped (SIGSTOP) past its lease and then woken, two processes moving the same keys.
 * A big key (8 MB) with --big-key-mb 1 is copied in 16 chunks, which leaves a window to act in
 * while its claim is held.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { assertNoKeyInBoth, connect } from '../helpers/invariant.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { waitFor } from '../helpers/util.js';
import { checkCounters, seedCounters, startCounterWorkload } from '../helpers/workload.js';

const servers: RedisServer[] = [];
const proxies: ProxyHandle[] = [];
const clients: Redis[] = [];
afterEach(async () => {
  for (const p of proxies.splice(0)) {
    p.proc.kill('SIGCONT');
    await p.stop('SIGKILL').catch(() => {});
  }
  for (const c of clients.splice(0)) c.disconnect();
  await stopAll(...servers.splice(0));
});

const BIG = Buffer.alloc(8 * 1024 * 1024, 0);
for (let i = 0; i < BIG.length; i += 4096) BIG.writeUInt32LE(i, i);
const CLAIM = '__rehome:c{big}';
const LEASE_MS = 1_500;

async function pair(): Promise<{ source: RedisServer; target: RedisServer; s: Redis; t: Redis }> {
  const [source, target] = await Promise.all([startRedis(), startRedis()]);
  servers.push(source, target);
  const s = connect(source);
  const t = connect(target);
  clients.push(s, t);
  return { source, target, s, t };
}

async function proxy(source: RedisServer, target: RedisServer, sweep: boolean, more: string[] = []): Promise<ProxyHandle> {
  const p = await startProxy({
    source,
    target,
    sweep,
    args: ['--move-method', 'dump', '--big-key-mb', '1', '--move-lease-ms', String(LEASE_MS), '--progress', 'off', ...more],
    spawn: true, // killed and stopped (SIGKILL, SIGSTOP)
  });
  proxies.push(p);
  return p;
}

/** Starts a sweeping proxy on the big key and returns it once its claim is in the source. */
async function claimedBy(source: RedisServer, target: RedisServer, s: Redis): Promise<ProxyHandle> {
  await s.set('big', BIG);
  const a = await proxy(source, target, true);
  await waitFor(async () => (await s.exists(CLAIM)) === 1, 'the sweeper to claim the big key', 20_000, 1);
  return a;
}

describe('proxy-side moves under faults', () => {
  it('a process killed while it holds a claim: the next mover takes it over once the lease lapses', async () => {
    const { source, target, s, t } = await pair();
    const a = await claimedBy(source, target, s);
    a.proc.kill('SIGKILL');
    await a.exited;
    // The claim outlives its mover: the key is in neither place under its own name.
    expect(await s.exists(CLAIM)).toBe(1);
    expect(await s.exists('big')).toBe(0);
    const b = await proxy(source, target, false);
    const c = b.client({ commandTimeout: 30_000 });
    clients.push(c);
    // The gate treats the claim as the key: the GET waits for the lease, takes over, moves it.
    expect((await c.getBuffer('big'))?.equals(BIG)).toBe(true);
    expect(await s.dbsize()).toBe(0);
    expect((await t.getBuffer('big'))?.equals(BIG)).toBe(true);
    // The dead mover's staging key is never published and goes by its TTL.
    for (const k of await t.keys('__rehome:s*')) expect(await t.pttl(k)).toBeGreaterThan(0);
    await assertNoKeyInBoth(source, target);
  }, 60_000);

  it('a mover stopped past its lease and woken cannot publish: a key deleted meanwhile stays deleted', async () => {
    const { source, target, s, t } = await pair();
    const a = await claimedBy(source, target, s);
    a.proc.kill('SIGSTOP');
    const b = await proxy(source, target, false);
    const c = b.client({ commandTimeout: 30_000 });
    clients.push(c);
    expect((await c.getBuffer('big'))?.equals(BIG)).toBe(true); // taken over after the lease
    expect(await c.del('big')).toBe(1);
    a.proc.kill('SIGCONT');
    // A finishes its step: its publish is refused (the key's marker), its release finds the claim
    // gone (not its token).
    await waitFor(() => /big key db 0 'big'/.test(a.stdout + a.stderr), "the woken sweeper to finish its step on 'big'", 30_000, 50);
    expect(await t.exists('big')).toBe(0);
    expect(await c.exists('big')).toBe(0);
    expect(await s.dbsize()).toBe(0);
    await assertNoKeyInBoth(source, target);
  }, 60_000);

  it('two processes moving the same keys under the counter workload: nothing lost, nothing doubled', async () => {
    const { source, target, s, t } = await pair();
    const counters = 3_000;
    const bases = await seedCounters(s, { counters, seed: 21 });
    const [p1, p2] = await Promise.all([proxy(source, target, true, ['--sweep-rate', '2000']), proxy(source, target, true, ['--sweep-rate', '2000'])]);
    const w = startCounterWorkload({ urls: [p1!.url, p2!.url], clients: 6, counters, seed: 22, bases, hot: 20 });
    await waitFor(async () => (await s.dbsize()) === 0, 'the source to be drained', 60_000, 100);
    const res = await w.stop();
    expect(res.totals.acked).toBeGreaterThan(0);
    await checkCounters(res, async (k) => Number(await t.get(k)));
    await assertNoKeyInBoth(source, target);
  }, 90_000);
});
