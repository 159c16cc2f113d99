#!/usr/bin/env node
/**
 * Big keys moving through rehome (issue 15): a sorted set of 2,000,000 members and a hash of about
 * 300 MB move while a reader GETs other keys, in one run.
 *
 *   node bench/big-keys.mjs [--zset-members 2000000] [--hash-mb 300] [--readers-keys 1000] [--seconds 5] [--move-method auto]
 *
 *  1. baseline: rehome --no-sweep in front of the pair; the reader's keys are touched once (moved),
 *     then one client GETs them at random, one at a time, for --seconds: its p99 with no migration.
 *  2. the same pair, rehome with its sweeper (defaults, --move-method as given): the sweeper moves
 *     the two big keys (in chunks: both pass --big-key-mb) while the same reader runs until the
 *     drain; rehome's RSS is sampled every 100 ms.
 *  3. at the same time as 2, the same reader also GETs (alternating, one at a time) through a second
 *     rehome --no-sweep in front of a second pair that holds only the reader's keys (moved): its p99
 *     with no migration over the same seconds, under the same load from the rest of the machine.
 * Prints the p99s and the ratios (the issue's target: <= 3), rehome's peak RSS (target: under
 * 300 MB), each big key's time as rehome logs it, and checks both keys whole in the target. On a
 * shared machine the ratio to 3 is the steadier one: 1's few seconds may fall in a quiet moment or
 * a busy one.
 */
import { Redis } from 'ioredis';
import { flags, fmt, percentile, rssBytes, sleep, startRedis, startRehome } from './lib.mjs';

const opt = flags({ 'zset-members': 2_000_000, 'hash-mb': 300, 'readers-keys': 1000, seconds: 5, 'move-method': 'auto' });
const FIELD_BYTES = 1000;
const hashFields = Math.round((opt['hash-mb'] * 1024 * 1024) / FIELD_BYTES);
const fieldValue = (i) => `${i}:`.padEnd(FIELD_BYTES, 'h');

async function fillBig(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  for (let i = 0; i < opt['zset-members']; i += 20_000) {
    const p = c.pipeline();
    for (let j = i; j < Math.min(opt['zset-members'], i + 20_000); j += 1000) {
      const args = [];
      for (let m = j; m < Math.min(opt['zset-members'], j + 1000); m++) args.push(m % 1000, `member:${m}`);
      p.zadd('zbig', ...args);
    }
    await p.exec();
  }
  for (let i = 0; i < hashFields; i += 2_000) {
    const p = c.pipeline();
    for (let j = i; j < Math.min(hashFields, i + 2_000); j += 100) {
      const args = [];
      for (let f = j; f < Math.min(hashFields, j + 100); f++) args.push(`f:${f}`, fieldValue(f));
      p.hset('hbig', ...args);
    }
    await p.exec();
  }
  const p = c.pipeline();
  for (let i = 0; i < opt['readers-keys']; i++) p.set(`r:${i}`, `v:${i}`);
  await p.exec();
  c.disconnect();
}

/**
 * GETs of the reader's keys, one at a time, until `until()`, taking the ports in turn; latencies in
 * ms and wrong values, per port.
 */
async function read(ports, until) {
  const cs = ports.map((port) => new Redis({ port, host: '127.0.0.1', enableReadyCheck: false }));
  const out = ports.map(() => ({ lat: [], wrong: 0 }));
  for (let n = 0; !until(); n++) {
    const j = n % cs.length;
    const i = Math.floor(Math.random() * opt['readers-keys']);
    const t0 = performance.now();
    const v = await cs[j].get(`r:${i}`);
    out[j].lat.push(performance.now() - t0);
    if (v !== `v:${i}`) out[j].wrong++;
  }
  for (const c of cs) c.disconnect();
  return out;
}

/** A rehome --no-sweep whose reader keys are all moved already (each touched once). */
async function quietRehome(srcPort, tgtPort) {
  const r = await startRehome({ source: srcPort, target: tgtPort, args: ['--no-sweep', '--move-method', opt['move-method']] });
  const warm = new Redis({ port: r.port, host: '127.0.0.1' });
  for (let i = 0; i < opt['readers-keys']; i++) await warm.get(`r:${i}`);
  warm.disconnect();
  return r;
}

