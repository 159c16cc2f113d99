#!/usr/bin/env node
/**
 * Data-path throughput: the target directly, nutcracker (twemproxy) in front of it, and rehome in
 * front of an empty source and the target (--no-sweep, known-absent cache warm: the steady state of
 * a migration once every key has been touched).
 *
 *   node bench/throughput.mjs [--rounds 3] [--seconds 4] [--clients 50] [--random 100000]
 *   node bench/throughput.mjs --first-touch [--keys 200000] [--clients 50] [--rounds 1]
 *
 * Default mode: redis-benchmark SET and GET, 50 clients, random keys (-r), 100-byte values, pipeline
 * depth 1 and 16. Each round runs every setting against the three endpoints back to back (the order
 * rotates each round), so machine noise hits all three alike; figures are medians over rounds.
 * CPU per million requests comes from /proc/PID/stat (utime+stime) read around each run.
 *
 * --first-touch: the source holds key:0..N-1 (100 bytes); `--clients` connections GET each key
 * exactly once through a fresh rehome (every GET moves its key), then the same again (now cached),
 * then the same against the target directly. Prints keys/s and GET p50/p99 for each pass.
 */
import { spawn } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import {
  cpuSeconds, fill, flags, fmt, getJson, median, ms, percentile, startNutcracker, startRedis, startRehome, valueFor,
} from './lib.mjs';

const opt = flags({
  rounds: 3,
  seconds: 4,
  clients: 50,
  random: 100000,
  size: 100,
  'first-touch': false,
  keys: 200000,
});

