/**
 * The cluster target's slot map: which master serves each of the 16,384 slots. Read from
 * CLUSTER SHARDS (Redis 7+, Valkey), or CLUSTER SLOTS where SHARDS is unknown; refreshed on a
 * timer and whenever a node answers MOVED (a reshard or a failover moved a slot), one refresh at
 * a time. A MOVED also updates its slot at once, so the retry goes to the right node before the
 * refresh is back.
 */
import { Redis } from 'ioredis';
import { RehomeError } from '../errors.js';
import { ioredisTls } from '../upstream/connect.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { SLOTS } from './slot.js';

/** One master of the cluster, at the address the cluster announces. */
export interface ClusterNode {
  host: string;
  port: number;
  /** Replicas the slot map showed for it (not failed ones, where CLUSTER SHARDS says). */
  replicas?: number;
}

/** Masters and, per slot, the index of its master in `nodes` (-1: no owner). */
export interface SlotMap {
  nodes: ClusterNode[];
  owner: Int16Array;
}

export const nodeKey = (n: ClusterNode): string => describeEndpoint(n);

/** A one-off ioredis connection to a node with the cluster's credentials and TLS. */
export function nodeClient(seed: Endpoint, node: ClusterNode, timeoutMs: number): Redis {
  const c = new Redis({
    host: node.host,
    port: node.port,
    ...(seed.username !== undefined ? { username: seed.username } : {}),
    ...(seed.password !== undefined ? { password: seed.password } : {}),
    ...ioredisTls(seed),
    lazyConnect: true,
    enableReadyCheck: false,
    // No handshake to wait for (see namedRedis in upstream/control.ts).
    disableClientInfo: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    connectTimeout: timeoutMs,
    commandTimeout: timeoutMs,
  });
  c.on('error', () => {});
  return c;
}

/** Whether the server is a cluster node (INFO cluster: cluster_enabled:1). */
export async function isClusterNode(ep: Endpoint, timeoutMs: number): Promise<boolean> {
  const c = nodeClient(ep, ep, timeoutMs);
  try {
    const info = String(await c.info('cluster'));
    return /cluster_enabled:1/.test(info);
  } finally {
    c.disconnect();
  }
}

/** Reads the slot map from one node. */
export async function readSlotMap(seed: Endpoint, from: ClusterNode, timeoutMs: number): Promise<SlotMap> {
  const c = nodeClient(seed, from, timeoutMs);
  try {
    let ranges: Array<[number, number, ClusterNode]>;
    try {
      ranges = fromShards((await c.call('CLUSTER', 'SHARDS')) as unknown[], from);
    } catch (e) {
      if (!/unknown subcommand|unknown command/i.test((e as Error).message)) throw e;
      ranges = fromSlots((await c.call('CLUSTER', 'SLOTS')) as unknown[], from);
    }
    return buildMap(ranges);
  } finally {
    c.disconnect();
  }
}

/** A node announcing no address (`?`, empty) is reached where it was asked (one-node view). */
function addr(ip: unknown, port: unknown, asked: ClusterNode): ClusterNode {
  const host = typeof ip === 'string' && ip !== '' && ip !== '?' ? ip : asked.host;
  return { host, port: Number(port) };
}

function pairs(list: unknown[]): Map<string, unknown> {
  const m = new Map<string, unknown>();
  for (let i = 0; i + 1 < list.length; i += 2) m.set(String(list[i]), list[i + 1]);
  return m;
}

function fromShards(reply: unknown[], asked: ClusterNode): Array<[number, number, ClusterNode]> {
  const out: Array<[number, number, ClusterNode]> = [];
  for (const shard of reply) {
    const s = pairs(shard as unknown[]);
    const slots = (s.get('slots') as unknown[]).map(Number);
    const nodes = (s.get('nodes') as unknown[][]).map(pairs);
    const master = nodes.find((n) => n.get('role') === 'master' && n.get('health') !== 'fail');
    if (master === undefined) continue;
    const node: ClusterNode = {
      ...addr(master.get('ip'), master.get('port') ?? master.get('tls-port'), asked),
      // 'loading' too: Redis 7.0 reports its replicas so long after they synced.
      replicas: nodes.filter((n) => n.get('role') === 'replica' && n.get('health') !== 'failed').length,
    };
    for (let i = 0; i + 1 < slots.length; i += 2) out.push([slots[i]!, slots[i + 1]!, node]);
  }
  return out;
}

function fromSlots(reply: unknown[], asked: ClusterNode): Array<[number, number, ClusterNode]> {
  return reply.map((r) => {
    const e = r as unknown[];
    const m = e[2] as unknown[];
    return [Number(e[0]), Number(e[1]), { ...addr(m[0], m[1], asked), replicas: Math.max(0, e.length - 3) }] as [number, number, ClusterNode];
  });
}

