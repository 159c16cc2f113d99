#!/usr/bin/env node
/**
 * Proxy-side moves (issue 15) against what a client copy does, in the same run.
 *
 *   node bench/proxy-move.mjs [--keys N] [--size BYTES] [--sweep-budget-ms MS] [--rounds R]
 *                             [--methods dump,copy]  (BENCH_KEYS=N also sets the key count)
 *
 * rehome runs with its defaults but --move-method and --sweep-budget-ms (default 20, rehome's
 * own: each step holds the source about that long, which bounds the batch; the client copy has
 * no such bound and takes 1000 keys a batch).
 *
 *  1. reference: N strings of --size bytes in the source; a pipelined DUMP/RESTORE client copy
 *     (what RedisShake's scan mode does): SCAN COUNT 1000, DUMP + PTTL of the batch in one
 *     pipeline, RESTORE of the batch in one pipeline on the target, two batches in flight -> keys/s.
 *  2. rehome --move-method dump: target flushed (the source still holds every key); timed from
 *     its 'listening' line to its 'migration complete' line -> keys/s, and the ratio to 1.
 *  3. rehome --move-method copy (the type-aware copy): the same again after a refill.
 * Each round runs the reference and every method on a freshly filled source and an empty target,
 * in an order that rotates from round to round (a load spike hits each side in turn). Besides
 * keys/s, each run's CPU seconds per 100k keys are printed for the copier (the bench process's
 * client copy, or rehome) and each redis-server: figures that depend much less on the machine's
 * load than wall-clock time. The summary gives medians over the rounds and the ratio of the
 * medians. The target: dump >= 1.0x the reference.
 */
import { Redis } from 'ioredis';
import os from 'node:os';
import { clientCopy, cpuSeconds, fill, flags, fmt, median, sleep, startRedis, startRehome } from './lib.mjs';

const opt = flags({ keys: Number(process.env.BENCH_KEYS ?? 500000), size: 100, 'sweep-budget-ms': 20, rounds: 1, methods: 'dump,copy' });
const N = opt.keys;

async function rehomeSweep(srcPort, tgtPort, method) {
  const rh = await startRehome({ source: srcPort, target: tgtPort, args: ['--move-method', method, '--sweep-budget-ms', String(opt['sweep-budget-ms'])] });
  const cpu0 = cpuSeconds(rh.pid);
  while (!/migration complete/.test(rh.stdout + rh.stderr)) {
    if (rh.exited) throw new Error(`rehome exited during the sweep: ${rh.stderr}`);
    await sleep(20);
  }
  const secs = (Date.now() - rh.t0) / 1000;
  const cpu = cpuSeconds(rh.pid) - cpu0;
  await rh.stop();
  return { secs, rate: N / secs, cpu };
}

async function flush(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  await c.flushall();
  c.disconnect();
}

/** One measured run on a fresh pair: keys/s and CPU seconds per 100k keys of the copier and each server. */
async function measure(side) {
  await flush(tgt.port);
  await flush(src.port);
  await fill(src.port, N, { size: opt.size });
  const s0 = cpuSeconds(src.pid);
  const t0 = cpuSeconds(tgt.pid);
  let r;
  if (side === 'reference') {
    const c0 = process.cpuUsage();
    r = await clientCopy(src.port, tgt.port);
    const c = process.cpuUsage(c0);
    r.cpu = (c.user + c.system) / 1e6;
  } else {
    r = await rehomeSweep(src.port, tgt.port, side);
  }
  const per = 100000 / N;
  return { rate: r.rate, secs: r.secs, copier: r.cpu * per, source: (cpuSeconds(src.pid) - s0) * per, target: (cpuSeconds(tgt.pid) - t0) * per };
}

const src = await startRedis('source');
const tgt = await startRedis('target');
const sides = ['reference', ...opt.methods.split(',').filter(Boolean)];
const label = { reference: 'pipelined DUMP/RESTORE client copy', dump: 'rehome --move-method dump sweep', copy: 'rehome --move-method copy sweep' };
process.stdout.write(`proxy-move bench: ${N} keys of ${opt.size} bytes, redis-server ${'(Debian)'} on both sides, ${opt.rounds} round(s), load ${os.loadavg().map((x) => x.toFixed(2)).join(' ')}\n`);
const results = Object.fromEntries(sides.map((s) => [s, []]));
for (let round = 0; round < opt.rounds; round++) {
  const order = sides.map((_, i) => sides[(i + round) % sides.length]);
  const ref = {};
  for (const side of order) {
    const m = await measure(side);
    results[side].push(m);
    ref[side] = m;
    process.stdout.write(
      `round ${round + 1} ${label[side].padEnd(36)} ${fmt(m.rate).padStart(8)} keys/s (${m.secs.toFixed(2)} s)  CPU s/100k keys: copier ${m.copier.toFixed(2)} source ${m.source.toFixed(2)} target ${m.target.toFixed(2)}  load ${os.loadavg()[0].toFixed(1)}\n`,
    );
  }
  for (const side of sides.slice(1)) process.stdout.write(`round ${round + 1} ${side}/reference: ${(ref[side].rate / ref.reference.rate).toFixed(2)}x\n`);
}
const med = (side, f) => median(results[side].map((m) => m[f]));
process.stdout.write(`medians over ${opt.rounds} round(s):\n`);
for (const side of sides) {
  const ratio = side === 'reference' ? '' : `  ratio ${(med(side, 'rate') / med('reference', 'rate')).toFixed(2)}x`;
  process.stdout.write(
    `${label[side].padEnd(36)} ${fmt(med(side, 'rate')).padStart(8)} keys/s${ratio}  CPU s/100k keys: copier ${med(side, 'copier').toFixed(2)} source ${med(side, 'source').toFixed(2)} target ${med(side, 'target').toFixed(2)}\n`,
  );
}
process.exit(0);
