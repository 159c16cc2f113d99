/**
 * The fault-injection harness (issue 5 section 1): one scenario = a source seeded with tens of
 * thousands of counters and payload keys, proxies with the sweeper on, concurrent clients INCRing
 * counters through the proxies, faults injected on a schedule drawn from a seed, then the drain and
 * the checks:
 *   - every counter: acked <= final - base <= acked + unknown;
 *   - every payload key intact, byte for byte;
 *   - no key in both servers;
 *   - the source empty.
 * A failure names the seed and the fault schedule; REHOME_FAULT_SEED=<seed> replays the schedule
 * (timings are the schedule's; what the servers do within them may differ run to run).
 *
 * Two lengths: the default (npm test) is the short one, REHOME_FAULTS=long (npm run test:faults)
 * the long one. Both run every scenario with the same kinds of faults, each lasting as long; the
 * short one seeds fewer keys (and sweeps them slower, so keys are still moving when the faults end),
 * repeats some faults fewer times (reps()) and halves the quiet time between them (FaultEnv.rest()).
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { beforeAll } from 'vitest';
import { type PairContext, type PairOptions, usePair } from '../helpers/fixture.js';
import { ALL_DBS, assertNoKeyInBoth, connect, keysByDb } from '../helpers/invariant.js';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { standardCerts } from '../helpers/tls.js';
import { prng, sleep, waitFor, withTimeout } from '../helpers/util.js';
import {
  checkCounters,
  checkPayloads,
  seedCounters,
  seedPayloads,
  startCounterWorkload,
  type CounterResults,
  type CounterSummary,
  type PayloadSet,
} from '../helpers/workload.js';

/** REHOME_FAULTS=long: the long version of the suite (npm run test:faults, also run by CI). */
export const LONG_FAULTS = process.env.REHOME_FAULTS === 'long';

/** How many times a fault repeats (or how many keys there are): `short` by default, `long` with REHOME_FAULTS=long. */
export function reps(short: number, long: number): number {
  return LONG_FAULTS ? long : short;
}

/**
 * The short version's quiet time between faults, as a share of the long one's. A fault's own length
 * (a SIGSTOP past MIGRATE's timeout, a relay mode, an out-of-memory spell) is never scaled: that is
 * what makes it take effect.
 */
const SHORT_REST = 0.5;

/** The run's seed: REHOME_FAULT_SEED when set, else random; logged once per file. */
export function faultSeed(file: string): number {
  const env = process.env.REHOME_FAULT_SEED;
  const seed = env !== undefined && env !== '' ? Number(env) >>> 0 : Math.floor(Math.random() * 2 ** 31);
  console.log(
    `[faults] ${file}: REHOME_FAULT_SEED=${seed}${env ? ' (from the environment)' : ' (random)'}, ` +
      `${LONG_FAULTS ? 'long' : 'short'} version`,
  );
  return seed;
}

/**
 * REHOME_FAULT_TLS=1 runs every scenario with TLS on every side: clients reach the proxies only
 * over --tls-port (--listen none), the proxies reach both servers only over rediss:// (the target
 * asks for a client certificate). MIGRATE still goes from the source to the target's plain port:
 * the source has no tls-cluster. The test itself seeds and checks on the plain ports.
 */
const FAULT_TLS = process.env.REHOME_FAULT_TLS === '1';
const certs = FAULT_TLS ? standardCerts() : null;
/** Each pair's TLS ports, chosen before its servers start. */
const tlsPortsOf = new WeakMap<PairContext, { source: number; target: number }>();

/** usePair for the fault suite: with REHOME_FAULT_TLS=1 the servers get a TLS port each. */
export function useFaultPair(opts: PairOptions): PairContext {
  if (!certs) return usePair(opts);
  const sourceArgs = [...(opts.source?.args ?? [])];
  const targetArgs = [...(opts.target?.args ?? [])];
  const ports = { source: 0, target: 0 };
  // Registered before usePair's: the ports are known when it starts the servers.
  beforeAll(async () => {
    ports.source = await freePort();
    ports.target = await freePort();
    sourceArgs.push(...certs.redisArgs(ports.source, 'no'));
    targetArgs.push(...certs.redisArgs(ports.target, 'yes'));
  });
  const ctx = usePair({ ...opts, source: { ...opts.source, args: sourceArgs }, target: { ...opts.target, args: targetArgs } });
  tlsPortsOf.set(ctx, ports);
  return ctx;
}

