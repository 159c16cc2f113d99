/**
 * The throwaway server of `rehome import`: a redis-server on a free loopback port, in a temporary
 * --dir that holds a staged copy of the input (import-input.ts), started, waited for until it has
 * loaded the data, and stopped with its directory removed.
 *
 * It saves nothing (--save ''; an AOF is switched off once loaded, so the moves' DELs are not
 * appended anywhere), and is stopped by SIGKILL: nothing it holds is worth a shutdown's work.
 *
 * It runs under a small shell (WATCHDOG) that holds a pipe from this process: when the pipe
 * closes, because stop() closed it or because this process died (even by SIGKILL, which no
 * handler sees), the shell SIGKILLs the server and removes the directory. So an import killed
 * outright still leaves no server and no copy of the data behind.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { freePort } from '../util/free-port.js';
import { stageInput, type ImportInput } from './import-input.js';
import type { ServerBinary } from './import-binaries.js';

/**
 * $1: the directory to remove; the rest: the server and its arguments. Exits with the server's
 * status; the reader of stdin outlives the shell only until this process closes the pipe.
 */
const WATCHDOG = `dir=$1; shift
"$@" </dev/null &
pid=$!
# fd 3: the pipe; a background job's own stdin is /dev/null in a shell without job control.
# The shell's own output goes nowhere: its "Killed" notice to a dead parent's pipe would end it by
# SIGPIPE before the rm (the server keeps its copies of the pipes for its log).
exec 3<&0 >/dev/null 2>&1
{ cat <&3; kill -9 "$pid"; } &
wait "$pid"; code=$?
rm -rf -- "$dir"
exit $code`;

/** Tries with another port when the one picked was taken in between (another process's). */
const PORT_ATTEMPTS = 5;
const LOG_LIMIT = 64 * 1024;

export interface ThrowawayServer {
  readonly port: number;
  readonly binary: ServerBinary;
  readonly dir: string;
  /** Resolves with its last log lines if the server exits by itself (not by stop()). */
  readonly died: Promise<string>;
  /** SIGKILLs the server (if it runs) and removes its directory. Idempotent. */
  stop(): Promise<void>;
}

/** Why a server did not come up: its own words (the last lines of its log). */
export class LoadError extends Error {}

/**
 * Why a server stopped, in its own words: its log lines that say what went wrong (a load error,
 * a port in use, a FATAL), else its last lines. Redis follows a load error with a dump of its RDB
 * check, whose last lines alone name no cause.
 */
function lastLines(log: string, n = 6): string {
  const lines = log.trim().split('\n').map((l) => l.trim()).filter(Boolean);
  const said = lines.filter((l) => /error|short read|can't|cannot|unable|fatal|unrecoverable|abort|unexpected|bad file|wrong|in use|not supported/i.test(l));
  return (said.length > 0 ? said.slice(-n) : lines.slice(-n)).join(' | ');
}

/** Resolves when the process has exited. */
function exited(p: ChildProcess): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => p.once('exit', () => resolve()));
}

/**
 * Waits until the server answers (not LOADING), reporting loading progress every few seconds, or
 * until it exits (LoadError with its log). A server that loads a big file may take minutes: there
 * is no time limit, Ctrl-C stops the wait.
 */
async function waitLoaded(p: ChildProcess, port: number, log: () => string, progress: (line: string) => void): Promise<void> {
  let gone = false;
  void exited(p).then(() => (gone = true));
  let lastReport = Date.now();
  for (;;) {
    if (gone) throw new LoadError(lastLines(log()));
    const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null, enableOfflineQueue: false });
    c.on('error', () => {});
    try {
      await c.connect();
      const text = await c.info('persistence');
      if (/^loading:0/m.test(text)) return;
      if (Date.now() - lastReport >= 5_000) {
        lastReport = Date.now();
        const pct = /^loading_loaded_perc:([\d.]+)/m.exec(text)?.[1];
        progress(`loading: ${pct ?? '?'}% of the file read`);
      }
    } catch (e) {
      // LOADING before INFO answers (old versions), or not listening yet.
      if (!/LOADING|ECONNREFUSED|Connection is closed/i.test((e as Error).message)) throw e;
    } finally {
      c.disconnect();
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/**
 * Starts `binary` loading `input` from a fresh temporary directory. Throws LoadError when the
 * server exits before it has loaded (the file is corrupt, too new, or uses more dbs): the
 * directory is removed then.
 */
export async function startThrowaway(
  binary: ServerBinary,
  input: ImportInput,
  progress: (line: string) => void,
  onSpawn: (stop: () => Promise<void>) => void,
): Promise<ThrowawayServer> {
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'rehome-import-'));
    let proc: ChildProcess | null = null;
    let stopped = false;
    const stop = async () => {
      if (stopped) return;
      stopped = true;
      if (proc) {
        proc.stdin!.end();
        await exited(proc);
      }
      rmSync(dir, { recursive: true, force: true });
    };
    onSpawn(stop);
    let logText = '';
    try {
      const port = await freePort();
      const args = [
        '--port', String(port), '--bind', '127.0.0.1', '--protected-mode', 'yes', '--daemonize', 'no', '--logfile', '',
        // Files may use any db number a server was configured for; 256 covers every common setup.
        '--databases', '256',
        ...stageInput(input, dir),
      ];
      proc = spawn('/bin/sh', ['-c', WATCHDOG, 'rehome-import', dir, binary.path, ...args], { stdio: ['pipe', 'pipe', 'pipe'], cwd: dir });
      proc.stdin!.on('error', () => {}); // EPIPE once the shell is gone
      const sink = (d: Buffer) => {
        logText += d.toString('latin1');
        if (logText.length > LOG_LIMIT) logText = logText.slice(-LOG_LIMIT / 2);
      };
      proc.stdout!.on('data', sink);
      proc.stderr!.on('data', sink);
      proc.on('error', (e) => (logText += `\n${e.message}`));
      await waitLoaded(proc, port, () => logText, progress);
      if (input.kind !== 'rdb') {
        // Loaded: from now on the server only loses keys; appending that to an AOF is wasted work.
        const c = new Redis({ port, host: '127.0.0.1', maxRetriesPerRequest: 1 });
        try {
          await c.config('SET', 'appendonly', 'no');
        } finally {
          c.disconnect();
        }
      }
      const p = proc;
      const died = new Promise<string>((resolve) => void exited(p).then(() => !stopped && resolve(lastLines(logText))));
      return { port, binary, dir, died, stop };
    } catch (e) {
      await stop();
      if (e instanceof LoadError && /Address already in use/i.test(e.message) && attempt < PORT_ATTEMPTS) continue;
      throw e;
    }
  }
}
