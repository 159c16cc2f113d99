/**
 * Moves between two servers of any engines/versions (issue 15): seeds the source (counters,
 * binary payloads, every data type with TTLs, edge cases), runs a sweeping proxy with the
 * counter workload through it while keys move, and checks what the fault suite checks:
 * acknowledged <= final <= acknowledged + unknown per counter, every value byte for byte, no key
 * in both, the source empty, and each TTL's absolute deadline to the millisecond.
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { assertNoKeyInBoth, connect } from './invariant.js';
import { startProxy, type ProxyHandle } from './proxy.js';
import type { RedisServer } from './redis.js';
import { waitFor } from './util.js';
import { checkCounters, checkPayloads, seedCounters, seedPayloads, startCounterWorkload, type PayloadSet } from './workload.js';

/** Every type rehome moves, edge cases included, as normalised readings. */
export type Reading = { type: string; value: unknown; deadline: number };

/** Keys of every type (and edge cases) with and without TTLs; returns their names. */
export async function seedTypes(c: Redis, strings = false): Promise<Buffer[]> {
  const keys: string[] = [];
  const p = c.pipeline();
  const at = Date.now() + 3_600_000;
  p.set('t:str', 'plain');
  p.set('t:str:ttl', 'expiring', 'PXAT', at + 123);
  p.set('{user1}:tagged', 'hash-tagged');
  p.set('a}b', 'closing brace, no tag');
  p.set('{}x', 'empty tag');
  p.set(Buffer.from([0xff, 0x00, 0x7b, 0x6b]), Buffer.from([0, 1, 2, 0xfe, 0xff]));
  keys.push('t:str', 't:str:ttl', '{user1}:tagged', 'a}b', '{}x');
  if (!strings) {
    p.rpush('t:list', 'a', 'b', 'c', 'a');
    p.hset('t:hash', 'f1', 'v1', 'f2', Buffer.from([0, 0xff]));
    p.pexpireat('t:hash', at + 7);
    p.sadd('t:set', 'x', 'y', 'z');
    p.sadd('t:intset', '1', '2', '3');
    p.zadd('t:zeq', 1, 'a', 1, 'b', 1, 'c');
    p.zadd('t:zset', 1.5, 'a', -2, 'b', 1e10, 'c');
    p.pexpireat('t:zset', at + 999);
    p.xadd('t:stream', '1-1', 'f', 'v1');
    p.xadd('t:stream', '2-1', 'f', 'v2', 'g', 'w');
    p.xgroup('CREATE', 't:stream', 'g1', '1-1');
    p.call('XGROUP', 'CREATE', 't:stream-empty', 'g0', '$', 'MKSTREAM');
    keys.push('t:list', 't:hash', 't:set', 't:intset', 't:zeq', 't:zset', 't:stream', 't:stream-empty');
  }
  await p.exec();
  return [...keys.map((k) => Buffer.from(k, 'latin1')), Buffer.from([0xff, 0x00, 0x7b, 0x6b])];
}

/** One key read in a form that compares across engines and versions. */
export async function readKey(c: Redis, k: Buffer): Promise<Reading | null> {
  const type = await c.type(k);
  if (type === 'none') return null;
  let value: unknown;
  const pairs = (flat: Buffer[]) => {
    const out: string[] = [];
    for (let i = 0; i < flat.length; i += 2) out.push(`${flat[i]!.toString('hex')}=${flat[i + 1]!.toString('hex')}`);
    return out;
  };
  if (type === 'string') value = (await c.getBuffer(k))?.toString('hex');
  else if (type === 'list') value = (await c.lrangeBuffer(k, 0, -1)).map((b) => b.toString('hex'));
  else if (type === 'hash') value = pairs((await c.callBuffer('HGETALL', k)) as Buffer[]).sort();
  else if (type === 'set') value = (await c.smembersBuffer(k)).map((b) => b.toString('hex')).sort();
  else if (type === 'zset') value = pairs(await c.zrangeBuffer(k, 0, -1, 'WITHSCORES'));
  else if (type === 'stream') {
    const groups = (await c.call('XINFO', 'GROUPS', k)) as unknown[][];
    value = {
      entries: await c.xrange(k, '-', '+'),
      groups: groups.map((g) => {
        const m = new Map<string, unknown>();
        for (let i = 0; i < g.length; i += 2) m.set(String(g[i]), g[i + 1]);
        return [m.get('name'), m.get('last-delivered-id')];
      }),
    };
  }
  const pttl = await c.pttl(k);
  return { type, value, deadline: pttl < 0 ? -1 : await deadlineOf(c, k) };
}

