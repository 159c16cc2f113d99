#!/usr/bin/env node
/**
 * The cost of waiting for a replica after moves into a cluster (docs/DESIGN.md "A cluster as the
 * new server", Durability): into 3 masters with a replica each, a move is MIGRATE ... COPY, then
 * WAIT 1 on the master, then DEL in the old server; into 3 masters without replicas it is one
 * MIGRATE. Same rounds, same machine:
 *   - sweep: N keys drained by the sweeper (from rehome's 'listening' line until /status says
 *     drained) -> keys/s;
 *   - first touch: M keys read one at a time through rehome, each one's first touch (a move) ->
 *     mean ms per GET.
 * Figures are medians over rounds; the ratio is with replicas / without.
 *
 *   node bench/cluster-replicas.mjs [--rounds 3] [--keys 20000] [--touches 2000]
 */
import { execFileSync } from 'node:child_process';
import os from 'node:os';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { fill, flags, fmt, getJson, median, sleep, startRedis, startRehome, waitForQuiet } from './lib.mjs';

const opt = flags({ rounds: 3, keys: 20000, touches: 2000, 'max-load': 1.5, 'load-wait': 300 });

const cli = (port, ...args) => execFileSync('redis-cli', ['-p', String(port), ...args]).toString();

async function startCluster(replicas) {
  const nodes = [];
  while (nodes.length < 3 * (1 + replicas)) {
    const n = await startRedis(`cluster-${replicas}-${nodes.length}`, ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf']).catch(() => null);
    if (n !== null && n.port <= 55535) nodes.push(n);
    else await n?.stop();
  }
  execFileSync('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', String(replicas), '--cluster-yes'], { stdio: 'ignore' });
  for (;;) {
    const ok = nodes.every((n) => {
      const repl = cli(n.port, 'info', 'replication');
      return cli(n.port, 'cluster', 'info').includes('cluster_state:ok') && (!repl.includes('role:slave') || repl.includes('master_link_status:up'));
    });
    if (ok) return nodes;
    await sleep(100);
  }
}

function flushMasters(nodes) {
  for (const n of nodes) if (cli(n.port, 'info', 'replication').includes('role:master')) cli(n.port, 'flushall');
}

async function sweep(source, cluster) {
  flushMasters(cluster);
  cli(source.port, 'flushall');
  await fill(source.port, opt.keys);
  const r = await startRehome({ source: source.port, target: cluster[0].port, admin: true });
  for (;;) {
    const st = await getJson(r.adminPort, '/status').catch(() => null);
    if (st?.phase === 'drained' || st?.sweeper?.state === 'drained') break;
    await sleep(20);
  }
  const s = (Date.now() - r.t0) / 1000;
  await r.stop();
  return opt.keys / s;
}

async function touches(source, cluster) {
  flushMasters(cluster);
  cli(source.port, 'flushall');
  await fill(source.port, opt.touches);
  const r = await startRehome({ source: source.port, target: cluster[0].port, args: ['--no-sweep'] });
  const c = new Redis({ port: r.port, host: '127.0.0.1' });
  const t0 = performance.now();
  for (let i = 0; i < opt.touches; i++) await c.get(`key:${i}`);
  const msPer = (performance.now() - t0) / opt.touches;
  c.disconnect();
  await r.stop();
  return msPer;
}

const quiet = await waitForQuiet(opt['max-load'], opt['load-wait']);
const plain = await startCluster(0);
const replicated = await startCluster(1);
const source = await startRedis('source');
console.log(`cluster-replicas bench: ${opt.keys} keys swept, ${opt.touches} first touches, ${opt.rounds} round(s); ${os.cpus().length} CPUs, load ${quiet.load.toFixed(2)} at start, node ${process.version}`);
const res = { sweep: [[], []], touch: [[], []] };
for (let round = 0; round < opt.rounds; round++) {
  const order = round % 2 === 0 ? [0, 1] : [1, 0];
  for (const i of order) res.sweep[i].push(await sweep(source, i === 0 ? plain : replicated));
  for (const i of order) res.touch[i].push(await touches(source, i === 0 ? plain : replicated));
}
const [sw0, sw1] = res.sweep.map(median);
const [t0, t1] = res.touch.map(median);
console.log(`\n${'measure'.padEnd(26)} ${'no replicas'.padStart(14)} ${'1 replica each'.padStart(16)}  ratio`);
console.log(`${'sweep, keys/s'.padEnd(26)} ${fmt(sw0).padStart(14)} ${fmt(sw1).padStart(16)}  ${(sw1 / sw0).toFixed(2)}`);
console.log(`${'first touch, ms per GET'.padEnd(26)} ${t0.toFixed(3).padStart(14)} ${t1.toFixed(3).padStart(16)}  ${(t1 / t0).toFixed(2)}`);
for (const p of [source, ...plain, ...replicated]) await p.stop();
console.log(`load at end ${os.loadavg()[0].toFixed(2)}`);
