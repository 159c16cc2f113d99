#!/usr/bin/env node
/**
 * Data-path throughput: the target directly, nutcracker (twemproxy) in front of it, and rehome in
 * front of an empty source and the target (--no-sweep, known-absent cache warm: the steady state of
 * a migration once every key has been touched), as one process and as `--workers 2`.
 *
 *   node bench/throughput.mjs [--rounds 3] [--seconds 4] [--clients 50] [--random 100000] [--workers 1,2]
 *   node bench/throughput.mjs --first-touch [--keys 200000] [--clients 50] [--rounds 1]
 *   node bench/throughput.mjs --soak 300 [--workers 1]
 *   node bench/throughput.mjs --tls [--rounds 3] [--seconds 4] [--clients 50] [--random 100000]
 *   node bench/throughput.mjs --resp3 [--rounds 3] [--seconds 4] [--clients 50] [--random 100000]
 *
 * --floor adds an endpoint 'node-floor': bench/node-floor.mjs, the least a Node.js proxy of rehome's
 * design does (one shared server connection, rehome's framer and reply scanner, nothing else), to
 * separate what rehome costs per request from what Node costs.
 *
 * --drained adds an endpoint 'rehome-drained': rehome with its sweeper on, which finds the empty
 * source empty and is drained at once. Its data path is the steady state's without the look-up of
 * each request's keys in the known-absent cache (a drained rehome no longer asks it): the
 * difference between 'rehome' and 'rehome-drained' is what that look-up costs.
 *
 * --compare PATH adds an endpoint 'compare': rehome (one process) run from another build's
 * cli.js, e.g. the previous commit's dist/ copied inside this checkout (so it finds node_modules),
 * measured in the same rounds as the current build.
 *
 * Default mode: redis-benchmark SET and GET, 50 clients, random keys (-r), 100-byte values, pipeline
 * depth 1 and 16. Each round runs every setting against every endpoint back to back (the order
 * rotates each round), so machine noise hits them alike; figures are medians over rounds.
 * CPU per million requests comes from /proc/PID/stat (utime+stime; for --workers the primary and
 * its workers) read around each run.
 *
 * --first-touch: the source holds key:0..N-1 (100 bytes); `--clients` connections GET each key
 * exactly once through a fresh rehome (every GET moves its key), then the same again (now served
 * from the target), then the same against the target directly. Prints keys/s and GET p50/p99.
 *
 * --soak S: S seconds of redis-benchmark SET/GET (pipeline 16, then 1, in turn) through one
 * rehome (its first --workers count), its RSS sampled every 10 s: prints the samples and
 * first/last/max, to show memory does not grow per command.
 *
 * --tls: the same settings over TLS (redis-benchmark --tls): straight to the target's TLS port
 * (direct-tls) and through rehome's --tls-port with rediss:// to both servers (rehome-tls), beside
 * plain direct and rehome in the same rounds. nutcracker has no TLS, so direct-tls is the
 * reference; prints rehome-tls/direct-tls beside rehome/direct.
 *
 * --resp3: the same settings with redis-benchmark -3 (RESP3), straight to the target (direct-resp3,
 * the reference: nutcracker does not speak RESP3) and through rehome (rehome-resp3), beside RESP2
 * through rehome with shared connections (rehome) and with none (rehome-own); see resp3Rows.
 *
 * Before it starts, the script waits (30 s at a time, up to --load-wait seconds) until the
 * 1-minute load average is below --max-load: the machine is shared.
 */
import { spawn } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import {
  commandCalls, fill, flags, fmt, freePort, getJson, makeCerts, median, ms, percentile, rssBytes, startNodeFloor, startNutcracker, startRedis, startRehome,
  treeCpuSeconds, valueFor, waitForQuiet,
} from './lib.mjs';

const opt = flags({
  rounds: 3,
  seconds: 4,
  clients: 50,
  random: 100000,
  size: 100,
  workers: '1,2',
  'first-touch': false,
  keys: 200000,
  soak: 0,
  'max-load': 1.5,
  'load-wait': 600,
  compare: '',
  floor: false,
  drained: false,
  tls: false,
  resp3: false,
});
const workerCounts = String(opt.workers).split(',').map(Number).filter((n) => n >= 1);

