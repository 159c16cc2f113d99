/**
 * The type-aware copy (src/migration/typed-copy.ts) against real servers: every chunk it yields is
 * applied to a destination key inside EVAL, as the proxy-side move applies it to its staging key,
 * and the result is judged by a deep snapshot read with plain commands (test/helpers/typed-data.ts).
 * Pairs of other versions and engines, and hash-field TTLs (Redis 7.4), are in
 * test/versions/typed-copy.test.ts (`npm run test:versions`).
 */
import { existsSync } from 'node:fs';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import {
  readChunks,
  serverFeatures,
  UnsupportedTypeError,
  type CopyChunk,
  type CopyOptions,
} from '../../src/migration/typed-copy.js';
import { startMonitor } from '../helpers/monitor.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { copyKey, expectSame, OPTS } from '../helpers/typed-copy.js';
import { BINARY, parseScore, seedEveryType, snapshot, TRICKY_SCORES } from '../helpers/typed-data.js';

async function chunksOf(src: Redis, key: Buffer, opts: CopyOptions): Promise<CopyChunk[]> {
  const out: CopyChunk[] = [];
  for await (const c of readChunks(src, key, opts)) out.push(c);
  return out;
}

describe('type-aware copy (Redis 7.0 to Redis 7.0)', () => {
  let source: RedisServer;
  let target: RedisServer;
  let src: Redis;
  let dst: Redis;

  beforeAll(async () => {
    [source, target] = await Promise.all([startRedis(), startRedis()]);
    src = source.client();
    dst = target.client();
  });
  afterAll(() => stopAll(source, target));
  beforeEach(async () => {
    await Promise.all([src.flushall(), dst.flushall()]);
  });

  it('rebuilds every type, binary keys and values and empty-ish cases included', async () => {
    const keys = await seedEveryType(src);
    for (const key of keys) {
      const stats = await copyKey(src, dst, key);
      if (key.includes('big-')) expect(stats.chunks, key.toString('latin1')).toBeGreaterThan(1);
      await expectSame(src, dst, key);
    }
    // The deep snapshot sees what it should: the stream's groups, consumers and pending entries.
    type Groups = { groups: Array<{ pending: unknown[]; consumers: unknown[] }> };
    const stream = (await snapshot(dst, keys.find((k) => k.includes('k:stream:'))!)) as Groups;
    expect(stream.groups.map((g) => [g.consumers.length, g.pending.length])).toEqual([
      [3, 9],
      [0, 0],
      [1, 2],
    ]);
  });

  it('copies into another key name, and a key that is missing yields no chunk', async () => {
    await src.rpush('l', 'a', 'b');
    await copyKey(src, dst, Buffer.from('l'), OPTS, Buffer.concat([Buffer.from('stage:'), BINARY]));
    expect(await dst.lrange(Buffer.concat([Buffer.from('stage:'), BINARY]), 0, -1)).toEqual(['a', 'b']);
    expect(await chunksOf(src, Buffer.from('nope'), OPTS)).toEqual([]);
  });

  it('sends a big string in GETRANGE pieces of maxBytes, one per chunk', async () => {
    const maxBytes = 64 * 1024;
    const value = Buffer.alloc(16 * maxBytes + 5);
    for (let i = 0; i < value.length; i++) value[i] = (i * 7919) % 256;
    await src.set('big', value);
    const stats = await copyKey(src, dst, Buffer.from('big'), { ...OPTS, maxBytes });
    expect(stats.chunks).toBe(17);
    expect(stats.largestBytes).toBeLessThanOrEqual(maxBytes + 16);
    expect((await dst.getBuffer('big'))!.equals(value)).toBe(true);

    await src.set('exact', Buffer.alloc(2 * maxBytes, 'a'));
    expect((await copyKey(src, dst, Buffer.from('exact'), { ...OPTS, maxBytes })).chunks).toBe(2);
    expect(await dst.strlen('exact')).toBe(2 * maxBytes);
  });

  it('never clears a TTL the staging key gets after its first chunk', async () => {
    const keys = await seedEveryType(src);
    for (const key of keys) {
      const dest = Buffer.concat([Buffer.from('stage:'), key]);
      await copyKey(src, dst, key, OPTS, dest, async () => {
        await dst.pexpire(dest, 600_000);
      });
      expect(await dst.pttl(dest), key.toString('latin1')).toBeGreaterThan(0);
      await expectSame(src, dst, key, dest);
    }
  });

  it('keeps every score the same double (inf, -inf, 17-digit values) and equal scores in member order', async () => {
    await src.zadd('z', ...TRICKY_SCORES.flat());
    await src.zadd('z', '1.5', 'x2', '1.5', 'x1', '1.5', 'x3');
    await copyKey(src, dst, Buffer.from('z'));
    for (const [score, member] of TRICKY_SCORES) {
      expect(parseScore((await dst.zscore('z', member))!), member).toBe(parseScore(score));
    }
    expect(await dst.zrange('z', 0, -1)).toEqual(await src.zrange('z', 0, -1));
    expect(await dst.zrangebyscore('z', 1.5, 1.5)).toEqual(['x1', 'x2', 'x3']);
  });

  it('streams a 100,000-member sorted set through in bounded chunks, reading bounded pages', async () => {
    const n = 100_000;
    for (let i = 0; i < n; i += 10_000) {
      const args: string[] = [];
      for (let j = i; j < i + 10_000; j++) args.push(String(j), `member:${String(j).padStart(7, '0')}`);
      await src.zadd('huge', ...args);
    }
    const maxBytes = 32 * 1024;
    const largestElement = 'member:0000000'.length + String(n).length;
    const monitor = await startMonitor(source);
    try {
      const stats = await copyKey(src, dst, Buffer.from('huge'), { ...OPTS, maxBytes });
      await monitor.sync();
      expect(stats.largestBytes).toBeLessThanOrEqual(maxBytes + largestElement);
      expect(stats.chunks).toBeGreaterThanOrEqual(Math.floor((n * 'member:0000000'.length) / maxBytes));
      const reads = monitor.commands.filter((c) => c[0]?.toUpperCase() === 'ZRANGE');
      expect(reads.length).toBeGreaterThan(n / 4096);
      // No read asks for more than about a chunk's worth (an eighth over, as PageSizer allows).
      for (const r of reads) expect((Number(r[3]) - Number(r[2]) + 1) * largestElement).toBeLessThanOrEqual(1.25 * maxBytes);
    } finally {
      await monitor.stop();
    }
    expect(await dst.zcard('huge')).toBe(n);
    await expectSame(src, dst, Buffer.from('huge'));
  });

  it('also closes a chunk at maxItems elements', async () => {
    await src.sadd('s', ...Array.from({ length: 2500 }, (_, i) => `m${i}`));
    const stats = await copyKey(src, dst, Buffer.from('s'), { ...OPTS, maxBytes: 1 << 20, maxItems: 100 });
    expect(stats.largestItems).toBe(100);
    expect(stats.chunks).toBeGreaterThanOrEqual(25);
    await expectSame(src, dst, Buffer.from('s'));
  });

  it('keeps pending entries with their consumer, delivery count and at least their idle time', async () => {
    for (let i = 1; i <= 20; i++) await src.call('XADD', 'st', `${i}-0`, 'f', String(i));
    await src.call('XGROUP', 'CREATE', 'st', 'g', '0');
    await src.call('XREADGROUP', 'GROUP', 'g', 'alice', 'COUNT', 12, 'STREAMS', 'st', '>');
    await src.call('XCLAIM', 'st', 'g', 'bob', 0, '4-0', '5-0', 'IDLE', 90_000, 'RETRYCOUNT', 6);
    const before = (await src.call('XPENDING', 'st', 'g', '-', '+', 100)) as Array<[string, string, number, number]>;
    // Small chunks, so the pending entries are paged too.
    await copyKey(src, dst, Buffer.from('st'), { ...OPTS, maxBytes: 200 });
    await expectSame(src, dst, Buffer.from('st'));
    const after = (await dst.call('XPENDING', 'st', 'g', '-', '+', 100)) as Array<[string, string, number, number]>;
    expect(after.map(([id, c, , n]) => [id, c, n])).toEqual(before.map(([id, c, , n]) => [id, c, n]));
    after.forEach(([, , idle], i) => expect(idle).toBeGreaterThanOrEqual(before[i]![2]));
    expect(after.find(([id]) => id === '4-0')![3]).toBe(6);
  });

  it('leaves out a pending entry whose message was deleted (XCLAIM FORCE needs the message), and only that', async () => {
    for (let i = 1; i <= 5; i++) await src.call('XADD', 'st', `${i}-0`, 'f', String(i));
    await src.call('XGROUP', 'CREATE', 'st', 'g', '0');
    await src.call('XREADGROUP', 'GROUP', 'g', 'c', 'STREAMS', 'st', '>');
    await src.call('XDEL', 'st', '3-0');
    await copyKey(src, dst, Buffer.from('st'));
    const ids = (r: unknown) => (r as string[][]).map((p) => p[0]);
    expect(ids(await dst.call('XPENDING', 'st', 'g', '-', '+', 10))).toEqual(['1-0', '2-0', '4-0', '5-0']);
    expect(ids(await src.call('XPENDING', 'st', 'g', '-', '+', 10))).toEqual(['1-0', '2-0', '3-0', '4-0', '5-0']);
    const { groups: _g, ...dstRest } = await snapshot(dst, Buffer.from('st'));
    const { groups: _s, ...srcRest } = await snapshot(src, Buffer.from('st'));
    expect(dstRest).toEqual(srcRest);
  });
});

