#!/usr/bin/env node
/**
 * What clients in another db pay: redis-benchmark SET and GET at pipeline 1 through one rehome,
 * for clients on the shared connection of db 0 and for clients that SELECT another db
 * (`--dbnum`: that db's shared connection), against the target directly, in the same rounds.
 * `--compare CLI` adds the same SELECT clients through another build of rehome (one where SELECT
 * pinned a client to its own connection: what the per-db shared connections saved). Steady state:
 * an empty source, `--no-sweep`, every key of `-r` touched once in both dbs before the rounds
 * (known absent).
 *
 *   node bench/own-connection.mjs [--rounds 5] [--requests 150000] [--clients 50] [--random 100000] [--db 1] [--compare CLI]
 *
 * Prints medians of requests/s and p99, and the CPU per request of rehome and of the target.
 * (nutcracker serves db 0 only, so it is not in this comparison.)
 */
import { spawnSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { cpuSeconds, flags, fmt, median, startRedis, startRehome } from './lib.mjs';

const opt = flags({ rounds: 5, requests: 150_000, clients: 50, random: 100_000, db: 1, compare: '' });

const target = await startRedis('target');
const source = await startRedis('source');
const rh = await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'] });
const other = opt.compare === '' ? null : await startRehome({ source: source.port, target: target.port, args: ['--no-sweep'], cli: opt.compare });
for (const [db, port] of [[0, rh.port], [opt.db, rh.port], ...(other ? [[opt.db, other.port]] : [])]) {
  const c = new Redis({ port, host: '127.0.0.1', db });
  for (let s = 0; s < opt.random; s += 1000) {
    const p = c.pipeline();
    for (let i = s; i < Math.min(opt.random, s + 1000); i++) p.get(`key:${String(i).padStart(12, '0')}`);
    for (const [e] of await p.exec()) if (e) throw e;
  }
  c.disconnect();
}

const endpoints = [
  { name: 'direct', port: target.port, db: 0, pid: null },
  { name: 'rehome, shared connection (db 0)', port: rh.port, db: 0, pid: rh.pid },
  { name: `rehome, SELECT ${opt.db} (its shared connection)`, port: rh.port, db: opt.db, pid: rh.pid },
  ...(other ? [{ name: `compare build, SELECT ${opt.db}`, port: other.port, db: opt.db, pid: other.pid }] : []),
];

function bench(e, test) {
  const args = ['-h', '127.0.0.1', '-p', String(e.port), '-c', String(opt.clients), '-n', String(opt.requests), '-r', String(opt.random),
    '-d', '100', '-t', test, '-P', '1', '--dbnum', String(e.db), '--csv'];
  const r = spawnSync('redis-benchmark', args, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`redis-benchmark exited ${r.status}: ${r.stderr}`);
  // "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms","p95_latency_ms","p99_latency_ms","max_latency_ms"
  const row = r.stdout.trim().split('\n').pop().split(',').map((x) => Number(x.replace(/"/g, '')));
  return { rps: row[1], p99: row[6] };
}

const results = new Map();
for (let round = 1; round <= opt.rounds; round++) {
  for (const test of ['set', 'get']) {
    for (const e of endpoints) {
      const c0 = e.pid === null ? 0 : cpuSeconds(e.pid);
      const t0 = cpuSeconds(target.pid);
      const r = bench(e, test);
      const perReq = (s) => (s / opt.requests) * 1e6;
      const key = `${test.toUpperCase()} ${e.name}`;
      if (!results.has(key)) results.set(key, []);
      results.get(key).push({ ...r, cpu: e.pid === null ? NaN : perReq(cpuSeconds(e.pid) - c0), tcpu: perReq(cpuSeconds(target.pid) - t0) });
    }
  }
  process.stdout.write(`round ${round} done\n`);
}

process.stdout.write(`\nmedians of ${opt.rounds} round(s), pipeline 1, ${opt.clients} clients:\n`);
for (const [key, rs] of results) {
  const m = (f) => median(rs.map(f));
  process.stdout.write(
    `  ${key.padEnd(44)} ${fmt(m((r) => r.rps)).padStart(8)} req/s  p99 ${m((r) => r.p99).toFixed(2)} ms` +
      `  CPU µs/request: rehome ${fmt(m((r) => r.cpu), 1)}, target ${fmt(m((r) => r.tcpu), 1)}\n`,
  );
}
process.exit(0);
