#!/usr/bin/env node
/**
 * What clients see at phase switches: errors, reconnects, and how long commands wait while a
 * switch holds them (the gentle switch, --switch-drain-ms).
 *
 *   node bench/switch-latency.mjs [--keys 50000] [--clients 10] [--switches 6] [--every-ms 2000]
 *
 * Two rehome processes in hold on one pair, `--clients` ioredis clients (half on each) doing
 * INCR and GET one at a time, and a fleet-wide switch every `--every-ms` (migrate, reverse,
 * migrate, ...). Run twice in one go: with the gentle switch (default --switch-drain-ms) and
 * with --switch-drain-ms 0 (every client closed at a switch, the behaviour before). Prints, per
 * run: client-visible errors, reconnects, and command latency p50/p99/max for commands that
 * started during a switch (from the request to its answer, plus 100 ms) against all others.
 */
import { Redis } from 'ioredis';
import { fill, flags, fmt, median, percentile, sleep, startRedis, startRehome } from './lib.mjs';

const opt = flags({ keys: 50_000, clients: 10, switches: 6, 'every-ms': 2_000 });

async function post(adminPort, to) {
  const t0 = Date.now();
  const r = await fetch(`http://127.0.0.1:${adminPort}/phase?to=${to}`, { method: 'POST' });
  if (r.status !== 200) throw new Error(`switch to ${to}: HTTP ${r.status} ${await r.text()}`);
  return { from: t0, to: Date.now() };
}

async function run(drainArgs) {
  const src = await startRedis('old');
  const tgt = await startRedis('new');
  await fill(src.port, opt.keys);
  const args = ['--phase', 'hold', ...drainArgs];
  const procs = [
    await startRehome({ source: src.port, target: tgt.port, admin: true, args }),
    await startRehome({ source: src.port, target: tgt.port, admin: true, args }),
  ];
  const samples = []; // [startMs, latencyMs]
  let errors = 0;
  let reconnects = 0;
  const kinds = {};
  let stop = false;
  const client = async (c) => {
    const r = new Redis({ port: procs[c % 2].port, host: '127.0.0.1', enableReadyCheck: false, autoResendUnfulfilledCommands: false, maxRetriesPerRequest: 0 });
    r.on('error', () => {});
    r.on('reconnecting', () => reconnects++);
    for (let i = 0; !stop; i++) {
      const t0 = performance.now();
      const at = Date.now();
      try {
        if (i % 2 === 0) await r.incr(`ctr:${c}`);
        else await r.get(`key:${Math.floor(Math.random() * opt.keys)}`);
        samples.push([at, performance.now() - t0]);
      } catch (e) {
        errors++;
        const k = String(e.message).split(' ').slice(0, 3).join(' ');
        kinds[k] = (kinds[k] ?? 0) + 1;
        await sleep(20);
      }
    }
    r.disconnect();
  };
  const loops = Array.from({ length: opt.clients }, (_, c) => client(c));
  await sleep(1_500);
  const windows = [];
  const plan = ['migrate', 'reverse'];
  for (let s = 0; s < opt.switches; s++) {
    windows.push(await post(procs[s % 2].adminPort, plan[s % 2]));
    await sleep(opt['every-ms']);
  }
  stop = true;
  await Promise.all(loops);
  for (const p of procs) await p.stop();
  await src.stop();
  await tgt.stop();
  const during = [];
  const other = [];
  for (const [at, lat] of samples) {
    const inSwitch = windows.some((w) => at >= w.from - 5 && at <= w.to + 100);
    (inSwitch ? during : other).push(lat);
  }
  const switchMs = windows.map((w) => w.to - w.from);
  return { errors, reconnects, kinds, during, other, switchMs, total: samples.length };
}

function line(name, xs) {
  if (xs.length === 0) return `  ${name.padEnd(16)} (none)`;
  return `  ${name.padEnd(16)} p50 ${median(xs).toFixed(2).padStart(7)} ms  p99 ${percentile(xs, 99).toFixed(2).padStart(8)} ms  max ${Math.max(...xs).toFixed(1).padStart(7)} ms  n ${fmt(xs.length)}`;
}

console.log(`switch-latency: ${opt.keys} keys, ${opt.clients} clients on two processes, ${opt.switches} switches every ${opt['every-ms']} ms`);
for (const [name, args] of [['gentle (default)', []], ['--switch-drain-ms 0', ['--switch-drain-ms', '0']]]) {
  const r = await run(args);
  console.log(`${name}: ${fmt(r.total)} commands, ${r.errors} errors ${JSON.stringify(r.kinds)}, ${r.reconnects} reconnects; switch requests took ${r.switchMs.join(', ')} ms`);
  console.log(line('during a switch', r.during));
  console.log(line('between switches', r.other));
  if (r.other.length > 0 && r.during.length > 0) {
    console.log(`  ratio p99 during/between: ${(percentile(r.during, 99) / percentile(r.other, 99)).toFixed(1)}`);
  }
}
