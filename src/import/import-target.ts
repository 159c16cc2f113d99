/**
 * What `rehome import` requires of its target before a server starts: no data unless
 * --allow-nonempty-target, and no publish-once markers (`__rehome:m..`) but its own.
 *
 * Why the markers: a marker says "K was published here" and makes a later publish of K release
 * the source copy unpublished. Markers are left in a target by an import or a migration killed
 * outright (they get their TTL only at drained). Left there, they would make this import drop
 * the keys they name. A target without data has no migration writing into it: its markers are
 * leftovers and are dropped. A target with data might be another rehome's live migration: the
 * import refuses rather than guess.
 */
import { RehomeError } from '../errors.js';
import { dropMarkers } from '../migration/drop-markers.js';
import { MARKER_PATTERN } from '../migration/move-keys.js';
import type { Logger } from '../proxy/server.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { closeServer, describeCounts, keyspace, openServer, plural, scanDb, sumCounts, toRecord, type ServerConn } from '../tools/scan-both.js';

/** Whether any db holds a key that is not rehome's. */
async function holdsData(c: ServerConn, dbs: Iterable<number>): Promise<boolean> {
  for (const db of dbs) {
    // scanDb leaves rehome's own keys out.
    for await (const page of scanDb(c, db)) if (page.length > 0) return true;
  }
  return false;
}

/** Whether any db holds a marker. */
async function holdsMarkers(c: ServerConn, dbs: Iterable<number>): Promise<boolean> {
  for (const db of dbs) {
    await c.redis.select(db);
    let cursor = '0';
    do {
      const [next, page] = await c.redis.scan(cursor, 'MATCH', MARKER_PATTERN, 'COUNT', 1000);
      if (page.length > 0) return true;
      cursor = next;
    } while (cursor !== '0');
  }
  return false;
}

/** Refuses a target the import must not write (a RehomeError saying why); drops leftover markers. */
export async function checkTarget(target: Endpoint, allowNonempty: boolean, connectTimeoutMs: number, log: Logger): Promise<void> {
  const c = await openServer('target', target);
  let leftovers = false;
  try {
    const counts = await keyspace(c);
    if (counts.size === 0) return;
    const data = await holdsData(c, counts.keys());
    const rec = toRecord(counts);
    if (data && !allowNonempty) {
      throw new RehomeError(
        'EIMPORT',
        `target ${describeEndpoint(target)} already holds ${plural(sumCounts(rec), 'key')} (${describeCounts(rec)}): an import fills an empty server; pass --allow-nonempty-target to add the file's keys to them (keys in both then need --on-conflict source|target)`,
      );
    }
    leftovers = await holdsMarkers(c, counts.keys());
    if (leftovers && data) {
      throw new RehomeError(
        'EIMPORT',
        `target ${describeEndpoint(target)} holds rehome's move markers (keys matching '${MARKER_PATTERN}') next to data: another rehome may be migrating into it, or an import or migration was killed there; the import would take the keys they name as already moved. Finish that migration first, or, if none runs, delete them (redis-cli --scan --pattern '${MARKER_PATTERN}' | xargs redis-cli del, in each db)`,
      );
    }
  } finally {
    closeServer(c);
  }
  if (leftovers) {
    const n = await dropMarkers(target, connectTimeoutMs);
    log(`dropped ${plural(n, 'move marker')} left in the target by an import or migration that did not finish (the target holds no data, so no migration writes into it)`);
  }
}
