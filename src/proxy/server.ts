/**
 * The proxy's lifecycle: checks both servers, loads the target's command table, accepts clients
 * (one Session each), and stops gracefully.
 */
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import os from 'node:os';
import { Redis } from 'ioredis';
import { CommandTable } from '../commands/table.js';
import type { ProxyConfig } from '../config.js';
import { RehomeError } from '../errors.js';
import { KnownAbsentCache } from '../migration/absent-cache.js';
import { Migration } from '../migration/migration.js';
import { Mover } from '../migration/mover.js';
import { fencedName, lastActedPhase, PhaseController, type PhaseName, type PhaseState, type ProcessView, type SwitchablePhase } from '../phase/phase.js';
import { PING_REQUEST } from '../resp/request-framer.js';
import { formatPlanReport, plan } from '../tools/plan.js';
import { ControlPool } from '../upstream/control.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { IdleReaper, refuseConnection } from '../session/limits.js';
import { Session, type SessionContext } from './session.js';
import { SharedLanes } from './shared-lane.js';

/** Logging sink (the CLI prints; tests may collect). */
export type Logger = (line: string) => void;

/** What the proxy reports as it works (the metrics, when the admin endpoint is on). */
export interface ProxyObserver {
  /** A sampled command: seconds from being framed to its reply being ready. */
  observeCommand(seconds: number): void;
  /** One MIGRATE sent to the source: how long it took, the keys it named, whether it succeeded. */
  observeMigrate(ms: number, keys: number, ok: boolean): void;
}

/** An endpoint started beside the proxy (the admin endpoint): listed in the fleet view, closed with the proxy. */
export interface AdminEndpoint {
  address(): { host: string; port: number };
  close(): void;
}

/** How the proxy is started; the hooks let the layers above it (src/start.ts) plug in. */
export interface StartOptions {
  /**
   * false skips the checks of `rehome plan` (and their --on-conflict resolution): for a worker
   * process started while other workers of the same proxy already serve clients.
   */
  preflight?: boolean;
  observer?: ProxyObserver;
  /**
   * Started once the proxy listens and before it joins the fleet, so the fleet view names its
   * address; a rejection stops the proxy and is start's error.
   */
  startAdmin?: (proxy: RehomeProxy) => Promise<AdminEndpoint>;
}

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
    sock.on('connect', () => sock.write(PING_REQUEST));
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

/** The phases a runtime can serve (legacy: a proxy started without phases, always migrate). */
type RuntimePhase = 'hold' | 'migrate' | 'drained' | 'reverse';

/**
 * Everything that belongs to one phase at one epoch: the upstream pools (named for the epoch),
 * the mover and its cache, the migration, and the sessions started under it. A switch retires
 * the runtime whole and starts a new one.
 */
interface Runtime {
  phase: RuntimePhase;
  /** 0 without phases. */
  epoch: number;
  ctx: SessionContext;
  migration: Migration;
  pools: ControlPool[];
  sessions: Set<Session>;
  /** Shared connections to the target (null: --shared-connections 0). */
  lanes: SharedLanes | null;
  /** Keeps idle own connections of clients on the lanes open (Session.keepOwnAlive). */
  keepalive: NodeJS.Timeout | null;
}

/** A running proxy. */
export class RehomeProxy {
  private readonly sessions = new Set<Session>();
  private admin: AdminEndpoint | null = null;
  private nextId = 1;
  private stopping: Promise<void> | null = null;
  /** Closes idle clients (--timeout); null when off. */
  private idle: IdleReaper | null = null;
  private rt: Runtime | null = null;
  /** The last runtime's migration, kept for status while a switch is under way. */
  private lastMigration: Migration;
  private readonly counters = { commands: 0, sharedCommands: 0, sharedFailures: 0 };
  private readonly tables = new Map<string, CommandTable>();
  /** Clients that connected while the phase was fencing: they wait for the new runtime. */
  private readonly pending = new Set<net.Socket>();
  private rebuilding: Promise<void> = Promise.resolve();
  private readonly drainedListeners: Array<() => void> = [];
  private drainedFired = false;
  /** Every process's view of the phase (refreshed every second with phases on). */
  fleet: ProcessView[] = [];
  private fleetTimer: NodeJS.Timeout | null = null;
  readonly processId = `${os.hostname()}:${process.pid}:${randomBytes(3).toString('hex')}`;

