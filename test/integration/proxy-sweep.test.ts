/**
 * The sweeper with a proxy-side method (`--move-method dump|copy`, src/migration/proxy-sweep.ts):
 * touches first, as the MIGRATE sweep step does (sweeper.test.ts "touches first"), and the batches
 * it keeps in flight between steps end when it pauses.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, waitDrained } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { waitFor } from '../helpers/util.js';

const startAdmin = useAdminProxies();

interface Status {
  phase: string;
  sweeper: { state: string; small_steps_for_touches: number };
}

/** rehome's claim keys in the source's db 0. */
async function claimKeys(s: Redis): Promise<string[]> {
  return (await s.keys('__rehome:c*')).sort();
}

for (const method of ['dump', 'copy'] as const) {
  describe(`proxy-side sweep (--move-method ${method}): touches first`, () => {
    const ctx = usePair({ autoProxy: false });
    const sweepProxy = (args: string[] = []) => startAdmin(ctx, ['--move-method', method, ...args]);

    it('takes small steps while clients touch unmoved keys, full ones when nobody does', async () => {
      // Enough for the reader to touch unmoved keys: the sweep takes small steps from its first touch.
      const N = 12_000;
      await seedStrings(ctx.source.client(), 0, N);
      // Paced, so that on a loaded machine the sweep does not end before the reader's first touch.
      const sp = await sweepProxy(['--sweep-rate', '4000']);
      const c = sp.proxy.client();
      let reads = 0;
      let stop = false;
      const reader = (async () => {
        while (!stop) {
          const i = Math.floor(Math.random() * N);
          expect(await c.get(`k:${i}`)).toBe(`v-0-${i}`);
          reads++;
        }
      })();
      const st = await waitDrained<Status>(sp, 60_000);
      stop = true;
      await reader;
      expect(reads).toBeGreaterThan(0);
      expect(st.sweeper.small_steps_for_touches).toBeGreaterThan(0);
      await expectStrings(ctx.target.client(), 0, N);
      await noKeyInBoth(ctx, [sp]);
      c.disconnect();
    });

    it("with no client, every step is a full one (the sweeper's own claims and releases are not touches)", async () => {
      await seedStrings(ctx.source.client(), 0, 10_000);
      const sp = await sweepProxy();
      const st = await waitDrained<Status>(sp, 60_000);
      expect(st.sweeper.small_steps_for_touches).toBe(0);
      await expectStrings(ctx.target.client(), 0, 10_000);
    });

    it('keys the old server expires between steps are not taken for touches', async () => {
      const s = ctx.source.client();
      await seedStrings(s, 0, 10_000);
      for (let i = 0; i < 10_000; i += 1_000) {
        const p = s.pipeline();
        for (let j = i; j < i + 1_000; j++) p.set(`e:${j}`, 'x', 'PX', 300 + ((j * 7919) % 3_000));
        await p.exec();
      }
      const sp = await sweepProxy(['--sweep-rate', '6000']);
      const st = await waitDrained<Status>(sp, 60_000);
      expect(await s.info('stats')).toMatch(/expired_keys:[1-9]/);
      expect(st.sweeper.small_steps_for_touches).toBe(0);
      await expectStrings(ctx.target.client(), 0, 10_000);
    });
  });
}

/** `calls` of one command in the server's INFO commandstats (0 when it never ran). */
async function calls(c: Redis, name: string): Promise<number> {
  return Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(await c.info('commandstats'))?.[1] ?? 0);
}

