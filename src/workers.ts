/**
 * `--workers N`: N processes serve the one listening port (node:cluster; the primary accepts and
 * hands connections round-robin to the workers). Several processes on one pair are safe by
 * docs/DESIGN.md's invariant: single-flight is per process, MIGRATE is atomic in the source, and the
 * phase key fences a fleet of processes as it fences separate proxies.
 *
 * Roles:
 *   primary    forks the workers, prints `rehome: listening on HOST:PORT` once every worker
 *              listens, forwards SIGTERM/SIGINT (and SIGHUP with --tls-port: every worker reloads
 *              its certificate), restarts a worker that dies, exits when they are all gone. It
 *              serves no client and opens no connection to either server.
 *   every one  listens on --listen and --tls-port (the primary shares each port among them; each
 *              worker does its own TLS handshakes).
 *   worker 1   runs the pre-flight checks (alone, before the others start: --on-conflict must
 *              not race with a worker that already moves keys), the sweeper, the admin endpoint
 *              and the progress output.
 *   worker 2.. the data path only: no sweeper, no admin endpoint, no progress.
 *
 * Without phases, worker 1's sweeper telling the source is empty reaches the other workers
 * through the primary (they stop consulting the source too); with phases, the phase key carries
 * it to every process as it does across separate proxies.
 *
 *   primary ── fork(1, preflight) ── 'listening' ──► fork(2..N) ── all 'listening' ──► stdout line
 *      │    then 'announced' ──► every worker (its log lines, held until then, go out)
 *      ▲  'drained' ──► every other worker (and every later restart)
 *      └─ exit: stopping / drained ──► done when none is left; otherwise restart (with backoff)
 */
import cluster, { type Worker } from 'node:cluster';
import type { ProxyConfig } from './config.js';
import type { Output } from './log.js';
import type { Logger } from './proxy/server.js';
import { describeEndpoint } from './upstream/endpoint.js';

/** Messages between the primary and its workers (the `rehome` field tells them from others). */
export type WorkerMessage =
  | { rehome: 'listening'; host: string; port: number }
  /** To a worker: the fleet's listening line is out (or was, for a restarted worker). */
  | { rehome: 'announced' }
  | { rehome: 'drained'; phases: boolean };

/** This process's place in a --workers fleet, or null when it is not a worker. */
export interface WorkerSlot {
  id: number;
  /** Run the pre-flight checks: only the first start of worker 1. */
  preflight: boolean;
}

export function workerSlot(): WorkerSlot | null {
  if (!cluster.isWorker) return null;
  const id = Number(process.env.REHOME_WORKER ?? '0');
  return { id, preflight: process.env.REHOME_WORKER_PREFLIGHT === '1' };
}

/** A worker's share of the configuration: only worker 1 sweeps, serves admin, shows progress. */
export function workerConfig(config: ProxyConfig, slot: WorkerSlot): ProxyConfig {
  if (slot.id === 1) {
    // A bar would be torn by the other workers' log lines.
    return { ...config, progress: config.progress === 'bar' ? 'log' : config.progress };
  }
  return { ...config, sweep: false, admin: null, progress: 'off' };
}

/** Sends a message to the primary (no-op outside a worker). */
export function toPrimary(m: WorkerMessage): void {
  if (cluster.isWorker && process.send && process.connected) process.send(m);
}

/** Calls `f` for each message the primary sends this worker. */
export function onPrimaryMessage(f: (m: WorkerMessage) => void): void {
  process.on('message', (m: unknown) => {
    if (isMessage(m)) f(m);
  });
}

function isMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { rehome?: unknown }).rehome === 'string';
}

/** A worker's view of the fleet's listening line: see linesUntilAnnounced. */
export interface FleetAnnouncement {
  /** Logs now once the line is out, else holds the line until then. */
  log: Logger;
  /** Runs `f` now once the line is out, else then. */
  afterAnnounced(f: () => void): void;
  /** Lets the held lines out now: for a worker that stops or fails first, so that none is lost. */
  release(): void;
}

/**
 * Worker 1 listens, and may move keys (even finish a small migration), while the other workers
 * start; the primary prints `listening on` only once they all listen. So that no line about moves
 * comes before it, a worker's log lines wait for the primary's 'announced', and so does its exit
 * on drain (--exit-when-drained): the fleet must have said it listens before it ends.
 */
export function linesUntilAnnounced(log: Logger): FleetAnnouncement {
  let held: Array<Parameters<Logger>> | null = [];
  const waiting: Array<() => void> = [];
  const release = () => {
    const lines = held ?? [];
    held = null;
    for (const [line, fields] of lines) log(line, fields);
    for (const f of waiting.splice(0)) f();
  };
  onPrimaryMessage((m) => {
    if (m.rehome === 'announced') release();
  });
  return {
    log: (line, fields) => {
      if (held === null) log(line, fields);
      else held.push([line, fields]);
    },
    afterAnnounced: (f) => {
      if (held === null) f();
      else waiting.push(f);
    },
    release,
  };
}

/** A worker that dies within this long of its start doubles the wait before the next restart. */
const QUICK_DEATH_MS = 5_000;
const MAX_RESTART_DELAY_MS = 30_000;

interface Slot {
  id: number;
  worker: Worker | null;
  listening: boolean;
  startedAt: number;
  restartDelayMs: number;
}

/**
 * Runs the primary of a --workers fleet. Resolves never: the process exits with 0 once the
 * workers have stopped (SIGTERM/SIGINT, or drained with --exit-when-drained), 1 when a start
 * fails (the worker has printed the reason) or a worker did not stop cleanly.
 */
