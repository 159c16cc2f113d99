#!/usr/bin/env node
/**
 * Profiles rehome on the steady-state data path: an empty source, the target, rehome started with
 * `node --cpu-prof`, every key of `-r` touched once (known-absent cache warm), then redis-benchmark
 * SET and GET at pipeline 1 and 16. rehome is stopped with SIGTERM, which writes the profile, and
 * the self time by function is printed (bench/profile-summary.mjs).
 *
 *   node bench/profile.mjs [--requests 300000] [--clients 50] [--random 100000] [--pipeline 1,16] [--tests set,get] [--dir DIR] [--args '--workers 1']
 */
import { execFileSync, spawn } from 'node:child_process';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { Redis } from 'ioredis';
import { flags, ROOT, startRedis, startRehome, tmpDir } from './lib.mjs';

const opt = flags({ requests: 300000, clients: 50, random: 100000, pipeline: '1,16', tests: 'set,get', dir: '', args: '' });
const dir = opt.dir || tmpDir();

function bench(port, test, pipeline) {
  return new Promise((resolve, reject) => {
    const args = ['-h', '127.0.0.1', '-p', String(port), '-c', String(opt.clients), '-n', String(opt.requests),
      '-r', String(opt.random), '-d', '100', '-t', test, '-P', String(pipeline), '--csv'];
    const c = spawn('redis-benchmark', args, { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    c.stdout.on('data', (b) => (out += b));
    c.on('exit', (code) => (code === 0 ? resolve(out.trim().split('\n').pop()) : reject(new Error(`redis-benchmark exited ${code}`))));
  });
}

const source = await startRedis('source');
const target = await startRedis('target');
const rh = await startRehome({
  source: source.port,
  target: target.port,
  args: ['--no-sweep', ...(opt.args ? opt.args.split(/\s+/) : [])],
  nodeArgs: ['--cpu-prof', '--cpu-prof-dir', dir],
});
const c = new Redis({ port: rh.port, host: '127.0.0.1' });
for (let s = 0; s < opt.random; s += 1000) {
  const p = c.pipeline();
  for (let i = s; i < Math.min(opt.random, s + 1000); i++) p.get(`key:${String(i).padStart(12, '0')}`);
  await p.exec();
}
c.disconnect();
// Profile samples before this point (start-up, warm-up) are left out of the summary.
const fromMs = Date.now() - rh.spawnedAt;
for (const pl of String(opt.pipeline).split(',')) {
  for (const t of opt.tests.split(',')) console.log(`${t.toUpperCase()} -P ${pl}: ${await bench(rh.port, t, Number(pl))}`);
}
await rh.stop();
const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
for (const f of files) {
  const p = path.join(dir, f);
  console.log(`\nprofile: ${p}`);
  console.log(execFileSync(process.execPath, [path.join(ROOT, 'bench', 'profile-summary.mjs'), p, '--top', '25', '--from-ms', String(fromMs)], { cwd: ROOT }).toString());
}
process.exit(0);