/** The proxy flags for TLS on every side (REHOME_FAULT_TLS=1), listening for clients on `port`. */
function tlsProxyArgs(ctx: PairContext, port: number): string[] {
  if (!certs) return [];
  return [
    '--listen', 'none',
    '--tls-port', `127.0.0.1:${port}`,
    '--tls-cert-file', certs.file('server.crt'),
    '--tls-key-file', certs.file('server.key'),
    '--tls-auth-clients', 'no',
    '--source-tls-ca-cert-file', certs.file('ca.crt'),
    '--target-tls-ca-cert-file', certs.file('ca.crt'),
    '--target-tls-cert-file', certs.file('client.crt'),
    '--target-tls-key-file', certs.file('client.key'),
    '--target-from-source', `127.0.0.1:${ctx.target.port}`,
  ];
}

/** Small stable hash of a scenario name, mixed into the seed so scenarios differ. */
function nameHash(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

function deal<T>(rnd: () => number, items: readonly T[], n: number): T[] {
  const out: T[] = [];
  while (out.length < n) {
    const round = [...items];
    for (let i = round.length - 1; i > 0; i--) {
      const j = Math.floor(rnd() * (i + 1));
      [round[i], round[j]] = [round[j]!, round[i]!];
    }
    out.push(...round.slice(0, n - out.length));
  }
  return out;
}

/** A proxy on fixed listen and admin ports, so it can be killed and come back where clients dial. */
export class ManagedProxy {
  handle: ProxyHandle | null = null;
  /** Every handle this proxy had, for stderr on failure. */
  readonly lives: ProxyHandle[] = [];
  /** When the current life started listening (Date.now()). */
  startedAt = 0;

  constructor(
    private readonly env: FaultEnv,
    readonly index: number,
    readonly port: number,
    readonly adminPort: number,
    private readonly args: string[],
  ) {}

  get url(): string {
    return `${certs ? 'rediss' : 'redis'}://127.0.0.1:${this.port}`;
  }

  get admin(): string {
    return `127.0.0.1:${this.adminPort}`;
  }

  async start(extra: string[] = []): Promise<void> {
    let last: unknown;
    // The ports were free a moment ago, or were this proxy's before it was killed: retry briefly.
    for (let attempt = 0; attempt < 20; attempt++) {
      try {
        this.handle = await startProxy({
          source: certs ? `rediss://127.0.0.1:${this.tlsPorts().source}` : this.env.ctx.source,
          target: certs ? `rediss://127.0.0.1:${this.tlsPorts().target}` : this.env.ctx.target,
          sweep: true,
          readyTimeoutMs: 30_000,
          spawn: true, // faults kill and stop processes
          args: [
            '--listen', `127.0.0.1:${this.port}`,
            '--admin', this.admin,
            '--progress', 'off',
            ...tlsProxyArgs(this.env.ctx, this.port),
            ...this.args,
            ...extra,
          ],
        });
        this.lives.push(this.handle);
        this.startedAt = Date.now();
        return;
      } catch (e) {
        last = e;
        if (!/in use|EADDRINUSE/i.test(String(e))) throw e;
        await sleep(100);
      }
    }
    throw last;
  }

  private tlsPorts(): { source: number; target: number } {
    const p = tlsPortsOf.get(this.env.ctx);
    if (!p) throw new Error('REHOME_FAULT_TLS=1: the pair was not made by useFaultPair');
    return p;
  }

  async kill(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (!h) return;
    h.proc.kill('SIGKILL');
    await withTimeout(h.exited, 10_000, `proxy ${this.index} to exit on SIGKILL`);
  }

  async stop(): Promise<void> {
    const h = this.handle;
    this.handle = null;
    if (h) await h.stop('SIGTERM', 3_000);
  }

  async post(path: string): Promise<number> {
    const r = await fetch(`http://${this.admin}${path}`, { method: 'POST' });
    await r.text();
    return r.status;
  }

  async status(): Promise<ProxyStatus> {
    const r = await fetch(`http://${this.admin}/status`);
    return (await r.json()) as ProxyStatus;
  }
}

/** The parts of GET /status the harness reads. */
export interface ProxyStatus {
  phase: string;
  sweeper: { state: string; pause_reason: string | null; errors?: number; last_error?: string | null };
  source_restarted: null | { run_id: string };
  errors_by_kind: Record<string, number>;
  keys: Record<string, unknown>;
}

/** What a scenario's fault schedule works with. */
export interface FaultEnv {
  readonly ctx: PairContext;
  readonly seed: number;
  /** The scenario's PRNG (drawn from for every timing and choice). */
  readonly rnd: () => number;
  readonly proxies: ManagedProxy[];
  /** Records one step of the schedule (printed on failure). */
  log(step: string): void;
  /** A random integer in [lo, hi]. */
  between(lo: number, hi: number): number;
  /** One of the items, at random. */
  pick<T>(items: readonly T[]): T;
  /**
   * `n` of the items in random order, every item once before any comes again: a schedule of at
   * least items.length steps has every kind of fault, however short.
   */
  deal<T>(items: readonly T[], n: number): T[];
  /**
   * Waits a quiet time between faults: between(lo, hi) ms in the long version, SHORT_REST of it in
   * the short one (the same draw from the PRNG in both, so a seed replays the same schedule).
   */
  rest(lo: number, hi: number): Promise<void>;
}

export interface ScenarioOptions {
  /** Proxies serving the pair at once (default 1). */
  proxies?: number;
  /** Extra flags for every proxy. */
  proxyArgs?: string[];
  /**
   * Sweeper keys/s while faults run (lifted afterwards); sized so the drain overlaps the faults
   * (default 500, long 2,500).
   */
  sweepRate?: number;
  /** Counters (default 1,500, long 8,000). */
  counters?: number;
  /** Payload keys, a quarter of them in db 3 (default 1,000, long 16,000). */
  payloads?: number;
  clients?: number;
  /** The fault schedule; it must leave the servers healthy when it returns. */
  faults(env: FaultEnv): Promise<void>;
  /** Undo anything a failed schedule may have left (SIGCONT, maxmemory...). Always runs. */
  heal?(env: FaultEnv): Promise<void>;
  /** Before the drain: e.g. resume a sweeper paused by a source restart. */
  beforeDrain?(env: FaultEnv): Promise<void>;
}

export interface ScenarioReport {
  name: string;
  seed: number;
  schedule: string[];
  counters: CounterSummary;
  workload: CounterResults['totals'];
  payloadKeys: number;
}

const PAYLOAD_DB_SPLIT = 3; // a quarter of the payloads live in db 3: the sweeper walks two dbs

/**
 * Runs one scenario end to end; throws (with the seed, the schedule and the proxies' logs) if any
 * check fails. `baseSeed` comes from faultSeed().
 */
export async function runScenario(
  ctx: PairContext,
  baseSeed: number,
  name: string,
  opts: ScenarioOptions,
): Promise<ScenarioReport> {
  const seed = (baseSeed ^ nameHash(name)) >>> 0;
  const rnd = prng(seed);
  const t0 = Date.now();
  const schedule: string[] = [];
  const log = (step: string) => schedule.push(`+${String(Date.now() - t0).padStart(6)} ms  ${step}`);
  const proxyArgs = [
    '--migrate-timeout-ms', '500',
    // A restarted proxy may find the leftover of a move cut off mid-way: the target copy wins
    // (docs/DESIGN.md rule 3), as the README tells an operator to do.
    '--on-conflict', 'target',
    '--sweep-rate', String(opts.sweepRate ?? reps(500, 2_500)),
    ...(opts.proxyArgs ?? []),
  ];
  const proxies: ManagedProxy[] = [];
  const between = (lo: number, hi: number) => lo + Math.floor(rnd() * (hi - lo + 1));
  const env: FaultEnv = {
    ctx,
    seed,
    rnd,
    proxies,
    log,
    between,
    pick: (items) => items[Math.floor(rnd() * items.length)]!,
    deal: (items, n) => deal(rnd, items, n),
    rest: (lo, hi) => sleep(Math.round(between(lo, hi) * (LONG_FAULTS ? 1 : SHORT_REST))),
  };
  const nCounters = opts.counters ?? reps(1_500, 8_000);
  const nPayloads = opts.payloads ?? reps(1_000, 16_000);
  let workload: ReturnType<typeof startCounterWorkload> | null = null;
  let results: CounterResults | null = null;
  const fail = async (e: unknown): Promise<never> => {
    const states = await Promise.all(
      proxies.map(async (p) => `--- proxy ${p.index} /status: ${p.handle ? JSON.stringify(await p.status().catch((x: Error) => x.message)) : 'not running'}`),
    );
    const logs = proxies
      .flatMap((p) => p.lives.map((h, i) => `--- proxy ${p.index} life ${i + 1} stderr (tail):\n${h.stderr.slice(-3000)}`))
      .join('\n');
    const wl = results ? `workload: ${JSON.stringify(results.totals)}\n` : '';
    const msg = `fault scenario '${name}' failed: ${(e as Error).message}\n` +
      `replay: REHOME_FAULT_SEED=${baseSeed} (scenario seed ${seed})\n` +
      `fault schedule:\n  ${schedule.join('\n  ')}\n${wl}${states.join('\n')}\n${logs}`;
    const err = new Error(msg);
    err.stack = `${msg}\n${(e as Error).stack ?? ''}`;
    throw err;
  };

  try {
    // Data: counters in db 0, payloads in db 0 and db 3, written straight into the source.
    const src = ctx.source.client();
    const bases = await seedCounters(src, { counters: nCounters, prefix: 'ctr:', db: 0, seed });
    const inDb3 = Math.floor(nPayloads / 4);
    const payloads: PayloadSet[] = [
      await seedPayloads(src, { count: nPayloads - inDb3, prefix: 'pay:', db: 0, seed, maxBytes: 4096 }),
      await seedPayloads(src, { count: inDb3, prefix: 'pay3:', db: PAYLOAD_DB_SPLIT, seed: seed + 1, maxBytes: 4096 }),
    ];
    src.disconnect();
    log(`seeded ${nCounters} counters and ${nPayloads} payload keys (${payloads.reduce((a, p) => a + p.bytes, 0)} bytes)`);

    for (let i = 0; i < (opts.proxies ?? 1); i++) {
      proxies.push(new ManagedProxy(env, i, await freePort(), await freePort(), proxyArgs));
    }
    await Promise.all(proxies.map((p) => p.start()));
    log(`${proxies.length} prox${proxies.length === 1 ? 'y' : 'ies'} up (${proxyArgs.join(' ')})${certs ? '; TLS on every side: clients -> rediss://, proxies -> rediss:// source and target' : ''}`);
    workload = startCounterWorkload({
      urls: proxies.map((p) => p.url),
      ...(certs ? { tls: { ca: certs.pem('ca.crt') } } : {}),
      clients: opts.clients ?? 8,
      counters: nCounters,
      prefix: 'ctr:',
      db: 0,
      seed,
      bases,
      commandTimeoutMs: 4_000,
    });
    await env.rest(200, 600);

    try {
      await opts.faults(env);
    } finally {
      await opts.heal?.(env);
    }
    // Keys still in the source when the faults end: the faults ran while the sweeper was moving keys.
    log(`faults over; ${await sourceKeys(ctx.source)} keys left in the source`);
    await sleep(300);
    results = await workload.stop();
    workload = null;
    log(`workload stopped: ${results.totals.acked} acked, ${results.totals.unknown} unknown`);

    // Every proxy that is down comes back (a drain needs a sweeper), then the drain, at full speed.
    for (const p of proxies) if (!p.handle) await p.start(['--force']);
    await opts.beforeDrain?.(env);
    for (const p of proxies) expect(await p.post('/sweeper/rate?keys_per_sec=0')).toBe(200);
    for (const p of proxies) await waitDrainedOrExplain(p, 90_000);
    log('drained');

    // The checks, directly on the servers.
    const t = connect(ctx.target);
    let summary: CounterSummary;
    try {
      summary = await checkCounters(results, async (key) => Number((await t.get(key)) ?? Number.NaN));
      for (const set of payloads) {
        const bad = await checkPayloads(set, t);
        expect(bad.slice(0, 10), `payload keys of db ${set.db} missing or changed (${bad.length})`).toEqual([]);
      }
    } finally {
      t.disconnect();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
    const left = [...(await keysByDb(ctx.source, ALL_DBS)).entries()]
      // rehome's own state (a phase hash) may live in the source; every other key must be gone.
      .map(([db, ks]) => [db, ks.filter((k) => !k.startsWith('__rehome:'))] as const)
      .filter(([, ks]) => ks.length > 0)
      .map(([db, ks]) => `db${db}: ${ks.length} (${ks.slice(0, 5).join(', ')})`);
    expect(left, 'keys left in the source after the drain').toEqual([]);
    // What the proxies saw (their last lives), to show the faults reached the uncertain paths.
    const seen = await Promise.all(proxies.map((p) => p.status().catch(() => null)));
    const errorsByKind: Record<string, number> = {};
    let inBoth = 0;
    for (const st of seen) {
      for (const [k, v] of Object.entries(st?.errors_by_kind ?? {})) errorsByKind[k] = (errorsByKind[k] ?? 0) + v;
      inBoth += Number(st?.keys.in_both_resolved ?? 0);
    }
    const report: ScenarioReport = {
      name,
      seed,
      schedule,
      counters: summary,
      workload: results.totals,
      payloadKeys: nPayloads,
    };
    console.log(
      `[faults] ${name}: seed ${seed}; ${summary.acked} INCRs acked, ${summary.unknown} unknown (${summary.unknownApplied} of them applied), ` +
        `${summary.touched} counters touched; ${results.totals.connects} connects; unknown by cause ${JSON.stringify(results.totals.unknownByCause)}; ` +
        `proxies (last lives): move errors ${JSON.stringify(errorsByKind)}, keys found in both and resolved ${inBoth}\n  ${schedule.join('\n  ')}`,
    );
    if (process.env.REHOME_FAULT_VERBOSE) {
      for (const p of proxies) p.lives.forEach((h, i) => console.log(`--- proxy ${p.index} life ${i + 1} stderr:\n${h.stderr}`));
    }
    return report;
  } catch (e) {
    return await fail(e);
  } finally {
    if (workload) await workload.stop().catch(() => {});
    await opts.heal?.(env).catch(() => {});
    await Promise.all(proxies.map((p) => p.stop().catch(() => {})));
  }
}

/** Keys in the source, every db (INFO keyspace, so no SELECT on a shared connection). */
async function sourceKeys(ref: PairContext['source']): Promise<number> {
  const c = faultConnection(ref);
  try {
    const info = await c.info('keyspace');
    return [...info.matchAll(/^db\d+:keys=(\d+)/gm)].reduce((a, m) => a + Number(m[1]), 0);
  } finally {
    c.disconnect();
  }
}

async function waitDrainedOrExplain(p: ManagedProxy, timeoutMs: number): Promise<void> {
  try {
    await waitFor(async () => (await p.status()).phase === 'drained', `proxy ${p.index} drained`, timeoutMs, 100);
  } catch (e) {
    const st = await p.status().catch(() => null);
    throw new Error(`${(e as Error).message}; last status: ${JSON.stringify(st)}`);
  }
}

/**
 * A direct connection for injecting faults. Its commands may wait long: while moves time out, the
 * source is held in MIGRATE most of the time and answers other commands late.
 */
export function faultConnection(ref: PairContext['source']): Redis {
  const c = connect(ref);
  c.options.commandTimeout = 30_000;
  return c;
}

/** CLIENT KILL TYPE normal on a server, from a connection of its own (SKIPME yes). */
export async function killNormalClients(ref: PairContext['source']): Promise<number> {
  const c = faultConnection(ref);
  try {
    return Number(await c.call('CLIENT', 'KILL', 'TYPE', 'normal'));
  } finally {
    c.disconnect();
  }
}

/** Puts an out-of-memory limit on a server (noeviction), or lifts it with '0'. */
export async function setMaxmemory(ref: PairContext['target'], v: string): Promise<void> {
  const c = faultConnection(ref);
  try {
    await c.call('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    await c.call('CONFIG', 'SET', 'maxmemory', v);
  } finally {
    c.disconnect();
  }
}

/**
 * Waits until every running proxy (started before `since`, when given) reports the source
 * restart (`runId`) and a paused sweeper, then resumes every sweeper over HTTP.
 */
export async function resumeSweepersAfterRestart(env: FaultEnv, runId: string, since = Infinity): Promise<void> {
  for (const p of env.proxies) {
    if (!p.handle || p.startedAt > since) continue; // started after the restart: nothing to notice
    await waitFor(
      async () => {
        const st = await p.status();
        return st.source_restarted?.run_id === runId && st.sweeper.state === 'paused';
      },
      `proxy ${p.index} to report the source restart and pause its sweeper`,
      15_000,
      50,
    );
  }
  env.log('every proxy reports the restart; sweepers paused');
  await sleep(env.between(200, 800));
  for (const p of env.proxies) if (p.handle) await p.post('/sweeper/resume');
  env.log('POST /sweeper/resume on every proxy');
}
