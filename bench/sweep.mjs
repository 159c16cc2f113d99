#!/usr/bin/env node
/**
 * Sweeper rate against the server-side ceiling, and what one client sees while it runs.
 *
 *   node bench/sweep.mjs [--keys N] [--rounds R]        (BENCH_KEYS=N also sets the key count)
 *
 * Each round:
 *  1. ceiling: N 100-byte strings in the source; a plain loop of `SCAN cursor COUNT 1000` and
 *     `MIGRATE 127.0.0.1 <target> "" 0 5000 KEYS ...` until the source is empty -> keys/s.
 *  2. sweeper: target flushed, source refilled; rehome started with its defaults (sweeper on);
 *     timed from its 'listening' line until /status says phase 'drained' -> keys/s. Meanwhile one
 *     client GETs keys through rehome, one at a time, during the sweep and then for as long again
 *     after the drain; every reply is checked against the value written. `--reader hot` (default)
 *     reads a working set of 100 keys; `--reader random` reads any key (mostly first touches).
 * Targets (the issue's): sweeper >= 0.8 x ceiling; GET p99 during the sweep <= 3 x p99 after it.
 */
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import {
  cpuSeconds, fill, flags, fmt, getJson, median, ms, percentile, sleep, startRedis, startRehome, valueFor,
} from './lib.mjs';

const opt = flags({ keys: Number(process.env.BENCH_KEYS ?? 500000), rounds: 1, reader: 'hot' });
// 'hot': the client reads a working set of 100 keys (an application's hot keys: each moves on its
// first read, then is served from the target); 'random': every read picks any key, so most reads
// during the sweep are first touches that each wait for their own MIGRATE on the source.
const HOT = 100;
const N = opt.keys;
const now = () => performance.timeOrigin + performance.now();

async function ceiling(src, tgtPort) {
  const c = new Redis({ port: src.port, host: '127.0.0.1' });
  let moved = 0;
  let calls = 0;
  const t0 = now();
  let cursor = '0';
  for (;;) {
    const [next, keys] = await c.scan(cursor, 'COUNT', 1000);
    if (keys.length) {
      const r = await c.call('MIGRATE', '127.0.0.1', String(tgtPort), '', '0', '5000', 'KEYS', ...keys);
      calls++;
      if (r === 'OK') moved += keys.length;
    }
    cursor = next;
    if (cursor === '0' && (await c.dbsize()) === 0) break;
  }
  const secs = (now() - t0) / 1000;
  c.disconnect();
  return { secs, moved, calls, rate: N / secs };
}

