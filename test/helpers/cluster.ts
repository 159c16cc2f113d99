/**
 * Throwaway Redis Cluster (or Valkey cluster) for tests: N masters (and optionally one replica
 * each) started with startRedis() and `cluster-enabled yes`, joined with
 * `redis-cli --cluster create ... --cluster-yes`, and waited on until every node says
 * cluster_state:ok and agrees on the slot map.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { afterEach } from 'vitest';
import type { ProxyHandle } from './proxy.js';
import { freePort, REDIS_CLI, type RedisServer, startRedis, stopAll } from './redis.js';
import { sleep } from './util.js';

const run = promisify(execFile);

export interface TestCluster {
  readonly nodes: RedisServer[];
  /** The masters at start (a failover changes who is master: ask masters()). */
  readonly masters: RedisServer[];
  readonly replicas: RedisServer[];
  /** redis://127.0.0.1:port of the first master (a seed). */
  readonly url: string;
  /** The servers that are masters now (CLUSTER NODES of a live node). */
  currentMasters(): Promise<RedisServer[]>;
  /** An ioredis Cluster client (for checks straight on the cluster), seeded with the live nodes. */
  client(): InstanceType<typeof Redis.Cluster>;
  /** Keys over every current master. */
  dbsize(): Promise<number>;
  /** Waits until every live node reports cluster_state:ok and the same slot owners, and every live replica has synced. */
  waitOk(timeoutMs?: number): Promise<void>;
  /** Moves `slots` slots from one master to another with `redis-cli --cluster reshard`. */
  reshard(from: RedisServer, to: RedisServer, slots: number): Promise<void>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  masters?: number;
  /** Replicas per master (0 or 1). */
  replicas?: number;
  /** The server binary (default Debian's redis-server; see servers.ts). */
  binary?: string;
  /** Extra redis-server arguments for every node. */
  args?: string[];
}

async function nodeId(s: RedisServer): Promise<string> {
  const c = s.client();
  try {
    return String(await c.call('CLUSTER', 'MYID'));
  } finally {
    c.disconnect();
  }
}

/**
 * A cluster node on a free port at most 55535: its cluster bus listens 10000 higher, and a node
 * on a higher port refuses to start.
 */
async function startNode(args: string[], binary: string | undefined): Promise<RedisServer> {
  let port = await freePort();
  while (port > 55535) port = await freePort();
  return startRedis({ args, port, ...(binary !== undefined ? { binary } : {}) });
}

