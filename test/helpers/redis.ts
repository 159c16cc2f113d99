/**
 * Throwaway redis-server processes for tests.
 *
 * startRedis() picks a free loopback port, spawns `redis-server --port P --bind 127.0.0.1 --save ''
 * --appendonly no` (plus the caller's args) in its own temporary --dir, and waits until it answers
 * PING. Every spawned process is tracked and killed when the test process exits.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis, type RedisOptions } from 'ioredis';
import { freePort } from '../../src/util/free-port.js';
import { sleep } from './util.js';

export { freePort };

export const REDIS_SERVER = process.env.REDIS_SERVER_BIN ?? '/usr/bin/redis-server';
export const REDIS_CLI = process.env.REDIS_CLI_BIN ?? '/usr/bin/redis-cli';

const live = new Set<ChildProcess>();
let exitHooked = false;

/** Registers a child process to be SIGKILLed if the test process exits while it is alive. */
export function trackProcess(p: ChildProcess): void {
  live.add(p);
  p.once('exit', () => live.delete(p));
  if (!exitHooked) {
    exitHooked = true;
    process.once('exit', () => {
      for (const c of live) {
        try {
          c.kill('SIGKILL');
        } catch {
          /* already gone */
        }
      }
    });
  }
}

/** Sends PING on a fresh socket; resolves with the first reply line, or null if it cannot connect. */
function pingOnce(port: number, timeoutMs: number): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const done = (v: string | null) => {
      clearTimeout(timer);
      s.destroy();
      resolve(v);
    };
    const timer = setTimeout(() => done(null), timeoutMs);
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      data += d.toString('latin1');
      const i = data.indexOf('\r\n');
      if (i >= 0) done(data.slice(0, i));
    });
    s.on('error', () => done(null));
    s.on('close', () => done(data ? data : null));
  });
}

/**
 * Waits until a server on `port` answers PING with anything but -LOADING (NOAUTH counts as up).
 * `timeoutMs` bounds the wait for a first answer; a server answering -LOADING is up and loading
 * its data, which on a loaded machine (or with --key-load-delay) may take longer: it gets
 * `loadingTimeoutMs` from its start.
 */
export async function waitForRedis(
  port: number,
  timeoutMs = 10_000,
  alive?: () => boolean,
  loadingTimeoutMs = 120_000,
): Promise<void> {
  const start = Date.now();
  let loading = false;
  for (;;) {
    if (alive && !alive()) throw new Error(`redis-server on port ${port} exited before answering PING`);
    const r = await pingOnce(port, 500);
    if (r !== null && !r.startsWith('-LOADING')) return;
    loading ||= r !== null;
    const limit = loading ? loadingTimeoutMs : timeoutMs;
    if (Date.now() - start > limit) {
      throw new Error(`redis-server on port ${port} ${loading ? 'still loading' : 'did not answer PING'} after ${limit} ms`);
    }
    await sleep(20);
  }
}

export interface StartRedisOptions {
  /** Extra redis-server arguments, e.g. ['--requirepass', 'pw'] or ['--user', 'alice', 'on', '>pw', '~*', '&*', '+@all']. */
  args?: string[];
  /** Credentials that url and client() use. The password defaults to the value of --requirepass in args. */
  username?: string;
  password?: string;
  /** Use this port instead of a free one (e.g. to bring a server back on a known port). */
  port?: number;
  /** The server binary (default REDIS_SERVER); see servers.ts for the version binaries. */
  binary?: string;
}

