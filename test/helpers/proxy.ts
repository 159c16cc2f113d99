/**
 * Starts rehome's proxy command with the flags an operator would give it:
 *   --listen 127.0.0.1:0 --source URL --target URL --no-sweep [args...]
 * and waits for its `listening on 127.0.0.1:<port>` line. By default it runs inside the test
 * process (src/proxy-command.ts on a captured host): starting a process costs about 0.3 s of CPU,
 * and the suite starts some 400 proxies. A test that needs a process (signals other than SIGTERM
 * and SIGINT, its pid, its own environment, --workers, json logs) passes `spawn: true`, and
 * REHOME_TEST_SPAWN=1 runs every proxy as `node dist/cli.js`.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Redis, type RedisOptions } from 'ioredis';
import type { RedisServer } from './redis.js';
import { trackProcess } from './redis.js';
import { RawClient } from './resp.js';
import { withTimeout } from './util.js';

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
  /** Extra environment variables for the process (added to this one's); implies spawn. */
  env?: Record<string, string>;
  /** Run as a child process, `node dist/cli.js` (see the file comment). */
  spawn?: boolean;
}

export interface ProxyHandle {
  readonly host: string;
  readonly port: number;
  readonly url: string;
  /** The child process; an in-process proxy has none (it throws: start it with spawn: true). */
  readonly proc: ChildProcess;
  readonly stdout: string;
  readonly stderr: string;
  /** Whether it has not exited (a crash shows here). */
  readonly running: boolean;
  /** Resolves when the process exits (in-process: when the command exits). */
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

/** Whether a proxy with these options runs in the test process (see the file comment). */
function inProcess(opts: ProxyOptions): boolean {
  const args = opts.args ?? [];
  if (opts.spawn || opts.env || process.env.REHOME_TEST_SPAWN === '1') return false;
  return !args.includes('--workers') && !args.includes('--log-format');
}

/** Starts a proxy on a free port and waits until it says it is listening. */
export async function startProxy(opts: ProxyOptions): Promise<ProxyHandle> {
  const flags = [
    '--listen',
    '127.0.0.1:0',
    '--source',
    urlOf(opts.source),
    '--target',
    urlOf(opts.target),
    ...(opts.sweep ? [] : ['--no-sweep']),
    ...(opts.args ?? []),
  ];
  return inProcess(opts) ? startInProcess(flags, opts) : startChild(flags, opts);
}

/** What a running proxy gives its handle, child or in-process. */
interface Running {
  readonly output: { stdout: string; stderr: string };
  running(): boolean;
  readonly exited: Promise<ExitInfo>;
  proc(): ChildProcess;
  /** Sends `signal`; resolves once the proxy exits, or ends it at once after `timeoutMs`. */
  signal(signal: NodeJS.Signals, timeoutMs: number): Promise<ExitInfo>;
}

function startChild(flags: string[], opts: ProxyOptions): Promise<ProxyHandle> {
  assertBuilt();
  const proc = spawn(process.execPath, [CLI_PATH, ...flags], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...opts.env } });
  trackProcess(proc);
  const output = { stdout: '', stderr: '' };
  const exited = new Promise<ExitInfo>((resolve) => {
    proc.once('exit', (code, signal) => resolve({ code, signal }));
  });
  const listening = untilListening(output, exited, opts, () => proc.kill('SIGKILL'));
  proc.stdout?.setEncoding('utf8').on('data', (d: string) => {
    output.stdout += d;
    listening.check();
  });
  proc.stderr?.setEncoding('utf8').on('data', (d: string) => (output.stderr += d));
  return handleWhenListening(listening.port, {
    output,
    running: () => proc.exitCode === null && proc.signalCode === null,
    exited,
    proc: () => proc,
    async signal(signal, timeoutMs) {
      if (proc.exitCode === null && proc.signalCode === null) proc.kill(signal);
      const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
      const e = await exited;
      clearTimeout(t);
      return e;
    },
  });
}

/** Proxies running in this process, stopped after each file (test/helpers/setup.ts). */
const inProcessProxies = new Set<Running>();

