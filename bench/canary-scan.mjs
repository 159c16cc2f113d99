#!/usr/bin/env node
/**
 * What a full SCAN through rehome costs in a canary while keys come back after a narrowing (the
 * third walk, docs/DESIGN.md "Scope" point 7), against the same SCAN when nothing comes back.
 *
 *   node bench/canary-scan.mjs [--out-keys 100000] [--back-keys 20000] [--rounds 5]
 *
 * Two old/new pairs, each with its rehome: `--out-keys` keys stay on the old server (outside
 * every scope), `--back-keys` keys move to the new server (scope back:*), then each sweeper is
 * paused. The second pair's scope is then narrowed to one with no key, so its back: keys are
 * coming back (and stay on the new server). Rounds interleave full SCANs (COUNT 1000) straight to
 * the first pair's servers, through its rehome (two walks) and through the second's (three
 * walks). Prints the medians and the ratios.
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

/** One old/new pair and its rehome in a canary of back:*, drained, the sweeper paused. */
async function canary(name) {
  const src = await startRedis(`${name}-old`);
  const tgt = await startRedis(`${name}-new`);
  await fill(src.port, opt['out-keys'], { key: (i) => `out:${i}` });
  await fill(src.port, opt['back-keys'], { key: (i) => `back:${i}` });
  const rh = await startRehome({ source: src.port, target: tgt.port, admin: true, args: ['--phase', 'hold'] });
  cli(rh.adminPort, 'phase', 'migrate', '--scope', 'back:*');
  while ((await getJson(rh.adminPort, '/status')).scope?.drained !== true) await sleep(200);
  // Paused: no sweep competes with the SCANs, and keys coming back stay on the new server.
  cli(rh.adminPort, 'sweeper', 'pause');
  return { src, tgt, rh };
}

const steady = await canary('steady');
const back = await canary('back');
cli(back.rh.adminPort, 'phase', 'migrate', '--scope', 'nokey:*');
while ((await getJson(back.rh.adminPort, '/status')).scope?.returning?.length !== 1) await sleep(200);

// Rounds interleaved, so the machine's load falls on all three alike; one warm-up round first.
const times = { direct: [], two: [], three: [] };
const counts = {};
for (let round = -1; round < opt.rounds; round++) {
  const d1 = await fullScan(steady.src.port);
  const d2 = await fullScan(steady.tgt.port);
  const two = await fullScan(steady.rh.port);
  const three = await fullScan(back.rh.port);
  if (round < 0) continue;
  times.direct.push(d1.took + d2.took);
  times.two.push(two.took);
  times.three.push(three.took);
  Object.assign(counts, { direct: d1.n + d2.n, two: two.n, three: three.n });
}
const direct = { ms: median(times.direct), n: counts.direct };
const two = { ms: median(times.two), n: counts.two };
const three = { ms: median(times.three), n: counts.three };

const load = execFileSync('cat', ['/proc/loadavg']).toString().split(' ').slice(0, 3).join(' ');
console.log(`keys: ${fmt(opt['out-keys'])} on the old server, ${fmt(opt['back-keys'])} on the new one; median of ${opt.rounds} full SCANs (COUNT 1000); load ${load}`);
console.log(`direct (old, then new):            ${fmt(direct.ms, 1)} ms, ${fmt(direct.n)} keys`);
console.log(`rehome, nothing coming back:       ${fmt(two.ms, 1)} ms, ${fmt(two.n)} keys (${fmt(two.ms / direct.ms, 2)}x direct)`);
console.log(`rehome, back: keys coming back:    ${fmt(three.ms, 1)} ms, ${fmt(three.n)} keys (${fmt(three.ms / two.ms, 2)}x nothing coming back)`);
process.exit(0);
