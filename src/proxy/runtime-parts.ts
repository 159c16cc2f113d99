/**
 * What a runtime (runtime.ts) is made of, for one phase at one epoch: its control connections,
 * named for the epoch; the mover and the migration (sweeper, counts, the source's watch); the
 * connections a direction's move-method probe uses; and what each server accepts (its command
 * table, the type-aware copy's commands), read once per server for the proxy's life.
 */
import { clusterDb } from '../db-map.js';
import { replicaWaiter } from '../cluster/replica-wait.js';
import { keySlot } from '../cluster/slot.js';
import { commandReply } from '../commands/fetch.js';
import { CommandTable } from '../commands/table.js';
import type { ProxyConfig } from '../config.js';
import { KnownAbsentCache } from '../migration/absent-cache.js';
import { Migration, type MigrationOptions } from '../migration/migration.js';
import { Mover } from '../migration/mover.js';
import { PROXY_MOVE_DEFAULTS, ProxyMove } from '../migration/proxy-move.js';
import { type ServerFeatures, serverFeatures } from '../migration/typed-copy-features.js';
import { fencedName } from '../phase/phase.js';
import type { Scope } from '../phase/scope.js';
import { ControlPool } from '../upstream/control.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { type Logger, type MoveMethodName, type Pair, type ProbeConns, probeConns } from './startup.js';

/** A runtime's control connections: moves out of `source`, the sweeper's own, and `target`. */
export interface Pools {
  source: ControlPool;
  target: ControlPool;
  sweepSource: ControlPool;
  all: ControlPool[];
}

/** What the parts need of the proxy. */
export interface PartsHost {
  readonly config: ProxyConfig;
  readonly log: Logger;
  readonly pair: Pair;
  readonly observer: { observeMigrate(ms: number, keys: number, ok: boolean): void } | null;
  readonly counters: { commands: number };
}

export class RuntimeParts {
  private readonly tables = new Map<string, CommandTable>();
  private readonly featureSets = new Map<string, ServerFeatures>();

  constructor(
    private readonly host: PartsHost,
    /** This process in the phase record: the owner of its proxy-side moves. */
    private readonly processId: string,
    /** The sweeper settings a runtime follows (Runtimes.sweepSettings). */
    private readonly sweepSettings: () => { rate: number; paused: string | null },
  ) {}

  /** The control connections of a runtime at `epoch`, named for it (and fenced, with phases). */
  pools(epoch: number, sourceEndpoint: Endpoint, targetEndpoint: Endpoint): Pools {
    const { config, pair } = this.host;
    const phases = pair.phases;
    const opts = {
      // MIGRATE's own timeout plus a margin: past it the source is taken as unresponsive.
      commandTimeoutMs: config.migrateTimeoutMs + 1_000,
      connectTimeoutMs: config.connectTimeoutMs,
    };
    const pool = (ep: Endpoint, role: 'source' | 'target', name: string) =>
      new ControlPool(ep, opts, role, phases ? { name: fencedName(epoch, name), check: () => phases.verify(epoch) } : null);
    const source = pool(sourceEndpoint, 'source', 'source');
    const target = pool(targetEndpoint, 'target', 'target');
    // The sweeper moves on connections of its own: a client's move never queues behind a
    // sweeper batch (mover.ts).
    const sweepSource = pool(sourceEndpoint, 'source', 'sweep');
    return { source, target, sweepSource, all: [source, target, sweepSource] };
  }

  /** A direction's probe runs on the runtime's pools: killed by the next switch (ProbeConns). */
  probeConns(pools: Pools): ProbeConns {
    // MIGRATE's own timeout (5 s, asked twice after an IOERR) fits under it.
    return probeConns(pools.source, pools.target, this.host.config.connectTimeoutMs + 10_000);
  }