async function startInProcess(flags: string[], opts: ProxyOptions): Promise<ProxyHandle> {
  const { runProxyCommand } = await import('../../src/proxy-command.js');
  const output = { stdout: '', stderr: '' };
  const signals = new Map<string, () => void>();
  let exit!: (e: ExitInfo) => void;
  const exited = new Promise<ExitInfo>((resolve) => (exit = resolve));
  let done: ExitInfo | null = null;
  const listening = untilListening(output, exited, opts, () => signals.get('SIGTERM')?.());
  const running: Running = {
    output,
    running: () => done === null,
    exited,
    proc: () => {
      throw new Error('this proxy runs in the test process and has no pid: start it with { spawn: true }');
    },
    async signal(signal, timeoutMs) {
      if (done) return done;
      const f = signal === 'SIGTERM' || signal === 'SIGINT' ? signals.get(signal) : undefined;
      if (!f) throw new Error(`an in-process proxy takes SIGTERM and SIGINT only, not ${signal}: start it with { spawn: true }`);
      f();
      // Where a child would be killed, stop waiting: the command goes on closing (within its
      // --shutdown-timeout-ms) and the file's end waits for it (stopInProcessProxies).
      let timer: NodeJS.Timeout | undefined;
      const abandoned = new Promise<ExitInfo>((resolve) => {
        timer = setTimeout(() => resolve({ code: null, signal: 'SIGKILL' }), timeoutMs);
      });
      return Promise.race([exited, abandoned]).finally(() => clearTimeout(timer));
    },
  };
  inProcessProxies.add(running);
  void exited.then(() => inProcessProxies.delete(running));
  void runProxyCommand(flags, {
    stdout: (text) => {
      output.stdout += text;
      listening.check();
    },
    stderr: (text) => (output.stderr += text),
    exit: (code) => {
      done ??= { code, signal: null };
      exit(done);
    },
    onSignal: (signal, f) => signals.set(signal, f),
    env: process.env,
  });
  return handleWhenListening(listening.port, running);
}

/** Stops every proxy still running in this process (after each test file). */
export async function stopInProcessProxies(): Promise<void> {
  await Promise.all([...inProcessProxies].map((r) => r.signal('SIGTERM', 15_000).then(() => withTimeout(r.exited, 15_000, 'an in-process proxy to exit'))));
}

/** Resolves with the port of the `listening on` line; rejects on exit first or a hang. */
function untilListening(
  output: { stdout: string; stderr: string },
  exited: Promise<ExitInfo>,
  opts: ProxyOptions,
  abort: () => void,
): { port: Promise<number>; check(): void } {
  let check = () => {};
  const port = new Promise<number>((resolve, reject) => {
    // A hang guard: a proxy starts in a fraction of a second, but takes seconds on a loaded machine.
    const timeoutMs = opts.readyTimeoutMs ?? 30_000;
    const timer = setTimeout(() => {
      abort();
      reject(new Error(`proxy did not print 'listening on' within ${timeoutMs} ms\nstdout: ${output.stdout}\nstderr: ${output.stderr}`));
    }, timeoutMs);
    check = () => {
      const m = /listening on 127\.0\.0\.1:(\d+)/.exec(output.stdout);
      if (m) {
        clearTimeout(timer);
        resolve(Number(m[1]));
      }
    };
    void exited.then((e) => {
      clearTimeout(timer);
      reject(new Error(`proxy exited (code ${e.code}, signal ${e.signal}) before listening\nstdout: ${output.stdout}\nstderr: ${output.stderr}`));
    });
  });
  return { port, check: () => check() };
}

async function handleWhenListening(listening: Promise<number>, r: Running): Promise<ProxyHandle> {
  const port = await listening;
  const clients = new Set<Redis>();
  return {
    host: '127.0.0.1',
    port,
    url: `redis://127.0.0.1:${port}`,
    get proc() {
      return r.proc();
    },
    get stdout() {
      return r.output.stdout;
    },
    get stderr() {
      return r.output.stderr;
    },
    get running() {
      return r.running();
    },
    exited: r.exited,
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
      return r.signal(signal, timeoutMs);
    },
  };
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
