/**
 * Counts through rehome while keys move by the proxy-side move (docs/DESIGN.md "Commands that span
 * the whole keyspace"): DBSIZE and INFO keyspace never count rehome's claim records and
 * publish-once markers (a claim key counts as its K), during the migration and after the drain,
 * while the markers last; and the markers end once the source is drained.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus, seedStrings, useAdminProxies, waitDrained } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { moveKeys } from '../../src/migration/move-keys.js';
import { CLAIM_SCRIPT } from '../../src/migration/move-scripts.js';

const startAdmin = useAdminProxies();

/** keys= of db `db` in an INFO keyspace text (0 when the db is not listed). */
function infoKeys(text: string, db = 0): number {
  return Number(new RegExp(`^db${db}:keys=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

describe('counts through rehome with proxy-side moves', () => {
  const ctx = usePair({ autoProxy: false });

  it('DBSIZE and INFO keyspace count every key once, and none of rehome’s move keys', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    await seedStrings(s, 0, 1_000);
    await seedStrings(s, 2, 100);
    const sp = await startAdmin(ctx, ['--move-method', 'dump'], false);
    const c = sp.proxy.client();
    // 300 keys moved on touch: each leaves a marker in the target.
    for (let i = 0; i < 300; i++) expect(await c.get(`k:${i}`)).toBe(`v-0-${i}`);
    await c.select(2);
    for (let i = 0; i < 10; i++) expect(await c.get(`k:${i}`)).toBe(`v-2-${i}`);
    await c.select(0);
    // Another process's move in flight: K is its claim key, with a record beside it.
    const n = moveKeys(Buffer.from('k:999'));
    const r = (await s.callBuffer('EVAL', CLAIM_SCRIPT, 3, n.key, n.claim, n.record, 'another-process', '60000', '-1')) as Buffer[][];
    expect(r[0]![0]!.toString()).toBe('CLAIMED');
    expect(await t.dbsize(), 'the target holds the moved keys and their markers').toBeGreaterThan(300);

    expect(await c.dbsize()).toBe(1_000);
    expect(infoKeys(await c.info('keyspace'))).toBe(1_000);
    expect(infoKeys(await c.info())).toBe(1_000);
    await c.select(2);
    expect(await c.dbsize()).toBe(100);
    expect(infoKeys(await c.info('keyspace'), 2)).toBe(100);
    c.disconnect();
  });

  it('after the drain, while the markers last: DBSIZE and INFO count only the keys; the markers expire', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    await seedStrings(s, 0, 2_000);
    const sp = await startAdmin(ctx, ['--move-method', 'dump']);
    await waitDrained(sp, 60_000);
    const c = sp.proxy.client();
    expect(await t.dbsize(), 'markers are still in the target').toBeGreaterThan(2_000);
    expect(await c.dbsize()).toBe(2_000);
    expect(infoKeys(await c.info('keyspace'))).toBe(2_000);
    const marker = moveKeys(Buffer.from('k:1')).marker;
    expect(await t.pttl(marker), 'a marker expires once drained').toBeGreaterThan(0);
    c.disconnect();
  });

  it('markers of a migration no process saw drain end when the next rehome finds the source empty', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    await seedStrings(s, 0, 50);
    // Only touches, no sweeper: the source empties, but nobody declares the drain.
    const a = await startAdmin(ctx, ['--move-method', 'dump'], false);
    const c = a.proxy.client();
    for (let i = 0; i < 50; i++) await c.get(`k:${i}`);
    c.disconnect();
    expect(await s.dbsize()).toBe(0);
    const marker = moveKeys(Buffer.from('k:7')).marker;
    expect(await t.pttl(marker), 'no TTL while nobody saw the drain').toBe(-1);
    expect((await fetchStatus<{ phase: string }>(a.admin)).phase).not.toBe('drained');
    const b = await startAdmin(ctx, ['--move-method', 'dump']);
    await waitDrained(b, 20_000);
    await expect.poll(() => t.pttl(marker), { timeout: 5_000 }).toBeGreaterThan(0);
  });
});