/** One redis-benchmark run; resolves to its CSV row (rps, latencies). */
function redisBenchmark(port, { test, pipeline, n }) {
  const args = [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(opt.clients), '-n', String(n),
    '-r', String(opt.random), '-d', String(opt.size), '-t', test, '-P', String(pipeline), '--csv',
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b) => (out += b));
    child.stderr.on('data', (b) => (err += b));
    const limit = Math.max(60, opt.seconds * 10) * 1000;
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-benchmark ${args.join(' ')} still running after ${limit / 1000} s (hang?); stderr: ${err.slice(-500)}`));
    }, limit);
    child.on('exit', (code) => {
      clearTimeout(t);
      const lines = out.trim().split('\n').map((l) => l.split(',').map((c) => c.replace(/^"|"$/g, '')));
      const head = lines.find((l) => l[0] === 'test');
      const row = lines.find((l) => l[0] === test.toUpperCase());
      if (code !== 0 || !head || !row) {
        reject(new Error(`redis-benchmark exited ${code} on :${port}: ${out.slice(-500)} ${err.slice(-500)}`));
        return;
      }
      const r = Object.fromEntries(head.map((h, i) => [h, Number(row[i])]));
      const errors = err.split('\n').filter((l) => /error/i.test(l) && !/CONFIG/.test(l));
      resolve({ rps: r.rps, p50: r.p50_latency_ms, p99: r.p99_latency_ms, errors });
    });
  });
}

const key12 = (i) => `key:${String(i).padStart(12, '0')}`;

/** GET every key redis-benchmark's -r can name, through `port`, so rehome's cache holds them all. */
async function touchAll(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  for (let s = 0; s < opt.random; s += 1000) {
    const p = c.pipeline();
    for (let i = s; i < Math.min(opt.random, s + 1000); i++) p.get(key12(i));
    for (const [e] of await p.exec()) if (e) throw e;
  }
  c.disconnect();
}

async function steadyState() {
  const source = await startRedis('source');
  const target = await startRedis('target');
  const nc = await startNutcracker(target.port);
  const rh = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'], admin: true });
  const endpoints = [
    { name: 'direct', port: target.port, proc: null },
    { name: 'nutcracker', port: nc.port, proc: nc },
    { name: 'rehome', port: rh.port, proc: rh },
  ];
  const settings = [
    { test: 'set', pipeline: 1 },
    { test: 'get', pipeline: 1 },
    { test: 'set', pipeline: 16 },
    { test: 'get', pipeline: 16 },
  ];
  const sname = (s) => `${s.test.toUpperCase()} -P ${s.pipeline}`;
  console.log(
    `throughput bench: redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size}, ~${opt.seconds} s per run, ${opt.rounds} round(s)`,
  );
  console.log(`  target :${target.port}, nutcracker :${nc.port} (pid ${nc.pid}), rehome :${rh.port} (pid ${rh.pid}, empty source :${source.port}, --no-sweep)`);

  // Warm-up: every key rehome will see is touched once (MIGRATE -> NOKEY -> cached), then a short
  // run per endpoint and setting sizes -n for about opt.seconds per run.
  let t = performance.now();
  await touchAll(rh.port);
  const st = await getJson(rh.adminPort, '/status');
  console.log(
    `  warm-up: ${fmt(opt.random)} keys touched through rehome in ${((performance.now() - t) / 1000).toFixed(1)} s; known_absent_cached=${st.keys.known_absent_cached}, phase=${st.phase}`,
  );
  const n = new Map();
  for (const s of settings) {
    for (const e of endpoints) {
      const probeN = s.pipeline > 1 ? 200000 : 30000;
      const r = await redisBenchmark(e.port, { ...s, n: probeN });
      n.set(`${sname(s)}/${e.name}`, Math.max(20000, Math.round((r.rps * opt.seconds) / 1000) * 1000));
    }
  }

  const results = new Map(); // `${setting}/${endpoint}` -> [{rps, p50, p99, cpu, tcpu}]
  const problems = [];
  for (let round = 1; round <= opt.rounds; round++) {
    const order = endpoints.map((_, i) => endpoints[(i + round - 1) % endpoints.length]);
    const line = [];
    for (const s of settings) {
      for (const e of order) {
        const k = `${sname(s)}/${e.name}`;
        const reqs = n.get(k);
        const c0 = e.proc ? cpuSeconds(e.proc.pid) : 0;
        const t0 = cpuSeconds(target.pid);
        let r;
        try {
          r = await redisBenchmark(e.port, { ...s, n: reqs });
        } catch (err) {
          problems.push(`round ${round} ${k}: ${err.message}`);
          continue;
        }
        r.cpu = e.proc ? ((cpuSeconds(e.proc.pid) - c0) * 1e6) / reqs : NaN;
        r.tcpu = ((cpuSeconds(target.pid) - t0) * 1e6) / reqs;
        if (r.errors.length) problems.push(`round ${round} ${k}: ${r.errors.slice(0, 3).join(' | ')}`);
        if (!results.has(k)) results.set(k, []);
        results.get(k).push(r);
        line.push(`${k} ${fmt(r.rps)}`);
      }
    }
    console.log(`  round ${round}: ${line.join(', ')}`);
  }
  const final = await getJson(rh.adminPort, '/status');
  for (const p of [rh, nc]) if (p.exited) problems.push(`${p.name} exited: ${JSON.stringify(p.exited)} ${p.stderr.slice(-1000)}`);

  const med = (k, f) => median((results.get(k) ?? []).map((r) => r[f]));
  console.log(`\n=== summary: medians of ${opt.rounds} round(s); requests/s, GET/SET p50 latency as redis-benchmark reports it ===`);
  console.log(
    `${'setting'.padEnd(10)} ${'direct'.padStart(10)} ${'nutcracker'.padStart(11)} ${'rehome'.padStart(10)}  ${'rh/direct'.padStart(9)} ${'rh/nc'.padStart(6)}   CPU s per 1M requests: ${'rehome'.padStart(6)} ${'nutcr.'.padStart(6)} | target redis via direct/nc/rehome`,
  );
  for (const s of settings) {
    const k = (e) => `${sname(s)}/${e}`;
    const [d, c, r] = ['direct', 'nutcracker', 'rehome'].map((e) => med(k(e), 'rps'));
    console.log(
      `${sname(s).padEnd(10)} ${fmt(d).padStart(10)} ${fmt(c).padStart(11)} ${fmt(r).padStart(10)}  ${(r / d).toFixed(2).padStart(9)} ${(r / c).toFixed(2).padStart(6)}   ${' '.repeat(22)}${fmt(med(k('rehome'), 'cpu'), 2).padStart(6)} ${fmt(med(k('nutcracker'), 'cpu'), 2).padStart(6)} | ${['direct', 'nutcracker', 'rehome'].map((e) => fmt(med(k(e), 'tcpu'), 2)).join(' / ')}`,
    );
  }
  console.log('p50 latency (ms), direct / nutcracker / rehome:');
  for (const s of settings) {
    console.log(`  ${sname(s).padEnd(10)} ${['direct', 'nutcracker', 'rehome'].map((e) => fmt(med(`${sname(s)}/${e}`, 'p50'), 3)).join(' / ')}   p99: ${['direct', 'nutcracker', 'rehome'].map((e) => fmt(med(`${sname(s)}/${e}`, 'p99'), 3)).join(' / ')}`);
  }
  console.log(
    `rehome at the end: phase=${final.phase}, known_absent_cached=${final.keys.known_absent_cached}, migrate_calls=${final.migrate_calls}, move_failures=${JSON.stringify(final.move_failures)}, errors_by_kind=${JSON.stringify(final.errors_by_kind)}`,
  );
  console.log(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'problems: none (no redis-benchmark errors, no proxy exits)');
}

/** `clients` connections, each GETting the next untouched key until all N are read once. */
async function readEachOnce(port, N) {
  const conns = Array.from({ length: opt.clients }, () => new Redis({ port, host: '127.0.0.1', enableAutoPipelining: false }));
  await Promise.all(conns.map((c) => c.ping()));
  const lats = new Float64Array(N);
  let next = 0;
  let wrong = 0;
  let errors = 0;
  let firstError = '';
  const t0 = performance.now();
  await Promise.all(
    conns.map(async (c) => {
      while (next < N) {
        const i = next++;
        const t = performance.now();
        try {
          const v = await c.get(`key:${i}`);
          lats[i] = performance.now() - t;
          if (v !== valueFor(i, opt.size)) wrong++;
        } catch (e) {
          lats[i] = NaN;
          errors++;
          firstError ||= e.message;
        }
      }
    }),
  );
  const secs = (performance.now() - t0) / 1000;
  for (const c of conns) c.disconnect();
  const ok = Array.from(lats).filter((x) => Number.isFinite(x));
  return { rate: N / secs, secs, p50: percentile(ok, 50), p99: percentile(ok, 99), wrong, errors, firstError };
}

async function firstTouch() {
  const N = opt.keys;
  const source = await startRedis('source');
  const target = await startRedis('target');
  console.log(
    `first-touch bench: ${fmt(N)} keys of ${opt.size} bytes in the source; ${opt.clients} connections, one GET at a time each; ${opt.rounds} round(s)`,
  );
  const rows = { first: [], cached: [], direct: [] };
  const problems = [];
  for (let round = 1; round <= opt.rounds; round++) {
    for (const p of [source, target]) {
      const c = new Redis({ port: p.port, host: '127.0.0.1' });
      await c.flushall();
      c.disconnect();
    }
    await fill(source.port, N, { size: opt.size });
    const rh = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'], admin: true });
    const c0 = cpuSeconds(rh.pid);
    const s0 = cpuSeconds(source.pid);
    const first = await readEachOnce(rh.port, N);
    first.cpu = ((cpuSeconds(rh.pid) - c0) * 1e6) / N;
    first.scpu = ((cpuSeconds(source.pid) - s0) * 1e6) / N;
    const st = await getJson(rh.adminPort, '/status');
    const c1 = cpuSeconds(rh.pid);
    const cached = await readEachOnce(rh.port, N);
    cached.cpu = ((cpuSeconds(rh.pid) - c1) * 1e6) / N;
    const direct = await readEachOnce(target.port, N);
    if (rh.exited) problems.push(`rehome exited: ${JSON.stringify(rh.exited)} ${rh.stderr.slice(-1000)}`);
    await rh.stop();
    for (const [name, r] of Object.entries({ first, cached, direct })) {
      rows[name].push(r);
      if (r.wrong || r.errors) problems.push(`round ${round} ${name}: ${r.wrong} wrong/missing values, ${r.errors} errors (first: ${r.firstError})`);
    }
    console.log(
      `  round ${round}: first touch ${fmt(first.rate)} keys/s (p50 ${ms(first.p50)}, p99 ${ms(first.p99)}; moved_on_touch=${st.keys.moved_on_touch}, migrate_calls=${st.migrate_calls}, move_failures=${JSON.stringify(st.move_failures)}); cached ${fmt(cached.rate)}/s; direct ${fmt(direct.rate)}/s`,
    );
  }
  const med = (name, f) => median(rows[name].map((r) => r[f]));
  console.log(`\n=== summary: first touch through rehome (--no-sweep), medians of ${opt.rounds} round(s) ===`);
  const line = (label, name) =>
    console.log(
      `${label.padEnd(34)} ${fmt(med(name, 'rate')).padStart(9)} keys/s   GET p50 ${ms(med(name, 'p50'))}  p99 ${ms(med(name, 'p99'))}`,
    );
  line('first touch (each GET moves a key)', 'first');
  line('second read (known-absent cache)', 'cached');
  line('target directly', 'direct');
  console.log(
    `first touch / cached ${(med('first', 'rate') / med('cached', 'rate')).toFixed(2)}; rehome CPU s per 1M keys: first touch ${fmt(med('first', 'cpu'), 2)}, cached ${fmt(med('cached', 'cpu'), 2)}; source redis CPU s per 1M first touches ${fmt(med('first', 'scpu'), 2)}`,
  );
  console.log(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'problems: none (every GET returned the value written)');
}

if (opt['first-touch']) await firstTouch();
else await steadyState();
process.exit(0);