const src = await startRedis('old');
const tgt = await startRedis('new');
const t0 = performance.now();
await fillBig(src.port);
const s = new Redis({ port: src.port, host: '127.0.0.1' });
const used = /used_memory:(\d+)/.exec(await s.info('memory'))[1];
console.log(`big-keys bench: zset of ${fmt(opt['zset-members'])} members, hash of ${fmt(hashFields)} fields x ${FIELD_BYTES} B; old server uses ${(used / 1048576).toFixed(0)} MB (filled in ${((performance.now() - t0) / 1000).toFixed(1)} s)`);

// 1. baseline: nothing migrating.
let rh = await quietRehome(src.port, tgt.port);
const end = Date.now() + opt.seconds * 1000;
const [base] = await read([rh.port], () => Date.now() > end);
await rh.stop();

// 3's pair: the reader's keys only, moved before the sweep starts.
const src2 = await startRedis('old-2');
const tgt2 = await startRedis('new-2');
const s2 = new Redis({ port: src2.port, host: '127.0.0.1' });
const p2 = s2.pipeline();
for (let i = 0; i < opt['readers-keys']; i++) p2.set(`r:${i}`, `v:${i}`);
await p2.exec();
s2.disconnect();
const quiet = await quietRehome(src2.port, tgt2.port);

// 2. the sweep moves the big keys while the reader runs.
rh = await startRehome({ source: src.port, target: tgt.port, args: ['--move-method', opt['move-method']] });
let peak = 0;
let drained = false;
const sampler = setInterval(() => {
  try {
    peak = Math.max(peak, rssBytes(rh.pid).self);
  } catch {
    /* exited */
  }
}, 100);
const reading = read([rh.port, quiet.port], () => drained);
while (!/migration complete/.test(rh.stdout + rh.stderr)) {
  if (rh.exited) throw new Error(`rehome exited during the sweep: ${rh.stderr}`);
  await sleep(50);
}
drained = true;
const [during, beside] = await reading;
clearInterval(sampler);
const secs = (Date.now() - rh.t0) / 1000;
const bigLines = (rh.stdout + rh.stderr).split('\n').filter((l) => /big key/.test(l)).map((l) => l.replace(/^.*sweeper: /, ''));
await rh.stop();
await quiet.stop();

const t = new Redis({ port: tgt.port, host: '127.0.0.1' });
const [zcard, hlen] = [await t.zcard('zbig'), await t.hlen('hbig')];
const sample = await t.hget('hbig', `f:${hashFields - 1}`);
const p99a = percentile(base.lat, 99);
const p99b = percentile(during.lat, 99);
const p99c = percentile(beside.lat, 99);
console.log(`reader, no migration:   p99 ${p99a.toFixed(3)} ms  (${fmt(base.lat.length)} GETs, ${base.wrong} wrong)`);
console.log(`reader, big keys moving: p99 ${p99b.toFixed(3)} ms  (${fmt(during.lat.length)} GETs, ${during.wrong} wrong)  ratio ${(p99b / p99a).toFixed(2)}x (target <= 3)`);
console.log(`reader, no migration, same seconds (second pair): p99 ${p99c.toFixed(3)} ms  (${fmt(beside.lat.length)} GETs, ${beside.wrong} wrong)  big keys moving / this: ${(p99b / p99c).toFixed(2)}x (target <= 3)`);
console.log(`rehome peak RSS during the sweep: ${(peak / 1048576).toFixed(0)} MB (target < 300); drained in ${secs.toFixed(1)} s`);
for (const l of bigLines) console.log(`  ${l}`);
const whole = zcard === opt['zset-members'] && hlen === hashFields && sample === fieldValue(hashFields - 1);
console.log(`target: zbig ${fmt(zcard)} members, hbig ${fmt(hlen)} fields: ${whole ? 'whole' : 'NOT WHOLE'}`);
process.exit(whole && during.wrong + beside.wrong + base.wrong === 0 ? 0 : 1);
