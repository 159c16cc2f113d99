/**
 * A canary's scope switch, inside the fence (after step 2, before the new phase): the publish-once
 * markers of the proxy-side move (move-scripts.ts) are deleted on both servers.
 *
 * Why: a key can now cross more than once (in scope, back out by a narrowing, in again by a
 * widening). A marker says "K was published here; a later publish of K is stale" and its publish
 * then releases (deletes) the source copy: left over from an earlier crossing it would delete the
 * only copy of K. Why it is safe: a marker guards against a mover that stalled and publishes late,
 * and after step 2 of a fenced switch no mover of an older epoch can write anything (its
 * connections are killed, and a new one is refused by the fence check), while no mover of the new
 * epoch has started. The late window is still kept for movers within one epoch.
 */
import { parseKeyspace } from './source-watch.js';
import { MARKER_PATTERN, MARKERS_COUNT } from './move-keys.js';
import { ControlPool } from '../upstream/control.js';
import type { Endpoint } from '../upstream/endpoint.js';

const DROP_SCRIPT = `
local r = redis.call('SCAN', ARGV[1], 'MATCH', '${MARKER_PATTERN}', 'COUNT', 1000)
for _, k in ipairs(r[2]) do redis.call('DEL', k) end
return {r[1], #r[2]}`;

/**
 * Runs a marker script (one SCAN step over the markers: ARGV cursor, then `arg`; returns {next
 * cursor, markers handled}) to the end in every db that holds keys; returns how many it handled.
 * `first` runs in each db before its walk.
 */
export async function overMarkers(pool: ControlPool, script: string, arg: string | null, first?: (db: number) => Promise<unknown>): Promise<number> {
  const dbs = Object.keys(parseKeyspace(await pool.db(0).info('keyspace'))).map(Number);
  let n = 0;
  for (const db of dbs) {
    await first?.(db);
    let cursor = '0';
    do {
      const args = arg === null ? [cursor] : [cursor, arg];
      const [next, count] = (await pool.db(db).eval(script, 0, ...args)) as [string, number];
      cursor = String(next);
      n += count;
    } while (cursor !== '0');
  }
  return n;
}

/** Deletes every publish-once marker on one server; returns how many. */
export async function dropMarkers(ep: Endpoint, connectTimeoutMs: number): Promise<number> {
  const pool = new ControlPool(ep, { commandTimeoutMs: 5_000, connectTimeoutMs }, 'target');
  try {
    // The markers' count (what DBSIZE through rehome leaves out) goes with them.
    return await overMarkers(pool, DROP_SCRIPT, null, (db) => pool.db(db).del(MARKERS_COUNT));
  } finally {
    await pool.close();
  }
}
