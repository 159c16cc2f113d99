/**
 * `npm run demo`: the main job on an embedded default. Starts two throwaway redis-servers (old and
 * new) on free loopback ports, fills the old one with every data type in several dbs, starts rehome
 * in front of them, runs a live read/write workload through it while every key is moved, then
 * checks that the old server is empty, that no key is in both, and that every value survived.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { buildConfig } from './config.js';
import { RehomeProxy } from './proxy/server.js';

const KEYS_PER_DB = Number(process.env.REHOME_DEMO_KEYS ?? 20_000);
const DBS = [0, 1, 2];

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(p));
    });
  });
}

const children: ChildProcess[] = [];
let workdir = '';

function cleanup(): void {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (workdir) rmSync(workdir, { recursive: true, force: true });
}

async function startRedis(name: string): Promise<{ port: number; client: (db?: number) => Redis }> {
  const port = await freePort();
  const dir = join(workdir, name);
  const proc = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', workdir, '--logfile', `${dir}.log`], { stdio: 'ignore' });
  children.push(proc);
  for (let i = 0; i < 100; i++) {
    const c = new Redis({ port, lazyConnect: true, retryStrategy: () => null, maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    try {
      await c.connect();
      await c.ping();
      c.disconnect();
      break;
    } catch {
      c.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  return { port, client: (db = 0) => new Redis({ port, db }) };
}

async function fill(r: Redis, db: number): Promise<void> {
  const p = r.pipeline();
  for (let i = 0; i < KEYS_PER_DB; i++) {
    const k = `d${db}:${i}`;
    switch (i % 6) {
      case 0: p.set(`${k}:str`, `value-${i}`); break;
      case 1: p.rpush(`${k}:list`, 'a', 'b', String(i)); break;
      case 2: p.hset(`${k}:hash`, 'f1', 'v1', 'n', String(i)); break;
      case 3: p.sadd(`${k}:set`, 'x', 'y', String(i)); break;
      case 4: p.zadd(`${k}:zset`, 1, 'one', i, 'n'); break;
      case 5: p.xadd(`${k}:stream`, '*', 'n', String(i)); break;
    }
    if (i % 3 === 0) p.expire(`${k}:${['str', 'list', 'hash', 'set', 'zset', 'stream'][i % 6]}`, 3600);
    if (i % 1000 === 999) {
      await p.exec();
    }
  }
  await p.exec();
}

function pct(sorted: number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

async function main(): Promise<void> {
  if (spawnSync('redis-server', ['--version']).error) {
    console.error('demo: redis-server is not installed; on Debian: apt-get install -y redis-server');
    process.exit(1);
  }
  workdir = mkdtempSync(join(tmpdir(), 'rehome-demo-'));
  const t0 = Date.now();
  const [oldS, newS] = await Promise.all([startRedis('old'), startRedis('new')]);
  console.log(`old redis on 127.0.0.1:${oldS.port}, new redis on 127.0.0.1:${newS.port}`);
  const filler = oldS.client();
  for (const db of DBS) {
    await filler.select(db);
    await fill(filler, db);
  }
  filler.disconnect();
  const total = KEYS_PER_DB * DBS.length;
  console.log(`filled the old server with ${total} keys (strings, lists, hashes, sets, zsets, streams; a third with TTLs) in dbs ${DBS.join(', ')}`);

  const proxy = await RehomeProxy.start(
    buildConfig({
      listen: '127.0.0.1:0',
      source: `redis://127.0.0.1:${oldS.port}`,
      target: `redis://127.0.0.1:${newS.port}`,
    }),
  );
  const pport = proxy.address().port;
  console.log(`rehome listening on 127.0.0.1:${pport}; applications now talk to it; the sweeper drains the rest`);
  const tMig = Date.now();

  // Live workload for the whole migration: readers and writers on random keys (many of them
  // still in the old server, so they move on first touch) and counters.
  const lat: number[] = [];
  let ops = 0;
  let errors = 0;
  let running = true;
  const workers = Array.from({ length: 4 }, async (_, w) => {
    const db = DBS[w % DBS.length]!;
    const c = new Redis({ port: pport, db });
    while (running) {
      const i = Math.floor(Math.random() * KEYS_PER_DB);
      const t = process.hrtime.bigint();
      try {
        if (i % 6 === 0 && Math.random() < 0.5) await c.append(`d${db}:${i}:str`, '');
        else await c.exists(`d${db}:${i}:str`);
        await c.incr(`counter:${w}`);
        ops += 2;
      } catch {
        errors++;
      }
      lat.push(Number(process.hrtime.bigint() - t) / 1e6);
    }
    c.disconnect();
  });
  const m = proxy.migration;
  const progress = setInterval(() => {
    const done = Math.max(0, m.initialKeys - m.remainingTotal);
    process.stdout.write(`\r  moved ${done}/${m.initialKeys} keys  (${Math.round(m.rate)} keys/s)   `);
  }, 250);
  await new Promise<void>((resolve) => m.onDrained(resolve));
  clearInterval(progress);
  process.stdout.write(`\r  moved ${m.initialKeys}/${m.initialKeys} keys in ${((Date.now() - tMig) / 1000).toFixed(1)} s            \n`);
  // Keep the workload going briefly on the drained (pass-through) proxy too.
  await new Promise((r) => setTimeout(r, 500));
  running = false;
  await Promise.all(workers);
  const toucher = new Redis({ port: pport });

  // Verify: old empty, nothing in both, values intact.
  const oldC = oldS.client();
  const newC = newS.client();
  let leftover = 0;
  let inBoth = 0;
  let bad = 0;
  for (const db of DBS) {
    await oldC.select(db);
    await newC.select(db);
    leftover += await oldC.dbsize();
    let cursor = '0';
    do {
      const [next, keys] = await oldC.scan(cursor, 'COUNT', 1000);
      cursor = next;
      for (const k of keys) if (await newC.exists(k)) inBoth++;
    } while (cursor !== '0');
    await toucher.select(db);
    for (let i = 0; i < KEYS_PER_DB; i += 997) {
      if (i % 6 === 0) {
        const v = await toucher.get(`d${db}:${i}:str`);
        if (v !== `value-${i}`) bad++;
      }
    }
  }
  toucher.disconnect();
  oldC.disconnect();
  newC.disconnect();
  await proxy.close(1000);
  const st = proxy.mover.stats;
  lat.sort((a, b) => a - b);
  console.log('');
  console.log(`done in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  console.log(`  keys moved: ${st.keysMovedOnTouch} on first touch, ${st.keysMovedBySweeper} by the sweeper (${st.migrateCalls} MIGRATE calls)`);
  console.log(`  workload: ${ops} operations, ${errors} errors, p50 ${pct(lat, 0.5).toFixed(2)} ms, p99 ${pct(lat, 0.99).toFixed(2)} ms`);
  console.log(`  verify: keys left in old ${leftover}, keys in both ${inBoth}, wrong values ${bad}`);
  const ok = leftover === 0 && inBoth === 0 && bad === 0 && errors === 0;
  console.log(ok ? 'VERIFIED: the old server is empty and every value is on the new one' : 'FAILED');
  cleanup();
  process.exit(ok ? 0 : 1);
}

process.on('SIGINT', () => {
  cleanup();
  process.exit(130);
});
process.on('SIGTERM', () => {
  cleanup();
  process.exit(143);
});
main().catch((e: Error) => {
  console.error(`demo: ${e.message}`);
  cleanup();
  process.exit(1);
});
