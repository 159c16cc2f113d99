#!/usr/bin/env node
/**
 * Sweeper rate against the server-side ceiling, and what one client sees while it runs.
 *
 *   node bench/sweep.mjs [--keys N] [--rounds R] [--compare CLI[,CLI...]] [--max-foreign C]
 *                        [--quiet-wait S] [--no-references] [--loop-rest F] [--sched]
 *                                                        (BENCH_KEYS=N also sets the key count)
 *
 * Each round:
 *  1. ceiling: N 100-byte strings in the source; a plain loop of `SCAN cursor COUNT 1000` and
 *     `MIGRATE 127.0.0.1 <target> "" 0 5000 KEYS ...` until the source is empty -> keys/s, run in
 *     a process of its own; then the same again (target flushed, source refilled) under the
 *     sweeper run's conditions: rehome --no-sweep in front of the pair and the reader below
 *     GETting through it during the loop and for as long again after it -> keys/s and the
 *     reader's p99 during and after the loop. Then (unless --no-references; hot reader only) the
 *     loop twice more with the reader on reference paths, its hot keys moved to the target first:
 *     straight to the target, and through twemproxy (nutcracker) in front of it -> what the
 *     server-side loop alone does to one client's p99, with no proxy and with another proxy.
 *     `--loop-rest F` makes every loop rest F times as long as each MIGRATE took (a paced loop).
 *     `--sched` also prints the run-queue waits of each process (perf sched) during the sweep and
 *     after the drain.
 *  2. sweeper: target flushed, source refilled; rehome started with its defaults (sweeper on);
 *     timed from its 'listening' line until /status says phase 'drained' -> keys/s. Meanwhile one
 *     client GETs keys through rehome, one at a time, during the sweep and then for as long again
 *     after the drain; every reply is checked against the value written. `--reader hot` (default)
 *     reads a working set of 100 keys; `--reader random` reads any key (mostly first touches).
 * `--compare` runs rehome from other builds (paths to their cli.js) in the same rounds, each after
 * its own refill, in an order that rotates from round to round; ratios use the round's ceiling.
 * Other work on the machine: before each timed phase the script waits (up to --quiet-wait s) until
 * processes other than its own use less than --max-foreign cores, and it reports the CPU they used
 * during each phase ('foreign'), since the figures swing with it.
 * Targets (the issue's): sweeper >= 0.8 x ceiling; GET p99 during the sweep <= 3 x p99 after it.
 */
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import {
  cpuSeconds, fill, flags, fmt, foreignCores, getJson, machineBusySeconds, median, ms, percentile, sleep, startRedis,
  startNutcracker, startRehome, tmpDir, treeCpuSeconds, valueFor, REHOME_CLI, ROOT,
} from './lib.mjs';

const opt = flags({
  keys: Number(process.env.BENCH_KEYS ?? 500000),
  rounds: 1,
  reader: 'hot',
  compare: '',
  'max-foreign': 0.2,
  'quiet-wait': 120,
  'no-references': false,
  'loop-rest': 0,
  sched: false,
});
opt.references = !opt['no-references'];
if (opt.sched && !have('perf')) {
  process.stderr.write('--sched needs perf (Debian: apt-get install linux-perf)\n');
  process.exit(2);
}
const builds = [{ name: 'rehome', cli: REHOME_CLI }, ...opt.compare.split(',').filter(Boolean).map((cli, i) => ({ name: `compare${i + 1}`, cli }))];
// 'hot': the client reads a working set of 100 keys (an application's hot keys: each moves on its
// first read, then is served from the target); 'random': every read picks any key, so most reads
// during the sweep are first touches that each wait for their own MIGRATE on the source.
const HOT = 100;
const N = opt.keys;
const now = () => performance.timeOrigin + performance.now();

/**
 * --sched: `perf sched record` over the whole machine for `secs` s, starting `delayMs` from now;
 * resolves to the run-queue waits ('sch delay': runnable, waiting for a core) of the given
 * processes' main threads, from `perf sched timehist`: {name: {n, over1ms, p99, max}} in ms.
 */
