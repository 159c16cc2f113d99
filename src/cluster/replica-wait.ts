/**
 * WAIT for a replica after keys were moved into a cluster master, before the old server's copies
 * are deleted (migration/migrate-cluster.ts). A failover by kill promotes a replica that may not
 * have received the master's last writes; a key moved just before would be lost, its old copy
 * already gone. So with replicas, MIGRATE runs with COPY, then this, then DEL in the old server.
 *
 * MIGRATE's RESTORE is the old server's write on the master, not rehome's: WAIT on rehome's own
 * connection counts only that connection's writes. So each round writes (and deletes) a key of
 * rehome's own on that master, `__rehome:sync:{tag}` in a slot the master serves, then WAIT 1:
 * the replication stream is ordered, so a replica that has this write has every RESTORE before
 * it. Callers whose MIGRATE finished before a round began share the next round (one WAIT per
 * master at a time, however many moves wait).
 */
import type { Redis } from 'ioredis';
import type { ClusterTargetHandle } from '../config.js';
import { ReplicaNotConfirmed } from '../errors.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { slotTag } from './slot.js';
import { nodeClient, nodeKey, type Topology } from './topology.js';

/** How long one WAIT may take before the moved keys' old copies are kept instead. */
export const REPLICA_WAIT_MS = 2_000;


interface Rounds {
  conn: Redis;
  running: Promise<void> | null;
  next: Promise<void> | null;
}

export class ReplicaWait {
  /** WAIT rounds run (status, bench). */
  rounds = 0;
  private readonly per = new Map<string, Rounds>();

  constructor(
    private readonly topo: Topology,
    private readonly seed: Endpoint,
    private readonly timeoutMs: number,
  ) {}

  /** Whether `node` is a master with replicas now (then moves into it WAIT). */
  hasReplicas(node: { host: string; port: number }): boolean {
    return (this.topo.master(node)?.replicas ?? 0) > 0;
  }

  /**
   * Resolves once a replica of `node` has every write the master made before this call;
   * rejects with ReplicaNotConfirmed otherwise.
   */
  wait(node: { host: string; port: number }): Promise<void> {
    const k = nodeKey(node);
    let r = this.per.get(k);
    if (r === undefined) {
      r = { conn: nodeClient(this.seed, node, REPLICA_WAIT_MS + this.timeoutMs), running: null, next: null };
      this.per.set(k, r);
    }
    const rounds = r;
    if (rounds.running === null) {
      rounds.running = this.round(rounds.conn, node).catch((e: unknown) => {
        // A connection that failed is not used again (its master may be back later): the next
        // round dials anew.
        if (this.per.get(k) === rounds) this.per.delete(k);
        rounds.conn.disconnect();
        throw e;
      }).finally(() => (rounds.running = null));
      return rounds.running;
    }
    // A round under way may have written its key before this caller's MIGRATE ended: wait for
    // the next one, shared by everyone who arrives meanwhile.
    rounds.next ??= rounds.running.catch(() => undefined).then(() => {
      rounds.next = null;
      return this.wait(node);
    });
    return rounds.next;
  }

  private async round(conn: Redis, node: { host: string; port: number }): Promise<void> {
    this.rounds++;
    const slot = this.topo.slotOf(node);
    const what = `cluster master ${nodeKey(node)}`;
    if (slot < 0) throw new ReplicaNotConfirmed(`${what} serves no slot now: no replica confirmed the moved keys`);
    const key = `__rehome:sync:{${slotTag(slot)}}`;
    let r: Array<[Error | null, unknown]> | null;
    try {
      r = await conn.pipeline().set(key, '1', 'PX', 10_000).del(key).call('WAIT', '1', String(REPLICA_WAIT_MS)).exec();
    } catch (e) {
      throw new ReplicaNotConfirmed(`${what}: no replica confirmed the moved keys (${(e as Error).message.replace(/timed out|ECONN\w+|Connection is closed/gi, 'unreachable')})`);
    }
    const failed = r?.find(([e]) => e !== null)?.[0];
    if (r === null || failed) throw new ReplicaNotConfirmed(`${what}: no replica confirmed the moved keys (${failed?.message ?? 'no reply'})`);
    if (Number(r[2]?.[1]) < 1) throw new ReplicaNotConfirmed(`${what}: no replica confirmed the moved keys within ${REPLICA_WAIT_MS} ms (WAIT 1)`);
  }

  close(): void {
    for (const r of this.per.values()) r.conn.disconnect();
    this.per.clear();
  }
}

/**
 * A cluster target: resolves once a replica of every master (with replicas) that `keys` went to
 * has them (the proxy-side move's release waits for it, as MIGRATE's DEL does: migrate-cluster.ts).
 */
export function replicaWaiter(cluster: ClusterTargetHandle): (keys: readonly Buffer[]) => Promise<void> {
  return async (keys) => {
    const nodes = new Map<string, { host: string; port: number }>();
    for (const k of keys) {
      const n = cluster.nodeForKey(k.toString('latin1'));
      if (n !== null && cluster.hasReplicas(n)) nodes.set(`${n.host}:${n.port}`, n);
    }
    await Promise.all([...nodes.values()].map((n) => cluster.replicated(n)));
  };
}
