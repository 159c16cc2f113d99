/**
 * node bench/test-cpu.mjs [--top 10] [-- VITEST ARGS]
 *
 * Where a test run's CPU and time go, the figures the 4-minute target of `npm test` on two cores
 * depends on (README, "Test run"). Runs `vitest run` (after `npm run build`, as the tests spawn
 * dist/cli.js) under /usr/bin/time with test/helpers/cpu-account.ts as a setup file, and prints:
 *   - the run's wall time and CPU (user + sys of vitest and everything it started), with the load
 *     average before it;
 *   - CPU by kind of process: the rehome processes tests start (proxies, subcommands), the
 *     redis-servers, the vitest workers themselves (test code, clients, workloads), the rest;
 *   - the test files that took longest, and the last files to end: a long file that runs alone at
 *     the end leaves a core idle (`alone at the end`).
 * Arguments after `--` go to vitest (e.g. a subset of files).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { ROOT } from './lib.mjs';

const argv = process.argv.slice(2);
const dash = argv.indexOf('--');
const own = dash >= 0 ? argv.slice(0, dash) : argv;
const vitestArgs = dash >= 0 ? argv.slice(dash + 1) : [];
const topIdx = own.indexOf('--top');
const top = topIdx >= 0 ? Number(own[topIdx + 1]) : 10;

const dir = mkdtempSync(path.join(os.tmpdir(), 'rehome-test-cpu-'));
const acct = path.join(dir, 'processes.jsonl');
const json = path.join(dir, 'vitest.json');
const timeOut = path.join(dir, 'time');
const load = os.loadavg().map((x) => x.toFixed(1)).join(' ');

const code = await new Promise((resolve) => {
  const p = spawn(
    '/usr/bin/time',
    ['-f', '%U %S %e', '-o', timeOut, 'npx', 'vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${json}`, ...vitestArgs],
    { cwd: ROOT, stdio: 'inherit', env: { ...process.env, REHOME_TEST_CPU: acct } },
  );
  p.once('exit', (c) => resolve(c ?? 1));
});

const [user, sys, wall] = readFileSync(timeOut, 'utf8').trim().split('\n').pop().split(' ').map(Number);
const rows = existsSync(acct) ? readFileSync(acct, 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l)) : [];
const s = (ticks) => ticks / 100;
const fmt = (x) => x.toFixed(1).padStart(7);

// Per kind; a worker's figure is cumulative (one line per file it ran): its last one counts.
const byKind = new Map();
const workers = new Map();
for (const r of rows) {
  if (r.kind === 'vitest worker') workers.set(r.pid, Math.max(workers.get(r.pid) ?? 0, r.ticks));
  else {
    const k = byKind.get(r.kind) ?? { n: 0, ticks: 0 };
    k.n++;
    k.ticks += r.ticks;
    byKind.set(r.kind, k);
  }
}
const workerTicks = [...workers.values()].reduce((a, b) => a + b, 0);
const childTicks = [...byKind.values()].reduce((a, k) => a + k.ticks, 0);
const total = user + sys;

console.log(`\ntest-cpu: load average before ${load}; exit code ${code}`);
console.log(`wall ${wall.toFixed(0)} s; CPU ${total.toFixed(0)} s (user ${user.toFixed(0)} + sys ${sys.toFixed(0)}), ${((100 * total) / wall).toFixed(0)}% of one core`);
console.log('\nCPU by kind (s, processes):');
for (const [k, v] of [...byKind].sort((a, b) => b[1].ticks - a[1].ticks)) {
  if (v.ticks >= 10) console.log(`${fmt(s(v.ticks))} ${String(v.n).padStart(5)}  ${k}`);
}
console.log(`${fmt(s(workerTicks))} ${String(workers.size).padStart(5)}  vitest workers (test code, clients, workloads)`);
console.log(`${fmt(total - s(childTicks) - s(workerTicks))}     -  the rest (vitest's main process, processes that lived under 40 ms, missed last samples)`);

if (existsSync(json)) {
  const files = JSON.parse(readFileSync(json, 'utf8')).testResults.map((t) => ({
    file: path.relative(ROOT, t.name),
    start: t.startTime,
    end: t.endTime,
  }));
  const t0 = Math.min(...files.map((f) => f.start));
  const at = (t) => ((t - t0) / 1000).toFixed(0).padStart(4);
  console.log(`\nlongest files (s, from-to in the run):`);
  for (const f of [...files].sort((a, b) => b.end - b.start - (a.end - a.start)).slice(0, top)) {
    console.log(`${fmt((f.end - f.start) / 1000)}  ${at(f.start)}-${at(f.end)}  ${f.file}`);
  }
  const byEnd = [...files].sort((a, b) => b.end - a.end);
  // From the end of the second-to-last file on, the last one runs alone and a core idles.
  const alone = byEnd.length > 1 ? (byEnd[0].end - byEnd[1].end) / 1000 : 0;
  console.log(`\nlast to end: ${byEnd.slice(0, 3).map((f) => `${f.file} (${at(f.end).trim()} s)`).join(', ')}; alone at the end ${alone.toFixed(0)} s`);
}
process.exit(code);
