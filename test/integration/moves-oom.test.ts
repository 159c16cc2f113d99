/**
 * The target out of memory during a chunked proxy-side copy (docs/DESIGN.md "Failure behaviour"):
 * the big key stays whole in the source (claimed or not), nothing it staged is left in the target,
 * a client touching it gets the OOM error naming the key, the sweeper reports and tries again
 * later, and once the target has room the key moves whole.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { expectStrings, fetchStatus, noKeyInBoth, seedStrings, useAdminProxies, waitDrained } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { waitFor } from '../helpers/util.js';
import { moveKeys } from '../../src/migration/move-keys.js';

const startAdmin = useAdminProxies();

const FIELDS = 30_000;
const field = (i: number) => `f:${i}`;
const value = (i: number) => `${i}:${'x'.repeat(150)}`;

/** The big hash wherever the source holds it (as itself or as its claim key): its length. */
async function bigInSource(s: Redis): Promise<number> {
  const [k, ck] = [Buffer.from('big'), moveKeys(Buffer.from('big')).claim];
  return (await s.hlen(k)) + (await s.hlen(ck));
}

interface Status {
  phase: string;
  sweeper: { last_error: string | null };
  big_keys: { total: number; listed: Array<{ key: string; ok: boolean }> };
}

for (const method of ['copy', 'dump'] as const) {
  describe(`the target out of memory during a chunked copy (--move-method ${method})`, () => {
    const ctx = usePair({ autoProxy: false });

    it('nothing lost; the client gets the OOM error; the sweeper retries and moves it once there is room', async () => {
      const s = ctx.source.client();
      const t = ctx.target.client();
      for (let i = 0; i < FIELDS; i += 1_000) {
        const args: string[] = [];
        for (let j = i; j < i + 1_000; j++) args.push(field(j), value(j));
        await s.hset('big', ...args);
      }
      await seedStrings(s, 0, 200);
      // Room for the small keys and a part of the big one.
      await t.config('SET', 'maxmemory-policy', 'noeviction');
      await t.config('SET', 'maxmemory', '3mb');
      // --force: plan refuses a target without room for the source's data, rightly.
      const sp = await startAdmin(ctx, ['--move-method', method, '--big-key-mb', '1', '--force']);
      await waitFor(() => (/big key db 0 'big'.*failed, left in source/.test(sp.proxy.stderr) ? true : null), "the sweeper's report of the failed big key", 30_000, 50).catch((e: Error) => {
        throw new Error(`${e.message}\nproxy stderr:\n${sp.proxy.stderr.slice(-3000)}`);
      });
      expect(await bigInSource(s), 'the big hash stays whole in the source').toBe(FIELDS);
      expect(await t.exists('big')).toBe(0);
      // The sweeper may be trying again already: at most that one copy is staged.
      expect((await t.keys('__rehome:s*')).length, 'staged copies in the target').toBeLessThanOrEqual(1);

      const c = sp.proxy.client();
      await expect(c.hget('big', field(7))).rejects.toThrow(/^OOM rehome: target out of memory, key 'big' stays in the source/);
      expect(await bigInSource(s)).toBe(FIELDS);
      const st = await fetchStatus<Status>(sp.admin);
      expect(st.phase).not.toBe('drained');

      // Room again: the sweeper's next try moves it whole.
      await t.config('SET', 'maxmemory', '0');
      await waitDrained<Status>(sp, 60_000);
      expect(await t.hlen('big')).toBe(FIELDS);
      const all = (await t.hgetall('big')) as Record<string, string>;
      for (let i = 0; i < FIELDS; i += 997) expect(all[field(i)]).toBe(value(i));
      expect(Object.keys(all).length).toBe(FIELDS);
      expect(await c.hget('big', field(7))).toBe(value(7));
      await expectStrings(t, 0, 200);
      expect(await t.keys('__rehome:s*'), 'nothing the failed copies staged is left in the target').toEqual([]);
      await noKeyInBoth(ctx, [sp]);
      c.disconnect();
    });
  });
}

describe('the target out of memory when the type-aware copy publishes strings (written straight to K)', () => {
  const ctx = usePair({ autoProxy: false });

  it('no key and no marker land in the target; the client gets the OOM error; once there is room, every string moves once', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    await seedStrings(s, 0, 300);
    await t.config('SET', 'maxmemory-policy', 'noeviction');
    await t.config('SET', 'maxmemory', '1');
    const sp = await startAdmin(ctx, ['--move-method', 'copy', '--force']);
    const c = sp.proxy.client();
    await expect(c.get('k:7')).rejects.toThrow(/^OOM rehome: target out of memory, key 'k:7' stays in the source/);
    // Every publish so far was refused before it wrote: neither a key nor a marker.
    expect(await t.dbsize()).toBe(0);
    expect(await s.dbsize()).toBeGreaterThanOrEqual(300);

    await t.config('SET', 'maxmemory', '0');
    await waitDrained<Status>(sp, 60_000).catch(async (e: Error) => {
      // Who holds the claims left is what a stuck drain needs to be diagnosed.
      const records = await s.keys('__rehome:r*');
      const sample = await Promise.all(records.slice(0, 5).map(async (r) => `${r} ${JSON.stringify(await s.hgetall(r))}`));
      throw new Error(`${e.message}\n${records.length} claim records, e.g.:\n${sample.join('\n')}\nnow (source clock): ${(await s.time()).join('.')}`);
    });
    await expectStrings(t, 0, 300);
    expect(await c.get('k:7')).toBe('v-0-7');
    await noKeyInBoth(ctx, [sp]);
    c.disconnect();
  }, 90_000);
});
