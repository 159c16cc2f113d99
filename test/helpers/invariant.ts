/**
 * The invariant of docs/DESIGN.md: every key lives in exactly one place. assertNoKeyInBoth SCANs every
 * db of both servers directly (not through the proxy) and fails if any key is in both.
 */
import { Redis } from 'ioredis';
import type { RedisServer } from './redis.js';

export type ServerRef = RedisServer | string | number;

export const ALL_DBS: readonly number[] = Array.from({ length: 16 }, (_, i) => i);

/** A direct client of a server given as a RedisServer, a redis:// URL or a port on 127.0.0.1. */
export function connect(ref: ServerRef, db = 0): Redis {
  const common = {
    db,
    enableReadyCheck: false,
    maxRetriesPerRequest: 1,
    retryStrategy: () => null,
    commandTimeout: 10_000,
  };
  let c: Redis;
  if (typeof ref === 'number') c = new Redis({ host: '127.0.0.1', port: ref, ...common });
  else if (typeof ref === 'string') c = new Redis(ref, common);
  else {
    c = new Redis({
      host: ref.host,
      port: ref.port,
      ...(ref.username !== undefined ? { username: ref.username } : {}),
      ...(ref.password !== undefined ? { password: ref.password } : {}),
      ...common,
    });
  }
  c.on('error', () => {});
  return c;
}

/** Every key of one db (latin1 strings), by a full SCAN. */
export async function scanKeys(c: Redis): Promise<string[]> {
  const out = new Set<string>();
  let cursor = '0';
  do {
    const [next, keys] = await c.scanBuffer(cursor, 'COUNT', 1000);
    cursor = String(next);
    for (const k of keys) out.add(k.toString('latin1'));
  } while (cursor !== '0');
  return [...out];
}

/** Every key of each db of a server: db -> keys. */
export async function keysByDb(ref: ServerRef, dbs: readonly number[] = ALL_DBS): Promise<Map<number, string[]>> {
  const c = connect(ref);
  try {
    const out = new Map<number, string[]>();
    for (const db of dbs) {
      await c.select(db);
      out.set(db, await scanKeys(c));
    }
    return out;
  } finally {
    c.disconnect();
  }
}

/**
 * Keys present in both servers, as "db<n>:<key>" strings. The two listings run at once, so a key
 * a sweeper moves between them shows in both: every such candidate is asked again, of the target
 * then the source, and of the source then the target. A key moving old -> new meanwhile can't be
 * seen in both when the target is asked first (it is in the target only after it left the
 * source), nor one moving back when the source is asked first; a key really in both is in both
 * whatever the order.
 */
export async function keysInBoth(
  source: ServerRef,
  target: ServerRef,
  dbs: readonly number[] = ALL_DBS,
): Promise<string[]> {
  const [s, t] = await Promise.all([keysByDb(source, dbs), keysByDb(target, dbs)]);
  const candidates: Array<[number, string]> = [];
  for (const db of dbs) {
    const inTarget = new Set(t.get(db) ?? []);
    for (const k of s.get(db) ?? []) if (inTarget.has(k)) candidates.push([db, k]);
  }
  if (candidates.length === 0) return [];
  const a = await inBothAsked(candidates, target, source);
  const b = await inBothAsked(candidates, source, target);
  return candidates.filter((_, i) => a[i] && b[i]).map(([db, k]) => `db${db}:${k}`).sort();
}

/** For each key: whether `first`, then (after every answer of `first`) `second`, hold it. */
async function inBothAsked(keys: Array<[number, string]>, first: ServerRef, second: ServerRef): Promise<boolean[]> {
  const exists = async (ref: ServerRef): Promise<boolean[]> => {
    const c = connect(ref);
    try {
      const p = c.pipeline();
      for (const [db, k] of keys) p.select(db).exists(Buffer.from(k, 'latin1'));
      const r = (await p.exec()) ?? [];
      return keys.map((_, i) => r[2 * i + 1]?.[1] === 1);
    } finally {
      c.disconnect();
    }
  };
  const one = await exists(first);
  const two = await exists(second);
  return one.map((x, i) => x && two[i]!);
}

/** Throws if any key is present in both the source and the target (in any of `dbs`). */
export async function assertNoKeyInBoth(
  source: ServerRef,
  target: ServerRef,
  dbs: readonly number[] = ALL_DBS,
): Promise<void> {
  const both = await keysInBoth(source, target, dbs);
  if (both.length > 0) {
    const shown = both.slice(0, 20).join(', ');
    throw new Error(`invariant violated: ${both.length} key(s) exist in both source and target: ${shown}${both.length > 20 ? ', ...' : ''}`);
  }
}

/** Where a key is: 'source', 'target', 'both' or 'none' (direct EXISTS on both servers). */
export async function whereIs(
  source: ServerRef,
  target: ServerRef,
  key: string,
  db = 0,
): Promise<'source' | 'target' | 'both' | 'none'> {
  const s = connect(source, db);
  const t = connect(target, db);
  try {
    const [a, b] = await Promise.all([s.exists(key), t.exists(key)]);
    return a && b ? 'both' : a ? 'source' : b ? 'target' : 'none';
  } finally {
    s.disconnect();
    t.disconnect();
  }
}
