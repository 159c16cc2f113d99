#!/usr/bin/env node
/**
 * `rehome import` against loading the same file and copying it with a client, in the same run.
 *
 *   node bench/import.mjs [--keys N] [--size BYTES] [--methods auto,dump,copy]
 *
 *  1. an RDB of N strings of --size bytes, written by Debian's redis-server (SAVE).
 *  2. reference: a redis-server loads it (timed from spawn to the first answer that is not
 *     LOADING), then a pipelined DUMP/RESTORE client copy moves every key to the target.
 *  3. for each method: `rehome import --rdb FILE --target ... --move-method M`, wall time from
 *     spawn to exit (loading, the move, verify and the stop included) -> keys/s, and the ratio of
 *     its rate to the reference's (load + copy).
 */
import { spawn } from 'node:child_process';
import { copyFileSync } from 'node:fs';
import path from 'node:path';
import { performance } from 'node:perf_hooks';
import { Redis } from 'ioredis';
import { clientCopy, fill, flags, fmt, freePort, REHOME_CLI, sleep, startRedis, tmpDir } from './lib.mjs';

const opt = flags({ keys: 200000, size: 100, methods: 'auto,dump,copy' });
const N = opt.keys;

async function flush(port) {
  const c = new Redis({ port, host: '127.0.0.1' });
  await c.flushall();
  c.disconnect();
}

/** A redis-server that loads `file`; resolves with it and the seconds its load took. */
async function loadServer(file) {
  const dir = tmpDir();
  copyFileSync(file, path.join(dir, 'dump.rdb'));
  const port = await freePort();
  const t0 = performance.now();
  const child = spawn('redis-server', ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--logfile', ''], {
    stdio: 'ignore',
  });
  const c = new Redis({ port, host: '127.0.0.1', lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => 20 });
  c.on('error', () => {});
  for (;;) {
    const info = await c.info('persistence').catch(() => '');
    if (/^loading:0/m.test(info)) break;
    await sleep(10);
  }
  c.disconnect();
  return { port, child, secs: (performance.now() - t0) / 1000 };
}

function runImport(file, targetPort, method) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [REHOME_CLI, 'import', '--rdb', file, '--target', `redis://127.0.0.1:${targetPort}`, '--progress', 'off', '--move-method', method], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout.on('data', (b) => (out += b));
  child.stderr.on('data', (b) => (out += b));
  return new Promise((resolve, reject) =>
    child.once('exit', (code) => {
      if (code !== 0) reject(new Error(`rehome import exited ${code}: ${out.slice(-2000)}`));
      else resolve({ secs: (performance.now() - t0) / 1000, out });
    }),
  );
}

const writer = await startRedis('writer');
await fill(writer.port, N, { size: opt.size });
const w = new Redis({ port: writer.port, host: '127.0.0.1' });
await w.call('SAVE');
const dir = (await w.config('GET', 'dir'))[1];
w.disconnect();
const file = path.join(tmpDir(), 'dump.rdb');
copyFileSync(path.join(dir, 'dump.rdb'), file);
await writer.stop();

const target = await startRedis('target');
process.stdout.write(`import bench: ${N} keys of ${opt.size} bytes in an RDB of Debian's redis-server, into the same version\n`);
const loaded = await loadServer(file);
const ref = await clientCopy(loaded.port, target.port);
loaded.child.kill('SIGKILL');
const refSecs = loaded.secs + ref.secs;
process.stdout.write(
  `reference  load (${loaded.secs.toFixed(2)} s) + pipelined DUMP/RESTORE client copy (${ref.secs.toFixed(2)} s): ${fmt(N / refSecs)} keys/s (${refSecs.toFixed(2)} s)\n`,
);
for (const method of opt.methods.split(',')) {
  await flush(target.port);
  const r = await runImport(file, target.port, method);
  const said = /\((\d+) keys\/s/.exec(r.out)?.[1] ?? '?';
  process.stdout.write(
    `rehome     import --move-method ${method.padEnd(7)} ${fmt(N / r.secs)} keys/s wall (${r.secs.toFixed(2)} s; import's own figure for the move: ${said} keys/s)  ratio ${(N / r.secs / (N / refSecs)).toFixed(2)}x\n`,
  );
}
process.exit(0);
