#!/usr/bin/env node
/**
 * What a full SCAN through rehome costs in a canary while keys come back after a narrowing (the
 * third walk, docs/DESIGN.md "Scope" point 7), against the same SCAN when nothing comes back.
 *
 *   node bench/canary-scan.mjs [--out-keys 100000] [--back-keys 20000] [--rounds 5]
 *
 * One old/new pair, one rehome. `--out-keys` keys stay on the old server (outside every scope),
 * `--back-keys` keys move to the new server (scope back:*). Reference: full SCANs (COUNT 1000)
 * through rehome in that state (two walks), the sweeper paused. Then the scope is narrowed to one
 * with no key, so the back: keys are coming back and stay on the new server: full SCANs again
 * (three walks). Prints the medians and their ratio, and the same SCAN straight to both servers.
 */
import { execFileSync } from 'node:child_process';
import { Redis } from 'ioredis';
import { fill, flags, fmt, getJson, median, REHOME_CLI, sleep, startRedis, startRehome } from './lib.mjs';

const opt = flags({ 'out-keys': 100_000, 'back-keys': 20_000, rounds: 5 });

function cli(adminPort, ...args) {
  execFileSync(process.execPath, [REHOME_CLI, ...args, '--admin', `127.0.0.1:${adminPort}`], { stdio: ['ignore', 'ignore', 'inherit'] });
}

async function fullScan(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  const t0 = performance.now();
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await c.scan(cursor, 'COUNT', 1000);
    cursor = next;
    n += keys.length;
  } while (cursor !== '0');
  const took = performance.now() - t0;
  c.disconnect();
  return { took, n };
}

async function scans(ports) {
  const times = [];
  let n = 0;
  for (let i = 0; i < opt.rounds; i++) {
    let took = 0;
    n = 0;
    for (const p of ports) {
      const r = await fullScan(p);
      took += r.took;
      n += r.n;
    }
    times.push(took);
  }
  return { ms: median(times), n };
}

const src = await startRedis('old');
const tgt = await startRedis('new');
await fill(src.port, opt['out-keys'], { key: (i) => `out:${i}` });
await fill(src.port, opt['back-keys'], { key: (i) => `back:${i}` });
const rh = await startRehome({ source: src.port, target: tgt.port, admin: true, args: ['--phase', 'hold'] });
cli(rh.adminPort, 'phase', 'migrate', '--scope', 'back:*');
while ((await getJson(rh.adminPort, '/status')).scope?.drained !== true) await sleep(200);

// Paused for both measurements: no sweep competes with the SCANs.
cli(rh.adminPort, 'sweeper', 'pause');
const direct = await scans([src.port, tgt.port]);
const two = await scans([rh.port]);
cli(rh.adminPort, 'phase', 'migrate', '--scope', 'nokey:*');
while ((await getJson(rh.adminPort, '/status')).scope?.returning?.length !== 1) await sleep(200);
const three = await scans([rh.port]);

const load = execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ');
console.log(`keys: ${fmt(opt['out-keys'])} on the old server, ${fmt(opt['back-keys'])} on the new one; median of ${opt.rounds} full SCANs (COUNT 1000); load ${load}`);
console.log(`direct (old, then new):            ${fmt(direct.ms, 1)} ms, ${fmt(direct.n)} keys`);
console.log(`rehome, nothing coming back:       ${fmt(two.ms, 1)} ms, ${fmt(two.n)} keys (${fmt(two.ms / direct.ms, 2)}x direct)`);
console.log(`rehome, back: keys coming back:    ${fmt(three.ms, 1)} ms, ${fmt(three.n)} keys (${fmt(three.ms / two.ms, 2)}x nothing coming back)`);
process.exit(0);
