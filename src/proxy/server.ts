/**
 * The proxy's lifecycle: checks both servers, loads the target's command table, accepts clients
 * (one Session each), and stops gracefully.
 */
import net from 'node:net';
import { Redis } from 'ioredis';
import type http from 'node:http';
import { startAdmin } from '../admin/http.js';
import { ProxyMetrics } from '../admin/metrics.js';
import { CommandTable } from '../commands/table.js';
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import { KnownAbsentCache } from '../migration/absent-cache.js';
import { Migration } from '../migration/migration.js';
import { Mover } from '../migration/mover.js';
import { formatPlanReport, plan } from '../tools/plan.js';
import { ControlPool } from '../upstream/control.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { Session, type SessionContext } from './session.js';

/** Logging sink (the CLI prints; tests may collect). */
export type Logger = (line: string) => void;

/** Connects once, without retries, to tell "unreachable" and "bad credentials" apart at start. */
async function probeServer(role: string, ep: Endpoint, timeoutMs: number): Promise<{ runId: string; version: string }> {
  const c = new Redis({
    host: ep.host,
    port: ep.port,
    ...(ep.username !== undefined ? { username: ep.username } : {}),
    ...(ep.password !== undefined ? { password: ep.password } : {}),
    lazyConnect: true,
    connectTimeout: timeoutMs,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    enableOfflineQueue: false,
    retryStrategy: () => null,
  });
  c.on('error', () => {});
  try {
    await c.connect();
    const text = await c.info('server');
    const runId = /run_id:(\w+)/.exec(text)?.[1] ?? '';
    const version = /redis_version:([\d.]+)/.exec(text)?.[1] ?? 'unknown';
    return { runId, version };
  } catch (e) {
    throw new RehomeError('EUPSTREAM', `${role} ${describeEndpoint(ep)} unreachable: ${(e as Error).message}`);
  } finally {
    c.disconnect();
  }
}

/** True when a fresh, unauthenticated connection to the server is refused commands. */
function needsAuth(ep: Endpoint, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: ep.host, port: ep.port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new RehomeError('EUPSTREAM', `target ${describeEndpoint(ep)} did not answer PING`));
    }, timeoutMs);
    sock.on('connect', () => sock.write('*1\r\n$4\r\nPING\r\n'));
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.includes('\r\n')) {
        clearTimeout(timer);
        sock.destroy();
        resolve(buf.startsWith('-NOAUTH'));
      }
    });
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(new RehomeError('EUPSTREAM', `target ${describeEndpoint(ep)} unreachable: ${e.message}`));
    });
  });
}

/** A running proxy. */
export class RehomeProxy {
  private readonly sessions = new Set<Session>();
  readonly metrics: ProxyMetrics;
  private admin: http.Server | null = null;
  private nextId = 1;
  private stopping: Promise<void> | null = null;

  private constructor(
    readonly config: ProxyConfig,
    private readonly server: net.Server,
    private readonly ctx: SessionContext,
    private readonly source: ControlPool,
    private readonly target: ControlPool,
    private readonly log: Logger,
    readonly migration: Migration,
    readonly versions: { source: string; target: string },
    private readonly sweepSource: ControlPool,
  ) {
    this.metrics = new ProxyMetrics(() => {
      const st = ctx.mover.stats;
      return {
        commands: ctx.counters.commands,
        clients: this.sessions.size,
        movedOnTouch: st.keysMovedOnTouch,
        movedBySweeper: st.keysMovedBySweeper,
        remainingPerDb: migration.remainingPerDb,
        drained: migration.phase === 'drained',
        rate: migration.rate,
        errorsByKind: st.errorsByKind,
        moveFailures: st.failures,
        cacheSize: ctx.mover.cache.size,
        bigKeys: migration.sweeper?.bigKeysTotal ?? 0,
      };
    });
    ctx.mover.onMigrate = (ms, keys, ok) => {
      this.metrics.migrateLatency.observe({ outcome: ok ? 'ok' : 'error' }, ms / 1000);
      this.metrics.migrateKeys.inc(keys);
    };
  }

