/**
 * Runs the rehome CLI (dist/cli.js) as a child process, exactly as an operator would:
 *   node dist/cli.js --listen 127.0.0.1:0 --source URL --target URL --no-sweep [args...]
 * and waits for its `listening on 127.0.0.1:<port>` line.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisServer } from './redis.js';
import { trackProcess } from './redis.js';
import { RawClient } from './resp.js';

export const CLI_PATH = fileURLToPath(new URL('../../dist/cli.js', import.meta.url));

export interface ExitInfo {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface ProxyOptions {
  source: string | RedisServer;
  target: string | RedisServer;
  /** Extra CLI flags. */
  args?: string[];
  /** Leave out --no-sweep (default false: this suite always passes --no-sweep). */
  sweep?: boolean;
  readyTimeoutMs?: number;
  /** Extra environment variables for the process (added to this one's). */
  env?: Record<string, string>;
}

export interface ProxyHandle {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  readonly proc: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Resolves when the process exits. */
  readonly exited: Promise<ExitInfo>;
  /** An ioredis client connected to the proxy (no reconnects, 10 s command timeout). */
  client(opts?: RedisOptions): Redis;
  /** A raw RESP connection to the proxy. */
  raw(): Promise<RawClient>;
  /** SIGTERM (by default) and wait for exit; SIGKILL after timeoutMs. */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<ExitInfo>;
}

function urlOf(x: string | RedisServer): string {
  return typeof x === 'string' ? x : x.url;
}

function assertBuilt(): void {
  if (!existsSync(CLI_PATH)) {
    throw new Error(`${CLI_PATH} does not exist: run \`npm run build\` first`);
  }
}

/** Starts a proxy on a free port and waits until it says it is listening. */
export async function startProxy(opts: ProxyOptions): Promise<ProxyHandle> {
  assertBuilt();
  const argv = [
    CLI_PATH,
    '--listen',
    '127.0.0.1:0',
    '--source',
    urlOf(opts.source),
    '--target',
    urlOf(opts.target),
    ...(opts.sweep ? [] : ['--no-sweep']),
    ...(opts.args ?? []),
  ];
  const proc = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  trackProcess(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout?.setEncoding('utf8');
  proc.stderr?.setEncoding('utf8');
  const exited = new Promise<ExitInfo>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const clients = new Set<Redis>();

  const port = await new Promise<number>((resolve, reject) => {
    // A hang guard: node starts in a fraction of a second, but takes seconds on a loaded machine.
    const timeoutMs = opts.readyTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      proc.kill('SIGKILL');
      reject(new Error(`proxy did not print 'listening on' within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    const check = () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    proc.stdout?.on('data', (d: string) => {
      stdout += d;
      check();
    });
    proc.stderr?.on('data', (d: string) => {
      stderr += d;
    });
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited (code ${e.code}, signal ${e.signal}) before listening\nstdout: ${stdout}\nstderr: ${stderr}`));
    });
  });

  const handle: ProxyHandle = {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    proc,
    get stdout() {
      return stdout;
    },
    get stderr() {
      return stderr;
    },
    exited,
    client(o: RedisOptions = {}) {
      const c = new Redis({
        host: '127.0.0.1',
        port,
        enableReadyCheck: false,
        maxRetriesPerRequest: 0,
        retryStrategy: () => null,
        commandTimeout: 10_000,
        ...o,
      });
      c.on('error', () => {});
      clients.add(c);
      c.once('end', () => clients.delete(c));
      return c;
    },
    raw: () => RawClient.connect(port),
    async stop(signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 10_000) {
      for (const c of clients) c.disconnect();
      clients.clear();
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const e = await exited;
      clearTimeout(t);
      return e;
    },
  };
  return handle;
}

export interface CliResult extends ExitInfo {
  stdout: string;
  stderr: string;
  timedOut: boolean;
}

/**
 * Runs the CLI with exactly `args` (no defaults added) and waits for it to exit; `env` is added
 * to this process's environment.
 */
export async function runCli(args: string[], timeoutMs = 15_000, env: Record<string, string> = {}): Promise<CliResult> {
  assertBuilt();
  const proc = spawn(process.execPath, [CLI_PATH, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  trackProcess(proc);
  let stdout = '';
  let stderr = '';
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  let timedOut = false;
  const t = setTimeout(() => {
    timedOut = true;
    proc.kill('SIGKILL');
  }, timeoutMs);
  const e = await new Promise<ExitInfo>((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  clearTimeout(t);
  return { ...e, stdout, stderr, timedOut };
}
