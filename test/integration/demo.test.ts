/**
 * The README's first command: `npm run demo` (here its core, dist/demo.js, with fewer keys and a
 * slower sweeper so the workload sees the migration) must start its own servers, migrate live data
 * through rehome, verify, print its summary, clean up and exit 0; interrupted, it must leave no
 * process and no temporary file behind; without redis-server it must say how to get it.
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../../dist/demo.js', import.meta.url));

interface Run {
  code: number | null;
  signal: NodeJS.Signals | null;
  out: string;
}

const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

/** A private TMPDIR for one demo run, so the test can see exactly what it leaves behind. */
function privateTmp(): string {
  const d = mkdtempSync(join(tmpdir(), 'rehome-demo-test-'));
  dirs.push(d);
  return d;
}

/**
 * Runs the demo; `onOutput` sees the output so far and may signal the process. Kills it (and
 * fails the test through the exit code) if it is still running after `limitMs`.
 */
function runDemo(env: Record<string, string>, limitMs: number, onOutput?: (out: string, pid: number) => void): Promise<Run> {
  const proc = spawn(process.execPath, [DEMO], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const data = (d: string): void => {
    out += d;
    onOutput?.(out, proc.pid!);
  };
  proc.stdout.setEncoding('utf8').on('data', data);
  proc.stderr.setEncoding('utf8').on('data', data);
  return new Promise((resolve) => {
    const t = setTimeout(() => proc.kill('SIGKILL'), limitMs);
    proc.on('exit', (code, signal) => {
      clearTimeout(t);
      resolve({ code, signal, out });
    });
  });
}

/** A number as the summary prints it (with thousands separators). */
const num = (s: string | undefined): number => Number((s ?? 'NaN').replace(/,/g, ''));

/** The pids the demo reports for its redis-servers and rehome. */
function childPids(out: string): number[] {
  const pids = [...out.matchAll(/\(pid (\d+)\)/g)].map((m) => Number(m[1]));
  return pids;
}

/** Whether a process exists (a zombie counts: it would mean nobody reaped it). */
function alive(pid: number): boolean {
  try {
    readFileSync(`/proc/${pid}/stat`, 'latin1');
    return true;
  } catch {
    return false;
  }
}

/** Pids of processes whose command line mentions `text`. */
function processesMentioning(text: string): number[] {
  const found: number[] = [];
  for (const e of readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      if (readFileSync(`/proc/${e}/cmdline`, 'latin1').includes(text)) found.push(Number(e));
    } catch {
      /* gone meanwhile */
    }
  }
  return found;
}

