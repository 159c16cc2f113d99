/**
 * `plan`'s check of the keys the type-aware copy can't rebuild on the target (docs/DESIGN.md
 * "Type-aware copy"): keys of a module's type, and hashes whose fields carry their own TTL for a
 * target without hash-field TTLs. A MIGRATE or DUMP/RESTORE carries both where the target takes
 * the payload (the RESTORE probe says whether it does), so only the copy needs this look.
 *
 * Reading every key costs a scan of the source, so it is skipped where the server says no such
 * key can exist: no module loaded (MODULE LIST), and no hash with field TTLs (a source without
 * them, a target with them, or INFO keyspace's subexpiry=0 in every db).
 */
import { showKey } from '../errors.js';
import { anyFieldTtl, mayHaveFieldTtls } from '../migration/typed-copy.js';
import { serverFeatures } from '../migration/typed-copy-features.js';
import { keyText, scanDb, type ServerConn } from './scan-both.js';

const BUILT_IN = new Set(['string', 'hash', 'list', 'set', 'zset', 'stream']);

/** A key the copy can't rebuild, and why. */
export interface UnmovableKey {
  db: number;
  key: string;
  why: string;
}

/** Keys found (total) and the first `maxListed` of them. */
export interface Unmovable {
  total: number;
  listed: UnmovableKey[];
  /** Why no scan was needed, when none was. */
  skipped: string | null;
}

/** Finds the keys of `sourceKeys`' dbs that the type-aware copy can't put on the target. */
export async function findUnmovable(s: ServerConn, t: ServerConn, sourceKeys: ReadonlyMap<number, number>, maxListed: number): Promise<Unmovable> {
  const out: Unmovable = { total: 0, listed: [], skipped: null };
  const modules = await modulesLoaded(s);
  const [sf, tf] = await Promise.all([serverFeatures(s.redis), serverFeatures(t.redis)]);
  const fieldTtls = sf.hashFieldTtl && !tf.hashFieldTtl && (await mayHaveFieldTtls(s.redis, null));
  if (!modules && !fieldTtls) {
    out.skipped = 'the source has no module loaded and no hash with field TTLs the target would lack';
    return out;
  }
  for (const db of [...sourceKeys.keys()].sort((a, b) => a - b)) {
    for await (const page of scanDb(s, db)) {
      const p = s.redis.pipeline();
      for (const k of page) p.type(k).object('ENCODING', k);
      const r = (await p.exec()) ?? [];
      for (let i = 0; i < page.length; i++) {
        const type = String(r[2 * i]?.[1] ?? 'none');
        const enc = r[2 * i + 1]?.[1] == null ? null : String(r[2 * i + 1]![1]);
        let why: string | null = null;
        if (type === 'none') continue;
        if (!BUILT_IN.has(type)) why = `type '${type}' belongs to a module`;
        else if (type === 'hash' && fieldTtls && enc !== 'listpack' && (await anyFieldTtl(s.redis, page[i]!))) {
          why = 'hash fields with their own TTL (HEXPIRE), which the target does not support';
        }
        if (why === null) continue;
        out.total++;
        if (out.listed.length < maxListed) out.listed.push({ db, key: keyText(page[i]!), why });
      }
    }
  }
  return out;
}

/** Whether the source has any module loaded (unknown, when MODULE LIST is refused: assume so). */
async function modulesLoaded(s: ServerConn): Promise<boolean> {
  try {
    return ((await s.redis.call('MODULE', 'LIST')) as unknown[]).length > 0;
  } catch {
    return true;
  }
}

/** plan's finding for what findUnmovable found: FAIL naming the keys (bounded), or ok. */
export function unmovableFinding(u: Unmovable): { level: 'ok' | 'fail'; message: string; details: string[] } {
  if (u.total === 0) {
    return { level: 'ok', message: `the type-aware copy can rebuild every key on the target${u.skipped ? ` (${u.skipped})` : ''}`, details: [] };
  }
  const details = u.listed.map(({ db, key, why }) => `db${db} '${showKey(key)}': ${why}`);
  if (u.total > u.listed.length) details.push(`... and ${u.total - u.listed.length} more`);
  return {
    level: 'fail',
    message: `${u.total} ${u.total === 1 ? 'key' : 'keys'} the target can't hold with the type-aware copy (module types, hash-field TTLs on a target without them): move or drop them first, or use a target that takes the source's DUMP payload`,
    details,
  };
}