  private constructor(
    readonly config: ProxyConfig,
    private readonly server: net.Server,
    private readonly log: Logger,
    readonly versions: { source: string; target: string },
    private readonly authRequired: { old: boolean; new: boolean },
    private readonly databases: number,
    readonly phases: PhaseController | null,
    private readonly observer: ProxyObserver | null,
  ) {
    this.lastMigration = null as unknown as Migration;
  }

  /** The figures /metrics exports, read when it is scraped. */
  figures() {
    const m = this.migration;
    const st = m.mover.stats;
    return {
      commands: this.counters.commands,
      sharedCommands: this.counters.sharedCommands,
      sharedFailures: this.counters.sharedFailures,
      clients: this.sessions.size,
      movedOnTouch: st.keysMovedOnTouch,
      movedBySweeper: st.keysMovedBySweeper,
      remainingPerDb: m.remainingPerDb,
      drained: m.phase === 'drained',
      rate: m.rate,
      errorsByKind: st.errorsByKind,
      moveFailures: st.failures,
      cacheSize: m.mover.cache.size,
      bigKeys: m.sweeper?.bigKeysTotal ?? 0,
      phase: this.phaseName,
      epoch: this.phases?.state.epoch ?? 0,
    };
  }

  /** Starts a proxy; the admin endpoint and the metrics come from the caller (src/start.ts). */
  static async start(config: ProxyConfig, log: Logger = () => {}, opts: StartOptions = {}): Promise<RehomeProxy> {
    const [src, tgt] = await Promise.all([
      probeServer('source', config.source, config.connectTimeoutMs),
      probeServer('target', config.target, config.connectTimeoutMs),
    ]);
    if (src.runId !== '' && src.runId === tgt.runId) {
      throw new RehomeError('ESAME', 'source and target are the same server (same run_id)');
    }
    const id = `${os.hostname()}:${process.pid}`;
    // Phases: the phase key on the old server decides; --phase creates it when it is missing.
    const phases = await PhaseController.open(
      { old: config.source, new: config.target, id, pollMs: config.phasePollMs, connectTimeoutMs: config.connectTimeoutMs },
      config.phase,
    );
    try {
      if (phases && config.phase !== null && phases.state.phase !== config.phase && phases.state.phase !== 'fencing') {
        log(`the old server's phase key says ${phases.state.phase} (epoch ${phases.state.epoch}); --phase ${config.phase} applies only to a fresh deployment`);
      }
      // The pre-flight checks of `rehome plan` (only for a migration: hold moves nothing yet).
      if (opts.preflight !== false &&
          (!phases || phases.state.phase === 'migrate' || (phases.state.phase === 'fencing' && phases.state.next === 'migrate'))) {
        await preflight(config, log);
      }
      const authRequired = {
        old: await needsAuth(config.source, config.connectTimeoutMs),
        new: await needsAuth(config.target, config.connectTimeoutMs),
      };
      let databases = 16;
      const probe = new ControlPool(config.target, { commandTimeoutMs: config.connectTimeoutMs * 2, connectTimeoutMs: config.connectTimeoutMs }, 'target');
      try {
        const r = (await probe.db(0).call('CONFIG', 'GET', 'databases')) as string[];
        if (r.length === 2 && Number(r[1]) > 0) databases = Number(r[1]);
      } catch {
        // CONFIG may be renamed or denied by ACL: keep Redis's default.
      } finally {
        await probe.close();
      }
      // Half-open: a client that shuts down its sending side still gets every reply.
      const server = net.createServer({ allowHalfOpen: true });
      const p = new RehomeProxy(config, server, log, { source: src.version, target: tgt.version }, authRequired, databases, phases, opts.observer ?? null);
      if (phases) {
        phases.onChange((s) => p.onPhaseChange(s));
        phases.view = () => ({
          phase: p.rt?.phase ?? 'fencing',
          epoch: p.rt?.epoch ?? phases.state.epoch,
          clients: p.sessions.size,
          listen: describeEndpoint(p.address()),
          admin: p.adminAddress() ? describeEndpoint(p.adminAddress()!) : null,
        });
      }
      const first = phases ? await p.waitForPhase() : null;
      p.rt = await p.buildRuntime(first);
      p.lastMigration = p.rt.migration;
      server.on('connection', (sock) => p.accept(sock));
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
      }).catch(async (e: unknown) => {
        await p.retire(p.rt!, 'stopping');
        throw e;
      });
      server.on('error', (e) => log(`server error: ${e.message}`));
      p.idle = new IdleReaper(config.clientLimits.idleTimeoutMs, () => p.sessions);
      p.idle.start();
      if (opts.startAdmin) {
        try {
          p.admin = await opts.startAdmin(p);
        } catch (e) {
          server.close();
          await p.retire(p.rt!, 'stopping');
          throw e;
        }
      }
      if (phases) {
        phases.start();
        p.fleetTimer = setInterval(() => {
          phases.fleet().then((f) => (p.fleet = f), () => undefined);
        }, 1_000);
        p.fleetTimer.unref();
      }
      log(
        `source ${describeEndpoint(config.source)} (redis ${src.version}), target ${describeEndpoint(config.target)} (redis ${tgt.version}), ${p.rt.ctx.table.size} commands, ${databases} dbs` +
          (phases ? `; phase ${p.rt.phase} (epoch ${p.rt.epoch})` : ''),
      );
      return p;
    } catch (e) {
      await phases?.close();
      throw e;
    }
  }

  /** The shared phase once it is not fencing (a switch under way finishes first). */
  private async waitForPhase(): Promise<PhaseState> {
    const c = this.phases!;
    const deadline = Date.now() + this.config.fenceWaitMs;
    for (;;) {
      const s = (await c.fresh()) ?? c.state;
      if (s.phase !== 'fencing') return s;
      if (Date.now() > deadline) {
        throw new RehomeError('EFENCED', `the phase has been fencing (switch to ${s.next ?? '?'}) for over ${this.config.fenceWaitMs} ms: a switch did not finish; run rehome phase again`);
      }
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** The command table of one server (its own COMMAND reply), loaded once. */
  private async table(pool: ControlPool): Promise<CommandTable> {
    const k = describeEndpoint(pool.endpoint);
    let t = this.tables.get(k);
    if (!t) {
      t = new CommandTable((await pool.db(0).call('COMMAND')) as unknown[]);
      this.tables.set(k, t);
    }
    return t;
  }

  /** Builds the runtime for a phase (null: no phases, migrate as a legacy proxy). */
  private async buildRuntime(state: PhaseState | null): Promise<Runtime> {
    const config = this.config;
    const phase: RuntimePhase = state === null ? 'migrate' : (state.phase as RuntimePhase);
    const epoch = state?.epoch ?? 0;
    const phases = this.phases;
    const controlOpts = {
      // MIGRATE's own timeout plus a margin: past it the source is taken as unresponsive.
      commandTimeoutMs: config.migrateTimeoutMs + 1_000,
      connectTimeoutMs: config.connectTimeoutMs,
    };
    const reverse = phase === 'reverse' || phase === 'hold';
    // Which server keys move out of (source) and which one clients talk to (target).
    const srcEp = reverse ? config.target : config.source;
    const tgtEp = reverse ? config.source : config.target;
    const pool = (ep: Endpoint, role: 'source' | 'target', name: string) =>
      new ControlPool(ep, controlOpts, role, phases ? { name: fencedName(epoch, name), check: () => phases.verify(epoch) } : null);
    const source = pool(srcEp, 'source', 'source');
    const target = pool(tgtEp, 'target', 'target');
    const sweepSource = pool(srcEp, 'source', 'sweep');
    const pools = [source, target, sweepSource];
    try {
      const table = await this.table(target);
      const cache = new KnownAbsentCache(config.absentCacheSize);
      const dest = reverse
        ? (config.sourceFromTarget ?? { host: config.source.host, port: config.source.port })
        : (config.targetFromSource ?? { host: config.target.host, port: config.target.port });
      const mover = new Mover(source, target, cache, {
        host: dest.host,
        port: dest.port,
        ...(tgtEp.username !== undefined ? { username: tgtEp.username } : {}),
        ...(tgtEp.password !== undefined ? { password: tgtEp.password } : {}),
        timeoutMs: config.migrateTimeoutMs,
      }, sweepSource);
      const observer = this.observer;
      if (observer) mover.onMigrate = (ms, keys, ok) => observer.observeMigrate(ms, keys, ok);
      const fence = phases ? { epoch, verify: () => phases.verify(epoch) } : null;
      const lanes = config.sharedConnections > 0 ? new SharedLanes(config.sharedConnections, tgtEp, fence, this.counters, config.keepaliveMs) : null;
      const rt: Runtime = {
        phase,
        epoch,
        pools,
        lanes,
        keepalive: null,
        sessions: new Set(),
        migration: null as unknown as Migration,
        ctx: {
          table,
          mover,
          source,
          target,
          targetEndpoint: tgtEp,
          targetAuthRequired: reverse ? this.authRequired.old : this.authRequired.new,
          databases: this.databases,
          limits: config.limits,
          clientLimits: config.clientLimits,
          log: this.log,
          maxPending: config.maxPendingPerClient,
          onClose: (s) => {
            this.sessions.delete(s);
            rt.sessions.delete(s);
          },
          counters: this.counters,
          lanes,
          observeLatency: observer ? (sec) => observer.observeCommand(sec) : () => {},
          fence,
          // The phase key is on the old server: hidden wherever a client reads the old server.
          hideSide: phases === null ? null : phase === 'migrate' ? 'source' : phase === 'drained' ? null : 'target',
        },
      };
      const passThrough = phase === 'hold' || phase === 'drained';
      rt.migration = new Migration(
        source,
        mover,
        {
          sweep: config.sweep,
          passThrough,
          sweeper: {
            budgetMs: config.sweepBudgetMs,
            rate: config.sweepRate,
            bigKeyBytes: config.bigKeyBytes,
            migrateTimeoutMs: config.migrateTimeoutMs,
          },
          watchIntervalMs: 1_000,
        },
        this.log,
      );
      if (!passThrough) await rt.migration.start();
      rt.migration.onDrained(() => this.onRuntimeDrained(rt));
      if (lanes !== null && config.keepaliveMs > 0) {
        // A client working on the shared lanes leaves its own connection idle: keep it open
        // under a server `timeout` (Session.keepOwnAlive).
        rt.keepalive = setInterval(() => {
          for (const s of rt.sessions) s.keepOwnAlive();
        }, config.keepaliveMs);
        rt.keepalive.unref();
      }
      return rt;
    } catch (e) {
      await Promise.all(pools.map((p) => p.close()));
      throw e;
    }
  }

  private accept(sock: net.Socket): void {
    if (this.stopping) {
      sock.destroy();
      return;
    }
    if (this.sessions.size + this.pending.size >= this.config.clientLimits.maxClients) {
      refuseConnection(sock);
      return;
    }
    const rt = this.rt;
    if (rt === null) {
      // A switch is under way: the client waits (unread) for the new phase.
      sock.pause();
      this.pending.add(sock);
      sock.on('close', () => this.pending.delete(sock));
      sock.on('error', () => sock.destroy());
      return;
    }
    const s = new Session(sock, rt.ctx, this.nextId++);
    this.sessions.add(s);
    rt.sessions.add(s);
  }

  /** The phase changed (seen by the poll, a fence check or this process's own switch). */
  private onPhaseChange(s: PhaseState): void {
    const rt = this.rt;
    if (rt !== null && s.epoch === rt.epoch && (
      (rt.phase === 'migrate' && s.phase === 'drained') || (rt.phase === 'reverse' && s.phase === 'hold'))) {
      // The end of a drain, same epoch: nothing changes for clients, the source is empty.
      this.log(`phase ${rt.phase} -> ${s.phase} (epoch ${s.epoch}): the ${rt.phase === 'migrate' ? 'old' : 'new'} server is empty`);
      rt.phase = s.phase;
      rt.migration.setDrained();
      return;
    }
    if (rt !== null && s.epoch === rt.epoch && s.phase === rt.phase) return;
    this.rebuilding = this.rebuilding.then(() => this.switchRuntime()).catch((e: Error) => {
      this.log(`phase switch failed: ${e.message}; retrying`);
      setTimeout(() => this.onPhaseChange(this.phases!.state), 500).unref();
    });
  }

  /** Retires the current runtime and builds the one the shared phase now asks for. */
  private async switchRuntime(): Promise<void> {
    const c = this.phases!;
    const want = c.state;
    const rt = this.rt;
    if (this.stopping) return;
    if (rt !== null && want.epoch === rt.epoch && (want.phase === rt.phase)) return;
    if (rt !== null) {
      this.rt = null;
      this.log(`phase ${rt.phase} (epoch ${rt.epoch}) -> ${want.phase === 'fencing' ? `fencing for ${want.next ?? '?'}` : want.phase} (epoch ${want.epoch}): closing ${rt.sessions.size} client connection(s) of the old phase`);
      await this.retire(rt, `the phase changed to ${want.phase === 'fencing' ? (want.next ?? 'fencing') : want.phase} (epoch ${want.epoch}); reconnect`);
    }
    if (want.phase === 'fencing') {
      // Wait for the switch to finish (the poll calls back); clients connecting now wait.
      setTimeout(() => {
        if (this.rt === null && c.state.phase === 'fencing') this.failPending('the phase switch did not finish in time');
      }, this.config.fenceWaitMs).unref();
      return;
    }
    const next = await this.buildRuntime(want);
    if (this.stopping) {
      await this.retire(next, 'stopping');
      return;
    }
    this.rt = next;
    this.lastMigration = next.migration;
    this.log(`phase ${next.phase} (epoch ${next.epoch}) in effect`);
    for (const sock of [...this.pending]) {
      this.pending.delete(sock);
      this.accept(sock);
      sock.resume();
    }
    // The phase may have moved on while this one was being built.
    if (c.state.epoch !== next.epoch || (c.state.phase !== next.phase && c.state.phase !== 'drained' && c.state.phase !== 'hold')) {
      this.onPhaseChange(c.state);
    }
  }

  private failPending(why: string): void {
    for (const sock of [...this.pending]) {
      this.pending.delete(sock);
      sock.destroy();
    }
    if (why) this.log(`clients waiting for the phase were closed: ${why}`);
  }

  /** Closes a runtime's clients (in-flight commands get an error) and its upstream connections. */
  private async retire(rt: Runtime, why: string): Promise<void> {
    for (const s of [...rt.sessions]) s.fail(why);
    if (rt.keepalive !== null) clearInterval(rt.keepalive);
    rt.lanes?.close(why);
    await rt.migration.stop();
    await Promise.all(rt.pools.map((p) => p.close()));
  }

  private onRuntimeDrained(rt: Runtime): void {
    if (this.phases && (rt.phase === 'migrate' || rt.phase === 'reverse')) {
      // Tell every process: the phase becomes drained (or hold after a reverse).
      void this.phases.markDrained(rt.epoch, rt.phase);
    }
    if (rt.phase === 'migrate' || rt.phase === 'drained') this.fireDrained();
  }

  private fireDrained(): void {
    if (this.drainedFired) return;
    this.drainedFired = true;
    for (const f of this.drainedListeners.splice(0)) f();
  }

  /** Calls `f` once the migration has drained the old server (now, if it has). */
  onDrained(f: () => void): void {
    if (this.drainedFired) f();
    else this.drainedListeners.push(f);
  }

  /**
   * Switches the phase of every process on this pair (the fenced switch, src/phase/phase.ts).
   * The preconditions (preconditions()) are decided inside the fence; the same checks made
   * before it only spare every client a reconnect when the answer is already no.
   */
  async switchPhase(to: SwitchablePhase): Promise<{ from: string; to: string; epoch: number; killed: number }> {
    const c = this.phases;
    if (!c) {
      throw new RehomeError('ENOPHASE', 'phases are not in use on this pair: start every rehome process with --phase hold|migrate');
    }
    // hold's check needs nothing from the phase of before, and refuses even when the phase is
    // hold already: keys on the new server are worth an error then too.
    if (to === 'hold') await this.preconditions(to, null);
    const cur = (await c.fresh()) ?? c.state;
    if (cur.phase === to) return { from: cur.phase, to: cur.phase, epoch: cur.epoch, killed: 0 };
    if (to !== 'hold') await this.preconditions(to, lastActedPhase(cur));
    const r = await c.switchTo(to, this.processId, (prev) => this.preconditions(to, prev)).catch((e: Error) => {
      this.log(`phase switch to ${to} failed: ${e.message}`);
      throw e;
    });
    this.log(`phase switched ${r.from} -> ${to} (epoch ${r.epoch}); ${r.killed} connection(s) of older epochs killed`);
    return { from: r.from, to, epoch: r.epoch, killed: r.killed };
  }

  /**
   * Refuses a switch to `to` from the phase the fleet acts on (`from`; null when unknown: every
   * check applies). Its answer decides only inside the fence (switchTo's step 3): before it,
   * moves and writes of the old phase can still change what these checks see.
   */
  private async preconditions(to: SwitchablePhase, from: PhaseName | null): Promise<void> {
    if (to === 'hold') {
      // Keys there would vanish for clients, and come back at the next migrate.
      const n = await this.keysOnNew();
      if (n > 0) {
        throw new RehomeError('EPHASE', `cannot switch to hold: the new server holds ${n} keys, which clients would no longer see; switch to reverse and wait until it is drained (the phase then becomes hold by itself)`);
      }
    }
    if (to === 'migrate' && from !== 'drained') {
      // The pre-flight checks of `rehome plan` (conflicts above all: a key already on the new
      // server would win over the old copy). From drained (keys written to the old server
      // directly since) the new server is full by design: migrate sweeps them again.
      const pre = await plan({
        source: this.config.source,
        target: this.config.target,
        targetFromSource: this.config.targetFromSource,
        onConflict: null,
        apply: false,
      });
      const first = pre.findings.find((f) => f.level === 'fail');
      if (pre.hardFailure) {
        throw new RehomeError('EPLAN', `cannot switch to migrate: pre-flight check failed: ${first?.message ?? 'see rehome plan'}`);
      }
    }
  }

  private async keysOnNew(): Promise<number> {
    const c = new ControlPool(this.config.target, { commandTimeoutMs: 5_000, connectTimeoutMs: this.config.connectTimeoutMs }, 'target');
    try {
      const text = await c.db(0).info('keyspace');
      let n = 0;
      for (const m of text.matchAll(/^db\d+:keys=(\d+)/gm)) n += Number(m[1]);
      return n;
    } finally {
      await c.close();
    }
  }

  /** The address actually listened on. */
  address(): { host: string; port: number } {
    const a = this.server.address() as net.AddressInfo;
    return { host: a.address, port: a.port };
  }

  /** The admin endpoint's address, if one is listening. */
  adminAddress(): { host: string; port: number } | null {
    return this.admin?.address() ?? null;
  }

  get clients(): number {
    return this.sessions.size;
  }

  /** The current phase's migration (the last one while a switch is under way). */
  get migration(): Migration {
    return this.rt?.migration ?? this.lastMigration;
  }

  get mover(): Mover {
    return this.migration.mover;
  }

  /** The phase as status shows it: migrating|drained without phases, else the shared phase. */
  get phaseName(): string {
    if (!this.phases) return this.migration.phase;
    return this.rt?.phase ?? 'fencing';
  }

  /** Where the migration stands, for /status and `rehome status`. */
  status(): Record<string, unknown> {
    const m = this.migration;
    const sw = m.sweeper;
    const st = m.mover.stats;
    const c = this.phases;
    return {
      phase: this.phaseName,
      epoch: c ? (this.rt?.epoch ?? c.state.epoch) : null,
      phases: c
        ? {
            shared: { phase: c.state.phase, epoch: c.state.epoch, next: c.state.next, since: new Date(c.state.since).toISOString(), by: c.state.by },
            processes: this.fleet,
            read_error: c.error || null,
          }
        : null,
      direction: this.rt?.phase === 'reverse' ? 'new -> old' : this.rt?.phase === 'migrate' || !this.phases ? 'old -> new' : null,
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
        known_absent_cached: m.mover.cache.size,
      },
      rate_keys_per_s: Math.round(m.rate),
      eta_s: m.etaSeconds,
      drained_at: m.drainedAt && m.phase === 'drained' && this.phaseName !== 'hold' ? new Date(m.drainedAt).toISOString() : null,
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
      source_reachable: m.watch?.reachable ?? true,
      clients: this.sessions.size,
      shared_connections: this.rt?.lanes?.stats() ?? null,
    };
  }

  /** Stops accepting, lets in-flight commands finish (up to the timeout), then closes. */
  close(timeoutMs = this.config.shutdownTimeoutMs): Promise<void> {
    if (this.stopping) return this.stopping;
    this.stopping = (async () => {
      this.server.close();
      this.idle?.stop();
      this.admin?.close();
      if (this.fleetTimer) clearInterval(this.fleetTimer);
      this.failPending('');
      for (const s of this.sessions) s.shutdown();
      const deadline = Date.now() + timeoutMs;
      while (this.sessions.size > 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 20));
      }
      if (this.sessions.size > 0) {
        this.log(`closing ${this.sessions.size} client(s) with commands still in flight`);
        for (const s of [...this.sessions]) s.destroy();
      }
      await this.rebuilding.catch(() => undefined);
      const rt = this.rt;
      this.rt = null;
      if (rt) await this.retire(rt, 'stopping');
      await this.phases?.close();
    })();
    return this.stopping;
  }
}

/** The pre-flight checks of `rehome plan`, conflicts resolved as --on-conflict says. */
async function preflight(config: ProxyConfig, log: Logger): Promise<void> {
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
}
