#!/usr/bin/env node
/**
 * What a client reading keys that have not moved yet (first touches) sees while the sweeper runs.
 *
 *   node bench/touch-latency.mjs [--keys 300000] [--readers 1] [--seconds 5] [--compare CLI]
 *
 * One run, in this order, each phase on a freshly filled old server (N 100-byte strings) and an
 * empty new one; `--readers` clients GET random keys one at a time (almost all first touches) and
 * check every value:
 *   direct      straight to the old server, no migration             (the reference)
 *   no-sweep    through rehome --no-sweep                             (first touches alone)
 *   sweeping    through rehome while its sweeper drains the old server
 *   drained     through the same rehome once drained, for --seconds
 *   alone       the sweep with no reader: keys/s (what the readers cost the sweep)
 * Prints p50/p99 per phase, the sweep's keys/s with and without the readers, and the ratios the
 * latency issue sets as targets: sweeping p99 <= 3 x no-sweep p99, sweeping p50 <= 2 x no-sweep
 * p50. `--compare CLI` runs the sweeping phase again with another build's cli.js.
 */
import { Redis } from 'ioredis';
import { fill, flags, fmt, median, percentile, sleep, startRedis, startRehome, valueFor } from './lib.mjs';

const opt = flags({ keys: 300_000, readers: 1, seconds: 5, compare: '' });

/** Readers GET random keys until `until()` says stop; latencies in ms, wrong values counted. */
async function read(port, until) {
  const lat = [];
  let wrong = 0;
  const one = async () => {
    const c = new Redis({ port, host: '127.0.0.1', enableReadyCheck: false });
    while (!until()) {
      const i = Math.floor(Math.random() * opt.keys);
      const t0 = performance.now();
      const v = await c.get(`key:${i}`);
      lat.push(performance.now() - t0);
      if (v !== valueFor(i)) wrong++;
    }
    c.disconnect();
  };
  await Promise.all(Array.from({ length: opt.readers }, one));
  return { lat, wrong };
}

function row(name, r, extra = '') {
  const p50 = median(r.lat);
  const p99 = percentile(r.lat, 99);
  console.log(`  ${name.padEnd(10)} p50 ${p50.toFixed(3).padStart(7)} ms  p99 ${p99.toFixed(3).padStart(7)} ms  reads ${fmt(r.lat.length).padStart(7)}  wrong ${r.wrong}${extra}`);
  return { p50, p99 };
}

async function freshPair() {
  const src = await startRedis('old');
  const tgt = await startRedis('new');
  await fill(src.port, opt.keys);
  return { src, tgt };
}

/** rehome with its sweeper, timed until it logs the drain; readers (if any) run meanwhile. */
async function sweep(withReaders, cli) {
  const { src, tgt } = await freshPair();
  const rh = await startRehome({ source: src.port, target: tgt.port, ...(cli ? { cli } : {}) });
  const t0 = performance.now();
  let drainedAt = 0;
  const watch = (async () => {
    while (!/migration complete/.test(rh.stderr + rh.stdout)) await sleep(5);
    drainedAt = performance.now();
  })();
  const during = withReaders ? read(rh.port, () => drainedAt > 0) : Promise.resolve(null);
  await watch;
  const res = { secs: (drainedAt - t0) / 1000, during: await during, after: null };
  if (withReaders) {
    const end = performance.now() + opt.seconds * 1000;
    res.after = await read(rh.port, () => performance.now() > end);
  }
  await stopAll(rh, src, tgt);
  return res;
}

async function stopAll(...ps) {
  await Promise.all(ps.map((p) => p.stop()));
}

/** The references: straight to the old server, then first touches through rehome --no-sweep. */
async function references() {
  const { src, tgt } = await freshPair();
  let end = performance.now() + opt.seconds * 1000;
  const direct = row('direct', await read(src.port, () => performance.now() > end));
  const rh = await startRehome({ source: src.port, target: tgt.port, args: ['--no-sweep'] });
  end = performance.now() + opt.seconds * 1000;
  const noSweep = row('no-sweep', await read(rh.port, () => performance.now() > end));
  await stopAll(rh, src, tgt);
  return { direct, noSweep };
}

console.log(`touch latency: ${fmt(opt.keys)} keys of 100 bytes, ${opt.readers} reader(s) GETting random keys one at a time`);
const { direct, noSweep } = await references();
const s = await sweep(true, '');
const sweeping = row('sweeping', s.during, `  (drained in ${s.secs.toFixed(2)} s: ${fmt(opt.keys / s.secs)} keys/s)`);
const drained = row('drained', s.after);
const alone = await sweep(false, '');
console.log(`  alone      the sweep with no reader: drained in ${alone.secs.toFixed(2)} s: ${fmt(opt.keys / alone.secs)} keys/s; with the reader(s) ${(alone.secs / s.secs).toFixed(2)} of that rate`);
if (opt.compare) {
  const c = await sweep(true, opt.compare);
  row('compare', c.during, `  (sweeping, ${opt.compare}; drained in ${c.secs.toFixed(2)} s)`);
}
console.log(`ratios: sweeping/no-sweep p50 ${(sweeping.p50 / noSweep.p50).toFixed(2)} (target <= 2), p99 ${(sweeping.p99 / noSweep.p99).toFixed(2)} (target <= 3); sweeping/drained p99 ${(sweeping.p99 / drained.p99).toFixed(2)}; no-sweep/direct p50 ${(noSweep.p50 / direct.p50).toFixed(2)}`);
process.exit(0);
