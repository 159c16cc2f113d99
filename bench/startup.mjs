/**
 * node bench/startup.mjs [--rounds 8] [--compare CLI]
 *
 * What a rehome process costs in CPU to start, the figure that most of `npm test`'s CPU comes from
 * (it starts a process several hundred times). Per round, each measured as user+sys of the process
 * by /usr/bin/time (Debian's `time` package):
 *   node       a bare `node -e 0`: the reference, what any Node program pays;
 *   proxy      rehome from spawn to its listening line, then SIGTERM and exit (--no-sweep);
 *   help       `rehome --help`;
 *   status     `rehome status` against a port where nothing listens (exit 1).
 * Prints medians in ms of CPU and each one's ratio to `node`. `--compare CLI` measures another
 * build the same way in the same rounds (e.g. a copy of an older dist/cli.js).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { childPids, flags, fmt, freePort, median, REHOME_CLI, startRedis } from './lib.mjs';

const opt = flags({ rounds: '8', compare: '' });
const TIME = '/usr/bin/time';
const out = path.join(mkdtempSync(path.join(os.tmpdir(), 'rehome-startup-')), 'cpu');

/** Runs `node args` under /usr/bin/time; `untilLine`: SIGTERM once stdout has it. Resolves CPU seconds. */
function cpuOf(args, untilLine = null) {
  return new Promise((resolve, reject) => {
    const child = spawn(TIME, ['-f', '%U %S', '-o', out, process.execPath, ...args], { stdio: ['ignore', 'pipe', 'ignore'] });
    let stdout = '';
    child.stdout.on('data', (d) => {
      stdout += d;
      // To the process that /usr/bin/time runs: time itself would die of it and report nothing.
      if (untilLine && stdout.includes(untilLine)) for (const pid of childPids(child.pid)) process.kill(pid, 'SIGTERM');
    });
    child.once('exit', () => {
      const [u, s] = readFileSync(out, 'utf8').trim().split('\n').pop().split(' ').map(Number);
      if (!Number.isFinite(u + s)) reject(new Error(`no CPU figure for node ${args.join(' ')}`));
      else resolve(u + s);
    });
  });
}

const source = await startRedis('source');
const target = await startRedis('target');
const nowhere = String(await freePort());
const clis = [['rehome', REHOME_CLI], ...(opt.compare ? [['compare', opt.compare]] : [])];
const samples = new Map();
const add = (k, v) => samples.set(k, [...(samples.get(k) ?? []), v]);

for (let r = 0; r < Number(opt.rounds); r++) {
  add('node', await cpuOf(['-e', '0']));
  for (const [name, cli] of clis) {
    const base = ['--source', `redis://127.0.0.1:${source.port}`, '--target', `redis://127.0.0.1:${target.port}`];
    add(`${name} proxy`, await cpuOf([cli, '--listen', '127.0.0.1:0', ...base, '--no-sweep', '--progress', 'off'], 'listening on'));
    add(`${name} help`, await cpuOf([cli, '--help']));
    add(`${name} status`, await cpuOf([cli, 'status', '--admin', nowhere]));
  }
}
await source.stop();
await target.stop();

const ref = median(samples.get('node'));
console.log(`${opt.rounds} rounds, medians of user+sys CPU; load average ${os.loadavg().map((x) => x.toFixed(1)).join(' ')}`);
for (const [k, xs] of samples) {
  console.log(`${k.padEnd(16)} ${fmt(median(xs) * 1000).padStart(6)} ms   ${(median(xs) / ref).toFixed(2)}x node`);
}
process.exit(0);
