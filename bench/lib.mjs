/**
 * Shared helpers for the bench/ scripts: throwaway redis-servers, rehome and nutcracker processes
 * on free loopback ports, fast fills, percentiles, CPU time from /proc. Every process started here
 * is remembered and killed when the script exits (normally, on an error, or on Ctrl-C).
 */
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { freePort } from '../dist/util/free-port.js';

export { freePort };

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const REHOME_CLI = process.env.REHOME_CLI ?? path.join(ROOT, 'dist', 'cli.js');
export const CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;

const children = new Set();
const tmpDirs = [];

function killAll() {
  for (const c of children) {
    try {
      c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  for (const d of tmpDirs.splice(0)) rmSync(d, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    process.stderr.write(`\nbench: ${sig}, stopping everything\n`);
    killAll();
    process.exit(130);
  });
}
process.on('uncaughtException', (e) => {
  process.stderr.write(`bench: ${e.stack ?? e}\n`);
  killAll();
  process.exit(1);
});
process.on('unhandledRejection', (e) => {
  process.stderr.write(`bench: ${e?.stack ?? e}\n`);
  killAll();
  process.exit(1);
});

export function tmpDir() {
  const d = mkdtempSync(path.join(os.tmpdir(), 'rehome-bench-'));
  tmpDirs.push(d);
  return d;
}

/**
 * A throwaway CA and a certificate for 127.0.0.1 signed by it (openssl, EC P-256), in a temporary
 * directory: { ca, cert, key } file paths.
 */
export function makeCerts() {
  const dir = tmpDir();
  const run = (...args) => execFileSync('openssl', args, { cwd: dir, stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  run('req', '-x509', ...ec, '-keyout', 'ca.key', '-out', 'ca.crt', '-days', '2', '-subj', '/CN=bench-ca');
  run('req', ...ec, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=127.0.0.1');
  writeFileSync(path.join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
  run('x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'server.crt', '-days', '2', '-extfile', 'ext');
  return { ca: path.join(dir, 'ca.crt'), cert: path.join(dir, 'server.crt'), key: path.join(dir, 'server.key') };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** A started child process; `stderr` keeps its last 64 KB of stderr for problem reports. */
function track(name, child) {
  const proc = { name, child, pid: child.pid, stderr: '', exited: null };
  children.add(child);
  child.stderr?.on('data', (b) => {
    proc.stderr = (proc.stderr + b.toString()).slice(-65536);
  });
  child.on('exit', (code, signal) => {
    children.delete(child);
    proc.exited = { code, signal };
    if (!proc.stopping) {
      process.stderr.write(`bench: ${name} (pid ${child.pid}) exited unexpectedly: code ${code} signal ${signal}\n`);
      if (proc.stderr) process.stderr.write(`bench: its last stderr:\n${proc.stderr.slice(-4000)}\n`);
    }
  });
  proc.stop = async () => {
    if (proc.exited) return;
    proc.stopping = true;
    const gone = new Promise((r) => child.once('exit', r));
    child.kill('SIGTERM');
    const t = setTimeout(() => child.kill('SIGKILL'), 3000);
    await gone;
    clearTimeout(t);
  };
  return proc;
}

async function waitForPort(port, proc, ms = 10000) {
  const deadline = Date.now() + ms;
  for (;;) {
    if (proc.exited) throw new Error(`${proc.name} exited during start: ${proc.stderr.slice(-2000)}`);
    const ok = await new Promise((r) => {
      const s = net.connect(port, '127.0.0.1');
      s.once('connect', () => {
        s.destroy();
        r(true);
      });
      s.once('error', () => r(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`${proc.name} did not listen on ${port} within ${ms} ms`);
    await sleep(50);
  }
}

/** A throwaway redis-server on a free loopback port, no persistence. */
export async function startRedis(name, extraArgs = []) {
  const port = await freePort();
  const dir = tmpDir();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', '', ...extraArgs],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  const proc = track(name, child);
  proc.port = port;
  await waitForPort(port, proc);
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 50 });
  await c.connect();
  while ((await c.ping().catch(() => '')) !== 'PONG') await sleep(50);
  c.disconnect();
  return proc;
}

/**
 * rehome on a free port. `t0` is when its 'listening' line arrived, `spawnedAt` when it was spawned.
 * Resolves once it listens (and the admin port, when asked for, answers).
 */
export async function startRehome({ source, target, args = [], admin = false, nodeArgs = [], cli = REHOME_CLI, scheme = 'redis' }) {
  const port = await freePort();
  const adminPort = admin ? await freePort() : null;
  const argv = [
    ...nodeArgs,
    cli,
    '--listen', `127.0.0.1:${port}`,
    '--source', `${scheme}://127.0.0.1:${source}`,
    '--target', `${scheme}://127.0.0.1:${target}`,
    '--progress', 'off',
    ...(admin ? ['--admin', `127.0.0.1:${adminPort}`] : []),
    ...args,
  ];
  const spawnedAt = Date.now();
  const child = spawn(process.execPath, argv, { stdio: ['ignore', 'pipe', 'pipe'], cwd: ROOT });
  const proc = track('rehome', child);
  Object.assign(proc, { port, adminPort, spawnedAt, stdout: '' });
  await new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`rehome did not print 'listening' within 20 s: ${proc.stderr}`)), 20000);
    child.stdout.on('data', (b) => {
      proc.stdout += b.toString();
      if (!proc.t0 && proc.stdout.includes('rehome: listening on')) {
        proc.t0 = Date.now();
        clearTimeout(t);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(t);
      reject(new Error(`rehome exited with ${code} during start: ${proc.stderr}`));
    });
  });
  if (admin) await waitForPort(adminPort, proc);
  return proc;
}

/** twemproxy in front of one redis-server (one server connection, as twemproxy is meant to run). */
export async function startNutcracker(targetPort) {
  const port = await freePort();
  const statsPort = await freePort();
  const dir = tmpDir();
  const conf = path.join(dir, 'nutcracker.yml');
  writeFileSync(
    conf,
    [
      'bench:',
      `  listen: 127.0.0.1:${port}`,
      '  hash: fnv1a_64',
      '  distribution: ketama',
      '  redis: true',
      '  servers:',
      `   - 127.0.0.1:${targetPort}:1`,
      '',
    ].join('\n'),
  );
  const child = spawn('nutcracker', ['-c', conf, '-s', String(statsPort), '-a', '127.0.0.1', '-o', path.join(dir, 'nc.log')], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const proc = track('nutcracker', child);
  proc.port = port;
  await waitForPort(port, proc);
  return proc;
}

/** bench/node-floor.mjs in front of the target: the floor of a Node.js proxy of rehome's design. */
export async function startNodeFloor(targetPort) {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'bench', 'node-floor.mjs'), String(port), String(targetPort)], {
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  const proc = track('node-floor', child);
  proc.port = port;
  await waitForPort(port, proc);
  return proc;
}

/** Deterministic filler bytes that LZF cannot shrink (DUMP compresses strings over 20 bytes). */
const NOISE = (() => {
  const b = Buffer.alloc(1 << 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < b.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b[i] = 33 + ((x >>> 0) % 94);
  }
  return b.toString('latin1');
})();

export function valueFor(i, size = 100) {
  const off = (i * 7919) % (NOISE.length - size);
  return NOISE.slice(off, off + size);
}

/** SET key(i) for i in [0, n), pipelines of `batch` SETs, `inflight` pipelines at once. */
export async function fill(port, n, { key = (i) => `key:${i}`, size = 100, batch = 1000, inflight = 4 } = {}) {
  const c = new Redis({ port, host: '127.0.0.1' });
  let next = 0;
  const worker = async () => {
    while (next < n) {
      const start = next;
      const end = Math.min(n, start + batch);
      next = end;
      const p = c.pipeline();
      for (let i = start; i < end; i++) p.set(key(i), valueFor(i, size));
      const res = await p.exec();
      for (const [err] of res) if (err) throw err;
    }
  };
  await Promise.all(Array.from({ length: inflight }, worker));
  const size_ = await c.dbsize();
  c.disconnect();
  if (size_ < n) throw new Error(`fill: expected ${n} keys, DBSIZE says ${size_}`);
}

/** utime+stime of a process in seconds. */
export function cpuSeconds(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // after "pid (comm) ": field 3 (state) is f[0], so utime (14) is f[11], stime (15) f[12]
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

export function median(xs) {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

/** Nearest-rank percentile of an unsorted numeric array (copied and sorted). */
export function percentile(xs, p) {
  if (!xs.length) return NaN;
  const s = Float64Array.from(xs).sort();
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))];
}

/** Minimal flag parser: --name value and --flag. */
export function flags(spec) {
  const out = { ...spec };
  const a = process.argv.slice(2);
  for (let i = 0; i < a.length; i++) {
    const m = /^--([a-z0-9-]+)(?:=(.*))?$/.exec(a[i]);
    if (!m || !(m[1] in spec)) {
      process.stderr.write(`unknown argument '${a[i]}'; known: ${Object.keys(spec).map((k) => `--${k}`).join(' ')}\n`);
      process.exit(2);
    }
    if (typeof spec[m[1]] === 'boolean') out[m[1]] = true;
    else {
      const v = m[2] ?? a[++i];
      out[m[1]] = typeof spec[m[1]] === 'number' ? Number(v) : v;
      if (typeof spec[m[1]] === 'number' && !Number.isFinite(out[m[1]])) {
        process.stderr.write(`--${m[1]} needs a number\n`);
        process.exit(2);
      }
    }
  }
  return out;
}

export const fmt = (x, d = 0) =>
  Number.isFinite(x) ? x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d }) : 'n/a';
export const ms = (x) => (Number.isFinite(x) ? `${x.toFixed(3)} ms` : 'n/a');

export async function getJson(port, pathname) {
  const res = await fetch(`http://127.0.0.1:${port}${pathname}`);
  return res.json();
}

/** /proc/PID/stat fields after "pid (comm) ": f[0] is field 3 (state). */
function statFields(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

/** The live child processes of `pid` (a --workers primary's workers). */
export function childPids(pid) {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/**
 * CPU seconds of a process and its children: its own utime+stime, the live children's, and
 * cutime+cstime (children that have exited and been reaped, e.g. a restarted worker).
 */
export function treeCpuSeconds(pid) {
  const f = statFields(pid);
  let ticks = Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
  for (const c of childPids(pid)) {
    try {
      const g = statFields(c);
      ticks += Number(g[11]) + Number(g[12]);
    } catch {
      /* exited meanwhile: counted in cutime once reaped */
    }
  }
  return ticks / CLK_TCK;
}

/** Resident set size in bytes of a process (VmRSS), and of each of its live children. */
export function rssBytes(pid) {
  const one = (p) => Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? NaN) * 1024;
  return { self: one(pid), children: childPids(pid).map(one) };
}

/**
 * Waits until the 1-minute load average is below `max` (checking every 30 s, at most `waitS`
 * seconds), so a run does not start while other work holds the machine. Returns the load seen
 * last and whether it was below `max`.
 */
export async function waitForQuiet(max, waitS) {
  const deadline = Date.now() + waitS * 1000;
  for (;;) {
    const load = os.loadavg()[0];
    if (load < max) return { load, quiet: true };
    if (Date.now() >= deadline) {
      process.stderr.write(`bench: the 1-minute load average is still ${load.toFixed(2)} (>= ${max}) after ${waitS} s; running anyway\n`);
      return { load, quiet: false };
    }
    process.stderr.write(`bench: 1-minute load average ${load.toFixed(2)} >= ${max}; waiting 30 s\n`);
    await sleep(30_000);
  }
}

/** CPU seconds the whole machine spent busy (every core: user, nice, system, irq, softirq, steal). */
export function machineBusySeconds() {
  const f = /^cpu\s+(.*)$/m.exec(readFileSync('/proc/stat', 'utf8'))[1].split(/\s+/).map(Number);
  // user nice system idle iowait irq softirq steal
  return (f[0] + f[1] + f[2] + f[5] + f[6] + (f[7] ?? 0)) / CLK_TCK;
}

/**
 * CPU that processes other than `ours()` (CPU seconds of this script and its children so far) use
 * over `ms`, in cores. Used to wait for, and to report, other work sharing the machine.
 */
export async function foreignCores(ours, ms) {
  const m0 = machineBusySeconds();
  const o0 = ours();
  await sleep(ms);
  return Math.max(0, machineBusySeconds() - m0 - (ours() - o0)) / (ms / 1000);
}

/** `calls` of one command from INFO commandstats (0 when it never ran). */
export async function commandCalls(port, name) {
  const c = new Redis({ port, host: '127.0.0.1' });
  const text = await c.info('commandstats');
  c.disconnect();
  return Number(new RegExp(`^cmdstat_${name}:calls=(\\d+)`, 'm').exec(text)?.[1] ?? 0);
}

/**
 * A pipelined DUMP/RESTORE client copy of every key from one server to another (what RedisShake's
 * scan mode does): SCAN COUNT 1000, DUMP + PTTL of the batch in one pipeline, RESTORE of it in one
 * pipeline, two batches in flight. The reference the move benchmarks compare rehome with.
 */
export async function clientCopy(srcPort, tgtPort) {
  const s = new Redis({ port: srcPort, host: '127.0.0.1' });
  const t = new Redis({ port: tgtPort, host: '127.0.0.1' });
  const t0 = performance.now();
  let cursor = '0';
  let copied = 0;
  let prev = Promise.resolve();
  do {
    const [next, keys] = await s.scanBuffer(cursor, 'COUNT', 1000);
    cursor = String(next);
    if (keys.length === 0) continue;
    const p = s.pipeline();
    for (const k of keys) p.dumpBuffer(k).pttl(k);
    const r = await p.exec();
    const w = t.pipeline();
    keys.forEach((k, i) => {
      const payload = r[2 * i][1];
      const pttl = Number(r[2 * i + 1][1]);
      if (payload) w.restore(k, pttl > 0 ? pttl : 0, payload);
    });
    // Two batches in flight: the next SCAN/DUMP overlaps this RESTORE.
    await prev;
    prev = w.exec().then((res) => {
      for (const [err] of res) if (err) throw err;
      copied += keys.length;
    });
  } while (cursor !== '0');
  await prev;
  const secs = (performance.now() - t0) / 1000;
  s.disconnect();
  t.disconnect();
  return { keys: copied, secs, rate: copied / secs };
}
