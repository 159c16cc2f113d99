/**
 * The cluster front: when the new server is a Redis Cluster (or Valkey cluster), rehome talks to
 * it through this in-process listener on a loopback port, which looks like one standalone server
 * and routes every request to the master owning its slot (front-conn.ts). So the sessions, shared
 * lanes, control connections, the mover's probes, plan and verify keep their one-server code, and
 * the standalone path is untouched (no cluster check per request).
 *
 * The listener is bound to 127.0.0.1 and adds no credentials: a connection gets from the nodes
 * only what its own AUTH allows.
 */
import net from 'node:net';
import type { ClusterTargetHandle } from '../config.js';
import { commandReply } from '../commands/fetch.js';
import { CommandTable } from '../commands/table.js';
import type { FramerLimits } from '../resp/request-framer.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { FrontConn } from './front-conn.js';
import { ReplicaWait } from './replica-wait.js';
import { keySlot } from './slot.js';
import { type ClusterNode, nodeClient, Topology, uncoveredSlots } from './topology.js';

export interface FrontOptions {
  connectTimeoutMs: number;
  /** How often the slot map is read again besides on MOVED (0: only on MOVED). */
  refreshMs: number;
  limits: FramerLimits;
  /** --db-map: the old server's dbs merged into the cluster's db 0. */
  mergedDbs?: readonly number[];
}

export class ClusterFront implements ClusterTargetHandle {
  private readonly conns = new Set<FrontConn>();
  /** The last census (status), and its timer. */
  private last: Awaited<ReturnType<ClusterFront['census']>> = [];
  private lastAt = 0;
  private censusTimer: NodeJS.Timeout | null = null;
  private readonly replicas: ReplicaWait;

  private constructor(
    private readonly server: net.Server,
    readonly topology: Topology,
    /** What rehome dials instead of the cluster: the front, with the cluster's credentials. */
    readonly endpoint: Endpoint,
    private readonly timeoutMs: number,
  ) {
    this.replicas = new ReplicaWait(topology, topology.seeds[0]!, timeoutMs);
  }

  /** Reads the slot map from `seeds` and listens on a free loopback port. */
  static async start(seeds: Endpoint[], opts: FrontOptions): Promise<ClusterFront> {
    const topo = new Topology(seeds, opts.connectTimeoutMs * 2);
    await topo.start(opts.refreshMs);
    const seed = seeds[0]!;
    const c = nodeClient(seed, topo.map.nodes[0]!, opts.connectTimeoutMs * 2);
    let table: CommandTable;
    try {
      table = new CommandTable(await commandReply(c));
    } finally {
      c.disconnect();
    }
    const ctx = {
      topo,
      table,
      limits: opts.limits,
      mergedDbs: opts.mergedDbs ?? [],
      endpoint: (n: ClusterNode): Endpoint => ({
        host: n.host,
        port: n.port,
        ...(seed.tls !== undefined ? { tls: seed.tls } : {}),
      }),
    };
    const server = net.createServer({ noDelay: true });
    let front: ClusterFront | null = null;
    server.on('connection', (sock) => {
      const conn = new FrontConn(sock, ctx, (x) => front?.conns.delete(x));
      front?.conns.add(conn);
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, '127.0.0.1', () => resolve());
    });
    const addr = server.address() as net.AddressInfo;
    front = new ClusterFront(server, topo, {
      host: '127.0.0.1',
      port: addr.port,
      ...(seed.username !== undefined ? { username: seed.username } : {}),
      ...(seed.password !== undefined ? { password: seed.password } : {}),
    }, opts.connectTimeoutMs * 2);
    return front;
  }

  /** The master a key's slot is served by now (MIGRATE's destination). */
  nodeForKey(key: string): ClusterNode | null {
    return this.topology.nodeFor(keySlot(key));
  }

  hasReplicas(node: { host: string; port: number }): boolean {
    return this.replicas.hasReplicas(node);
  }

  replicated(node: { host: string; port: number }): Promise<void> {
    return this.replicas.wait(node);
  }

  moved(slot: number, to: ClusterNode): void {
    this.topology.moved(slot, to);
  }

  masters(): Array<{ host: string; port: number; slots: number }> {
    const { nodes, owner } = this.topology.map;
    const counts = new Array<number>(nodes.length).fill(0);
    for (const i of owner) if (i >= 0) counts[i]!++;
    return nodes.map((n, i) => ({ host: n.host, port: n.port, slots: counts[i]! }));
  }

  async census(): Promise<Array<{ host: string; port: number; slots: number; keys: number | null; error: string | null }>> {
    const seed = this.topology.seeds[0]!;
    return Promise.all(this.masters().map(async (m) => {
      const c = nodeClient(seed, m, this.timeoutMs);
      try {
        return { ...m, keys: Number(await c.dbsize()), error: null };
      } catch (e) {
        return { ...m, keys: null, error: (e as Error).message };
      } finally {
        c.disconnect();
      }
    }));
  }

  /** Counts keys per master every `everyMs` for status (DBSIZE is O(1) on each). */
  countEvery(everyMs: number): void {
    const tick = (): void => {
      void this.census().then((c) => {
        this.last = c;
        this.lastAt = Date.now();
      });
    };
    tick();
    this.censusTimer = setInterval(tick, everyMs);
    this.censusTimer.unref();
  }

  status(): Record<string, unknown> {
    const t = this.topology;
    return {
      masters: this.last.map((m) => ({ node: `${m.host}:${m.port}`, slots: m.slots, keys: m.keys, error: m.error })),
      keys_total: this.last.reduce((a, m) => a + (m.keys ?? 0), 0),
      counted_at: this.lastAt > 0 ? new Date(this.lastAt).toISOString() : null,
      slots_unserved: this.uncovered() || null,
      slot_map_reads: t.refreshes,
      slot_map_error: t.lastError,
      front_connections: this.conns.size,
      replica_waits: this.replicas.rounds,
    };
  }

  uncovered(): string {
    return uncoveredSlots(this.topology.map);
  }

  get connections(): number {
    return this.conns.size;
  }

  async close(): Promise<void> {
    this.topology.close();
    this.replicas.close();
    if (this.censusTimer !== null) clearInterval(this.censusTimer);
    for (const c of [...this.conns]) c.close();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }
}