/** Starts a cluster and waits until it serves every slot. */
export async function startCluster(opts: ClusterOptions = {}): Promise<TestCluster> {
  const m = opts.masters ?? 3;
  const r = opts.replicas ?? 0;
  const args = ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000', ...(opts.args ?? [])];
  const nodes = await Promise.all(Array.from({ length: m * (1 + r) }, () => startNode(args, opts.binary)));
  const clients: Array<InstanceType<typeof Redis.Cluster>> = [];
  const addrs = nodes.map((n) => `127.0.0.1:${n.port}`);
  try {
    await run(REDIS_CLI, ['--cluster', 'create', ...addrs, '--cluster-replicas', String(r), '--cluster-yes'], { timeout: 60_000 });
  } catch (e) {
    await stopAll(...nodes);
    throw e;
  }
  const byPort = new Map(nodes.map((n) => [n.port, n]));
  const cluster: TestCluster = {
    nodes,
    masters: nodes.slice(0, m),
    replicas: nodes.slice(m),
    url: `redis://127.0.0.1:${nodes[0]!.port}`,
    async currentMasters() {
      for (const n of nodes) {
        if (!n.running) continue;
        const c = n.client();
        try {
          const text = String(await c.call('CLUSTER', 'NODES'));
          const out: RedisServer[] = [];
          for (const line of text.split('\n')) {
            const f = line.split(' ');
            // A master that serves slots (fields past the 8th): a node just started as a replica
            // shows as a slot-less master until its REPLICATE has gone through.
            if (f.length < 9 || f[8] === '' || !f[2]!.includes('master') || f[2]!.includes('fail')) continue;
            const port = Number(f[1]!.split('@')[0]!.split(':').pop());
            const s = byPort.get(port);
            if (s !== undefined && s.running) out.push(s);
          }
          return out;
        } catch {
          /* try the next node */
        } finally {
          c.disconnect();
        }
      }
      throw new Error('no cluster node answers');
    },
    client() {
      // Seeded with every live node: the first may be a master a test killed.
      const seeds = nodes.filter((n) => n.running).map((n) => ({ host: '127.0.0.1', port: n.port }));
      const c = new Redis.Cluster(seeds, { redisOptions: { maxRetriesPerRequest: 3 } });
      c.on('error', () => {});
      clients.push(c);
      return c;
    },
    async dbsize() {
      let n = 0;
      for (const s of await cluster.currentMasters()) {
        const c = s.client();
        try {
          n += Number(await c.dbsize());
        } finally {
          c.disconnect();
        }
      }
      return n;
    },
    async waitOk(timeoutMs = 30_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const views: string[] = [];
        let ok = true;
        for (const n of nodes) {
          if (!n.running) continue;
          const c = n.client();
          try {
            const info = String(await c.call('CLUSTER', 'INFO'));
            if (!info.includes('cluster_state:ok')) ok = false;
            // A replica counts once it has synced (its master lists it, and WAIT can count it).
            const repl = String(await c.info('replication'));
            if (repl.includes('role:slave') && !repl.includes('master_link_status:up')) ok = false;
            const slots = (await c.call('CLUSTER', 'SLOTS')) as Array<[number, number, [string, number]]>;
            views.push(slots.map((s) => `${s[0]}-${s[1]}@${s[2][1]}`).sort().join(','));
          } catch {
            ok = false;
          } finally {
            c.disconnect();
          }
        }
        if (ok && views.length > 0 && views.every((v) => v === views[0])) return;
        if (Date.now() > deadline) throw new Error(`cluster not ok after ${timeoutMs} ms`);
        await sleep(100);
      }
    },
    async reshard(from, to, slots) {
      const [fromId, toId] = await Promise.all([nodeId(from), nodeId(to)]);
      await run(REDIS_CLI, [
        '--cluster', 'reshard', `127.0.0.1:${from.port}`, '--cluster-from', fromId, '--cluster-to', toId,
        '--cluster-slots', String(slots), '--cluster-yes', '--cluster-pipeline', '100',
      ], { timeout: 120_000, maxBuffer: 64 * 1024 * 1024 });
    },
    async stop() {
      for (const c of clients) c.disconnect();
      await stopAll(...nodes);
    },
  };
  try {
    await cluster.waitOk();
  } catch (e) {
    await cluster.stop();
    throw e;
  }
  return cluster;
}

/** The replica of `master` among the cluster's replicas (CLUSTER NODES: its master's id). */
export async function replicaOf(c: TestCluster, master: RedisServer): Promise<RedisServer> {
  const id = await nodeId(master);
  for (const n of c.replicas) {
    const x = n.client();
    const nodes = String(await x.call('CLUSTER', 'NODES'));
    x.disconnect();
    const me = nodes.split('\n').find((l) => l.includes('myself'));
    if (me?.split(' ')[3] === id) return n;
  }
  throw new Error(`no replica of ${master.port}`);
}

/** A cluster and an old server a test starts, and the proxy between them: all stopped after each test. */
export interface ClusterRig {
  cl: TestCluster | null;
  source: RedisServer | null;
  proxy: ProxyHandle | null;
  /** Starts the cluster and the old server at once. */
  start(opts?: ClusterOptions): Promise<{ cl: TestCluster; source: RedisServer }>;
}

export function useClusterRig(): ClusterRig {
  const rig: ClusterRig = {
    cl: null,
    source: null,
    proxy: null,
    async start(opts = {}) {
      const [cl, source] = await Promise.all([startCluster(opts), startRedis()]);
      rig.cl = cl;
      rig.source = source;
      return { cl, source };
    },
  };
  afterEach(async () => {
    await rig.proxy?.stop();
    await rig.cl?.stop();
    await stopAll(rig.source ?? undefined);
    rig.proxy = null;
    rig.cl = null;
    rig.source = null;
  });
  return rig;
}

/** Empties the old server and every master serving slots: between tests that share one cluster. */
export async function flushClusterPair(cl: TestCluster, source: RedisServer): Promise<void> {
  const s = source.client();
  await s.flushall();
  s.disconnect();
  for (const m of await cl.currentMasters()) {
    const c = m.client();
    await c.flushall();
    c.disconnect();
  }
}

/** GET straight from the cluster (a cluster-aware client), bypassing rehome. */
export async function getFromCluster(cl: TestCluster, key: string): Promise<string | null> {
  const c = cl.client();
  try {
    return await c.get(key);
  } finally {
    c.disconnect();
  }
}