export interface RedisServer {
  readonly host: string;
  readonly port: number;
  /** redis://[user:pass@]127.0.0.1:port with this server's credentials. */
  readonly url: string;
  /** redis://127.0.0.1:port without credentials. */
  readonly bareUrl: string;
  readonly username: string | undefined;
  readonly password: string | undefined;
  /** The working directory (dump.rdb lives here). */
  readonly dir: string;
  /** The current redis-server process. */
  readonly proc: ChildProcess;
  readonly running: boolean;
  /** A new ioredis client (authenticated, on `db`); closed by stop(). */
  client(db?: number, opts?: RedisOptions): Redis;
  /** Stops the server (SIGTERM, then SIGKILL). With save: true it SAVEs first so restart() reloads the data. */
  stop(opts?: { save?: boolean }): Promise<void>;
  /** Sends a signal to the server process (SIGKILL by default; SIGSTOP/SIGCONT to freeze/thaw). */
  kill(signal?: NodeJS.Signals): void;
  /** Restarts on the same port. By default the data is kept (SAVE before stopping, reloaded at start). */
  restart(opts?: { keepData?: boolean }): Promise<void>;
  /** Everything the server printed (its log). */
  log(): string;
}

function inferPassword(args: readonly string[]): string | undefined {
  const i = args.indexOf('--requirepass');
  return i >= 0 ? args[i + 1] : undefined;
}