describe('type-aware copy from a user without MEMORY and COMMAND (managed services, narrow ACLs)', () => {
  it('still reads every type: the first page is a guess, features come from INFO', async () => {
    const [source, target] = await Promise.all([
      startRedis({
        args: ['--user', 'copier', 'on', '>pw', '~*', '&*', '+@all', '-memory', '-command'],
        username: 'copier',
        password: 'pw',
      }),
      startRedis(),
    ]);
    try {
      const src = source.client();
      await expect(src.call('MEMORY', 'USAGE', 'x')).rejects.toThrow(/NOPERM/);
      expect(await serverFeatures(src)).toEqual(await serverFeatures(target.client()));
      const dst = target.client();
      for (const key of await seedEveryType(src)) {
        await copyKey(src, dst, key, { ...OPTS, maxBytes: 4096 });
        await expectSame(src, dst, key);
      }
    } finally {
      await stopAll(source, target);
    }
  });
});

const REDISEARCH = '/usr/lib/redis/modules/redisearch.so';
if (!existsSync(REDISEARCH)) console.log(`skipping the module-type test: ${REDISEARCH} not found (Debian package redis-redisearch)`);

describe.skipIf(!existsSync(REDISEARCH))('type-aware copy of a module type', () => {
  it('refuses it with UnsupportedTypeError naming the key and the type, before any chunk', async () => {
    const server = await startRedis({ args: ['--loadmodule', REDISEARCH] });
    try {
      const c = server.client();
      await c.call('FT.CREATE', 'idx', 'SCHEMA', 't', 'TEXT');
      const gen = readChunks(c, Buffer.from('idx:idx'), OPTS);
      const err = await gen.next().then(
        () => null,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(UnsupportedTypeError);
      expect(String((err as Error).message)).toMatch(/key 'idx:idx'.*'ft_index0'/);
    } finally {
      await stopAll(server);
    }
  });
});