describe('demo', () => {
  it('migrates live data, verifies, prints the summary and exits 0', async () => {
    const tmp = privateTmp();
    const keys = 2_000;
    // 500 keys/s: a sweep of about 4 s, so that on a loaded machine the workload still meets keys
    // the sweeper has not reached (at 2000, one run at load 4 saw none).
    const r = await runDemo({ TMPDIR: tmp, REHOME_DEMO_KEYS: String(keys), REHOME_DEMO_SWEEP_RATE: '500' }, 90_000);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/PASS: every key moved, no error, every value intact/);

    const moved = /moved\s+([\d,]+) on first touch \+ ([\d,]+) by the sweeper = ([\d,]+) of ([\d,]+)/.exec(r.out);
    expect(moved, r.out).not.toBeNull();
    const [touch, sweeper, sum, initial] = [moved![1], moved![2], moved![3], moved![4]].map(num);
    expect(initial).toBe(keys);
    expect(touch! + sweeper!).toBe(keys);
    expect(sum).toBe(keys);
    // The workload runs from the start and the sweeper is held to 500 keys/s, so some keys are
    // moved by their first touch and some by the sweeper.
    expect(touch).toBeGreaterThan(0);
    expect(sweeper).toBeGreaterThan(0);

    expect(r.out).toMatch(/duration\s+migration \d+\.\d s \(rehome start to drained\); whole demo \d+\.\d s/);
    const wl = /workload\s+(\d+) clients, ([\d,]+) operations \(([\d,]+) reads checked, ([\d,]+) writes\), (\d+) errors, (\d+) wrong values/.exec(r.out);
    expect(wl, r.out).not.toBeNull();
    expect(num(wl![1])).toBeGreaterThan(1);
    expect(num(wl![2])).toBeGreaterThan(0);
    expect(num(wl![3])).toBeGreaterThan(0);
    expect(num(wl![4])).toBeGreaterThan(0);
    expect(wl![5]).toBe('0');
    expect(wl![6]).toBe('0');

    const lat = /latency\s+p50 ([\d.]+) ms, p99 ([\d.]+) ms while migrating \(([\d,]+) ops\); p50 ([\d.]+) ms, p99 ([\d.]+) ms once drained \(([\d,]+) ops\)/.exec(r.out);
    expect(lat, r.out).not.toBeNull();
    expect(num(lat![3])).toBeGreaterThan(0);
    expect(num(lat![6])).toBeGreaterThan(0);
    expect(num(lat![1])).toBeLessThanOrEqual(num(lat![2]));
    expect(num(lat![4])).toBeLessThanOrEqual(num(lat![5]));

    expect(r.out).toMatch(/verify\s+ok: the old server is empty and no key is in both/);
    expect(r.out).toMatch(/empty in every db; no key in both: safe to cut over/);
    const ns = /new server\s+([\d,]+) keys checked .*?, (\d+) wrong; ([\d,]+) keys \(expected ([\d,]+)\), ([\d,]+) with a TTL \(expected ([\d,]+)\)/.exec(r.out);
    expect(ns, r.out).not.toBeNull();
    expect(num(ns![1])).toBeGreaterThanOrEqual(keys);
    expect(ns![2]).toBe('0');
    expect(ns![3]).toBe(ns![4]);
    expect(ns![5]).toBe(ns![6]);
    expect(num(ns![5])).toBeGreaterThan(0);
    expect(r.out).toMatch(/rehome\s+exited with code 0 on SIGTERM/);

    expect(readdirSync(tmp)).toEqual([]);
    for (const pid of childPids(r.out)) expect(alive(pid), `pid ${pid}`).toBe(false);
  }, 100_000);

  it.each([
    ['SIGINT', 130],
    ['SIGTERM', 143],
  ] as const)('%s mid-migration stops every child and removes the temp dir', async (sig, exitCode) => {
    const tmp = privateTmp();
    let pids: number[] = [];
    let sent = false;
    // 4,000 keys at 400 keys/s: the migration would last 10 s, the signal comes at its first
    // progress line.
    const r = await runDemo({ TMPDIR: tmp, REHOME_DEMO_KEYS: '4000', REHOME_DEMO_SWEEP_RATE: '400' }, 60_000, (out, pid) => {
      // Once the migration is under way: two redis-servers and rehome running, the workload on.
      if (!sent && /progress: [\d,]+\/4,000 keys moved/.test(out)) {
        sent = true;
        pids = childPids(out);
        process.kill(pid, sig);
      }
    });
    expect(sent, r.out).toBe(true);
    expect(pids, r.out).toHaveLength(3);
    expect(r.code, r.out).toBe(exitCode);
    expect(r.out).not.toMatch(/PASS/);
    expect(readdirSync(tmp)).toEqual([]);
    for (const pid of pids) expect(alive(pid), `pid ${pid}`).toBe(false);
    expect(processesMentioning(tmp)).toEqual([]);
  }, 70_000);

  it('without redis-server and apt-get, says in one line how to get it and exits 1', async () => {
    const tmp = privateTmp();
    const r = await runDemo({ TMPDIR: tmp, PATH: join(tmp, 'empty') }, 20_000);
    expect(r.code).toBe(1);
    expect(r.out.trim().split('\n')).toHaveLength(1);
    expect(r.out).toMatch(/redis-server is not on the PATH; install it \(Debian\/Ubuntu: sudo apt-get install -y redis-server redis-tools\)/);
    expect(readdirSync(tmp)).toEqual([]);
  });

  it.skipIf(process.getuid?.() !== 0)('as root without redis-server, installs it with apt-get', async () => {
    // A stand-in apt-get that records how it was called and installs nothing.
    const tmp = privateTmp();
    const bin = join(tmp, 'bin');
    const record = join(tmp, 'apt-calls');
    const script = `#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> ${record}\nexit 0\n`;
    mkdirSync(bin);
    writeFileSync(join(bin, 'apt-get'), script);
    chmodSync(join(bin, 'apt-get'), 0o755);
    const r = await runDemo({ TMPDIR: tmp, PATH: bin }, 20_000);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/installing redis-server and redis-tools from Debian's packages/);
    expect(r.out).toMatch(/installing redis-server failed; install it/);
    const calls = readFileSync(record, 'utf8').trim().split('\n');
    expect(calls.filter((c) => !c.endsWith('--version'))).toEqual([
      'noninteractive update',
      'noninteractive install -y redis-server redis-tools',
    ]);
    rmSync(bin, { recursive: true, force: true });
    rmSync(record);
    expect(readdirSync(tmp)).toEqual([]);
  });
});