function spawnServer(
  binary: string,
  port: number,
  dir: string,
  args: readonly string[],
  logSink: (s: string) => void,
): ChildProcess {
  const argv = [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--daemonize',
    'no',
    ...args,
  ];
  const p = spawn(binary, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  trackProcess(p);
  let tail = '';
  p.stdout?.on('data', (d: Buffer) => {
    const text = d.toString();
    logSink(text);
    if (!bound.has(p)) {
      tail = (tail + text).slice(-400);
      if (/Ready to accept connections/.test(tail)) bound.add(p);
    }
  });
  p.stderr?.on('data', (d: Buffer) => logSink(d.toString()));
  return p;
}

/**
 * The servers that have said they listen. Answering PING is not enough to know a server is ours:
 * two test files (in two vitest workers) can be handed the same free port at once; the second
 * server fails to bind it and exits, but the first one answers its PINGs meanwhile, and both files
 * would then share one server (one's FLUSHALL emptying the other's keys, one's stop leaving the
 * other without a server). A server logs this line once it has bound its port.
 */
const bound = new WeakSet<ChildProcess>();

/** Waits until `p` (just spawned on `port`) listens there itself and answers PING. */
async function waitForOwnServer(p: ChildProcess, port: number, exited: () => boolean): Promise<void> {
  await waitForRedis(port, 10_000, () => !exited());
  const deadline = Date.now() + 10_000;
  while (!bound.has(p)) {
    if (exited()) throw new Error(`redis-server on port ${port} exited: the port is another server's`);
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} answers PING but never said it listens`);
    await sleep(10);
  }
}

function waitExit(p: ChildProcess, ms: number): Promise<boolean> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve(true);
  return new Promise((resolve) => {
    const t = setTimeout(() => resolve(false), ms);
    p.once('exit', () => {
      clearTimeout(t);
      resolve(true);
    });
  });
}

/** Starts a redis-server on a free loopback port and waits until it answers PING. */
export async function startRedis(opts: StartRedisOptions = {}): Promise<RedisServer> {
  const args = opts.args ?? [];
  const binary = opts.binary ?? REDIS_SERVER;
  const password = opts.password ?? inferPassword(args);
  const username = opts.username;
  const dir = mkdtempSync(path.join(os.tmpdir(), 'rehome-redis-'));
  let logText = '';
  const sink = (s: string) => {
    logText += s;
    if (logText.length > 200_000) logText = logText.slice(-100_000);
  };

  let port = 0;
  let proc: ChildProcess | undefined;
  let lastErr: unknown;
  for (let attempt = 0; attempt < 6 && !proc; attempt++) {
    port = opts.port ?? (await freePort());
    const p = spawnServer(binary, port, dir, args, sink);
    let exited = false;
    p.once('exit', () => (exited = true));
    try {
      await waitForOwnServer(p, port, () => exited);
      proc = p;
    } catch (e) {
      lastErr = e;
      p.kill('SIGKILL');
      if (opts.port !== undefined && !/in use/i.test(logText)) break;
    }
  }
  if (!proc) throw new Error(`could not start redis-server: ${String(lastErr)}\n${logText.slice(-2000)}`);

  const clients = new Set<Redis>();
  const cred =
    password !== undefined
      ? `${username !== undefined ? encodeURIComponent(username) : ''}:${encodeURIComponent(password)}@`
      : '';
  let current: ChildProcess = proc;
  let running = true;
  const watch = (p: ChildProcess) =>
    p.once('exit', () => {
      if (current === p) running = false;
    });
  watch(current);

  const makeClient = (db = 0, extra: RedisOptions = {}): Redis => {
    const c = new Redis({
      host: '127.0.0.1',
      port,
      db,
      ...(username !== undefined ? { username } : {}),
      ...(password !== undefined ? { password } : {}),
      enableReadyCheck: false,
      maxRetriesPerRequest: 1,
      retryStrategy: () => null,
      commandTimeout: 10_000,
      ...extra,
    });
    c.on('error', () => {});
    clients.add(c);
    c.once('end', () => clients.delete(c));
    return c;
  };

  const closeClients = () => {
    for (const c of clients) c.disconnect();
    clients.clear();
  };

  const server: RedisServer = {
    host: '127.0.0.1',
    get port() {
      return port;
    },
    url: `redis://${cred}127.0.0.1:${port}`,
    bareUrl: `redis://127.0.0.1:${port}`,
    username,
    password,
    dir,
    get proc() {
      return current;
    },
    get running() {
      return running;
    },
    client: makeClient,
    async stop(o = {}) {
      if (running && o.save) {
        const c = makeClient(0);
        try {
          await c.call('SAVE');
        } finally {
          c.disconnect();
        }
      }
      closeClients();
      if (!o.save) rmSync(path.join(dir, 'dump.rdb'), { force: true });
      if (!running) return;
      current.kill('SIGTERM');
      if (!(await waitExit(current, 5_000))) {
        current.kill('SIGKILL');
        await waitExit(current, 5_000);
      }
      running = false;
    },
    kill(signal: NodeJS.Signals = 'SIGKILL') {
      current.kill(signal);
    },
    async restart(o = {}) {
      const keep = o.keepData ?? true;
      if (running) await server.stop({ save: keep });
      else if (!keep) rmSync(path.join(dir, 'dump.rdb'), { force: true });
      // The port was just released; retry briefly in case the kernel still holds it.
      for (let attempt = 0; ; attempt++) {
        const p = spawnServer(binary, port, dir, args, sink);
        let exited = false;
        p.once('exit', () => (exited = true));
        try {
          await waitForOwnServer(p, port, () => exited);
          current = p;
          running = true;
          watch(p);
          return;
        } catch (e) {
          p.kill('SIGKILL');
          if (attempt >= 10) throw e;
          await sleep(100);
        }
      }
    },
    log: () => logText,
  };
  return server;
}

/** Stops several servers, ignoring individual failures; removes their directories. */
export async function stopAll(...servers: Array<RedisServer | undefined>): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      if (!s) return;
      try {
        s.kill('SIGCONT');
      } catch {
        /* ignore */
      }
      await s.stop().catch(() => {});
      rmSync(s.dir, { recursive: true, force: true });
    }),
  );
}

/** Starts a source and a target server (optionally with different args each). */
export async function startPair(
  opts: { source?: StartRedisOptions; target?: StartRedisOptions } = {},
): Promise<{ source: RedisServer; target: RedisServer }> {
  const [source, target] = await Promise.all([startRedis(opts.source), startRedis(opts.target)]);
  return { source, target };
}

/** FLUSHALL on every given server (direct, not through a proxy), resetting maxmemory too. */
export async function flushAll(...servers: RedisServer[]): Promise<void> {
  await Promise.all(
    servers.map(async (s) => {
      const c = s.client(0);
      try {
        await c.call('CONFIG', 'SET', 'maxmemory', '0');
        await c.call('FLUSHALL');
        await c.call('SCRIPT', 'FLUSH');
        await c.call('FUNCTION', 'FLUSH');
      } finally {
        c.disconnect();
      }
    }),
  );
}
