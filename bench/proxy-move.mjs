#!/usr/bin/env node
/**
 * Proxy-side moves (issue 15) against what a client copy does, in the same run.
 *
 *   node bench/proxy-move.mjs [--keys N] [--size BYTES] [--sweep-budget-ms MS]
 *                                                        (BENCH_KEYS=N also sets the key count)
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
 * The target: 2 >= 1.0 x 1.
 */
import { Redis } from 'ioredis';
import { clientCopy, fill, flags, fmt, sleep, startRedis, startRehome } from './lib.mjs';

const opt = flags({ keys: Number(process.env.BENCH_KEYS ?? 500000), size: 100, 'sweep-budget-ms': 20 });
const N = opt.keys;

async function rehomeSweep(srcPort, tgtPort, method) {
  const rh = await startRehome({ source: srcPort, target: tgtPort, args: ['--move-method', method, '--sweep-budget-ms', String(opt['sweep-budget-ms'])] });
  while (!/migration complete/.test(rh.stdout + rh.stderr)) {
    if (rh.exited) throw new Error(`rehome exited during the sweep: ${rh.stderr}`);
    await sleep(20);
  }
  const secs = (Date.now() - rh.t0) / 1000;
  await rh.stop();
  return { secs, rate: N / secs };
}

async function flush(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  await c.flushall();
  c.disconnect();
}

const src = await startRedis('source');
const tgt = await startRedis('target');
process.stdout.write(`proxy-move bench: ${N} keys of ${opt.size} bytes, redis-server ${'(Debian)'} on both sides\n`);
await fill(src.port, N, { size: opt.size });
const ref = await clientCopy(src.port, tgt.port);
process.stdout.write(`reference  pipelined DUMP/RESTORE client copy: ${fmt(ref.rate)} keys/s (${ref.secs.toFixed(2)} s)\n`);
await flush(tgt.port);
const dump = await rehomeSweep(src.port, tgt.port, 'dump');
process.stdout.write(`rehome     --move-method dump sweep:           ${fmt(dump.rate)} keys/s (${dump.secs.toFixed(2)} s)  ratio ${(dump.rate / ref.rate).toFixed(2)}x\n`);
await flush(tgt.port);
await flush(src.port);
await fill(src.port, N, { size: opt.size });
const copy = await rehomeSweep(src.port, tgt.port, 'copy');
process.stdout.write(`rehome     --move-method copy sweep:           ${fmt(copy.rate)} keys/s (${copy.secs.toFixed(2)} s)  ratio ${(copy.rate / ref.rate).toFixed(2)}x\n`);
process.exit(0);