function buildMap(ranges: Array<[number, number, ClusterNode]>): SlotMap {
  const nodes: ClusterNode[] = [];
  const index = new Map<string, number>();
  const owner = new Int16Array(SLOTS).fill(-1);
  // Masters in the order of their lowest slot: a stable order for SCAN's cursor.
  ranges.sort((a, b) => a[0] - b[0]);
  for (const [lo, hi, n] of ranges) {
    const k = nodeKey(n);
    let i = index.get(k);
    if (i === undefined) {
      i = nodes.length;
      index.set(k, i);
      nodes.push(n);
    }
    owner.fill(i, lo, hi + 1);
  }
  return { nodes, owner };
}

/** Slots no master serves, as ranges ("0-99, 5000"), or '' when every slot is served. */
export function uncoveredSlots(map: SlotMap): string {
  const out: string[] = [];
  for (let s = 0; s < SLOTS; s++) {
    if (map.owner[s] !== -1) continue;
    let e = s;
    while (e + 1 < SLOTS && map.owner[e + 1] === -1) e++;
    out.push(e === s ? String(s) : `${s}-${e}`);
    s = e;
  }
  return out.join(', ');
}

/** The live slot map of a cluster target. */
export class Topology {
  map: SlotMap = { nodes: [], owner: new Int16Array(SLOTS).fill(-1) };
  private refreshing: Promise<void> | null = null;
  private again = false;
  private timer: NodeJS.Timeout | null = null;
  /** Runs after each refresh that changed the map. */
  onChange: (() => void) | null = null;
  /** Refreshes so far (for /status). */
  refreshes = 0;
  lastError: string | null = null;

  constructor(
    /** The seed nodes; credentials and TLS of the first apply to every node. */
    readonly seeds: Endpoint[],
    private readonly timeoutMs: number,
  ) {}

  /** Reads the map (the first seed that answers) and refreshes it every `everyMs`. */
  async start(everyMs: number): Promise<void> {
    await this.refresh();
    if (this.map.nodes.length === 0) throw new RehomeError('ECLUSTER', `cluster ${this.seeds.map(describeEndpoint).join(', ')}: no master serves any slot`);
    if (everyMs > 0) {
      this.timer = setInterval(() => void this.refresh().catch(() => undefined), everyMs);
      this.timer.unref();
    }
  }

  close(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** The known master at this address (with its replica count), or null. */
  master(at: { host: string; port: number }): ClusterNode | null {
    const k = nodeKey(at);
    return this.map.nodes.find((n) => nodeKey(n) === k) ?? null;
  }

  /** A slot `node` serves now, or -1. */
  slotOf(node: { host: string; port: number }): number {
    const k = nodeKey(node);
    const i = this.map.nodes.findIndex((n) => nodeKey(n) === k);
    return i < 0 ? -1 : this.map.owner.indexOf(i);
  }

  /** The master serving `slot`, or null when none does. */
  nodeFor(slot: number): ClusterNode | null {
    const i = this.map.owner[slot]!;
    return i < 0 ? null : this.map.nodes[i]!;
  }

  /** A node answered MOVED: the slot is served at `to` now; the whole map is read again. */
  moved(slot: number, to: ClusterNode): void {
    const k = nodeKey(to);
    let i = this.map.nodes.findIndex((n) => nodeKey(n) === k);
    if (i < 0) {
      i = this.map.nodes.length;
      this.map.nodes.push(to);
    }
    this.map.owner[slot] = i;
    void this.refresh().catch(() => undefined);
  }

  /** Reads the map again; concurrent calls share one read, and one more runs after it if asked. */
  refresh(): Promise<void> {
    if (this.refreshing !== null) {
      this.again = true;
      return this.refreshing;
    }
    this.refreshing = this.readAny().finally(() => {
      this.refreshing = null;
      if (this.again) {
        this.again = false;
        void this.refresh().catch(() => undefined);
      }
    });
    return this.refreshing;
  }

  private async readAny(): Promise<void> {
    // Known masters first (the seeds may have left), then the seeds.
    const tries: ClusterNode[] = [...this.map.nodes, ...this.seeds];
    let last: Error | null = null;
    for (const n of tries) {
      try {
        const m = await readSlotMap(this.seeds[0]!, n, this.timeoutMs);
        if (m.nodes.length === 0) continue;
        this.refreshes++;
        this.lastError = null;
        const changed = !sameMap(m, this.map);
        this.map = m;
        if (changed) this.onChange?.();
        return;
      } catch (e) {
        last = e as Error;
      }
    }
    this.lastError = last?.message ?? 'no node answered';
    throw new RehomeError('ECLUSTER', `cannot read the cluster's slot map: ${this.lastError}`);
  }
}

function sameMap(a: SlotMap, b: SlotMap): boolean {
  if (a.nodes.length !== b.nodes.length) return false;
  for (let i = 0; i < a.nodes.length; i++) if (nodeKey(a.nodes[i]!) !== nodeKey(b.nodes[i]!)) return false;
  for (let s = 0; s < SLOTS; s++) if (a.owner[s] !== b.owner[s]) return false;
  return true;
}