describe('proxy-side sweep (--move-method copy): strings ride in the claim step', () => {
  const ctx = usePair({ autoProxy: false });

  it('carries each string in the step script (no read of its own), byte for byte with its TTL to the ms; other types are read', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 3_000);
    const bin = Buffer.from([0, 255, 13, 10, 0x7b, 0x7d, 1]);
    await s.set(bin, Buffer.concat([bin, bin]));
    await s.set('empty', '');
    await s.set('ttl', 'x'.repeat(500));
    await s.pexpireat('ttl', Date.now() + 3_600_000);
    const deadline = await s.pexpiretime('ttl');
    await s.rpush('list', 'a', 'b', '');
    await s.hset('hash', 'f', 'v');
    await s.config('RESETSTAT');
    const sp = await startAdmin(ctx, ['--move-method', 'copy']);
    await waitDrained(sp, 60_000);
    const t = ctx.target.client();
    await expectStrings(t, 0, 3_000);
    expect(await t.getBuffer(bin)).toEqual(Buffer.concat([bin, bin]));
    expect(await t.get('empty')).toBe('');
    expect(await t.get('ttl')).toBe('x'.repeat(500));
    expect(await t.pexpiretime('ttl')).toBe(deadline);
    expect(await t.lrange('list', 0, -1)).toEqual(['a', 'b', '']);
    expect(await t.hgetall('hash')).toEqual({ f: 'v' });
    // The type-aware reader asks TYPE and GETRANGE for a string it reads itself.
    expect(await calls(s, 'getrange'), 'strings read apart from the step').toBe(0);
    expect(await calls(s, 'lrange'), 'the list read by the type-aware reader').toBeGreaterThan(0);
  });
});

describe('a big key in chunks while a client keeps sending requests', () => {
  const ctx = usePair({ autoProxy: false });

  for (const method of ['migrate', 'copy'] as const) {
    it(`--move-method ${method}: the copy gives way between chunks but finishes, whole`, async () => {
      const s = ctx.source.client();
      const members: Array<string | number> = [];
      for (let i = 0; i < 60_000; i++) members.push(i % 97, `member:${i}`);
      for (let i = 0; i < members.length; i += 20_000) await s.zadd('zbig', ...members.slice(i, i + 20_000));
      await seedStrings(s, 0, 200);
      const sp = await startAdmin(ctx, ['--move-method', method, '--big-key-mb', '1']);
      const c = sp.proxy.client();
      let stop = false;
      let reads = 0;
      const reader = (async () => {
        while (!stop) {
          const i = reads++ % 200;
          expect(await c.get(`k:${i}`)).toBe(`v-0-${i}`);
        }
      })();
      const st = await waitDrained<{ phase: string; big_keys: { listed: Array<{ key: string; ok: boolean }> } }>(sp, 90_000);
      stop = true;
      await reader;
      expect(st.big_keys.listed, 'zbig moved alone, in chunks').toEqual([expect.objectContaining({ key: 'zbig', ok: true })]);
      expect(reads).toBeGreaterThan(0);
      const t = ctx.target.client();
      expect(await t.zcard('zbig')).toBe(60_000);
      expect(await t.zrange('zbig', 0, 2, 'WITHSCORES')).toEqual(await expectedHead());
      expect(await t.zscore('zbig', 'member:59999')).toBe(String(59_999 % 97));
      c.disconnect();
    });
  }
});

/** The first three members of zbig with their scores, as the seed above writes them. */
async function expectedHead(): Promise<string[]> {
  const all: Array<[string, number]> = [];
  for (let i = 0; i < 60_000; i++) if (i % 97 === 0) all.push([`member:${i}`, 0]);
  all.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return all.slice(0, 3).flatMap(([m, sc]) => [m, String(sc)]);
}

describe('proxy-side sweep: batches in flight end at a pause', () => {
  const ctx = usePair({ autoProxy: false });

  it('paused mid-sweep: no claim is left in the source, and every key is in exactly one place', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 5_000);
    const sp = await startAdmin(ctx, ['--move-method', 'dump', '--sweep-rate', '2000']);
    await waitFor(async () => ((await s.dbsize()) < 4_000 ? true : null), 'the sweeper to move some keys', 20_000, 20);
    const r = await fetch(`http://${sp.admin}/sweeper/pause`, { method: 'POST' });
    expect(r.status).toBe(200);
    await waitFor(async () => ((await fetchStatus<Status>(sp.admin)).sweeper.state === 'paused' ? true : null), 'paused', 5_000, 20);
    // The step that was running when the pause came ends its batches; nothing is claimed after.
    await waitFor(async () => ((await claimKeys(s)).length === 0 ? true : null), 'no claim keys in the source', 5_000, 20);
    expect(await s.dbsize()).toBeGreaterThan(0);
    const c = sp.proxy.client();
    expect(await c.dbsize(), 'every key counted once through rehome').toBe(5_000);
    c.disconnect();
    await noKeyInBoth(ctx, [sp]);
  });
});