export function runPrimary(config: ProxyConfig, out: Pick<Output, 'log' | 'listening'>): Promise<never> {
  const log = out.log;
  const n = config.workers;
  const slots: Slot[] = Array.from({ length: n }, (_, i) => ({
    id: i + 1,
    worker: null,
    listening: false,
    startedAt: 0,
    restartDelayMs: 500,
  }));
  let announced: { host: string; port: number } | null = null;
  let stopping = false;
  /** Set by a worker's drain; `legacy` (no phases) is relayed to the other workers. */
  let drained: { legacy: boolean } | null = null;
  let exitCode = 0;
  let killTimer: NodeJS.Timeout | null = null;

  const alive = () => slots.filter((s) => s.worker !== null);
  const finishIfDone = () => {
    if (alive().length > 0) return;
    if (killTimer) clearTimeout(killTimer);
    process.exit(exitCode);
  };

  const stopAll = (signal: NodeJS.Signals) => {
    for (const s of alive()) s.worker!.process.kill(signal);
    // A worker waits up to --shutdown-timeout-ms for in-flight commands; past that and a margin,
    // it is killed.
    killTimer ??= setTimeout(() => {
      for (const s of alive()) {
        log(`worker ${s.id} (pid ${s.worker!.process.pid}) did not stop in time; killing it`);
        exitCode = 1;
        s.worker!.process.kill('SIGKILL');
      }
    }, config.shutdownTimeoutMs + 5_000);
    killTimer.unref();
    finishIfDone();
  };

  const fork = (slot: Slot, preflight: boolean) => {
    const w = cluster.fork({ REHOME_WORKER: String(slot.id), REHOME_WORKER_PREFLIGHT: preflight ? '1' : '0' });
    slot.worker = w;
    slot.listening = false;
    slot.startedAt = Date.now();
    w.on('message', (m: unknown) => {
      if (!isMessage(m)) return;
      if (m.rehome === 'listening') onListening(slot, m);
      else if (m.rehome === 'drained') onDrained(slot, m.phases);
    });
    w.on('exit', (code, signal) => onExit(slot, w, code, signal));
  };

  const onListening = (slot: Slot, at: { host: string; port: number }) => {
    slot.listening = true;
    // A worker hears messages once it listens: tell it what it missed.
    if (drained?.legacy) slot.worker?.send({ rehome: 'drained', phases: false } satisfies WorkerMessage);
    if (announced !== null) {
      slot.worker?.send({ rehome: 'announced' } satisfies WorkerMessage);
      if (at.port !== announced.port) log(`worker ${slot.id} listens on ${describeEndpoint(at)}, not ${describeEndpoint(announced)}`);
      else log(`worker ${slot.id} (pid ${slot.worker?.process.pid}) listening again`);
      return;
    }
    if (slot.id === 1) {
      // Worker 1 has run the pre-flight checks: the others may start now.
      for (const s of slots) if (s.id !== 1) fork(s, false);
    }
    if (slots.every((s) => s.listening)) {
      announced = at;
      out.listening(describeEndpoint(at));
      log(`${n} workers (pids ${slots.map((s) => s.worker?.process.pid).join(', ')}) share the port`);
      for (const s of slots) s.worker?.send({ rehome: 'announced' } satisfies WorkerMessage);
    }
  };

  const onDrained = (from: Slot, phases: boolean) => {
    if (drained !== null) return;
    drained = { legacy: !phases };
    if (phases) return; // the phase key tells every process
    for (const s of slots) {
      if (s !== from && s.listening) s.worker?.send({ rehome: 'drained', phases: false } satisfies WorkerMessage);
    }
  };

  const onExit = (slot: Slot, w: Worker, code: number | null, signal: string | null) => {
    if (slot.worker !== w) return;
    slot.worker = null;
    slot.listening = false;
    const how = signal ? `killed by ${signal}` : `exited with code ${code}`;
    if (stopping) {
      if (code !== 0) exitCode = 1;
      finishIfDone();
      return;
    }
    if (announced === null) {
      // A start failed: the worker printed why. Stop the others; exit as it did.
      stopping = true;
      exitCode = code && code > 0 ? code : 1;
      stopAll('SIGTERM');
      return;
    }
    if (drained !== null && config.exitWhenDrained && code === 0) {
      finishIfDone();
      return;
    }
    const quick = Date.now() - slot.startedAt < QUICK_DEATH_MS;
    slot.restartDelayMs = quick ? Math.min(slot.restartDelayMs * 2, MAX_RESTART_DELAY_MS) : 500;
    log(`worker ${slot.id} (pid ${w.process.pid}) ${how}; restarting it in ${(slot.restartDelayMs / 1000).toFixed(1)} s`);
    setTimeout(() => {
      if (!stopping && slot.worker === null) fork(slot, false);
    }, slot.restartDelayMs);
  };

  const onSignal = (sig: NodeJS.Signals) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: stopping ${alive().length} worker(s)`);
    stopAll('SIGTERM');
  };
  process.on('SIGTERM', () => onSignal('SIGTERM'));
  process.on('SIGINT', () => onSignal('SIGINT'));
  if (config.tls) {
    // Each worker holds its own TLS context for the shared --tls-port: all of them must reload, or
    // new clients would get the old certificate or the new one depending on the worker they land on.
    process.on('SIGHUP', () => {
      for (const s of alive()) s.worker!.process.kill('SIGHUP');
    });
  }

  fork(slots[0]!, true);
  return new Promise<never>(() => {});
}
