/**
 * The type-aware copy (src/migration/typed-copy.ts) against real servers: every chunk it yields is
 * applied to a destination key inside EVAL, as the proxy-side move applies it to its staging key,
 * and the result is judged by a deep snapshot read with plain commands (test/helpers/typed-data.ts).
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
import { serverBinaries, type ServerName } from '../helpers/servers.js';
import {
  applyChunk,
  BINARY,
  chunkBytes,
  comparable,
  parseScore,
  seedEveryType,
  snapshot,
  TRICKY_SCORES,
} from '../helpers/typed-data.js';

const OPTS: CopyOptions = { maxBytes: 16 * 1024, targetSupportsHashFieldTtl: false };

interface CopyStats {
  chunks: number;
  largestBytes: number;
  largestItems: number;
}

/** Copies `key` from src to `dest` on dst chunk by chunk; `afterFirst` runs once the first chunk is in. */
async function copyKey(
  src: Redis,
  dst: Redis,
  key: Buffer,
  opts: CopyOptions = OPTS,
  dest: Buffer = key,
  afterFirst?: () => Promise<void>,
): Promise<CopyStats> {
  const stats: CopyStats = { chunks: 0, largestBytes: 0, largestItems: 0 };
  for await (const chunk of readChunks(src, key, opts)) {
    await applyChunk(dst, dest, chunk);
    stats.chunks++;
    stats.largestBytes = Math.max(stats.largestBytes, chunkBytes(chunk));
    stats.largestItems = Math.max(stats.largestItems, elements(chunk));
    if (stats.chunks === 1) await afterFirst?.();
  }
  return stats;
}

/** Elements in a chunk: a command's arguments past its fixed head, counted the way the builder counts them. */
function elements(chunk: CopyChunk): number {
  const width: Record<string, number> = { HSET: 2, ZADD: 2, SADD: 1, RPUSH: 1 };
  return chunk.reduce((n, c) => n + (width[c.name] ? c.args.length / width[c.name]! : 1), 0);
}

async function expectSame(src: Redis, dst: Redis, key: Buffer, dest: Buffer = key): Promise<void> {
  const [a, b] = comparable(await snapshot(src, key), await snapshot(dst, dest));
  expect(b, `key ${key.toString('latin1')}`).toEqual(a);
}

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

/** The pairs whose DUMP payloads don't travel, and 6.2 (no stream metadata) to and from 7.0. */
const PAIRS: Array<[ServerName, ServerName]> = [
  ['redis-7.4.1', 'valkey-8.0.1'],
  ['redis-7.4.1', 'redis-7.0'],
  ['valkey-8.0.1', 'redis-7.0'],
  ['redis-6.2.16', 'redis-7.0'],
  // A rollback to 6.2: no XSETID options, no ENTRIESREAD on the target.
  ['redis-7.0', 'redis-6.2.16'],
];

describe.each(PAIRS)('type-aware copy %s -> %s', (from, to) => {
  const bins = serverBinaries(from, to);
  describe.skipIf(!bins)(`(${from} and ${to} found)`, () => {
    let source: RedisServer;
    let target: RedisServer;
    beforeAll(async () => {
      [source, target] = await Promise.all([startRedis({ binary: bins![from] }), startRedis({ binary: bins![to] })]);
    });
    afterAll(() => stopAll(source, target));

    it('rebuilds every type the same, in small chunks', async () => {
      const src = source.client();
      const dst = target.client();
      const features = await serverFeatures(dst);
      const keys = await seedEveryType(src);
      const opts: CopyOptions = {
        maxBytes: 8 * 1024,
        targetSupportsHashFieldTtl: features.hashFieldTtl,
        targetSupportsXsetidEntriesAdded: features.xsetidEntriesAdded,
        targetSupportsXgroupEntriesRead: features.xgroupEntriesRead,
      };
      for (const key of keys) {
        await copyKey(src, dst, key, opts);
        await expectSame(src, dst, key);
      }
      if (from === 'redis-6.2.16') {
        // 6.2 keeps no entries-added: the target counts every entry as added, none as deleted.
        const stream = keys.find((k) => k.includes('k:stream:'))!;
        const s = (await snapshot(dst, stream)) as { length: number; entriesAdded: number; maxDeletedId: string };
        expect([s.entriesAdded, s.maxDeletedId]).toEqual([s.length, '0-0']);
      }
    });
  });
});

