/**
 * Deterministic test data of every core type, and a snapshot that can check the data later
 * (values and TTLs) by reading through any client, e.g. one connected to the proxy.
 */
import type { Redis } from 'ioredis';

export type KeyType = 'string' | 'list' | 'hash' | 'set' | 'zset' | 'stream';
export const ALL_TYPES: readonly KeyType[] = ['string', 'list', 'hash', 'set', 'zset', 'stream'];

/** The name prefix used for each type: str:1, list:1, hash:1, set:1, zset:1, stream:1. */
export const TYPE_PREFIX: Record<KeyType, string> = {
  string: 'str',
  list: 'list',
  hash: 'hash',
  set: 'set',
  zset: 'zset',
  stream: 'stream',
};

export interface KeyRecord {
  db: number;
  key: string;
  type: KeyType;
  /** Normalised value, as readValue() returns it. */
  value: unknown;
  /** The TTL given at seeding time in ms, or -1 for no TTL. */
  ttlMs: number;
}

export interface Snapshot {
  readonly records: readonly KeyRecord[];
  readonly dbs: readonly number[];
  /** Date.now() when seeding finished. */
  readonly seededAt: number;
  /** Keys seeded in a db. */
  keys(db: number): string[];
  /** Reads every key through `client` (SELECTing each db; left on db 0) and lists every mismatch. */
  verify(client: Redis, opts?: { ttlToleranceMs?: number }): Promise<string[]>;
}

export interface SeedOptions {
  dbs?: number[];
  /** Keys per type and TTL variant (so 12 * n keys per db). */
  n?: number;
  /** Prefix for every key name (default ''). */
  prefix?: string;
  /** TTL in ms for the keys with a TTL (default 10 minutes). */
  ttlMs?: number;
}

function valueFor(type: KeyType, i: number, db: number, ttl: boolean): unknown {
  const tag = `${db}-${i}${ttl ? 't' : ''}`;
  switch (type) {
    case 'string':
      return `value-${tag}-${'x'.repeat(i % 7)}`;
    case 'list':
      return [`a-${tag}`, `b-${tag}`, `c-${tag}`, `a-${tag}`];
    case 'hash':
      return [
        ['f1', `v1-${tag}`],
        ['f2', `v2-${tag}`],
        ['num', String(i)],
      ];
    case 'set':
      return [`m1-${tag}`, `m2-${tag}`, `m3-${tag}`].sort();
    case 'zset':
      return [
        [`z1-${tag}`, '1'],
        [`z2-${tag}`, '2.5'],
        [`z3-${tag}`, String(10 + i)],
      ];
    case 'stream':
      return [
        ['1-1', ['f', `s1-${tag}`]],
        ['1-2', ['f', `s2-${tag}`, 'g', 'x']],
        [`2-${i}`, ['f', `s3-${tag}`]],
      ];
  }
}

/** Writes one value of `type` under `key` on `client` (its current db). */
async function writeValue(client: Redis, type: KeyType, key: string, value: unknown): Promise<void> {
  switch (type) {
    case 'string':
      await client.set(key, value as string);
      break;
    case 'list':
      await client.rpush(key, ...(value as string[]));
      break;
    case 'hash':
      await client.hset(key, ...(value as string[][]).flat());
      break;
    case 'set':
      await client.sadd(key, ...(value as string[]));
      break;
    case 'zset':
      await client.zadd(key, ...(value as string[][]).flatMap(([m, s]) => [s!, m!]));
      break;
    case 'stream':
      for (const [id, fields] of value as Array<[string, string[]]>) await client.xadd(key, id, ...fields);
      break;
  }
}

/** Reads a value of `type` normalised: lists in order, hashes as sorted [f, v] pairs, sets sorted. */
export async function readValue(client: Redis, type: KeyType, key: string): Promise<unknown> {
  switch (type) {
    case 'string':
      return client.get(key);
    case 'list':
      return client.lrange(key, 0, -1);
    case 'hash': {
      const flat = (await client.call('HGETALL', key)) as string[];
      const pairs: string[][] = [];
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
      return pairs.sort((a, b) => (a[0]! < b[0]! ? -1 : a[0]! > b[0]! ? 1 : 0));
    }
    case 'set':
      return (await client.smembers(key)).sort();
    case 'zset': {
      const flat = await client.zrange(key, 0, -1, 'WITHSCORES');
      const pairs: string[][] = [];
      for (let i = 0; i < flat.length; i += 2) pairs.push([flat[i]!, flat[i + 1]!]);
      return pairs;
    }
    case 'stream':
      return client.xrange(key, '-', '+');
  }
}

/**
 * Seeds, in each db, n keys of every type without a TTL (str:1...) and n with a TTL (str:ttl:1...).
 * `client` is a direct client of the server to seed (usually the source); it is left on db 0.
 */
export async function seedAllTypes(client: Redis, opts: SeedOptions = {}): Promise<Snapshot> {
  const dbs = opts.dbs ?? [0];
  const n = opts.n ?? 3;
  const prefix = opts.prefix ?? '';
  const ttlMs = opts.ttlMs ?? 600_000;
  const records: KeyRecord[] = [];
  for (const db of dbs) {
    await client.select(db);
    for (const type of ALL_TYPES) {
      for (let i = 1; i <= n; i++) {
        for (const ttl of [false, true]) {
          const key = `${prefix}${TYPE_PREFIX[type]}:${ttl ? 'ttl:' : ''}${i}`;
          const value = valueFor(type, i, db, ttl);
          await writeValue(client, type, key, value);
          if (ttl) await client.pexpire(key, ttlMs);
          records.push({ db, key, type, value, ttlMs: ttl ? ttlMs : -1 });
        }
      }
    }
  }
  await client.select(0);
  const seededAt = Date.now();
  return makeSnapshot(records, dbs, seededAt);
}

function makeSnapshot(records: KeyRecord[], dbs: number[], seededAt: number): Snapshot {
  return {
    records,
    dbs,
    seededAt,
    keys: (db) => records.filter((r) => r.db === db).map((r) => r.key),
    async verify(client, o = {}) {
      const tol = o.ttlToleranceMs ?? 5_000;
      const problems: string[] = [];
      for (const db of dbs) {
        await client.select(db);
        for (const r of records) {
          if (r.db !== db) continue;
          const where = `db${db} ${r.key}`;
          const type = await client.type(r.key);
          if (type !== r.type) {
            problems.push(`${where}: TYPE is ${type}, expected ${r.type}`);
            continue;
          }
          const v = await readValue(client, r.type, r.key);
          if (JSON.stringify(v) !== JSON.stringify(r.value)) {
            problems.push(`${where}: value ${JSON.stringify(v)}, expected ${JSON.stringify(r.value)}`);
          }
          const pttl = await client.pttl(r.key);
          if (r.ttlMs < 0) {
            if (pttl !== -1) problems.push(`${where}: PTTL ${pttl}, expected -1 (no TTL)`);
          } else {
            const elapsed = Date.now() - seededAt;
            const lo = r.ttlMs - elapsed - tol;
            if (!(pttl <= r.ttlMs && pttl >= lo)) {
              problems.push(`${where}: PTTL ${pttl}, expected between ${lo} and ${r.ttlMs}`);
            }
          }
        }
      }
      await client.select(0);
      return problems;
    },
  };
}
