/**
 * Keyspace-wide commands see both instances: KEYS is the union, SCAN walks both, DBSIZE is the sum,
 * RANDOMKEY picks an existing key, INFO keyspace shows summed counts.
 */
import type { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth, keysByDb } from '../helpers/invariant.js';
import { parseReply } from '../helpers/resp.js';

const ctx = usePair();

/**
 * Seeds 60 keys in db 0 (strings, hashes, lists) in the source, 10 of them with a TTL, moves half
 * of them by touching them through the proxy, and writes 20 new keys through the proxy.
 */
async function halfMoved(c: Redis): Promise<{ all: string[]; strings: string[]; withTtl: number }> {
  const s = ctx.source.client();
  const all: string[] = [];
  const strings: string[] = [];
  for (let i = 0; i < 60; i++) {
    const kind = i % 3;
    const key = kind === 0 ? `user:${i}` : kind === 1 ? `hash:${i}` : `list:${i}`;
    if (kind === 0) {
      await s.set(key, String(i));
      strings.push(key);
    } else if (kind === 1) await s.hset(key, 'f', String(i));
    else await s.rpush(key, String(i));
    if (i < 10) await s.pexpire(key, 500_000);
    all.push(key);
  }
  for (let i = 0; i < 60; i += 2) await c.type(all[i]!);
  for (let i = 0; i < 20; i++) {
    await c.set(`new:${i}`, 'n');
    all.push(`new:${i}`);
    strings.push(`new:${i}`);
  }
  const [src, tgt] = [await keysByDb(ctx.source, [0]), await keysByDb(ctx.target, [0])];
  expect(src.get(0)!.length).toBe(30);
  expect(tgt.get(0)!.length).toBe(50);
  return { all: all.sort(), strings: strings.sort(), withTtl: 10 };
}

function parseKeys(b: Buffer): string[] {
  const v = parseReply(b);
  if (!Array.isArray(v)) throw new Error(`expected an array, got ${b.toString()}`);
  return v.map(String);
}

async function fullScan(c: Redis, ...args: Array<string | number>): Promise<{ keys: string[]; calls: number }> {
  const keys: string[] = [];
  let cursor = '0';
  let calls = 0;
  do {
    const [next, batch] = (await c.call('SCAN', cursor, ...args)) as [string, string[]];
    cursor = next;
    keys.push(...batch);
    calls++;
    if (calls > 10_000) throw new Error('SCAN does not terminate');
  } while (cursor !== '0');
  return { keys, calls };
}