/** One client, one GET at a time, until stop(); samples are [start time ms, latency ms]. */
function startReader(port) {
  const c = new Redis({ port, host: '127.0.0.1', enableAutoPipelining: false });
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

async function sweep(src, tgt) {
  const cpu0 = { src: cpuSeconds(src.pid), tgt: cpuSeconds(tgt.pid), bench: process.cpuUsage() };
  const rh = await startRehome({ source: src.port, target: tgt.port, admin: true });
  const reader = startReader(rh.port);
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
  const bu = process.cpuUsage(cpu0.bench);
  const cpu = {
    rehome: cpuSeconds(rh.pid),
    src: cpuSeconds(src.pid) - cpu0.src,
    tgt: cpuSeconds(tgt.pid) - cpu0.tgt,
    bench: (bu.user + bu.system) / 1e6,
  };
  const drainedAt = st.drained_at ? Date.parse(st.drained_at) : polledAt;
  const during = drainedAt - rh.t0;
  await sleep(Math.max(0, drainedAt + during - now()));
  await reader.stop();
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
console.log(`sweep bench: ${fmt(N)} keys of 100 bytes, ${opt.rounds} round(s); source :${src.port}, target :${tgt.port}`);

const rounds = [];
for (let r = 1; r <= opt.rounds; r++) {
  await flushall(src.port);
  await flushall(tgt.port);
  let t = now();
  await fill(src.port, N);
  console.log(`\nround ${r}: filled source in ${((now() - t) / 1000).toFixed(1)} s`);
  await resetStats(src.port);
  const c = await ceiling(src, tgt.port);
  const cSrc = await sourceTime(src.port, c.secs);
  console.log(
    `  ceiling (SCAN COUNT 1000 + MIGRATE KEYS loop): ${fmt(c.rate)} keys/s (${c.secs.toFixed(2)} s, ${c.calls} MIGRATE calls)`,
  );
  console.log(`    ${cSrc}`);
  await flushall(tgt.port);
  t = now();
  await fill(src.port, N);
  await resetStats(src.port);
  const s = await sweep(src, tgt);
  const sSrc = await sourceTime(src.port, s.secs);
  console.log(
    `  rehome sweeper: drained in ${s.secs.toFixed(2)} s from 'listening' (${s.secsFromSpawn.toFixed(2)} s from spawn; rehome logged ${fmt(s.loggedSecs, 1)} s)`,
  );
  console.log(
    `    drain rate ${fmt(s.rate)} keys/s = ${(s.rate / c.rate).toFixed(3)} x ceiling; moved by sweeper ${fmt(s.bySweeper)} (${fmt(s.sweeperRate)} keys/s), on touch ${fmt(s.onTouch)}; ${fmt(s.migrateCalls)} MIGRATE calls (${fmt(N / s.migrateCalls)} keys per call)`,
  );
  console.log(`    ${sSrc}`);
  console.log(
    `    CPU s until drained (incl. startup): rehome ${s.cpu.rehome.toFixed(2)}, source redis ${s.cpu.src.toFixed(2)}, target redis ${s.cpu.tgt.toFixed(2)}, this bench process ${s.cpu.bench.toFixed(2)} (2 cores, ${(s.secsFromSpawn * 2).toFixed(2)} core-s available)`,
  );
  console.log(
    `    GET during sweep: n=${fmt(s.during.n)} p50 ${ms(s.during.p50)} p99 ${ms(s.during.p99)} | after drain: n=${fmt(s.after.n)} p50 ${ms(s.after.p50)} p99 ${ms(s.after.p99)} | p99 during/after ${(s.during.p99 / s.after.p99).toFixed(2)}`,
  );
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
  rounds.push({ c, s, bad });
}

const ceilingRate = median(rounds.map((x) => x.c.rate));
const sweepRate = median(rounds.map((x) => x.s.rate));
const ratio = median(rounds.map((x) => x.s.rate / x.c.rate));
const p = (k, q) => median(rounds.map((x) => x.s[k][q]));
const p99ratio = median(rounds.map((x) => x.s.during.p99 / x.s.after.p99));
const verdict = (ok) => (ok ? 'PASS' : 'BELOW TARGET');
const label = opt.rounds > 1 ? ` (medians of ${opt.rounds} rounds)` : '';

console.log(`\n=== summary: ${fmt(N)} keys${label} ===`);
console.log(`ceiling (SCAN+MIGRATE loop)   ${fmt(ceilingRate).padStart(10)} keys/s`);
console.log(`rehome sweeper (drain)        ${fmt(sweepRate).padStart(10)} keys/s`);
console.log(`GET during sweep              p50 ${ms(p('during', 'p50'))}  p99 ${ms(p('during', 'p99'))}`);
console.log(`GET after drain               p50 ${ms(p('after', 'p50'))}  p99 ${ms(p('after', 'p99'))}`);
console.log(`sweeper / ceiling             ${ratio.toFixed(3)}   target >= 0.8   ${verdict(ratio >= 0.8)}`);
console.log(`GET p99 during / after        ${p99ratio.toFixed(2)}    target <= 3     ${verdict(p99ratio <= 3)}`);
const problems = rounds.flatMap((x) => x.bad);
console.log(`correctness                   ${problems.length ? `PROBLEMS in ${problems.length} check(s), see above` : 'ok'}`);
await src.stop();
await tgt.stop();
process.exit(0);