/** One redis-benchmark run; resolves to its CSV row (rps, latencies). */
function redisBenchmark(port, { test, pipeline, n, cacert = null, resp3 = false }) {
  const args = [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(opt.clients), '-n', String(n),
    '-r', String(opt.random), '-d', String(opt.size), '-t', test, '-P', String(pipeline), '--csv',
    ...(cacert ? ['--tls', '--cacert', cacert] : []),
    ...(resp3 ? ['-3'] : []),
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
      const rows = test.split(',').map((x) => lines.find((l) => l[0] === x.toUpperCase()));
      if (code !== 0 || !head || rows.some((r) => !r)) {
        reject(new Error(`redis-benchmark exited ${code} on :${port}: ${out.slice(-500)} ${err.slice(-500)}`));
        return;
      }
      const r = Object.fromEntries(head.map((h, i) => [h, Number(rows[0][i])]));
      const errors = err.split('\n').filter((l) => /error/i.test(l) && !/CONFIG/.test(l));
      resolve({ rps: r.rps, p50: r.p50_latency_ms, p99: r.p99_latency_ms, errors });
    });
  });
}

const key12 = (i) => `key:${String(i).padStart(12, '0')}`;

/**
 * GET every key redis-benchmark's -r can name through `port`, over `conns` connections at once
 * (each reads every key), so the known-absent cache of every worker holds them all: the primary
 * hands connections to the workers in turn.
 */
async function touchAll(port, conns) {
  await Promise.all(
    Array.from({ length: conns }, async () => {
      const c = new Redis({ port, host: '127.0.0.1' });
      for (let s = 0; s < opt.random; s += 1000) {
        const p = c.pipeline();
        for (let i = s; i < Math.min(opt.random, s + 1000); i++) p.get(key12(i));
        for (const [e] of await p.exec()) if (e) throw e;
      }
      c.disconnect();
    }),
  );
}

const SETTINGS = [
  { test: 'set', pipeline: 1 },
  { test: 'get', pipeline: 1 },
  { test: 'set', pipeline: 16 },
  { test: 'get', pipeline: 16 },
];
const sname = (s) => `${s.test.toUpperCase()} -P ${s.pipeline}`;