describe('keyspace-wide commands', () => {
  it('KEYS returns the union of both instances, without duplicates', async () => {
    const c = ctx.proxy.client();
    const { all } = await halfMoved(c);
    const keys = await c.keys('*');
    expect(keys.length).toBe(new Set(keys).size);
    expect([...keys].sort()).toEqual(all);
    expect((await c.keys('user:*')).sort()).toEqual(all.filter((k) => k.startsWith('user:')));
    expect(await c.keys('nomatch*')).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SCAN with MATCH/COUNT/TYPE returns every key at least once and no unknown key', async () => {
    const c = ctx.proxy.client();
    const { all, strings } = await halfMoved(c);
    for (const count of [1, 7, 1000]) {
      const { keys } = await fullScan(c, 'COUNT', count);
      expect([...new Set(keys)].sort()).toEqual(all);
    }
    const m = await fullScan(c, 'MATCH', 'hash:*', 'COUNT', 5);
    expect([...new Set(m.keys)].sort()).toEqual(all.filter((k) => k.startsWith('hash:')));
    const t = await fullScan(c, 'TYPE', 'string', 'COUNT', 10);
    expect([...new Set(t.keys)].sort()).toEqual(strings);
    const both = await fullScan(c, 'MATCH', '*:1*', 'TYPE', 'list');
    expect([...new Set(both.keys)].sort()).toEqual(all.filter((k) => /:1/.test(k) && k.startsWith('list:')));
    // SCAN through the proxy must not move keys.
    expect((await keysByDb(ctx.source, [0])).get(0)!.length).toBe(30);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SCAN in another db and on an empty db', async () => {
    const c = ctx.proxy.client();
    await c.select(6);
    expect((await fullScan(c)).keys).toEqual([]);
    await ctx.source.client(6).mset('s6a', '1', 's6b', '2');
    await c.set('t6', '3');
    const { keys } = await fullScan(c, 'COUNT', 2);
    expect([...new Set(keys)].sort()).toEqual(['s6a', 's6b', 't6']);
    await c.select(0);
    expect((await fullScan(c)).keys).toEqual([]);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('an invalid SCAN cursor is an error', async () => {
    const c = ctx.proxy.client();
    await expect(c.scan('notanumber')).rejects.toThrow(/invalid cursor/);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('DBSIZE is the sum; RANDOMKEY returns an existing key', async () => {
    const c = ctx.proxy.client();
    const { all } = await halfMoved(c);
    expect(await c.dbsize()).toBe(all.length);
    const set = new Set(all);
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const k = await c.randomkey();
      expect(k).not.toBeNull();
      expect(set.has(k!)).toBe(true);
      seen.add(k!);
    }
    expect(seen.size).toBeGreaterThan(1);
    await c.select(9);
    expect(await c.randomkey()).toBeNull();
    expect(await c.dbsize()).toBe(0);
    // RANDOMKEY when only the source has keys.
    await ctx.source.client(9).set('only-src', '1');
    expect(await c.randomkey()).toBe('only-src');
    expect(await c.dbsize()).toBe(1);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('EXISTS, TOUCH, UNLINK and DEL with many keys count across both', async () => {
    const c = ctx.proxy.client();
    const { all } = await halfMoved(c);
    const some = all.slice(0, 40);
    expect(await c.exists(...some, 'nokey1', some[0]!)).toBe(41);
    expect(await c.touch(...some.slice(0, 20), 'nokey2')).toBe(20);
    expect(await c.unlink(...some.slice(0, 15), 'nokey3')).toBe(15);
    expect(await c.del(...some.slice(10, 30))).toBe(15);
    expect(await c.exists(...some)).toBe(10);
    expect(await c.dbsize()).toBe(all.length - 30);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('DBSIZE pipelined between commands that move or delete keys counts exactly', async () => {
    const s = ctx.source.client();
    for (let i = 0; i < 10; i++) await s.set(`pk${i}`, 'v');
    const r = await ctx.proxy.raw();
    try {
      // One write: the replies must be those of executing the commands one after another.
      r.write('GET pk1\r\nDBSIZE\r\nGET pk2\r\nDEL pk3\r\nDBSIZE\r\nSET fresh x\r\nDBSIZE\r\nDEL pk4 pk5\r\nDBSIZE\r\n');
      const replies = (await r.readReplies(9)).map((b) => b.toString());
      expect(replies, JSON.stringify(replies)).toEqual(['$1\r\nv\r\n', ':10\r\n', '$1\r\nv\r\n', ':1\r\n', ':9\r\n', '+OK\r\n', ':10\r\n', ':2\r\n', ':8\r\n']);
    } finally {
      r.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('KEYS and EXISTS pipelined between moves and deletes see the state at their turn', async () => {
    const s = ctx.source.client();
    await s.mset('q1', '1', 'q2', '2', 'q3', '3');
    const r = await ctx.proxy.raw();
    try {
      r.write('GET q1\r\nDEL q2\r\nKEYS q*\r\nEXISTS q1 q2 q3\r\nDEL q3\r\nKEYS q*\r\n');
      const [, del, keys1, ex, , keys2] = await r.readReplies(6);
      expect(del!.toString()).toBe(':1\r\n');
      expect(parseKeys(keys1!).sort()).toEqual(['q1', 'q3']);
      expect(ex!.toString()).toBe(':2\r\n');
      expect(parseKeys(keys2!)).toEqual(['q1']);
    } finally {
      r.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('RANDOMKEY pipelined after deletes of moved keys still returns an existing key', async () => {
    const s = ctx.source.client();
    const r = await ctx.proxy.raw();
    try {
      for (let round = 0; round < 5; round++) {
        const names = Array.from({ length: 5 }, (_, i) => `rk${round}:${i}`);
        for (const k of names) await s.set(k, 'v');
        // Delete 3 of the 5 keys (they move, then go), then ask for a random key.
        r.write(`DEL ${names[2]}\r\nDEL ${names[3]} ${names[4]}\r\nRANDOMKEY\r\n`);
        const got = (await r.readReplies(3)).map((b) => b.toString());
        expect(got[0]).toBe(':1\r\n');
        expect(got[1]).toBe(':2\r\n');
        expect([`$5\r\n${names[0]}\r\n`, `$5\r\n${names[1]}\r\n`], `round ${round}: RANDOMKEY answered ${JSON.stringify(got[2])}`).toContain(got[2]);
        await ctx.proxy.client().del(names[0]!, names[1]!);
      }
    } finally {
      r.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('INFO keyspace shows summed counts', async () => {
    const c = ctx.proxy.client();
    const { all, withTtl } = await halfMoved(c);
    await ctx.source.client(3).mset('x', '1', 'y', '2');
    await c.select(3);
    await c.set('z', '3', 'EX', 1000);
    await c.select(0);
    const info = await c.info('keyspace');
    const db0 = /^db0:keys=(\d+),expires=(\d+)/m.exec(info);
    const db3 = /^db3:keys=(\d+),expires=(\d+)/m.exec(info);
    expect(db0).not.toBeNull();
    expect(db3).not.toBeNull();
    expect(Number(db0![1])).toBe(all.length);
    expect(Number(db0![2])).toBe(withTtl);
    expect(Number(db3![1])).toBe(3);
    expect(Number(db3![2])).toBe(1);
    expect(info).not.toMatch(/^db1:/m);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