async function schedWindow(delayMs, secs, pids) {
  await sleep(delayMs);
  const file = path.join(tmpDir(), 'sched.data');
  const rec = spawn('perf', ['sched', 'record', '-a', '-o', file, '--', 'sleep', String(secs)], { stdio: 'ignore' });
  own.add(rec.pid);
  const code = await new Promise((r) => rec.once('exit', r));
  own.delete(rec.pid);
  if (code !== 0) return null;
  const text = execFileSync('perf', ['sched', 'timehist', '-i', file], { maxBuffer: 1 << 28, stdio: ['ignore', 'pipe', 'ignore'] }).toString();
  const byPid = new Map(Object.entries(pids).map(([name, pid]) => [pid, { name, delays: [] }]));
  // "   29228.455480 [0001]  node[17866]    0.000      2.039      0.152": time, cpu, task[tid], wait, sch delay, run
  for (const m of text.matchAll(/^\s*[\d.]+\s+\[\d+\]\s+\S*?\[(\d+)(?:\/\d+)?\]\s+[\d.]+\s+([\d.]+)\s+[\d.]+/gm)) {
    byPid.get(Number(m[1]))?.delays.push(Number(m[2]));
  }
  const out = {};
  for (const { name, delays } of byPid.values()) {
    out[name] = { n: delays.length, over1ms: delays.filter((x) => x > 1).length, p99: percentile(delays, 99), max: delays.reduce((m, x) => Math.max(m, x), 0) };
  }
  return out;
}

