/**
 * A vitest setup file that bench/test-cpu.mjs adds (vitest.config.ts, REHOME_TEST_CPU=FILE): where
 * a test run's CPU goes. Every process a test file spawns (rehome, its subcommands, redis-server,
 * chromium...) is sampled from /proc every 40 ms while it lives, and its last figure (user + sys,
 * its reaped children included) is appended to FILE with its kind and the test file that started
 * it; after each test file, the worker's own CPU so far. The last 40 ms of a process are missed:
 * the figures are a floor, close enough to rank kinds and files.
 */
import childProcess, { type ChildProcess } from 'node:child_process';
import { appendFileSync, readFileSync } from 'node:fs';
import { syncBuiltinESMExports } from 'node:module';
import { afterAll, expect } from 'vitest';

const OUT = process.env.REHOME_TEST_CPU ?? '';
const SUBCOMMANDS = new Set(['status', 'phase', 'sweeper', 'plan', 'verify', 'import', 'canary']);

interface Sampled {
  kind: string;
  file: string;
  /** Clock ticks (1/100 s) of user + sys time, its reaped children's included. */
  ticks: number;
}

const live = new Map<number, Sampled>();

function currentFile(): string {
  try {
    return (expect.getState().testPath ?? '?').replace(/.*\/test\//, '');
  } catch {
    return '?';
  }
}

/** `redis-server`, `node dist/cli.js`, `node dist/cli.js status`... */
function kindOf(command: string, args: readonly string[]): string {
  const name = command.split('/').pop() ?? command;
  if (command !== process.execPath && name !== 'node') return name;
  const script = args.find((a) => !a.startsWith('-')) ?? '';
  const sub = args[args.indexOf(script) + 1] ?? '';
  return `node ${script.split('/').slice(-2).join('/')}${SUBCOMMANDS.has(sub) ? ` ${sub}` : ''}`;
}

function sample(): void {
  for (const [pid, rec] of live) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Fields after the command name: utime, stime, cutime, cstime are the 12th to 15th.
      const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
      if (ticks > rec.ticks) rec.ticks = ticks;
    } catch {
      // Gone between its exit and the 'exit' event: its last sample stands.
    }
  }
}

const g = globalThis as { rehomeCpuAccount?: boolean };
// Once per worker: with isolate: false the setup file runs again before each test file.
if (OUT !== '' && !g.rehomeCpuAccount) {
  g.rehomeCpuAccount = true;
  const spawn = childProcess.spawn;
  const wrapped = (...a: Parameters<typeof spawn>): ChildProcess => {
    const p = (spawn as (...x: unknown[]) => ChildProcess)(...a);
    const args = Array.isArray(a[1]) ? (a[1] as string[]) : [];
    if (p.pid !== undefined) {
      const pid = p.pid;
      const rec: Sampled = { kind: kindOf(String(a[0]), args), file: currentFile(), ticks: 0 };
      live.set(pid, rec);
      p.once('exit', () => {
        live.delete(pid);
        appendFileSync(OUT, `${JSON.stringify(rec)}\n`);
      });
    }
    return p;
  };
  (childProcess as { spawn: unknown }).spawn = wrapped;
  syncBuiltinESMExports();
  setInterval(sample, 40).unref();
}

if (OUT !== '') {
  afterAll(() => {
    const u = process.cpuUsage();
    const rec = { kind: 'vitest worker', pid: process.pid, file: currentFile(), ticks: Math.round((u.user + u.system) / 10_000) };
    appendFileSync(OUT, `${JSON.stringify(rec)}\n`);
  });
}