describe('hash-field TTLs', () => {
  const bins = serverBinaries('redis-7.4.1', 'valkey-8.0.1');
  describe.skipIf(!bins)('(Redis 7.4.1 and Valkey 8.0.1 found)', () => {
    let r74: RedisServer;
    let r74b: RedisServer;
    let valkey: RedisServer;
    let src: Redis;
    beforeAll(async () => {
      [r74, r74b, valkey] = await Promise.all([
        startRedis({ binary: bins!['redis-7.4.1'] }),
        startRedis({ binary: bins!['redis-7.4.1'] }),
        startRedis({ binary: bins!['valkey-8.0.1'] }),
      ]);
      src = r74.client();
    });
    afterAll(() => stopAll(r74, r74b, valkey));
    beforeEach(() => src.flushall());

    async function withTtls(key: string, fields: number): Promise<void> {
      const args: string[] = [];
      for (let i = 0; i < fields; i++) args.push(`f${i}`, `v${i}`);
      await src.hset(key, ...args);
      await src.call('HPEXPIREAT', key, Date.now() + 3_600_000, 'FIELDS', 2, 'f1', 'f3');
      await src.call('HPEXPIREAT', key, Date.now() + 7_200_000, 'FIELDS', 1, 'f2');
    }

    it('keeps each field TTL to the millisecond where the target has them (7.4 -> 7.4)', async () => {
      const dst = r74b.client();
      await withTtls('small', 5);
      await withTtls('big', 3000);
      const opts = { ...OPTS, maxBytes: 4096, targetSupportsHashFieldTtl: (await serverFeatures(dst)).hashFieldTtl };
      expect(opts.targetSupportsHashFieldTtl).toBe(true);
      for (const key of ['small', 'big']) {
        expect((await copyKey(src, dst, Buffer.from(key), opts)).chunks).toBeGreaterThan(key === 'big' ? 1 : 0);
        await expectSame(src, dst, Buffer.from(key));
        expect(await dst.call('HPEXPIRETIME', key, 'FIELDS', 3, 'f1', 'f2', 'f0')).toEqual(
          await src.call('HPEXPIRETIME', key, 'FIELDS', 3, 'f1', 'f2', 'f0'),
        );
      }
    });

    it('refuses a hash with field TTLs for a target without them, naming the key, before any chunk', async () => {
      const dst = valkey.client();
      expect((await serverFeatures(dst)).hashFieldTtl).toBe(false);
      for (const [key, n] of [['small', 5], ['big', 3000]] as const) {
        await withTtls(key, n);
        const yielded: CopyChunk[] = [];
        const err = await (async () => {
          for await (const c of readChunks(src, Buffer.from(key), OPTS)) yielded.push(c);
        })().then(
          () => null,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(UnsupportedTypeError);
        expect((err as Error).message).toContain(`key '${key}'`);
        expect(yielded).toEqual([]);
      }
    });

    it('copies hashes without field TTLs to such a target, even beside hashes that have them', async () => {
      const dst = valkey.client();
      await withTtls('has-ttls', 5);
      const plain = Array.from({ length: 3000 }, (_, i) => [`f${i}`, `v${i}`]).flat();
      await src.hset('plain-big', ...plain);
      await src.hset('plain-small', 'a', '1');
      await withTtls('ttls-removed', 5);
      await src.call('HPERSIST', 'ttls-removed', 'FIELDS', 3, 'f1', 'f2', 'f3');
      for (const key of ['plain-big', 'plain-small', 'ttls-removed']) {
        await copyKey(src, dst, Buffer.from(key));
        await expectSame(src, dst, Buffer.from(key));
      }
    });
  });
});

describe('serverFeatures', () => {
  const names: ServerName[] = ['redis-6.2.16', 'redis-7.0', 'redis-7.4.1', 'valkey-8.0.1'];
  const bins = serverBinaries(...names);
  it.skipIf(!bins)('tells what each version accepts', async () => {
    const servers = await Promise.all(names.map((n) => startRedis({ binary: bins![n] })));
    try {
      const got = await Promise.all(servers.map((s) => serverFeatures(s.client())));
      expect(Object.fromEntries(names.map((n, i) => [n, got[i]]))).toEqual({
        'redis-6.2.16': { hashFieldTtl: false, xsetidEntriesAdded: false, xgroupEntriesRead: false },
        'redis-7.0': { hashFieldTtl: false, xsetidEntriesAdded: true, xgroupEntriesRead: true },
        'redis-7.4.1': { hashFieldTtl: true, xsetidEntriesAdded: true, xgroupEntriesRead: true },
        'valkey-8.0.1': { hashFieldTtl: false, xsetidEntriesAdded: true, xgroupEntriesRead: true },
      });
    } finally {
      await stopAll(...servers);
    }
  });
});