  static async start(config: ProxyConfig, log: Logger = () => {}): Promise<RehomeProxy> {
    const [src, tgt] = await Promise.all([
      probeServer('source', config.source, config.connectTimeoutMs),
      probeServer('target', config.target, config.connectTimeoutMs),
    ]);
    if (src.runId !== '' && src.runId === tgt.runId) {
      throw new RehomeError('ESAME', 'source and target are the same server (same run_id)');
    }
    // The pre-flight checks of `rehome plan`, conflicts resolved as --on-conflict says.
    const pre = await plan({
      source: config.source,
      target: config.target,
      targetFromSource: config.targetFromSource,
      onConflict: config.onConflict,
      apply: config.onConflict !== null,
    });
    if (pre.findings.some((f) => f.level !== 'ok')) {
      const report = formatPlanReport(pre).trimEnd().split('\n');
      for (const line of report) if (!line.startsWith('ok ')) log(`plan: ${line.replace(/^plan: /, '')}`);
    }
    if (pre.hardFailure) {
      const first = pre.findings.find((f) => f.level === 'fail');
      const hint =
        first?.check === 'conflicts'
          ? ' (a restarted rehome finds the leftovers of interrupted moves here: --on-conflict target keeps the target copies, as DESIGN.md rule 3 does)'
          : '';
      if (!config.force) {
        throw new RehomeError('EPLAN', `pre-flight check failed: ${first?.message ?? 'see the log'}${hint}; fix it, or pass --force`);
      }
      log('pre-flight checks failed; starting anyway (--force)');
    }
    const controlOpts = {
      // MIGRATE's own timeout plus a margin: past it the source is taken as unresponsive.
      commandTimeoutMs: config.migrateTimeoutMs + 1_000,
      connectTimeoutMs: config.connectTimeoutMs,
    };
    const source = new ControlPool(config.source, controlOpts, 'source');
    const target = new ControlPool(config.target, controlOpts, 'target');
    const sweepSource = new ControlPool(config.source, controlOpts, 'source');
    try {
      const commandReply = (await target.db(0).call('COMMAND')) as unknown[];
      const table = new CommandTable(commandReply);
      let databases = 16;
      try {
        const r = (await target.db(0).call('CONFIG', 'GET', 'databases')) as string[];
        if (r.length === 2 && Number(r[1]) > 0) databases = Number(r[1]);
      } catch {
        // CONFIG may be renamed or denied by ACL: keep Redis's default.
      }
      const targetAuthRequired = await needsAuth(config.target, config.connectTimeoutMs);
      const cache = new KnownAbsentCache(config.absentCacheSize);
      const dest = config.targetFromSource ?? { host: config.target.host, port: config.target.port };
      const mover = new Mover(source, target, cache, {
        host: dest.host,
        port: dest.port,
        ...(config.target.username !== undefined ? { username: config.target.username } : {}),
        ...(config.target.password !== undefined ? { password: config.target.password } : {}),
        timeoutMs: config.migrateTimeoutMs,
      }, sweepSource);
      // Half-open: a client that shuts down its sending side still gets every reply.
      const server = net.createServer({ allowHalfOpen: true });
      let proxy: RehomeProxy | null = null;
      const ctx: SessionContext = {
        table,
        mover,
        source,
        target,
        targetEndpoint: config.target,
        targetAuthRequired,
        databases,
        limits: config.limits,
        maxPending: config.maxPendingPerClient,
        onClose: (s) => proxy?.sessions.delete(s),
        counters: { commands: 0 },
        observeLatency: (sec) => proxy?.metrics.commandLatency.observe(sec),
      };
      const migration = new Migration(
        source,
        mover,
        {
          sweep: config.sweep,
          sweeper: {
            budgetMs: config.sweepBudgetMs,
            rate: config.sweepRate,
            bigKeyBytes: config.bigKeyBytes,
            migrateTimeoutMs: config.migrateTimeoutMs,
          },
          watchIntervalMs: 1_000,
        },
        log,
      );
      await migration.start();
      proxy = new RehomeProxy(config, server, ctx, source, target, log, migration, {
        source: src.version,
        target: tgt.version,
      }, sweepSource);
      const p = proxy;
      server.on('connection', (sock) => {
        if (p.stopping) {
          sock.destroy();
          return;
        }
        const s = new Session(sock, ctx, p.nextId++);
        p.sessions.add(s);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', (e: NodeJS.ErrnoException) => {
          reject(
            new RehomeError(
              'ELISTEN',
              `cannot listen on ${describeEndpoint(config.listen)}: ${e.code === 'EADDRINUSE' ? 'address already in use' : e.message}`,
            ),
          );
        });
        server.listen(config.listen.port, config.listen.host, () => resolve());
      });
      server.on('error', (e) => log(`server error: ${e.message}`));
      if (config.admin) {
        try {
          p.admin = await startAdmin(p, config.admin.host, config.admin.port);
        } catch (e) {
          server.close();
          throw new RehomeError('ELISTEN', `cannot listen on admin ${describeEndpoint(config.admin)}: ${(e as Error).message}`);
        }
      }
      log(
        `source ${describeEndpoint(config.source)} (redis ${src.version}), target ${describeEndpoint(config.target)} (redis ${tgt.version}), ${table.size} commands, ${databases} dbs`,
      );
      return proxy;
    } catch (e) {
      await Promise.all([source.close(), target.close(), sweepSource.close()]);
      throw e;
    }
  }

  /** The address actually listened on. */
  address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The admin endpoint's address, if one is listening. */
  adminAddress(): { host: string; port: number } | null {
    const a = this.admin?.address() as net.AddressInfo | null | undefined;
    return a ? { host: a.address, port: a.port } : null;
  }

  get clients(): number {
    return this.sessions.size;
  }

  get mover(): Mover {
    return this.ctx.mover;
  }

  /** Where the migration stands, for /status and `rehome status`. */
  status(): Record<string, unknown> {
    const m = this.migration;
    const sw = m.sweeper;
    const st = this.ctx.mover.stats;
    return {
      phase: m.phase,
      source: describeEndpoint(this.config.source),
      target: describeEndpoint(this.config.target),
      versions: this.versions,
      uptime_s: Math.round((Date.now() - m.startedAt) / 1000),
      keys: {
        initial_in_source: m.initialKeys,
        remaining_total: m.remainingTotal,
        remaining_per_db: m.remainingPerDb,
        moved_on_touch: st.keysMovedOnTouch,
        moved_by_sweeper: st.keysMovedBySweeper,
        confirmed_absent: st.keysAbsent,
        in_both_resolved: st.resolvedBoth,
        known_absent_cached: this.ctx.mover.cache.size,
      },
      rate_keys_per_s: Math.round(m.rate),
      eta_s: m.etaSeconds,
      drained_at: m.drainedAt ? new Date(m.drainedAt).toISOString() : null,
      sweeper: sw
        ? {
            state: sw.state,
            pause_reason: sw.pauseReason || null,
            batch_size: sw.batchSize,
            budget_ms: sw.opts.budgetMs,
            rate_limit: sw.opts.rate || null,
            errors: sw.errors,
            last_error: sw.lastError || null,
          }
        : { state: 'disabled' },
      big_keys: sw ? { total: sw.bigKeysTotal, listed: sw.bigKeys } : { total: 0, listed: [] },
      errors_by_kind: st.errorsByKind,
      move_failures: st.failures,
      migrate_calls: st.migrateCalls,
      source_restarted: m.sourceRestarted
        ? { at: new Date(m.sourceRestarted.at).toISOString(), run_id: m.sourceRestarted.after.runId }
        : null,
      source_reachable: m.watch.reachable,
      clients: this.sessions.size,
    };
  }

  /** Stops accepting, lets in-flight commands finish (up to the timeout), then closes. */
  close(timeoutMs = this.config.shutdownTimeoutMs): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.server.close();
      this.admin?.close();
      for (const s of this.sessions) s.shutdown();
      const deadline = Date.now() + timeoutMs;
      while (this.sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (this.sessions.size > 0) {
        this.log(`closing ${this.sessions.size} client(s) with commands still in flight`);
        for (const s of [...this.sessions]) s.destroy();
      }
      await this.migration.stop();
      await Promise.all([this.source.close(), this.target.close(), this.sweepSource.close()]);
    })();
    return this.stopping;
  }
}
