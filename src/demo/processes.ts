/**
 * The demo's child processes: throwaway redis-servers and rehome itself, all tracked so that every
 * one of them is stopped (and reaped) however the demo ends.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { freePort } from '../util/free-port.js';

export { freePort };

/** Whether `redis-server` runs from the PATH. */
function hasRedisServer(): boolean {
  const r = spawnSync('redis-server', ['--version'], { stdio: 'ignore' });
  return !r.error && r.status === 0;
}

/**
 * Makes sure redis-server is on the PATH: as root with apt-get, installs Debian's packages;
 * otherwise says in one line how to get it. Returns false when it is still missing.
 */
export function ensureRedisServer(say: (line: string) => void): boolean {
  if (hasRedisServer()) return true;
  const how = 'install it (Debian/Ubuntu: sudo apt-get install -y redis-server redis-tools) and run npm run demo again';
  const canInstall = process.getuid?.() === 0 && !spawnSync('apt-get', ['--version'], { stdio: 'ignore' }).error;
  if (!canInstall) {
    say(`demo: redis-server is not on the PATH; ${how}`);
    return false;
  }
  say("demo: redis-server is not on the PATH; installing redis-server and redis-tools from Debian's packages");
  const r = spawnSync('/bin/sh', ['-c', 'apt-get update && apt-get install -y redis-server redis-tools'], {
    stdio: ['ignore', 2, 2],
    env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
  });
  if (r.status !== 0 || !hasRedisServer()) {
    say(`demo: installing redis-server failed; ${how}`);
    return false;
  }
  return true;
}

/** Whether a redis-server's log file says it has bound its port (written once, at start). */
function saysReady(logFile: string): boolean {
  try {
    return readFileSync(logFile, 'latin1').includes('Ready to accept connections');
  } catch {
    return false;
  }
}

/** True once a fresh connection to the port answers PING with +PONG. */
function pings(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    let data = '';
    const done = (ok: boolean): void => {
      s.destroy();
      resolve(ok);
    };
    s.setTimeout(500, () => done(false));
    s.on('error', () => done(false));
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      data += d.toString('latin1');
      // NOAUTH: up, and asking for the password it was started with.
      if (data.includes('\r\n')) done(data.startsWith('+PONG') || data.startsWith('-NOAUTH'));
    });
  });
}

/** Every child the demo started; stopAll() ends them and waits until each has exited. */
export class Children {
  private readonly live = new Set<ChildProcess>();

  track(p: ChildProcess): ChildProcess {
    this.live.add(p);
    p.once('exit', () => this.live.delete(p));
    p.once('error', () => this.live.delete(p));
    return p;
  }

  /** Sends `signal` to one child, SIGKILL if it is still alive after `graceMs`, and waits. */
  stop(p: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
    return exited(p, signal, graceMs);
  }

  /** Sends `signal` to every live child, SIGKILL to those still alive after `graceMs`, and waits. */
  async stopAll(signal: NodeJS.Signals = 'SIGKILL', graceMs = 3_000): Promise<void> {
    const waits = [...this.live].map((p) => exited(p, signal, graceMs));
    await Promise.all(waits);
  }

  /**
   * A throwaway redis-server on a free loopback port, without persistence, logging into `dir`;
   * `args` are added to its command line (e.g. --requirepass).
   */
  async redis(name: string, dir: string, args: string[] = []): Promise<{ port: number; pid: number }> {
    for (let attempt = 0; ; attempt++) {
      const port = await freePort();
      const p = this.track(
        spawn(
          'redis-server',
          ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', join(dir, `${name}.log`), ...args],
          { stdio: 'ignore' },
        ),
      );
      const log = join(dir, `${name}.log`);
      for (let i = 0; i < 100 && p.exitCode === null; i++) {
        // Its own log line too: a PONG may come from another process that took the port first
        // (this one then fails to bind it and exits).
        if ((await pings(port)) && saysReady(log) && p.exitCode === null) return { port, pid: p.pid! };
        await new Promise((r) => setTimeout(r, 50));
      }
      await exited(p, 'SIGKILL', 0);
      // Most likely the port was taken between freePort() and the bind: try another.
      if (attempt === 2) throw new Error(`the ${name} redis-server did not start (see ${join(dir, `${name}.log`)})`);
    }
  }

  /**
   * rehome itself, as an operator runs it (node dist/cli.js ...). Resolves once it prints that it
   * listens; rejects with its last log lines if it exits first.
   */
  rehome(cli: string, args: string[]): Promise<{ pid: number; proc: ChildProcess; log: string[] }> {
    const p = this.track(spawn(process.execPath, [cli, ...args], { stdio: ['ignore', 'pipe', 'pipe'] }));
    const log: string[] = [];
    const keep = (d: string): void => {
      for (const line of d.split('\n')) if (line.trim()) log.push(line);
      if (log.length > 50) log.splice(0, log.length - 50);
    };
    p.stderr!.setEncoding('utf8').on('data', keep);
    return new Promise((resolve, reject) => {
      let out = '';
      p.stdout!.setEncoding('utf8').on('data', (d: string) => {
        out += d;
        keep(d);
        if (out.includes('listening on')) resolve({ pid: p.pid!, proc: p, log });
      });
      p.once('exit', (code) => reject(new Error(`rehome exited with code ${code} before listening:\n  ${log.slice(-10).join('\n  ')}`)));
    });
  }
}

/** Signals `p` (SIGKILL after graceMs) and resolves once it has exited. */
function exited(p: ChildProcess, signal: NodeJS.Signals, graceMs: number): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const t = setTimeout(() => p.kill('SIGKILL'), graceMs);
    const done = (): void => {
      clearTimeout(t);
      resolve();
    };
    p.once('exit', done);
    p.once('error', done);
    p.kill(signal);
  });
}