/** A key's absolute expiry in ms: PEXPIRETIME where the server has it (7.0+), else now + PTTL. */
async function deadlineOf(c: Redis, k: Buffer): Promise<number> {
  try {
    return Number(await c.call('PEXPIRETIME', k));
  } catch {
    return Date.now() + (await c.pttl(k));
  }
}

/** Whether two readings agree, deadlines within `tolMs`. */
function sameReading(a: Reading | null, b: Reading | null, tolMs: number): boolean {
  if (a === null || b === null) return a === b;
  if (a.type !== b.type || JSON.stringify(a.value) !== JSON.stringify(b.value)) return false;
  if (a.deadline < 0 || b.deadline < 0) return a.deadline === b.deadline;
  return Math.abs(a.deadline - b.deadline) <= tolMs;
}

/** What a moves scenario was given and found. */
export interface MovesRun {
  proxy: ProxyHandle;
  /** The method the proxy's log says it uses old -> new. */
  method: string;
}

/**
 * Seeds `source`, starts a sweeping proxy (rate-limited, so the workload runs while keys move),
 * runs the counter workload through it until the source is drained, and checks everything.
 */
export async function moveEverything(
  source: RedisServer,
  target: RedisServer,
  opts: { args?: string[]; strings?: boolean; counters?: number; sweepRate?: number; ttlToleranceMs?: number } = {},
): Promise<MovesRun> {
  const s = connect(source);
  const t = connect(target);
  // Stopped on the way out: a proxy left running outlives the test's servers and keeps retrying.
  let proxy: Awaited<ReturnType<typeof startProxy>> | undefined;
  try {
    const counters = opts.counters ?? 2_000;
    const bases = await seedCounters(s, { counters, seed: 15 });
    const pay: PayloadSet = await seedPayloads(s, { count: 300, seed: 15, maxBytes: 4096 });
    const typed = await seedTypes(s, opts.strings ?? false);
    const before = new Map<string, Reading | null>();
    for (const k of typed) before.set(k.toString('hex'), await readKey(s, k));
    proxy = await startProxy({
      source,
      target,
      sweep: true,
      args: ['--sweep-rate', String(opts.sweepRate ?? 1500), '--progress', 'off', ...(opts.args ?? [])],
    });
    const w = startCounterWorkload({ urls: [proxy.url], clients: 4, counters, seed: 16, bases });
    await waitFor(async () => (await s.dbsize()) === 0, 'the source to be drained', 60_000, 100).catch(async (e) => {
      // What is left and what the proxy said is what a stuck move needs to be diagnosed.
      const left = (await s.scan('0', 'COUNT', 100))[1];
      const log = `${proxy?.stdout ?? ''}${proxy?.stderr ?? ''}`.slice(-4000);
      throw new Error(`${(e as Error).message}; left on the source: ${left.join(', ')}\nproxy log (tail):\n${log}`);
    });
    const res = await w.stop();
    expect(res.totals.acked).toBeGreaterThan(0);
    await checkCounters(res, async (k) => Number(await t.get(k)));
    expect(await checkPayloads(pay, t)).toEqual([]);
    // Proxy-side moves carry each absolute deadline exactly; MIGRATE sends a relative TTL, and a
    // source without PEXPIRETIME (6.2) only gives one.
    const tol = opts.ttlToleranceMs ?? 0;
    for (const k of typed) {
      const want = before.get(k.toString('hex')) ?? null;
      const got = await readKey(t, k);
      if (!sameReading(got, want, tol)) expect(got, k.toString('latin1')).toEqual(want);
    }
    await assertNoKeyInBoth(source, target);
    expect(await s.dbsize()).toBe(0);
    const method = /moves old -> new by (\w+)/.exec(proxy.stdout + proxy.stderr)?.[1] ?? 'unknown';
    return { proxy, method };
  } finally {
    s.disconnect();
    t.disconnect();
    await proxy?.stop().catch(() => undefined);
  }
}
