/**
 * MIGRATE into a cluster target: each key goes to the master owning its slot (the destination's
 * forKey), one MIGRATE (migrate-call.ts) per master. A MOVED or ASK in MIGRATE's error is the
 * node's definite refusal: the RESTOREs it refused did not run and their keys are still in the
 * source (MIGRATE deletes only what the target took), so the same MIGRATE goes where the cluster
 * says, without REPLACE (nothing can be overwritten). Any other failure is thrown as it is: the
 * mover then probes every key (docs/DESIGN.md rule 4).
 *
 * A master with replicas: MIGRATE ... COPY, then WAIT for a replica (d.replicated), then DEL in
 * the source. A plain MIGRATE deletes the source copy as soon as the master took the key, and a
 * failover by kill before the master's replica got it would lose the key. With COPY the key is in
 * both until a replica has it: a failure on the way (no replica confirms, the master dies) leaves
 * it in both, or in the source alone if the promoted replica never got it, and the next move
 * resolves it by rule 3 (the mover waits for a replica there too before deleting the source copy).
 * Nothing writes the source copy meanwhile (rule 1), so the DEL deletes exactly what was copied.
 */
import type { ControlPool } from '../upstream/control.js';
import { type MigrateDestination, migrateKeys } from './migrate-call.js';

type Addr = { host: string; port: number };

/** Redirects one group follows before its error is thrown. */
const MAX_REDIRECTS = 2;

export async function migrateToCluster(
  pool: ControlPool,
  d: MigrateDestination,
  forKey: (key: string) => Addr | null,
  db: number,
  keys: readonly string[],
  timeoutMs?: number,
): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
  let moved = 0;
  const destDb = d.clusterDb?.(db) ?? db;
  for (const [first, group] of groupByNode(keys, forKey)) {
    let to = first;
    for (let tries = 0; ; tries++) {
      try {
        const copy = d.replicated !== undefined && d.hasReplicas?.(to) === true;
        const r = await migrateKeys(pool, { ...d, host: to.host, port: to.port }, db, group, timeoutMs, destDb, copy);
        if (copy && r.moved > 0) {
          await d.replicated!(to);
          await deleteCopied(pool, db, group);
        }
        moved += r.moved;
        break;
      } catch (e) {
        const rd = redirectOf(e);
        if (rd === null || tries >= MAX_REDIRECTS) throw e;
        if (!rd.ask) d.moved?.(rd.slot, rd.to);
        to = rd.to;
      }
    }
  }
  return { reply: moved > 0 ? 'OK' : 'NOKEY', moved };
}

/**
 * Reverse out of a cluster: MIGRATE runs on the cluster's masters through the front, which runs a
 * transaction on one slot only, so a batch goes as one MIGRATE per slot (all at once on the
 * pooled connection). The first error is thrown once every group has ended: the mover then
 * probes every key (rule 4), the moved ones included.
 */
export async function migrateFromCluster(
  pool: ControlPool,
  d: MigrateDestination,
  slotOf: (key: string) => number,
  db: number,
  keys: readonly string[],
  timeoutMs?: number,
): Promise<{ reply: 'OK' | 'NOKEY'; moved: number }> {
  const bySlot = new Map<number, string[]>();
  for (const k of keys) {
    const s = slotOf(k);
    const g = bySlot.get(s);
    if (g === undefined) bySlot.set(s, [k]);
    else g.push(k);
  }
  const rs = await Promise.allSettled([...bySlot.values()].map((g) => migrateKeys(pool, d, db, g, timeoutMs)));
  let moved = 0;
  for (const r of rs) {
    if (r.status === 'rejected') throw r.reason;
    moved += r.value.moved;
  }
  return { reply: moved > 0 ? 'OK' : 'NOKEY', moved };
}

/** The source copies of keys a replica now holds (latin1 strings, as the mover's keys are). */
async function deleteCopied(pool: ControlPool, db: number, keys: readonly string[]): Promise<void> {
  await pool.db(db).del(...keys.map((k) => Buffer.from(k, 'latin1')));
}

/** Keys grouped by the master their slot is on. */
function groupByNode(keys: readonly string[], forKey: (key: string) => Addr | null): Array<[Addr, string[]]> {
  const byAddr = new Map<string, { to: Addr; keys: string[] }>();
  for (const k of keys) {
    const to = forKey(k);
    if (to === null) throw new Error(`CLUSTERDOWN no master of the cluster serves the slot of a key of this batch`);
    const id = `${to.host}:${to.port}`;
    let g = byAddr.get(id);
    if (g === undefined) byAddr.set(id, (g = { to, keys: [] }));
    g.keys.push(k);
  }
  return [...byAddr.values()].map((g) => [g.to, g.keys]);
}

/** A MOVED or ASK in MIGRATE's error ("Target instance replied with error: MOVED 12 h:p"). */
function redirectOf(e: unknown): { ask: boolean; slot: number; to: Addr } | null {
  const m = /\b(MOVED|ASK) (\d+) (\S+):(\d+)/.exec(e instanceof Error ? e.message : String(e));
  if (m === null) return null;
  return { ask: m[1] === 'ASK', slot: Number(m[2]), to: { host: m[3]!.replace(/^\[|\]$/g, ''), port: Number(m[4]) } };
}
