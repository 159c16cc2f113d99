/**
 * The type-aware copy (src/migration/typed-copy.ts) between versions and engines: the pairs whose
 * DUMP payloads don't travel, Redis 6.2 both ways, hash-field TTLs (Redis 7.4.1 to itself and to
 * Valkey 8.0.1), and what serverFeatures finds on each. Chunks are applied as in
 * test/integration/typed-copy.test.ts (test/helpers/typed-copy.ts). Cases whose binaries are
 * missing skip with a one-line notice.
 */
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { readChunks, serverFeatures, UnsupportedTypeError, type CopyChunk, type CopyOptions } from '../../src/migration/typed-copy.js';
import { startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { serverBinaries, type ServerName } from '../helpers/servers.js';
import { copyKey, expectSame, OPTS } from '../helpers/typed-copy.js';
import { seedEveryType, snapshot } from '../helpers/typed-data.js';

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
