/**
 * Move on touch: a key seeded in the source moves to the target the first time a command touches
 * it, with its TTL; multi-key commands move every key; the target copy wins over a source copy;
 * MIGRATE is used as docs/DESIGN.md says (once per key, KEYS form for several, never REPLACE).
 */
import { beforeEach, describe, expect, it } from 'vitest';
import { seedAllTypes } from '../helpers/data.js';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth, keysByDb, whereIs } from '../helpers/invariant.js';
import { migrateKeys, startMonitor } from '../helpers/monitor.js';

const ctx = usePair({ autoProxy: false });

async function expectAllInTarget(keys: string[], db = 0): Promise<void> {
  const where = await Promise.all(keys.map((k) => whereIs(ctx.source, ctx.target, k, db)));
  expect(Object.fromEntries(keys.map((k, i) => [k, where[i]]))).toEqual(
    Object.fromEntries(keys.map((k) => [k, 'target'])),
  );
}

describe('move on touch', () => {
  // A fresh proxy (empty known-absent cache) for each test.
  beforeEach(async () => {
    await ctx.restartProxy();
  });

  it('moves every type on first touch, in db 0 and db 3, keeping values and TTLs', async () => {
    const s = ctx.source.client();
    const snap = await seedAllTypes(s, { dbs: [0, 3], n: 2, ttlMs: 300_000 });
    const c = ctx.proxy.client();
    const problems = await snap.verify(c, { ttlToleranceMs: 5_000 });
    expect(problems).toEqual([]);
    const src = await keysByDb(ctx.source, [0, 3]);
    expect(src.get(0)).toEqual([]);
    expect(src.get(3)).toEqual([]);
    const tgt = await keysByDb(ctx.target, [0, 3]);
    expect(tgt.get(0)!.sort()).toEqual(snap.keys(0).sort());
    expect(tgt.get(3)!.sort()).toEqual(snap.keys(3).sort());
    // TTLs checked directly on the target as well.
    const t = ctx.target.client(3);
    const pttl = await t.pttl('str:ttl:1');
    expect(pttl).toBeGreaterThan(300_000 - 10_000);
    expect(pttl).toBeLessThanOrEqual(300_000);
    expect(await t.pttl('str:1')).toBe(-1);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('GET moves one key; the source no longer has it; PTTL on the target is close to the original', async () => {
    const s = ctx.source.client();
    await s.set('k', 'v', 'PX', 120_000);
    const c = ctx.proxy.client();
    expect(await c.get('k')).toBe('v');
    expect(await s.exists('k')).toBe(0);
    const t = ctx.target.client();
    expect(await t.get('k')).toBe('v');
    const pttl = await t.pttl('k');
    expect(pttl).toBeGreaterThan(110_000);
    expect(pttl).toBeLessThanOrEqual(120_000);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a write to a source key moves it first (SET on a key with a TTL through the proxy)', async () => {
    const s = ctx.source.client();
    await s.rpush('wl', 'a', 'b');
    const c = ctx.proxy.client();
    expect(await c.rpush('wl', 'c')).toBe(3);
    expect(await c.lrange('wl', 0, -1)).toEqual(['a', 'b', 'c']);
    expect(await whereIs(ctx.source, ctx.target, 'wl')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('MGET, EXISTS and DEL with several keys move all of them', async () => {
    const s = ctx.source.client();
    await s.mset('m1', 'a', 'm2', 'b', 'm3', 'c', 'e1', '1', 'e2', '2', 'd1', 'x', 'd2', 'y', 'd3', 'z');
    const c = ctx.proxy.client();
    expect(await c.mget('m1', 'nokey', 'm2', 'm3')).toEqual(['a', null, 'b', 'c']);
    await expectAllInTarget(['m1', 'm2', 'm3']);
    expect(await c.exists('e1', 'e2', 'nokey', 'e1')).toBe(3);
    await expectAllInTarget(['e1', 'e2']);
    expect(await c.del('d1', 'd2', 'd3')).toBe(3);
    for (const k of ['d1', 'd2', 'd3']) expect(await whereIs(ctx.source, ctx.target, k)).toBe('none');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('RENAME moves the source key and renames it in the target', async () => {
    const s = ctx.source.client();
    await s.set('old', 'val', 'PX', 200_000);
    await s.set('dst-existing', 'will-be-overwritten');
    const c = ctx.proxy.client();
    expect(await c.rename('old', 'dst-existing')).toBe('OK');
    expect(await c.get('dst-existing')).toBe('val');
    expect(await c.exists('old')).toBe(0);
    // Neither the renamed-away source key nor the overwritten destination may survive in the source.
    expect(await s.exists('old', 'dst-existing')).toBe(0);
    const pttl = await ctx.target.client().pttl('dst-existing');
    expect(pttl).toBeGreaterThan(190_000);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SUNIONSTORE and ZUNIONSTORE move sources and destination', async () => {
    const s = ctx.source.client();
    await s.sadd('sa', 'a', 'b');
    await s.sadd('sb', 'b', 'c');
    await s.sadd('sdest', 'old');
    await s.zadd('za', 1, 'x', 2, 'y');
    await s.zadd('zb', 10, 'y', 5, 'z');
    await s.zadd('zdest', 1, 'old');
    const c = ctx.proxy.client();
    expect(await c.sunionstore('sdest', 'sa', 'sb')).toBe(3);
    expect((await c.smembers('sdest')).sort()).toEqual(['a', 'b', 'c']);
    expect(await c.zunionstore('zdest', 2, 'za', 'zb')).toBe(3);
    expect(await c.zrange('zdest', 0, -1, 'WITHSCORES')).toEqual(['x', '1', 'z', '5', 'y', '12']);
    await expectAllInTarget(['sa', 'sb', 'sdest', 'za', 'zb', 'zdest']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('EVAL with KEYS moves the declared keys', async () => {
    const s = ctx.source.client();
    await s.set('ev1', 'one');
    await s.set('ev2', 'two');
    const c = ctx.proxy.client();
    const r = await c.eval("return {redis.call('GET', KEYS[1]), redis.call('GET', KEYS[2])}", 2, 'ev1', 'ev2');
    expect(r).toEqual(['one', 'two']);
    await expectAllInTarget(['ev1', 'ev2']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('XREAD with several streams moves every stream', async () => {
    const s = ctx.source.client();
    await s.xadd('xs1', '1-1', 'a', '1');
    await s.xadd('xs2', '2-1', 'b', '2');
    await s.xadd('xs3', '3-1', 'c', '3');
    const c = ctx.proxy.client();
    const r = await c.xread('COUNT', 10, 'STREAMS', 'xs1', 'xs2', 'xs3', '0', '0', '0');
    expect(r).toEqual([
      ['xs1', [['1-1', ['a', '1']]]],
      ['xs2', [['2-1', ['b', '2']]]],
      ['xs3', [['3-1', ['c', '3']]]],
    ]);
    await expectAllInTarget(['xs1', 'xs2', 'xs3']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SORT ... STORE moves the sorted key and the destination', async () => {
    const s = ctx.source.client();
    await s.rpush('tosort', '3', '1', '2');
    await s.set('sorted', 'old-value');
    const c = ctx.proxy.client();
    expect(await c.sort('tosort', 'STORE', 'sorted')).toBe(3);
    expect(await c.lrange('sorted', 0, -1)).toEqual(['1', '2', '3']);
    await expectAllInTarget(['tosort', 'sorted']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('GEORADIUS ... STORE moves the geo key and the destination', async () => {
    const s = ctx.source.client();
    await s.geoadd('geo', 13.361389, 38.115556, 'Palermo', 15.087269, 37.502669, 'Catania');
    await s.zadd('geodest', 1, 'old');
    const c = ctx.proxy.client();
    const n = await c.call('GEORADIUS', 'geo', '15', '37', '200', 'km', 'STORE', 'geodest');
    expect(n).toBe(2);
    expect((await c.zrange('geodest', 0, -1)).sort()).toEqual(['Catania', 'Palermo']);
    await expectAllInTarget(['geo', 'geodest']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a key in both: the target copy wins and the source copy is deleted', async () => {
    const s = ctx.source.client();
    const t = ctx.target.client();
    await s.set('dup', 'source-copy');
    await t.set('dup', 'target-copy');
    const c = ctx.proxy.client();
    expect(await c.get('dup')).toBe('target-copy');
    expect(await s.exists('dup')).toBe(0);
    expect(await t.get('dup')).toBe('target-copy');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('20 clients GET the same source key concurrently; all get the value, one MIGRATE', async () => {
    const s = ctx.source.client();
    await s.set('hot', 'hot-value');
    await s.hset('hot-h', 'f', 'v');
    const mon = await startMonitor(ctx.source);
    try {
      const clients = Array.from({ length: 20 }, () => ctx.proxy.client());
      await Promise.all(clients.map((c) => c.ping()));
      const res = await Promise.all(clients.map((c) => c.get('hot')));
      expect(res).toEqual(Array(20).fill('hot-value'));
      const res2 = await Promise.all(clients.map((c) => c.hget('hot-h', 'f')));
      expect(res2).toEqual(Array(20).fill('v'));
      await mon.sync();
      const forHot = mon.migrates().filter((m) => migrateKeys(m).includes('hot'));
      expect(forHot.length).toBe(1);
      const forHotH = mon.migrates().filter((m) => migrateKeys(m).includes('hot-h'));
      expect(forHotH.length).toBe(1);
    } finally {
      await mon.stop();
    }
    await expectAllInTarget(['hot', 'hot-h']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a second touch of a moved key sends no MIGRATE (known-absent cache)', async () => {
    const s = ctx.source.client();
    await s.set('once', '1');
    const mon = await startMonitor(ctx.source);
    try {
      const c = ctx.proxy.client();
      expect(await c.get('once')).toBe('1');
      await mon.sync();
      expect(mon.migrates().length).toBe(1);
      mon.clear();
      expect(await c.get('once')).toBe('1');
      expect(await c.incr('once')).toBe(2);
      // A key that never existed is known absent after the first (NOKEY) MIGRATE, too.
      expect(await c.get('never')).toBeNull();
      await mon.sync();
      const afterFirst = mon.migrates().length;
      expect(mon.migrates().filter((m) => migrateKeys(m).includes('once'))).toEqual([]);
      mon.clear();
      expect(await c.get('never')).toBeNull();
      expect(await c.set('never', 'now')).toBe('OK');
      await mon.sync();
      expect(mon.migrates()).toEqual([]);
      expect(afterFirst).toBeLessThanOrEqual(1);
      // Another client of the same proxy shares the cache.
      const c2 = ctx.proxy.client();
      expect(await c2.get('once')).toBe('2');
      await mon.sync();
      expect(mon.migrates()).toEqual([]);
    } finally {
      await mon.stop();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('several keys in one command use one MIGRATE with the KEYS form; no MIGRATE has REPLACE', async () => {
    const s = ctx.source.client();
    await s.mset('mk1', 'a', 'mk2', 'b', 'mk3', 'c');
    const mon = await startMonitor(ctx.source);
    try {
      const c = ctx.proxy.client();
      expect(await c.mget('mk1', 'mk2', 'mk3')).toEqual(['a', 'b', 'c']);
      await mon.sync();
      const ms = mon.migrates();
      expect(ms.length).toBe(1);
      const m = ms[0]!;
      expect(m[3]).toBe('');
      expect(m.map((a) => a.toUpperCase())).toContain('KEYS');
      expect(migrateKeys(m).sort()).toEqual(['mk1', 'mk2', 'mk3']);
      // Other multi-key shapes.
      await s.mset('o1', '1', 'o2', '2');
      await s.sadd('os1', 'x');
      await c.del('o1', 'o2');
      await c.sunion('os1', 'os2');
      await mon.sync();
      for (const mm of mon.migrates()) {
        expect(mm.map((a) => a.toUpperCase())).not.toContain('REPLACE');
        expect(mm.map((a) => a.toUpperCase())).not.toContain('COPY');
      }
    } finally {
      await mon.stop();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('binary key names and values move intact', async () => {
    const s = ctx.source.client();
    const key = Buffer.from([0x00, 0xff, 0x80, 0x0d, 0x0a, 0x20, 0x27, 0xc3, 0x28]);
    const key2 = Buffer.from('caf\u00e9-\u2603', 'utf8');
    const val = Buffer.from([0xde, 0xad, 0xbe, 0xef, 0x00, 0x0d, 0x0a]);
    await s.set(key, val);
    await s.set(key2, 'snow');
    const c = ctx.proxy.client();
    expect((await c.getBuffer(key))!.equals(val)).toBe(true);
    expect(await c.get(key2)).toBe('snow');
    expect(await s.exists(key, key2)).toBe(0);
    const t = ctx.target.client();
    expect((await t.getBuffer(key))!.equals(val)).toBe(true);
    expect(await t.get(key2)).toBe('snow');
    // Several binary keys at once (KEYS form).
    const bk = [Buffer.from([1, 2, 0xfe]), Buffer.from([0xe2, 0x82]), Buffer.from('plain')];
    for (const k of bk) await s.set(k, k);
    const got = await c.mgetBuffer(...bk);
    expect(got.map((b) => b!.toString('hex'))).toEqual(bk.map((b) => b.toString('hex')));
    expect(await s.dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a large value (8 MB) moves', async () => {
    const s = ctx.source.client();
    const big = 'y'.repeat(8 * 1024 * 1024);
    await s.set('big', big);
    const c = ctx.proxy.client();
    expect(await c.strlen('big')).toBe(big.length);
    expect(await whereIs(ctx.source, ctx.target, 'big')).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('two proxies on the same pair serve the same keys concurrently without loss', async () => {
    const s = ctx.source.client();
    const seed = s.pipeline();
    for (let i = 0; i < 50; i++) seed.set(`shared:${i}`, '0');
    await seed.exec();
    const p2 = await ctx.extraProxy();
    const clients = [
      ...Array.from({ length: 5 }, () => ctx.proxy.client()),
      ...Array.from({ length: 5 }, () => p2.client()),
    ];
    // Every client increments every key once, all at the same time.
    await Promise.all(
      clients.map(async (c) => {
        const p = c.pipeline();
        for (let i = 0; i < 50; i++) p.incr(`shared:${i}`);
        const res = await p.exec();
        const errs = res!.filter(([e]) => e).map(([e]) => String(e));
        expect(errs).toEqual([]);
      }),
    );
    const t = ctx.target.client();
    const values = await t.mget(...Array.from({ length: 50 }, (_, i) => `shared:${i}`));
    expect(values).toEqual(Array(50).fill('10'));
    expect(await s.dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('MIGRATE destination db follows the client db', async () => {
    const s = ctx.source.client(5);
    await s.set('in5', 'five');
    const mon = await startMonitor(ctx.source);
    try {
      const c = ctx.proxy.client({ db: 5 });
      expect(await c.get('in5')).toBe('five');
      await mon.sync();
      const ms = mon.migrates();
      expect(ms.length).toBe(1);
      expect(ms[0]![4]).toBe('5');
    } finally {
      await mon.stop();
    }
    expect(await whereIs(ctx.source, ctx.target, 'in5', 5)).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'in5', 0)).toBe('none');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});

describe('move on touch with a tiny known-absent cache', () => {
  it('a tiny known-absent cache (--absent-cache-size 2) stays correct when entries are evicted', async () => {
    const p = await ctx.restartProxy(['--absent-cache-size', '2']);
    const s = ctx.source.client();
    for (let i = 0; i < 10; i++) await s.set(`ev:${i}`, `v${i}`);
    const c = p.client();
    for (let round = 0; round < 3; round++) {
      for (let i = 0; i < 10; i++) expect(await c.append(`ev:${i}`, '.')).toBe(`v${i}`.length + round + 1);
    }
    expect(await c.mget('ev:0', 'ev:9')).toEqual(['v0...', 'v9...']);
    expect(await s.dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
