#!/usr/bin/env node
/**
 * rehome in front of a 3-master Redis Cluster, against rehome in front of one standalone server
 * and against a cluster-aware client straight to the cluster (redis-benchmark --cluster), in the
 * same rounds: redis-benchmark SET and GET, `--clients` connections, random keys, 100-byte values,
 * pipeline depth 1 and 16. Both rehomes have an empty old server (--no-sweep): the steady state
 * once everything has moved. Each round runs every setting against every endpoint back to back
 * (the order rotates each round); figures are medians over rounds. CPU per request is rehome's
 * own (utime+stime from /proc around each run).
 *
 *   node bench/cluster.mjs [--rounds 3] [--seconds 3] [--clients 50] [--random 100000]
 */
import { execFileSync, spawn } from 'node:child_process';
import os from 'node:os';
import { cpuSeconds, flags, fmt, median, startRedis, startRehome, waitForQuiet } from './lib.mjs';

const opt = flags({ rounds: 3, seconds: 3, clients: 50, random: 100000, size: 100, 'max-load': 1.5, 'load-wait': 300 });

function redisBenchmark(port, { test, pipeline, n, cluster }) {
  const args = [
    '-h', '127.0.0.1', '-p', String(port), '-c', String(opt.clients), '-n', String(n), '-r', String(opt.random),
    '-d', String(opt.size), '-t', test, '-P', String(pipeline), '--csv', ...(cluster ? ['--cluster'] : []),
  ];
  return new Promise((resolve, reject) => {
    const child = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (b) => (out += b));
    child.on('exit', (code) => {
      const lines = out.trim().split('\n').map((l) => l.split(',').map((c) => c.replace(/^"|"$/g, '')));
      const head = lines.find((l) => l[0] === 'test');
      const row = lines.find((l) => l[0] === test.toUpperCase());
      if (code !== 0 || !head || !row) return reject(new Error(`redis-benchmark exited ${code} on :${port}: ${out.slice(-300)}`));
      resolve(Number(row[head.indexOf('rps')]));
    });
  });
}

async function startCluster() {
  const nodes = [];
  // A node above port 55535 refuses to start (its cluster bus is 10000 higher): try another port.
  while (nodes.length < 3) {
    const n = await startRedis(`cluster-${nodes.length}`, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']).catch(() => null);
    if (n !== null) nodes.push(n);
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-yes'], { stdio: 'ignore' });
  for (;;) {
    const ok = nodes.every((n) => execFileSync('redis-cli', ['-p', String(n.port), 'cluster', 'info']).toString().includes('cluster_state:ok'));
    if (ok) return nodes;
    await new Promise((r) => setTimeout(r, 100));
  }
}

const quiet = await waitForQuiet(opt['max-load'], opt['load-wait']);
const cluster = await startCluster();
const standalone = await startRedis('standalone');
const src1 = await startRedis('source-1');
const src2 = await startRedis('source-2');
const viaCluster = await startRehome({ source: src1.port, target: cluster[0].port, args: ['--no-sweep'] });
const viaStandalone = await startRehome({ source: src2.port, target: standalone.port, args: ['--no-sweep'] });
const endpoints = [
  { name: 'rehome->cluster', port: viaCluster.port, pid: viaCluster.pid ?? viaCluster.child?.pid },
  { name: 'rehome->standalone', port: viaStandalone.port, pid: viaStandalone.pid ?? viaStandalone.child?.pid },
  { name: 'cluster client', port: cluster[0].port, pid: null, cluster: true },
];
console.log(`cluster bench: redis-benchmark -c ${opt.clients} -r ${opt.random} -d ${opt.size}, ~${opt.seconds} s per run, ${opt.rounds} round(s); ${os.cpus().length} CPUs, load ${quiet.load.toFixed(2)} at start, node ${process.version}`);
const settings = [];
for (const pipeline of [1, 16]) for (const test of ['set', 'get']) settings.push({ test, pipeline });
const rps = new Map();
const cpu = new Map();
for (let round = 0; round < opt.rounds; round++) {
  for (const s of settings) {
    const order = endpoints.map((_, i) => endpoints[(i + round) % endpoints.length]);
    for (const e of order) {
      const n = Math.round((s.pipeline === 1 ? 25_000 : 150_000) * opt.seconds);
      const c0 = e.pid ? cpuSeconds(e.pid) : 0;
      const r = await redisBenchmark(e.port, { ...s, n, cluster: e.cluster === true });
      const k = `${e.name}|${s.test}|P${s.pipeline}`;
      (rps.get(k) ?? rps.set(k, []).get(k)).push(r);
      if (e.pid) (cpu.get(k) ?? cpu.set(k, []).get(k)).push(((cpuSeconds(e.pid) - c0) / n) * 1e6);
    }
  }
}
console.log(`\n${'setting'.padEnd(10)} ${endpoints.map((e) => e.name.padStart(20)).join(' ')}   cluster/standalone  cluster/client   rehome µs CPU per request (cluster, standalone)`);
for (const s of settings) {
  const key = (e) => `${e.name}|${s.test}|P${s.pipeline}`;
  const m = endpoints.map((e) => median(rps.get(key(e))));
  const c = endpoints.slice(0, 2).map((e) => median(cpu.get(key(e))));
  console.log(`${`${s.test} P${s.pipeline}`.padEnd(10)} ${m.map((x) => fmt(x).padStart(20)).join(' ')}   ${(m[0] / m[1]).toFixed(2).padStart(18)}  ${(m[0] / m[2]).toFixed(2).padStart(14)}   ${c.map((x) => x.toFixed(1)).join(', ')}`);
}
for (const p of [viaCluster, viaStandalone, src1, src2, standalone, ...cluster]) await p.stop();
console.log(`load at end ${os.loadavg()[0].toFixed(2)}`);