  /** The mover of a runtime: keys out of `pools.source` into `targetEndpoint`. */
  mover(
    pools: Pools,
    targetEndpoint: Endpoint,
    reverse: boolean,
    method: MoveMethodName,
    target: ServerFeatures,
  ): Mover {
    const config = this.host.config;
    // MIGRATE is dialled by the source: the target's address as the source sees it. It has no TLS
    // options (TLS only where the dialling server runs tls-cluster yes): over rediss:// only the
    // move-method probe proves it works (src/tools/move-method.ts).
    const dest = reverse
      ? (config.sourceFromTarget ?? { host: config.source.host, port: config.source.port })
      : (config.targetFromSource ?? { host: config.target.host, port: config.target.port });
    const proxy = new ProxyMove(pools.source, pools.target, {
      ...PROXY_MOVE_DEFAULTS,
      // MIGRATE's pairs take the source's payload: a type the copy can't read goes whole.
      method: method === 'copy' ? 'copy' : 'dump',
      owner: this.processId,
      leaseMs: config.moveLeaseMs,
      waitAof: config.moveWaitAof,
      bigKeyBytes: config.bigKeyBytes,
      target,
      // A cluster target (not the old server in reverse): publish scripts name one slot's keys.
      slotOf: !reverse && config.cluster !== undefined ? (k: Buffer) => keySlot(k.toString('latin1')) : undefined,
      replicated: !reverse && config.cluster !== undefined ? replicaWaiter(config.cluster) : undefined,
      clientRequests: () => this.host.counters.commands,
    });
    // A cluster target: MIGRATE goes to the master of each key's slot (reverse moves keys into
    // the old server, a standalone one).
    const cluster = !reverse ? config.cluster : undefined;
    const outOfCluster = reverse && config.cluster !== undefined;
    const mover = new Mover(pools.source, pools.target, new KnownAbsentCache(config.absentCacheSize), {
      host: dest.host,
      port: dest.port,
      ...(cluster !== undefined ? {
        forKey: (k: string) => cluster.nodeForKey(k),
        moved: (slot: number, to: { host: string; port: number }) => cluster.moved(slot, to),
        clusterDb: (db: number) => clusterDb(config.dbMap, db),
        hasReplicas: (n: { host: string; port: number }) => cluster.hasReplicas(n),
        replicated: (n: { host: string; port: number }) => cluster.replicated(n),
      } : {}),
      ...(outOfCluster ? { sourceSlot: (k: string) => keySlot(k) } : {}),
      ...(targetEndpoint.username !== undefined ? { username: targetEndpoint.username } : {}),
      ...(targetEndpoint.password !== undefined ? { password: targetEndpoint.password } : {}),
      timeoutMs: config.migrateTimeoutMs,
    }, pools.sweepSource, proxy, method);
    const observer = this.host.observer;
    if (observer) mover.onMigrate = (ms, keys, ok) => observer.observeMigrate(ms, keys, ok);
    return mover;
  }

  /** A runtime's migration: its sweeper (unless passThrough), its counts, the source's watch. */
  migration(
    source: ControlPool, mover: Mover, passThrough: boolean, reverse: boolean,
    part: MigrationOptions['part'] = null, sweepScope: Scope | null = null, exclude: Scope | null = null,
  ): Migration {
    const config = this.host.config;
    const phases = this.host.pair.phases;
    const settings = this.sweepSettings();
    return new Migration(
      source,
      mover,
      {
        sweep: config.sweep,
        passThrough,
        sweeper: {
          budgetMs: config.sweepBudgetMs,
          touchBudgetMs: config.sweepTouchBudgetMs,
          rate: settings.rate,
          bigKeyBytes: config.bigKeyBytes,
          migrateTimeoutMs: config.migrateTimeoutMs,
          // A canary: the forward sweep covers the scope only; the return sweep skips it.
          scope: sweepScope,
          exclude,
        },
        sweeperPaused: settings.paused,
        ...(phases
          ? {
              onPauseSweeper: (reason: string) =>
                void phases.setSweep({ paused: reason }, phases.id).catch((e: Error) =>
                  this.host.log(`cannot store the sweeper's pause for the fleet (${e.message}); only this process's sweeper is paused`)),
            }
          : {}),
        watchIntervalMs: 1_000,
        reverse,
        part,
      },
      this.host.log,
    );
  }

  /** What one server accepts of the type-aware copy's commands, asked once. */
  async features(pool: ControlPool): Promise<ServerFeatures> {
    const k = describeEndpoint(pool.endpoint);
    let f = this.featureSets.get(k);
    if (!f) {
      f = await serverFeatures(pool.db(0));
      this.featureSets.set(k, f);
    }
    return f;
  }

  /** The command table of one server (its own COMMAND reply), loaded once. */
  async table(pool: ControlPool): Promise<CommandTable> {
    const k = describeEndpoint(pool.endpoint);
    let t = this.tables.get(k);
    if (!t) {
      t = new CommandTable(await commandReply(pool.db(0)));
      this.tables.set(k, t);
    }
    return t;
  }
}