/** True when `cmd --version` runs. */
function have(cmd) {
  try {
    execFileSync(cmd, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** Processes of this benchmark whose CPU counts as its own (besides this process). */
const own = new Set();
function ownCpu() {
  const u = process.cpuUsage();
  let s = (u.user + u.system) / 1e6;
  for (const pid of own) {
    try {
      s += treeCpuSeconds(pid);
    } catch {
      /* exited */
    }
  }
  return s;
}

/** Waits until other work on the machine uses less than --max-foreign cores (2 s samples). */
async function waitQuiet() {
  const deadline = Date.now() + opt['quiet-wait'] * 1000;
  let waited = false;
  for (;;) {
    const f = await foreignCores(ownCpu, 2000);
    if (f < opt['max-foreign']) return;
    if (Date.now() >= deadline) {
      console.log(`    (other work still uses ${f.toFixed(2)} cores after ${opt['quiet-wait']} s; running anyway)`);
      return;
    }
    if (!waited) process.stderr.write(`bench: other processes use ${f.toFixed(2)} cores; waiting for < ${opt['max-foreign']}\n`);
    waited = true;
  }
}

/** Starts measuring the CPU other processes use; the returned function gives their average cores. */
function foreignMeter() {
  const m0 = machineBusySeconds();
  const o0 = ownCpu();
  const t0 = now();
  // `gone`: CPU seconds of own processes that exited meanwhile (no longer in ownCpu())
  return (gone = 0) => Math.max(0, machineBusySeconds() - m0 - (ownCpu() - o0) - gone) / ((now() - t0) / 1000);
}

/**
 * The ceiling loop, run in a process of its own (as the sweeper runs in rehome's, apart from the
 * reader in this one): prints {secs, moved, calls} as JSON.
 */
const CEILING_LOOP = `
import { Redis } from 'ioredis';
const [rest, srcPort, tgtPort] = process.argv.slice(-3).map(Number);
const c = new Redis({ port: srcPort, host: '127.0.0.1' });
await c.ping();
let moved = 0;
let calls = 0;
const t0 = performance.now();
let cursor = '0';
for (;;) {
  const [next, keys] = await c.scan(cursor, 'COUNT', 1000);
  if (keys.length) {
    const t = performance.now();
    const r = await c.call('MIGRATE', '127.0.0.1', String(tgtPort), '', '0', '5000', 'KEYS', ...keys);
    calls++;
    // --loop-rest F: after each MIGRATE, rest F times as long as it took (a paced loop)
    if (rest > 0) await new Promise((res) => setTimeout(res, (performance.now() - t) * rest));
    if (r === 'OK') moved += keys.length;
  }
  cursor = next;
  // with a reader, the keys it touched moved already: loop until the source is empty
  if (cursor === '0' && (await c.dbsize()) === 0) break;
}
const secs = (performance.now() - t0) / 1000;
c.disconnect();
const u = process.cpuUsage();
process.stdout.write(JSON.stringify({ secs, moved, calls, cpu: (u.user + u.system) / 1e6 }));
`;

/** How the reader reaches the target in a ceiling run (`via`), as printed; 'bare' has no reader. */
const PATHS = {
  bare: null,
  rehome: 'through rehome --no-sweep (the sweeper run\'s conditions)',
  direct: 'straight to the target (no proxy)',
  twemproxy: 'through twemproxy (nutcracker) in front of the target',
};

/** Moves the reader's hot keys to the target first, for readers that go to the target only. */
async function moveHot(srcPort, tgtPort) {
  const c = new Redis({ port: srcPort, host: '127.0.0.1' });
  const keys = Array.from({ length: Math.min(HOT, N) }, (_, i) => `key:${i}`);
  await c.call('MIGRATE', '127.0.0.1', String(tgtPort), '', '0', '5000', 'KEYS', ...keys);
  c.disconnect();
}

/**
 * The ceiling loop. `via` 'bare': the bench process and the two servers only. Otherwise the
 * reader below GETs its hot keys during the loop and then for as long again (10 s at most) on one
 * path: 'rehome' (the same build, --no-sweep: the sweeper run's conditions), 'direct' (the target
 * itself) or 'twemproxy' (nutcracker in front of the target); for the last two the hot keys are
 * moved to the target first. The reader's p99 during / after on each path shows what the
 * server-side loop alone does to one client, with and without a proxy in between.
 */
async function ceiling(src, tgtPort, via = 'bare', cli = REHOME_CLI) {
  await waitQuiet();
  let front = null;
  let readPort = null;
  if (via === 'rehome') {
    front = await startRehome({ source: src.port, target: tgtPort, args: ['--no-sweep'], cli });
    readPort = front.port;
  } else if (via === 'direct' || via === 'twemproxy') {
    await moveHot(src.port, tgtPort);
    if (via === 'twemproxy') front = await startNutcracker(tgtPort);
    readPort = front ? front.port : tgtPort;
  }
  if (front) own.add(front.pid);
  const reader = readPort ? startReader(readPort) : null;
  const foreign = foreignMeter();
  const loopStart = now();
  const child = spawn(
    process.execPath,
    ['--input-type=module', '-e', CEILING_LOOP, String(opt['loop-rest']), String(src.port), String(tgtPort)],
    { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
  );
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  const code = await new Promise((r) => child.once('exit', r));
  const loopEnd = now();
  own.delete(child.pid);
  if (code !== 0) throw new Error(`ceiling loop exited with ${code}`);
  const { secs, moved, calls, cpu } = JSON.parse(out);
  const fc = foreign(cpu);
  let during = null;
  let after = null;
  if (reader) {
    await sleep(Math.min(loopEnd - loopStart, 10_000));
    await reader.stop();
    if (front) {
      own.delete(front.pid);
      await front.stop();
    }
    const d = [];
    const a = [];
    reader.starts.forEach((t, i) => {
      if (t >= loopStart && t < loopEnd) d.push(reader.lats[i]);
      else if (t >= loopEnd) a.push(reader.lats[i]);
    });
    during = { n: d.length, p50: percentile(d, 50), p99: percentile(d, 99), problems: reader.problems };
    after = { n: a.length, p50: percentile(a, 50), p99: percentile(a, 99) };
  }
  return { secs, moved, calls, rate: N / secs, foreign: fc, during, after };
}

/** One client, one GET at a time, until stop(); samples are [start time ms, latency ms]. */
function startReader(port) {
  // Nothing but the GETs: twemproxy, on one of the reference paths, closes a connection that sends
  // a command it does not proxy (ioredis's INFO ready check, its CLIENT SETINFO).
  const c = new Redis({ port, host: '127.0.0.1', enableAutoPipelining: false, enableReadyCheck: false, disableClientInfo: true });
  const starts = [];
  const lats = [];
  const problems = { errors: 0, wrong: 0, firstError: '' };
  let running = true;
  const done = (async () => {
    while (running) {
      const i = Math.floor(Math.random() * (opt.reader === 'random' ? N : Math.min(HOT, N)));
      const t = performance.now();
      try {
        const v = await c.get(`key:${i}`);
        lats.push(performance.now() - t);
        starts.push(performance.timeOrigin + t);
        if (v !== valueFor(i)) problems.wrong++;
      } catch (e) {
        problems.errors++;
        problems.firstError ||= e.message;
        await sleep(10);
      }
    }
    c.disconnect();
  })();
  return {
    starts,
    lats,
    problems,
    stop: async () => {
      running = false;
      await done;
    },
  };
}

async function sweep(src, tgt, cli) {
  await waitQuiet();
  const cpu0 = { src: cpuSeconds(src.pid), tgt: cpuSeconds(tgt.pid), bench: process.cpuUsage() };
  const rh = await startRehome({ source: src.port, target: tgt.port, admin: true, cli });
  own.add(rh.pid);
  const foreign = foreignMeter();
  const reader = startReader(rh.port);
  const pids = { rehome: rh.pid, 'source redis': src.pid, 'target redis': tgt.pid, 'bench (reader)': process.pid };
  const schedDuring = opt.sched ? schedWindow(1000, 3, pids) : null;
  // Wait for rehome's 'migration complete' log line, then read /status once (drained_at times the
  // drain). Polling /status during the sweep would put an HTTP request in this process and in
  // rehome every 100 ms, next to the reader's GETs, during the sweep but not after it: it added
  // its own tail latency to the 'during' figures.
  while (!/migration complete/.test(rh.stderr)) {
    if (rh.exited) throw new Error(`rehome exited during the sweep: ${rh.stderr}`);
    await sleep(20);
  }
  const st = await getJson(rh.adminPort, '/status');
  if (st.phase !== 'drained') throw new Error(`rehome logged the drain but /status says phase ${st.phase}`);
  const polledAt = now();
  const fDuring = foreign();
  const bu = process.cpuUsage(cpu0.bench);
  const cpu = {
    rehome: cpuSeconds(rh.pid),
    src: cpuSeconds(src.pid) - cpu0.src,
    tgt: cpuSeconds(tgt.pid) - cpu0.tgt,
    bench: (bu.user + bu.system) / 1e6,
  };
  const drainedAt = st.drained_at ? Date.parse(st.drained_at) : polledAt;
  const during = drainedAt - rh.t0;
  const foreignAfter = foreignMeter();
  const schedAfter = opt.sched ? schedWindow(1000, 3, pids) : null;
  await sleep(Math.max(0, drainedAt + during - now()));
  const sched = opt.sched ? { during: await schedDuring, after: await schedAfter } : null;
  await reader.stop();
  const fAfter = foreignAfter();
  own.delete(rh.pid);
  const last = await getJson(rh.adminPort, '/status');
  const logged = /\((\d+) keys moved in ([\d.]+) s\)/.exec(rh.stderr);
  await rh.stop();

  const d = [];
  const a = [];
  for (let i = 0; i < reader.lats.length; i++) (reader.starts[i] < drainedAt ? d : a).push(reader.lats[i]);
  const secs = during / 1000;
  return {
    secs,
    secsFromSpawn: (drainedAt - rh.spawnedAt) / 1000,
    rate: N / secs,
    bySweeper: last.keys.moved_by_sweeper,
    onTouch: last.keys.moved_on_touch,
    sweeperRate: last.keys.moved_by_sweeper / secs,
    migrateCalls: last.migrate_calls,
    sweeperErrors: last.sweeper?.errors,
    moveFailures: last.move_failures,
    loggedSecs: logged ? Number(logged[2]) : NaN,
    during: { n: d.length, p50: percentile(d, 50), p99: percentile(d, 99) },
    after: { n: a.length, p50: percentile(a, 50), p99: percentile(a, 99) },
    problems: reader.problems,
    srcLeft: await dbsize(src.port),
    tgtKeys: await dbsize(tgt.port),
    stderr: rh.stderr,
    cpu,
    foreign: { during: fDuring, after: fAfter },
    sched,
  };
}

/** Source-side time per command since the last CONFIG RESETSTAT: where the source's time went. */
async function resetStats(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  await c.config('RESETSTAT');
  c.disconnect();
}

async function sourceTime(port, wallSecs) {
  const c = new Redis({ port, host: '127.0.0.1' });
  const text = await c.info('commandstats');
  c.disconnect();
  const rows = [];
  let busy = 0;
  for (const m of text.matchAll(/^cmdstat_(\S+?):calls=(\d+),usec=(\d+)/gm)) {
    const usec = Number(m[3]);
    if (m[1] !== 'exec') busy += usec; // EXEC's time includes the commands it ran
    if (usec / 1e6 >= wallSecs * 0.005) rows.push(`${m[1]}${m[1] === 'exec' ? ' (includes its MIGRATE)' : ''} ${fmt(Number(m[2]))} calls ${(usec / 1e6).toFixed(2)} s`);
  }
  return `source busy ${(busy / 1e6).toFixed(2)} s of ${wallSecs.toFixed(2)} s wall (${((busy / 1e6 / wallSecs) * 100).toFixed(0)}%): ${rows.join(', ')}`;
}

async function dbsize(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  const n = await c.dbsize();
  c.disconnect();
  return n;
}

async function flushall(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  await c.flushall();
  c.disconnect();
}

const src = await startRedis('source');
const tgt = await startRedis('target');
own.add(src.pid);
own.add(tgt.pid);
console.log(
  `sweep bench: ${fmt(N)} keys of 100 bytes, ${opt.rounds} round(s); source :${src.port}, target :${tgt.port}; load average ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}`,
);
if (builds.length > 1) for (const b of builds) console.log(`  ${b.name}: ${b.cli}`);

/** The reader's figures for one ceiling run with a reader. */
function readerLine(x) {
  const p = x.during.problems;
  return (
    `GET during the loop: n=${fmt(x.during.n)} p50 ${ms(x.during.p50)} p99 ${ms(x.during.p99)} | after it: n=${fmt(x.after.n)} p50 ${ms(x.after.p50)} p99 ${ms(x.after.p99)} | p99 during/after ${(x.during.p99 / x.after.p99).toFixed(2)}` +
    (p.errors || p.wrong ? ` PROBLEMS: ${p.errors} errors (first: ${p.firstError}), ${p.wrong} wrong values` : '')
  );
}

const refPaths = [];
if (opt.references && opt.reader === 'hot') {
  refPaths.push('direct');
  if (have('nutcracker')) refPaths.push('twemproxy');
  else console.log('(nutcracker is not installed: the twemproxy reference is left out)');
}

const rounds = [];
for (let r = 1; r <= opt.rounds; r++) {
  await flushall(src.port);
  await flushall(tgt.port);
  const t = now();
  await fill(src.port, N);
  console.log(`\nround ${r}: filled source in ${((now() - t) / 1000).toFixed(1)} s; load average ${os.loadavg()[0].toFixed(2)}`);
  await resetStats(src.port);
  const c = await ceiling(src, tgt.port);
  const cSrc = await sourceTime(src.port, c.secs);
  console.log(
    `  ceiling (SCAN COUNT 1000 + MIGRATE KEYS loop): ${fmt(c.rate)} keys/s (${c.secs.toFixed(2)} s, ${c.calls} MIGRATE calls; other work ${c.foreign.toFixed(2)} cores)`,
  );
  console.log(`    ${cSrc}`);
  // The same loop with rehome --no-sweep in front and the reader running: the sweeper run's conditions.
  await flushall(tgt.port);
  await fill(src.port, N);
  const cl = await ceiling(src, tgt.port, 'rehome', builds[0].cli);
  console.log(`  ceiling with the reader ${PATHS.rehome}: ${fmt(cl.rate)} keys/s (${cl.secs.toFixed(2)} s; other work ${cl.foreign.toFixed(2)} cores)`);
  console.log(`    ${readerLine(cl)}`);
  // The loop again with the reader on the reference paths: what the server-side loop alone does
  // to one client's p99 without a proxy, and with another proxy in between.
  const refs = {};
  for (const via of refPaths) {
    await flushall(tgt.port);
    await fill(src.port, N);
    refs[via] = await ceiling(src, tgt.port, via);
    console.log(`  ceiling with the reader ${PATHS[via]}: ${fmt(refs[via].rate)} keys/s (other work ${refs[via].foreign.toFixed(2)} cores)`);
    console.log(`    ${readerLine(refs[via])}`);
  }
  const runs = {};
  // Builds in an order that rotates with the round, so none always runs first.
  const order = builds.map((_, i) => builds[(i + r - 1) % builds.length]);
  for (const b of order) {
    await flushall(tgt.port);
    await fill(src.port, N);
    await resetStats(src.port);
    const s = await sweep(src, tgt, b.cli);
    const sSrc = await sourceTime(src.port, s.secs);
    const who = builds.length > 1 ? `${b.name} ` : 'rehome ';
    console.log(
      `  ${who}sweeper: drained in ${s.secs.toFixed(2)} s from 'listening' (${s.secsFromSpawn.toFixed(2)} s from spawn; rehome logged ${fmt(s.loggedSecs, 1)} s); other work ${s.foreign.during.toFixed(2)} cores during, ${s.foreign.after.toFixed(2)} after`,
    );
    console.log(
      `    drain rate ${fmt(s.rate)} keys/s = ${(s.rate / c.rate).toFixed(3)} x ceiling (${(s.rate / cl.rate).toFixed(3)} x the ceiling with the reader); moved by sweeper ${fmt(s.bySweeper)} (${fmt(s.sweeperRate)} keys/s), on touch ${fmt(s.onTouch)}; ${fmt(s.migrateCalls)} MIGRATE calls (${fmt(N / s.migrateCalls)} keys per call)`,
    );
    console.log(`    ${sSrc}`);
    console.log(
      `    CPU s until drained (incl. startup): rehome ${s.cpu.rehome.toFixed(2)}, source redis ${s.cpu.src.toFixed(2)}, target redis ${s.cpu.tgt.toFixed(2)}, this bench process ${s.cpu.bench.toFixed(2)} (2 cores, ${(s.secsFromSpawn * 2).toFixed(2)} core-s available)`,
    );
    console.log(
      `    GET during sweep: n=${fmt(s.during.n)} p50 ${ms(s.during.p50)} p99 ${ms(s.during.p99)} | after drain: n=${fmt(s.after.n)} p50 ${ms(s.after.p50)} p99 ${ms(s.after.p99)} | p99 during/after ${(s.during.p99 / s.after.p99).toFixed(2)}`,
    );
    if (s.sched) {
      const w = (x) =>
        x ? Object.entries(x).map(([k, v]) => `${k} p99 ${ms(v.p99)} max ${ms(v.max)} (${fmt(v.over1ms)} of ${fmt(v.n)} over 1 ms)`).join('; ') : 'perf sched failed';
      console.log(`    run-queue waits (perf sched, 3 s windows) during the sweep: ${w(s.sched.during)}`);
      console.log(`    run-queue waits after the drain: ${w(s.sched.after)}`);
    }
    const bad = [];
    if (s.problems.errors) bad.push(`${s.problems.errors} GET errors (first: ${s.problems.firstError})`);
    if (s.problems.wrong) bad.push(`${s.problems.wrong} GETs returned a wrong or missing value`);
    if (s.srcLeft !== 0) bad.push(`source still holds ${s.srcLeft} keys`);
    if (s.tgtKeys !== N) bad.push(`target holds ${s.tgtKeys} keys, expected ${N}`);
    if (s.sweeperErrors) bad.push(`sweeper errors: ${s.sweeperErrors}`);
    if (s.moveFailures) bad.push(`move failures: ${s.moveFailures}`);
    const warn = s.stderr.split('\n').filter((l) => /WARN|error|Error/.test(l));
    if (warn.length) bad.push(`rehome stderr:\n      ${warn.slice(0, 5).join('\n      ')}`);
    console.log(bad.length ? `    PROBLEMS: ${bad.join('; ')}` : '    checks: every GET returned the value written; source empty; target holds every key');
    runs[b.name] = { s, bad };
  }
  rounds.push({ c, cl, refs, runs });
}

const verdict = (ok) => (ok ? 'PASS' : 'BELOW TARGET');
const label = opt.rounds > 1 ? ` (medians of ${opt.rounds} rounds)` : '';
const list = (xs, d) => xs.map((x) => x.toFixed(d)).join(', ');
console.log(`\n=== summary: ${fmt(N)} keys${label}; load average at the end ${os.loadavg().map((x) => x.toFixed(2)).join(' ')} ===`);
console.log(`ceiling (SCAN+MIGRATE loop)   ${fmt(median(rounds.map((x) => x.c.rate))).padStart(10)} keys/s   rounds: ${rounds.map((x) => fmt(x.c.rate)).join(', ')}`);
console.log(`ceiling with the reader       ${fmt(median(rounds.map((x) => x.cl.rate))).padStart(10)} keys/s   rounds: ${rounds.map((x) => fmt(x.cl.rate)).join(', ')}; GET p99 during the loop ${ms(median(rounds.map((x) => x.cl.during.p99)))} (rounds: ${list(rounds.map((x) => x.cl.during.p99), 2)} ms)`);
let problems = 0;
for (const b of builds) {
  const rs = rounds.map((x) => ({ c: x.c, cl: x.cl, refs: x.refs, ...x.runs[b.name] }));
  const ratios = rs.map((x) => x.s.rate / x.c.rate);
  const loadedRatios = rs.map((x) => x.s.rate / x.cl.rate);
  const p99s = rs.map((x) => x.s.during.p99 / x.s.after.p99);
  const ratio = median(ratios);
  const p99ratio = median(p99s);
  const p = (k, q) => median(rs.map((x) => x.s[k][q]));
  const head = builds.length > 1 ? `${b.name}: ` : '';
  if (builds.length > 1) console.log(`--- ${b.name} (${b.cli})`);
  console.log(`${head}rehome sweeper (drain)        ${fmt(median(rs.map((x) => x.s.rate))).padStart(10)} keys/s`);
  console.log(`${head}GET during sweep              p50 ${ms(p('during', 'p50'))}  p99 ${ms(p('during', 'p99'))}`);
  console.log(`${head}GET after drain               p50 ${ms(p('after', 'p50'))}  p99 ${ms(p('after', 'p99'))}`);
  console.log(`${head}sweeper / ceiling             ${ratio.toFixed(3)}   target >= 0.8   ${verdict(ratio >= 0.8)}   rounds: ${list(ratios, 2)}`);
  console.log(`${head}sweeper / ceiling with reader ${median(loadedRatios).toFixed(3)}   target >= 0.8   ${verdict(median(loadedRatios) >= 0.8)}   rounds: ${list(loadedRatios, 2)} (same conditions: rehome and the reader run in both)`);
  console.log(`${head}ceiling-loop GET p99 / sweeper's after-drain p99: ${median(rs.map((x) => x.cl.during.p99 / x.s.after.p99)).toFixed(2)} (what the server-side loop alone does to the reader)`);
  const byPath = [['rehome --no-sweep', (x) => x.cl], ...refPaths.map((p) => [p, (x) => x.refs[p]])];
  console.log(
    `${head}the server-side loop alone, reader p99 during / after the loop, by path: ${byPath
      .map(([name, f]) => `${name} ${ms(median(rs.map((x) => f(x).during.p99)))} / ${ms(median(rs.map((x) => f(x).after.p99)))} = ${median(rs.map((x) => f(x).during.p99 / f(x).after.p99)).toFixed(2)}x`)
      .join('; ')}`,
  );
  if (refPaths.includes('twemproxy')) {
    console.log(`${head}sweeper's GET p99 during the sweep / twemproxy's during the loop: ${median(rs.map((x) => x.s.during.p99 / x.refs.twemproxy.during.p99)).toFixed(2)}`);
  }
  console.log(`${head}GET p99 during / after        ${p99ratio.toFixed(2)}    target <= 3     ${verdict(p99ratio <= 3)}   rounds: ${list(p99s, 2)}`);
  console.log(`${head}other work (cores) during sweep / after: ${list(rs.map((x) => x.s.foreign.during), 2)} / ${list(rs.map((x) => x.s.foreign.after), 2)}`);
  // Other work in any phase skews a ratio either way (a busy 'after' phase makes the p99 ratio look
  // better): the verdicts again over the rounds where every phase stayed quiet.
  const mf = opt['max-foreign'];
  const quiet = rs.filter((x) => Math.max(x.c.foreign, x.cl.foreign, x.s.foreign.during, x.s.foreign.after) < mf);
  if (quiet.length === 0) {
    console.log(`${head}quiet rounds (other work < ${mf} cores in every phase): none, so no verdict on a quiet machine`);
  } else {
    const qr = median(quiet.map((x) => x.s.rate / x.c.rate));
    const ql = median(quiet.map((x) => x.s.rate / x.cl.rate));
    const qp = median(quiet.map((x) => x.s.during.p99 / x.s.after.p99));
    console.log(
      `${head}quiet rounds (other work < ${mf} cores in every phase): ${quiet.length} of ${rs.length}: sweeper / ceiling ${qr.toFixed(3)} ${verdict(qr >= 0.8)}, / ceiling with reader ${ql.toFixed(3)} ${verdict(ql >= 0.8)}, GET p99 during / after ${qp.toFixed(2)} ${verdict(qp <= 3)} (p99 ${list(quiet.map((x) => x.s.during.p99), 2)} / ${list(quiet.map((x) => x.s.after.p99), 2)} ms)`,
    );
  }
  problems += rs.reduce((n, x) => n + x.bad.length, 0);
}
console.log(`other work (cores) during the ceiling: ${list(rounds.map((x) => x.c.foreign), 2)}`);
console.log(`correctness                   ${problems ? `PROBLEMS in ${problems} check(s), see above` : 'ok'}`);
await src.stop();
await tgt.stop();
process.exit(0);
