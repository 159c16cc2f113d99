/**
 * Prometheus metrics (prom-client). Hot-path figures are plain counters in the sessions and the
 * mover, read when /metrics is scraped, so the data path pays nothing for them; latencies are
 * histograms observed on a sample of commands and on every MIGRATE.
 *
 * Every series exists from the first scrape (at 0), so dashboards and alerts can rely on it.
 * Figures that only grow are counters (`_total`): each scrape adds what the figure grew since the
 * last one. The mover's figures count from 0 again in each phase's runtime; a figure smaller than
 * at the last scrape adds its whole value, so the counter never goes back.
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

/** A canary migration's figures: each side of the scope (in: the new server, out: the old one). */
export interface ScopeFigures {
  inScope: number;
  outScope: number;
  crossScope: number;
  inErrors: number;
  inSeconds: number;
  outErrors: number;
  outSeconds: number;
  drained: boolean;
  returning: boolean;
}

/** The proxy's figures, read when /metrics is scraped. */
export interface ProxyFigures {
  commands: number;
  sharedCommands: number;
  sharedFailures: number;
  clients: number;
  movedOnTouch: number;
  movedBySweeper: number;
  remainingPerDb: Record<number, number>;
  drained: boolean;
  rate: number;
  /** Every kind the mover counts, 0 for those not seen yet (so each series exists from the start). */
  errorsByKind: Record<string, number>;
  moveFailures: number;
  cacheSize: number;
  bigKeys: number;
  phase: string;
  epoch: number;
  /** A canary migration's figures (src/proxy/scope-status.ts); null or absent: no scope. */
  scope?: ScopeFigures | null;
}

/**
 * Everything a proxy exports on /metrics. It observes the proxy's latencies through the two
 * observe methods (the proxy's ProxyObserver) and reads the rest from `read`.
 */
export class ProxyMetrics {
  readonly registry = new Registry();
  readonly commandLatency: Histogram;
  readonly migrateLatency: Histogram;
  readonly migrateKeys: Counter;

  constructor(read: () => ProxyFigures) {
    const r = this.registry;
    // The default metrics are named process_* and nodejs_* already: rehome_process_cpu_seconds_total.
    collectDefaultMetrics({ register: r, prefix: 'rehome_' });
    this.commandLatency = new Histogram({
      name: 'rehome_command_duration_seconds',
      help: 'Time from a request being framed to its reply being ready (sampled, 1 in 16)',
      buckets: [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers: [r],
    });
    this.migrateLatency = new Histogram({
      name: 'rehome_migrate_duration_seconds',
      help: 'Duration of each MIGRATE sent to the source',
      labelNames: ['outcome'],
      buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [r],
    });
    for (const outcome of ['ok', 'error']) this.migrateLatency.zero({ outcome });
    this.migrateKeys = new Counter({
      name: 'rehome_migrate_keys_total',
      help: 'Keys named in MIGRATE calls',
      registers: [r],
    });
    const gauge = (name: string, help: string, f: (g: Gauge) => void, labelNames: string[] = []) =>
      new Gauge({ name, help, labelNames, registers: [r], collect() { f(this); } });
    // A counter fed from figures read at scrape time, per label set (see the file comment).
    const counter = (name: string, help: string, values: () => Array<[Record<string, string>, number]>, labelNames: string[] = []) => {
      const last = new Map<string, number>();
      return new Counter({
        name,
        help,
        labelNames,
        registers: [r],
        collect() {
          for (const [labels, v] of values()) {
            const key = JSON.stringify(labels);
            const prev = last.get(key) ?? 0;
            last.set(key, v);
            this.inc(labels, v >= prev ? v - prev : v);
          }
        },
      });
    };
    const one = (n: number): Array<[Record<string, string>, number]> => [[{}, n]];
    counter('rehome_commands_total', 'Client requests handled', () => one(read().commands));
    gauge('rehome_clients', 'Connected clients', (g) => g.set(read().clients));
    counter('rehome_shared_commands_total', 'Client requests sent on shared connections to the target', () => one(read().sharedCommands));
    counter('rehome_shared_connection_failures_total', 'Shared connections to the target lost with commands in flight', () => one(read().sharedFailures));
    gauge('rehome_phase', 'The phase this process serves (1 for the current one), with its epoch', (g) => {
      g.reset();
      const s = read();
      g.set({ phase: s.phase, epoch: String(s.epoch) }, 1);
    }, ['phase', 'epoch']);
    counter('rehome_keys_moved_total', 'Keys moved from the source to the target', () => {
      const s = read();
      return [[{ by: 'touch' }, s.movedOnTouch], [{ by: 'sweeper' }, s.movedBySweeper]];
    }, ['by']);
    gauge('rehome_keys_remaining', 'Keys still in the source, per db', (g) => {
      g.reset();
      for (const [db, n] of Object.entries(read().remainingPerDb)) g.set({ db }, n);
    }, ['db']);
    gauge('rehome_drained', '1 once the source holds no key', (g) => g.set(read().drained ? 1 : 0));
    gauge('rehome_move_rate_keys_per_second', 'Keys moved per second (smoothed)', (g) => g.set(read().rate));
    counter('rehome_move_errors_total', 'MIGRATE errors by kind (each resolved by probing)', () =>
      Object.entries(read().errorsByKind).map(([kind, n]) => [{ kind }, n]), ['kind']);
    counter('rehome_move_failures_total', 'Keys that could not be moved (client got an error)', () => one(read().moveFailures));
    gauge('rehome_known_absent_cached', 'Keys in the known-absent cache', (g) => g.set(read().cacheSize));
    counter('rehome_big_keys_total', 'Big keys moved alone by the sweeper', () => one(read().bigKeys));
    // A canary: the slice on the new server against the rest on the old one.
    counter('rehome_scope_commands_total', 'Commands by side of the canary scope (in: new server, out: old server, cross: refused with CROSSSCOPE)', () => {
      const s = read().scope;
      return s ? [[{ side: 'in' }, s.inScope], [{ side: 'out' }, s.outScope], [{ side: 'cross' }, s.crossScope]] : [];
    }, ['side']);
    counter('rehome_scope_errors_total', 'Error replies of commands by side of the canary scope (in: new server, out: old server)', () => {
      const s = read().scope;
      return s ? [[{ side: 'in' }, s.inErrors], [{ side: 'out' }, s.outErrors]] : [];
    }, ['side']);
    counter('rehome_scope_seconds_total', 'Time commands took by side of the canary scope, from dispatch to reply (in: first-touch moves included)', () => {
      const s = read().scope;
      return s ? [[{ side: 'in' }, s.inSeconds], [{ side: 'out' }, s.outSeconds]] : [];
    }, ['side']);
    gauge('rehome_scope_drained', '1 once the canary scope holds no key on the old server (-1: no scope)', (g) => {
      const s = read().scope;
      g.set(s ? (s.drained ? 1 : 0) : -1);
    });
  }

  observeCommand(seconds: number): void {
    this.commandLatency.observe(seconds);
  }

  observeMigrate(ms: number, keys: number, ok: boolean): void {
    this.migrateLatency.observe({ outcome: ok ? 'ok' : 'error' }, ms / 1000);
    this.migrateKeys.inc(keys);
  }
}
