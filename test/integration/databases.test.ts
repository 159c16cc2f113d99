/**
 * Databases: SELECT is tracked per client and moves go to the client's db; commands that name a
 * db (MOVE, COPY ... DB) or act on whole dbs (FLUSHDB, FLUSHALL) act on both instances; SWAPDB is
 * refused while keys move.
 */
import { describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { ALL_DBS, assertNoKeyInBoth, keysByDb, whereIs } from '../helpers/invariant.js';
import { errorOf } from '../helpers/util.js';

const ctx = usePair();

describe('databases', () => {
  it('SELECT through all 16 dbs; each write lands in the same db of the target', async () => {
    const c = ctx.proxy.client();
    for (let db = 0; db < 16; db++) {
      expect(await c.select(db)).toBe('OK');
      expect(await c.set('where', `db${db}`)).toBe('OK');
    }
    for (let db = 15; db >= 0; db--) {
      await c.select(db);
      expect(await c.get('where')).toBe(`db${db}`);
    }
    const t = await keysByDb(ctx.target);
    for (const db of ALL_DBS) expect(t.get(db)).toEqual(['where']);
    await expect(c.select(16)).rejects.toThrow(/DB index is out of range/);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a key in source db 3 moves to target db 3 (and not to db 0)', async () => {
    const s3 = ctx.source.client(3);
    const s0 = ctx.source.client(0);
    await s3.set('same-name', 'in-db3', 'PX', 100_000);
    await s0.set('same-name', 'in-db0');
    const c = ctx.proxy.client();
    await c.select(3);
    expect(await c.get('same-name')).toBe('in-db3');
    expect(await whereIs(ctx.source, ctx.target, 'same-name', 3)).toBe('target');
    // db 0's copy is untouched until it is touched in db 0.
    expect(await whereIs(ctx.source, ctx.target, 'same-name', 0)).toBe('source');
    expect(await ctx.target.client(3).pttl('same-name')).toBeGreaterThan(90_000);
    await c.select(0);
    expect(await c.get('same-name')).toBe('in-db0');
    expect(await whereIs(ctx.source, ctx.target, 'same-name', 0)).toBe('target');
    // A client connected with db in its options (ioredis sends SELECT on connect).
    await ctx.source.client(7).set('k7', 'seven');
    const c7 = ctx.proxy.client({ db: 7 });
    expect(await c7.get('k7')).toBe('seven');
    expect(await whereIs(ctx.source, ctx.target, 'k7', 7)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('MOVE key db moves the key into the target db', async () => {
    const s0 = ctx.source.client(0);
    const s5 = ctx.source.client(5);
    await s0.set('mv', 'from-db0');
    await s0.set('mv-blocked', 'db0-value');
    await s5.set('mv-blocked', 'db5-value');
    const c = ctx.proxy.client();
    expect(await c.move('mv', 5)).toBe(1);
    expect(await c.exists('mv')).toBe(0);
    await c.select(5);
    expect(await c.get('mv')).toBe('from-db0');
    await c.select(0);
    expect(await whereIs(ctx.source, ctx.target, 'mv', 0)).toBe('none');
    expect(await whereIs(ctx.source, ctx.target, 'mv', 5)).toBe('target');
    // The destination key exists (in the source's db 5): MOVE must see it and do nothing.
    expect(await c.move('mv-blocked', 5)).toBe(0);
    expect(await c.get('mv-blocked')).toBe('db0-value');
    await c.select(5);
    expect(await c.get('mv-blocked')).toBe('db5-value');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('COPY src dst DB n sees and writes the right dbs', async () => {
    const s0 = ctx.source.client(0);
    const s4 = ctx.source.client(4);
    await s0.hset('cp-src', 'f', 'v');
    await s4.set('cp-taken', 'db4-original');
    const c = ctx.proxy.client();
    expect(await c.copy('cp-src', 'cp-dst', 'DB', 4)).toBe(1);
    // Destination exists in the source's db 4: COPY without REPLACE must return 0.
    expect(await c.copy('cp-src', 'cp-taken', 'DB', 4)).toBe(0);
    expect(await c.hgetall('cp-src')).toEqual({ f: 'v' });
    await c.select(4);
    expect(await c.hgetall('cp-dst')).toEqual({ f: 'v' });
    expect(await c.get('cp-taken')).toBe('db4-original');
    // With REPLACE it is overwritten.
    await c.select(0);
    expect(await c.copy('cp-src', 'cp-taken', 'DB', 4, 'REPLACE')).toBe(1);
    await c.select(4);
    expect(await c.type('cp-taken')).toBe('hash');
    expect(await whereIs(ctx.source, ctx.target, 'cp-taken', 4)).toBe('target');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SWAPDB while keys move is refused and swaps nothing on either server (docs/DESIGN.md rule 1)', async () => {
    const s0 = ctx.source.client(0);
    const s1 = ctx.source.client(1);
    await s0.set('a-src', 'db0-source');
    await s1.set('c-src', 'db1-source');
    const c = ctx.proxy.client();
    await c.set('b-tgt', 'db0-target');
    expect(await errorOf(c.call('SWAPDB', '0', '1'))).toMatch(/^ERR rehome: SWAPDB is refused while keys move/);
    expect(await c.mget('a-src', 'b-tgt', 'c-src')).toEqual(['db0-source', 'db0-target', null]);
    await c.select(1);
    expect(await c.get('c-src')).toBe('db1-source');
    expect(await ctx.target.client(1).dbsize()).toBe(1);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('pipelined SELECT applies to the commands after it (and a failed SELECT does not)', async () => {
    await ctx.source.client(0).mset('ps', 'zero', 'ps2', 'zero2');
    await ctx.source.client(3).mset('ps', 'three', 'ps2', 'three2');
    const r = await ctx.proxy.raw();
    try {
      r.write('GET ps\r\nSELECT 3\r\nGET ps\r\nSELECT 99\r\nGET ps2\r\nSELECT 0\r\nGET ps2\r\n');
      const got = (await r.readReplies(7)).map((b) => b.toString());
      expect(got[0]).toBe('$4\r\nzero\r\n');
      expect(got[1]).toBe('+OK\r\n');
      expect(got[2]).toBe('$5\r\nthree\r\n');
      expect(got[3]).toMatch(/^-ERR DB index is out of range/);
      expect(got[4]).toBe('$6\r\nthree2\r\n');
      expect(got[5]).toBe('+OK\r\n');
      expect(got[6]).toBe('$5\r\nzero2\r\n');
    } finally {
      r.close();
    }
    for (const db of [0, 3]) {
      expect(await whereIs(ctx.source, ctx.target, 'ps', db)).toBe('target');
      expect(await whereIs(ctx.source, ctx.target, 'ps2', db)).toBe('target');
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SELECT queued inside MULTI: later queued commands move keys from the new db', async () => {
    await ctx.source.client(0).set('mk', 'zero');
    await ctx.source.client(3).set('mk', 'three');
    const r = await ctx.proxy.raw();
    try {
      const seq = ['MULTI', 'SELECT 3', 'GET mk', 'EXEC', 'GET mk'];
      r.write(seq.map((x) => `${x}\r\n`).join(''));
      const got = (await r.readReplies(seq.length)).map((b) => b.toString());
      expect(got).toEqual(['+OK\r\n', '+QUEUED\r\n', '+QUEUED\r\n', '*2\r\n+OK\r\n$5\r\nthree\r\n', '$5\r\nthree\r\n']);
    } finally {
      r.close();
    }
    expect(await whereIs(ctx.source, ctx.target, 'mk', 3)).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'mk', 0)).toBe('source');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SELECT inside a DISCARDed MULTI does not change the db', async () => {
    await ctx.source.client(0).set('dk', 'zero');
    await ctx.source.client(4).set('dk', 'four');
    const c = ctx.proxy.client();
    await c.call('MULTI');
    await c.call('SELECT', '4');
    await c.call('DISCARD');
    expect(await c.get('dk')).toBe('zero');
    expect(await whereIs(ctx.source, ctx.target, 'dk', 0)).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'dk', 4)).toBe('source');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('RESET returns the connection to db 0', async () => {
    await ctx.source.client(0).set('rk', 'zero');
    await ctx.source.client(2).set('rk', 'two');
    const r = await ctx.proxy.raw();
    try {
      r.write('SELECT 2\r\nRESET\r\nGET rk\r\n');
      const got = (await r.readReplies(3)).map((b) => b.toString());
      expect(got).toEqual(['+OK\r\n', '+RESET\r\n', '$4\r\nzero\r\n']);
    } finally {
      r.close();
    }
    expect(await whereIs(ctx.source, ctx.target, 'rk', 0)).toBe('target');
    expect(await whereIs(ctx.source, ctx.target, 'rk', 2)).toBe('source');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('QUIT answers OK and closes the connection', async () => {
    const r = await ctx.proxy.raw();
    r.write('SET q 1\r\nQUIT\r\n');
    const got = (await r.readReplies(2)).map((b) => b.toString());
    expect(got).toEqual(['+OK\r\n', '+OK\r\n']);
    expect(await r.waitClosed(5_000)).toBe(true);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('FLUSHDB ASYNC and FLUSHALL SYNC act on both instances', async () => {
    await ctx.source.client(1).mset('a', '1', 'b', '2');
    await ctx.source.client(2).set('c', '3');
    const c = ctx.proxy.client({ db: 1 });
    await c.set('t', 'x');
    expect(await c.call('FLUSHDB', 'ASYNC')).toBe('OK');
    expect(await c.dbsize()).toBe(0);
    expect(await ctx.source.client(1).dbsize()).toBe(0);
    expect(await ctx.source.client(2).dbsize()).toBe(1);
    expect(await c.call('FLUSHALL', 'SYNC')).toBe('OK');
    expect(await ctx.source.client(2).dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('a refused SWAPDB pipelined with GETs keeps the reply order and the db', async () => {
    await ctx.source.client(1).set('sx', 'db1-value');
    await ctx.source.client(0).set('sy', 'db0-value');
    const r = await ctx.proxy.raw();
    try {
      r.write('GET sy\r\nSWAPDB 0 1\r\nGET sy\r\nSELECT 1\r\nGET sx\r\n');
      const got = (await r.readReplies(5)).map((b) => b.toString());
      expect(got[1], JSON.stringify(got)).toMatch(/^-ERR rehome: SWAPDB is refused/);
      expect([got[0], got[2], got[3], got[4]]).toEqual(['$9\r\ndb0-value\r\n', '$9\r\ndb0-value\r\n', '+OK\r\n', '$9\r\ndb1-value\r\n']);
    } finally {
      r.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('FLUSHDB pipelined between commands on source keys', async () => {
    await ctx.source.client(0).mset('fa', '1', 'fb', '2');
    const r = await ctx.proxy.raw();
    try {
      r.write('GET fa\r\nFLUSHDB\r\nGET fb\r\nSET fc 3\r\nDBSIZE\r\n');
      const got = (await r.readReplies(5)).map((b) => b.toString());
      expect(got).toEqual(['$1\r\n1\r\n', '+OK\r\n', '$-1\r\n', '+OK\r\n', ':1\r\n']);
    } finally {
      r.close();
    }
    expect(await ctx.source.client(0).dbsize()).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('FLUSHDB empties the db on both instances, other dbs untouched', async () => {
    const s2 = ctx.source.client(2);
    const s0 = ctx.source.client(0);
    await s2.mset('f1', '1', 'f2', '2', 'f3', '3');
    await s0.set('keep-src', 'x');
    const c = ctx.proxy.client();
    await c.set('keep-tgt', 'y');
    await c.select(2);
    expect(await c.get('f1')).toBe('1');
    await c.set('f-new', 'n');
    expect(await c.flushdb()).toBe('OK');
    expect(await c.dbsize()).toBe(0);
    expect(await c.get('f2')).toBeNull();
    expect(await s2.dbsize()).toBe(0);
    expect(await ctx.target.client(2).dbsize()).toBe(0);
    await c.select(0);
    expect(await c.mget('keep-src', 'keep-tgt')).toEqual(['x', 'y']);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('FLUSHALL empties every db of both instances', async () => {
    const s = ctx.source.client(0);
    await s.set('a', '1');
    await ctx.source.client(9).set('b', '2');
    const c = ctx.proxy.client();
    await c.set('c', '3');
    await c.select(3);
    await c.set('d', '4');
    expect(await c.flushall()).toBe('OK');
    expect(await c.dbsize()).toBe(0);
    const sk = await keysByDb(ctx.source);
    const tk = await keysByDb(ctx.target);
    for (const db of ALL_DBS) {
      expect(sk.get(db)).toEqual([]);
      expect(tk.get(db)).toEqual([]);
    }
    await c.select(0);
    expect(await c.get('a')).toBeNull();
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