async function steadyState(quiet) {
  console.log(`1-minute load average at the start: ${quiet.load.toFixed(2)}${quiet.quiet ? '' : ' (NOT quiet: figures are noisy)'}`);
  const source = await startRedis('source');
  const target = await startRedis('target');
  const nc = await startNutcracker(target.port);
  const endpoints = [
    { name: 'direct', port: target.port, proc: null },
    { name: 'nutcracker', port: nc.port, proc: nc },
  ];
  const rehomes = [];
  for (const w of workerCounts) {
    const rh = await startRehome({
      source: source.port, target: target.port, args: ['--no-sweep', '--workers', String(w)], admin: w === workerCounts[0],
    });
    const name = w === 1 ? 'rehome' : `rehome-w${w}`;
    rehomes.push({ name, rh, workers: w });
    endpoints.push({ name, port: rh.port, proc: rh });
  }
  let floor = null;
  if (opt.floor) {
    floor = await startNodeFloor(target.port);
    endpoints.push({ name: 'node-floor', port: floor.port, proc: floor });
  }
  if (opt.drained) {
    // The sweeper finds the empty source empty and declares the migration drained at once: the
    // same data path without the known-absent cache's look-up of every request's keys.
    const rh = await startRehome({ source: source.port, target: target.port, args: [], admin: true });
    const t0 = performance.now();
    while ((await getJson(rh.adminPort, '/status')).phase !== 'drained') {
      if (performance.now() - t0 > 20_000) throw new Error('rehome-drained did not drain an empty source within 20 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    rehomes.push({ name: 'rehome-drained', rh, workers: 1 });
    endpoints.push({ name: 'rehome-drained', port: rh.port, proc: rh });
  }
  if (opt.compare) {
    // With its admin endpoint, as the first rehome: both then keep the same metrics.
    const rh = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'], cli: opt.compare, admin: true });
    rehomes.push({ name: 'compare', rh, workers: 1 });
    endpoints.push({ name: 'compare', port: rh.port, proc: rh });
  }
  console.log(
    `throughput bench: redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size}, ~${opt.seconds} s per run, ${opt.rounds} round(s); ${os.cpus().length} CPUs, node ${process.version}`,
  );
  console.log(
    `  target :${target.port}, nutcracker :${nc.port} (pid ${nc.pid}), ${rehomes.map((r) => `${r.name} :${r.rh.port} (pid ${r.rh.pid}, --workers ${r.workers})`).join(', ')}; empty source :${source.port}, --no-sweep`,
  );

  // Warm-up: every key rehome will see is touched once per worker (MIGRATE -> NOKEY -> cached),
  // then a short run per endpoint and setting sizes -n for about opt.seconds per run.
  let t = performance.now();
  for (const r of rehomes) await touchAll(r.rh.port, r.workers === 1 ? 1 : 3 * r.workers);
  const first = rehomes[0];
  const st = first ? await getJson(first.rh.adminPort, '/status') : null;
  console.log(
    `  warm-up: ${fmt(opt.random)} keys touched through each rehome in ${((performance.now() - t) / 1000).toFixed(1)} s` +
      (st ? `; ${first.name}: known_absent_cached=${st.keys.known_absent_cached}, phase=${st.phase}` : ''),
  );
  const n = new Map();
  for (const s of SETTINGS) {
    for (const e of endpoints) {
      const probeN = s.pipeline > 1 ? 200000 : 30000;
      const r = await redisBenchmark(e.port, { ...s, n: probeN });
      n.set(`${sname(s)}/${e.name}`, Math.max(20000, Math.round((r.rps * opt.seconds) / 1000) * 1000));
    }
  }
  const migrate0 = await commandCalls(source.port, 'migrate');

  const results = new Map(); // `${setting}/${endpoint}` -> [{rps, p50, p99, cpu, tcpu}]
  const problems = [];
  for (let round = 1; round <= opt.rounds; round++) {
    const order = endpoints.map((_, i) => endpoints[(i + round - 1) % endpoints.length]);
    const line = [];
    for (const s of SETTINGS) {
      for (const e of order) {
        const k = `${sname(s)}/${e.name}`;
        const reqs = n.get(k);
        const c0 = e.proc ? treeCpuSeconds(e.proc.pid) : 0;
        const t0 = treeCpuSeconds(target.pid);
        let r;
        try {
          r = await redisBenchmark(e.port, { ...s, n: reqs });
        } catch (err) {
          problems.push(`round ${round} ${k}: ${err.message}`);
          continue;
        }
        r.cpu = e.proc ? ((treeCpuSeconds(e.proc.pid) - c0) * 1e6) / reqs : NaN;
        r.tcpu = ((treeCpuSeconds(target.pid) - t0) * 1e6) / reqs;
        if (r.errors.length) problems.push(`round ${round} ${k}: ${r.errors.slice(0, 3).join(' | ')}`);
        if (!results.has(k)) results.set(k, []);
        results.get(k).push(r);
        line.push(`${k} ${fmt(r.rps)}`);
      }
    }
    console.log(`  round ${round} (load ${os.loadavg()[0].toFixed(2)}): ${line.join(', ')}`);
  }
  const migrateCalls = (await commandCalls(source.port, 'migrate')) - migrate0;
  for (const p of [nc, ...(floor ? [floor] : []), ...rehomes.map((r) => r.rh)]) if (p.exited) problems.push(`${p.name} exited: ${JSON.stringify(p.exited)} ${p.stderr.slice(-1000)}`);

  const names = endpoints.map((e) => e.name);
  const rnames = rehomes.map((r) => r.name);
  const med = (k, f) => median((results.get(k) ?? []).map((r) => r[f]));
  console.log(`\n=== summary: medians of ${opt.rounds} round(s); requests/s ===`);
  console.log(
    [
      'setting'.padEnd(10),
      ...names.map((x) => x.padStart(11)),
      ...rnames.flatMap((x) => [`${x}/direct`.padStart(x.length + 8), `${x}/nc`.padStart(x.length + 4)]),
    ].join(' '),
  );
  for (const s of SETTINGS) {
    const k = (e) => `${sname(s)}/${e}`;
    const d = med(k('direct'), 'rps');
    const c = med(k('nutcracker'), 'rps');
    console.log(
      [
        sname(s).padEnd(10),
        ...names.map((x) => fmt(med(k(x), 'rps')).padStart(11)),
        ...rnames.flatMap((x) => {
          const r = med(k(x), 'rps');
          return [(r / d).toFixed(2).padStart(x.length + 8), (r / c).toFixed(2).padStart(x.length + 4)];
        }),
      ].join(' '),
    );
  }
  console.log('CPU seconds per 1M requests (utime+stime; rehome --workers: primary and workers):');
  for (const s of SETTINGS) {
    const k = (e) => `${sname(s)}/${e}`;
    console.log(
      `  ${sname(s).padEnd(10)} ${['nutcracker', ...(floor ? ['node-floor'] : []), ...rnames].map((x) => `${x} ${fmt(med(k(x), 'cpu'), 2)}`).join(', ')}; the target redis-server behind ${names.map((x) => `${x} ${fmt(med(k(x), 'tcpu'), 2)}`).join(', ')}`,
    );
  }
  console.log(`p50 / p99 latency (ms), ${names.join(' / ')}:`);
  for (const s of SETTINGS) {
    const k = (e) => `${sname(s)}/${e}`;
    console.log(`  ${sname(s).padEnd(10)} p50 ${names.map((e) => fmt(med(k(e), 'p50'), 3)).join(' / ')}   p99 ${names.map((e) => fmt(med(k(e), 'p99'), 3)).join(' / ')}`);
  }
  if (first) {
    const fin = await getJson(first.rh.adminPort, '/status');
    console.log(
      `${first.name} at the end: phase=${fin.phase}, known_absent_cached=${fin.keys.known_absent_cached}, migrate_calls=${fin.migrate_calls}, move_failures=${JSON.stringify(fin.move_failures)}, errors_by_kind=${JSON.stringify(fin.errors_by_kind)}`,
    );
  }
  console.log(`source MIGRATE calls during the measured rounds: ${migrateCalls} (0: every request took the steady-state path)`);
  if (migrateCalls > 0) problems.push(`${migrateCalls} MIGRATE calls during the measured rounds: some worker's cache was not warm`);
  console.log(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'problems: none (no redis-benchmark errors, no proxy exits)');
}

/** --tls: plain and TLS rows, direct and through rehome, in the same rounds (see the header). */
async function tlsRows(quiet) {
  console.log(`1-minute load average at the start: ${quiet.load.toFixed(2)}${quiet.quiet ? '' : ' (NOT quiet: figures are noisy)'}`);
  const certs = makeCerts();
  const tlsArgs = (port) => ['--tls-port', String(port), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key, '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no'];
  const [sTls, tTls, rTls] = [await freePort(), await freePort(), await freePort()];
  const source = await startRedis('source', tlsArgs(sTls));
  const target = await startRedis('target', tlsArgs(tTls));
  const plain = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'] });
  // MIGRATE (the warm-up's misses) goes to the target's plain port: the source has no tls-cluster.
  const overTls = await startRehome({
    source: sTls, target: tTls, scheme: 'rediss',
    args: ['--no-sweep', ...tlsArgs(rTls), '--source-tls-ca-cert-file', certs.ca, '--target-tls-ca-cert-file', certs.ca, '--target-from-source', `127.0.0.1:${target.port}`],
  });
  const endpoints = [
    { name: 'direct', port: target.port, proc: null, cacert: null },
    { name: 'rehome', port: plain.port, proc: plain, cacert: null },
    { name: 'direct-tls', port: tTls, proc: null, cacert: certs.ca },
    { name: 'rehome-tls', port: rTls, proc: overTls, cacert: certs.ca },
  ];
  console.log(`throughput bench (TLS): redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size}, ~${opt.seconds} s per run, ${opt.rounds} round(s); ${os.cpus().length} CPUs, node ${process.version}`);
  // The known-absent cache is per process: warming rehome-tls through its plain port serves both.
  await touchAll(plain.port, 1);
  await touchAll(overTls.port, 1);
  await sideBySide(endpoints, [['rehome', 'direct'], ['rehome-tls', 'direct-tls']]);
}

/**
 * --resp3: redis-benchmark -3 (HELLO 3 on every connection) straight to the target and through
 * rehome, beside RESP2 through rehome with its shared connections (the default) and with every
 * client on its own connection (--shared-connections 0), in the same rounds. A RESP3 client uses
 * only its own connection, so rehome-resp3/rehome-own shows what RESP3 itself costs, and
 * rehome/rehome-own what a RESP3 shared connection could gain at most.
 */
async function resp3Rows(quiet) {
  console.log(`1-minute load average at the start: ${quiet.load.toFixed(2)}${quiet.quiet ? '' : ' (NOT quiet: figures are noisy)'}`);
  const source = await startRedis('source');
  const target = await startRedis('target');
  const lanes = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'] });
  const own = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep', '--shared-connections', '0'] });
  const endpoints = [
    { name: 'direct', port: target.port, proc: null },
    { name: 'rehome', port: lanes.port, proc: lanes },
    { name: 'rehome-own', port: own.port, proc: own },
    { name: 'direct-resp3', port: target.port, proc: null, resp3: true },
    { name: 'rehome-resp3', port: lanes.port, proc: lanes, resp3: true },
  ];
  console.log(`throughput bench (RESP3): redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size}, ~${opt.seconds} s per run, ${opt.rounds} round(s); ${os.cpus().length} CPUs, node ${process.version}`);
  await touchAll(lanes.port, 1);
  await touchAll(own.port, 1);
  await sideBySide(endpoints, [['rehome', 'direct'], ['rehome-resp3', 'direct-resp3'], ['rehome-resp3', 'rehome-own'], ['rehome', 'rehome-own']]);
}

/**
 * Every setting against every endpoint, the order rotating each round; prints the medians, the
 * ratios named in `ratios` ([a, b]: a/b) and rehome's CPU per request.
 */
async function sideBySide(endpoints, ratios) {
  const bench = (e, s, n) => redisBenchmark(e.port, { ...s, n, cacert: e.cacert ?? null, resp3: e.resp3 ?? false });
  const n = new Map();
  for (const s of SETTINGS) {
    for (const e of endpoints) {
      const r = await bench(e, s, s.pipeline > 1 ? 200000 : 30000);
      n.set(`${sname(s)}/${e.name}`, Math.max(20000, Math.round((r.rps * opt.seconds) / 1000) * 1000));
    }
  }
  const results = new Map();
  const problems = [];
  for (let round = 1; round <= opt.rounds; round++) {
    const order = endpoints.map((_, i) => endpoints[(i + round - 1) % endpoints.length]);
    for (const s of SETTINGS) {
      for (const e of order) {
        const k = `${sname(s)}/${e.name}`;
        const c0 = e.proc ? treeCpuSeconds(e.proc.pid) : 0;
        try {
          const r = await bench(e, s, n.get(k));
          r.cpu = e.proc ? ((treeCpuSeconds(e.proc.pid) - c0) * 1e6) / n.get(k) : NaN;
          if (r.errors.length) problems.push(`round ${round} ${k}: ${r.errors.slice(0, 3).join(' | ')}`);
          results.set(k, [...(results.get(k) ?? []), r]);
        } catch (err) {
          problems.push(`round ${round} ${k}: ${err.message}`);
        }
      }
    }
    console.log(`  round ${round} done (load ${os.loadavg()[0].toFixed(2)})`);
  }
  const med = (k, f) => median((results.get(k) ?? []).map((r) => r[f]));
  const ratioNames = ratios.map(([a, b]) => `${a}/${b}`);
  console.log(`\n=== summary: medians of ${opt.rounds} round(s); requests/s ===`);
  console.log(['setting'.padEnd(10), ...endpoints.map((e) => e.name.padStart(13)), ...ratioNames.map((x) => x.padStart(x.length + 1))].join(' '));
  for (const s of SETTINGS) {
    const r = (name) => med(`${sname(s)}/${name}`, 'rps');
    console.log(
      [
        sname(s).padEnd(10),
        ...endpoints.map((e) => fmt(r(e.name)).padStart(13)),
        ...ratios.map(([a, b], i) => (r(a) / r(b)).toFixed(2).padStart(ratioNames[i].length + 1)),
      ].join(' '),
    );
  }
  const proxied = endpoints.filter((e) => e.proc);
  console.log('rehome CPU seconds per 1M requests (utime+stime):');
  for (const s of SETTINGS) {
    console.log(`  ${sname(s).padEnd(10)} ${proxied.map((e) => `${e.name} ${fmt(med(`${sname(s)}/${e.name}`, 'cpu'), 2)}`).join(', ')}`);
  }
  for (const p of new Set(proxied.map((e) => e.proc))) if (p.exited) problems.push(`${p.name} exited: ${JSON.stringify(p.exited)} ${p.stderr.slice(-1000)}`);
  console.log(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'problems: none (no redis-benchmark errors, no proxy exits)');
}

/**
 * RSS over a long run: redis-benchmark SET and GET through one rehome (steady state, cache warm)
 * for `opt.soak` seconds, RSS sampled every 10 s.
 */
async function soak(quiet) {
  const w = workerCounts[0] ?? 1;
  const source = await startRedis('source');
  const target = await startRedis('target');
  const rh = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep', '--workers', String(w)] });
  await touchAll(rh.port, w === 1 ? 1 : 3 * w);
  console.log(
    `soak: ${opt.soak} s of redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size} -t set,get (pipeline 16 and 1 in turn) through rehome --workers ${w} (pid ${rh.pid}); load ${quiet.load.toFixed(2)}`,
  );
  const rss = () => {
    const r = rssBytes(rh.pid);
    return w === 1 ? r.self : r.children.reduce((a, b) => a + b, 0);
  };
  const mb = (b) => `${(b / 1048576).toFixed(1)} MB`;
  const samples = [{ t: 0, rss: rss(), reqs: 0 }];
  let reqs = 0;
  const t0 = performance.now();
  const timer = setInterval(() => samples.push({ t: Math.round((performance.now() - t0) / 1000), rss: rss(), reqs }), 10_000);
  const problems = [];
  for (let i = 0; performance.now() - t0 < opt.soak * 1000; i++) {
    const pipeline = i % 2 === 0 ? 16 : 1;
    const n = pipeline === 16 ? 400000 : 40000;
    try {
      const r = await redisBenchmark(rh.port, { test: 'set,get', pipeline, n });
      if (r.errors.length) problems.push(r.errors.slice(0, 3).join(' | '));
    } catch (e) {
      problems.push(e.message);
    }
    reqs += 2 * n;
  }
  clearInterval(timer);
  samples.push({ t: Math.round((performance.now() - t0) / 1000), rss: rss(), reqs });
  console.log(`  RSS every 10 s (MB): ${samples.map((s) => (s.rss / 1048576).toFixed(1)).join(' ')}`);
  const after1 = samples.find((s) => s.t >= 60) ?? samples[0];
  const last = samples[samples.length - 1];
  const max = samples.reduce((a, s) => (s.rss > a.rss ? s : a));
  console.log(
    `  ${fmt(last.reqs)} requests; RSS first ${mb(samples[0].rss)}, at ${after1.t} s ${mb(after1.rss)}, last ${mb(last.rss)}, max ${mb(max.rss)} (at ${max.t} s); ` +
      `last - at ${after1.t} s = ${mb(last.rss - after1.rss)} over ${fmt(last.reqs - after1.reqs)} requests (${((last.rss - after1.rss) / Math.max(1, last.reqs - after1.reqs)).toFixed(3)} bytes per request)`,
  );
  if (rh.exited) problems.push(`rehome exited: ${JSON.stringify(rh.exited)}`);
  console.log(problems.length ? `PROBLEMS:\n  ${problems.join('\n  ')}` : 'problems: none');
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
    const rh = await startRehome({
      source: source.port, target: target.port, args: ['--no-sweep', '--workers', String(workerCounts[0] ?? 1)], admin: true,
    });
    const c0 = treeCpuSeconds(rh.pid);
    const s0 = treeCpuSeconds(source.pid);
    const first = await readEachOnce(rh.port, N);
    first.cpu = ((treeCpuSeconds(rh.pid) - c0) * 1e6) / N;
    first.scpu = ((treeCpuSeconds(source.pid) - s0) * 1e6) / N;
    const st = await getJson(rh.adminPort, '/status');
    const c1 = treeCpuSeconds(rh.pid);
    const cached = await readEachOnce(rh.port, N);
    cached.cpu = ((treeCpuSeconds(rh.pid) - c1) * 1e6) / N;
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

// Before anything starts: the warm-up and calibration below raise the load themselves.
const quiet = await waitForQuiet(opt['max-load'], opt['load-wait']);
if (opt['first-touch']) {
  console.log(`1-minute load average at the start: ${quiet.load.toFixed(2)}${quiet.quiet ? '' : ' (NOT quiet: figures are noisy)'}`);
  await firstTouch();
} else if (opt.soak > 0) await soak(quiet);
else if (opt.tls) await tlsRows(quiet);
else if (opt.resp3) await resp3Rows(quiet);
else await steadyState(quiet);
process.exit(0);
