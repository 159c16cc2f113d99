/**
 * `rehome import` (issue 15 item 5): RDB and AOF files written by real servers, loaded by a
 * throwaway server of a version that reads them, moved into the target, and checked byte for byte
 * against the server that wrote them, as it was before it saved. Files of other versions (Redis
 * 6.2, Redis 7.4 into Valkey 8) are in test/versions/import.test.ts (`npm run test:versions`).
 */
import { spawn } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { describe, expect, it } from 'vitest';
import { deadline, expectGone, expectSame, fingerprint, portOpen, runImport, seed, throwaway, useImport, type Held } from '../helpers/import.js';
import { CLI_PATH, runCli } from '../helpers/proxy.js';
import { REDIS_SERVER, trackProcess, type RedisServer } from '../helpers/redis.js';
import { BINARY, snapshot } from '../helpers/typed-data.js';
import { waitFor } from '../helpers/util.js';

const { server, scratch, rdbFrom } = useImport();

describe('rehome import', () => {
  it('--help names the command and its flags; the main --help lists it', async () => {
    const r = await runCli(['import', '--help']);
    expect(r.code).toBe(0);
    for (const f of ['--rdb FILE', '--aof DIR', '--target URL', '--server-bin PATH', '--allow-nonempty-target', '--move-method']) expect(r.stdout).toContain(f);
    const main = await runCli(['--help']);
    expect(main.stdout).toMatch(/rehome import --rdb FILE/);
  });

  it('a missing, unreadable or foreign file is a usage error (exit 2) naming the file; no server starts', async () => {
    const target = await server();
    const missing = await runCli(['import', '--rdb', path.join(scratch, 'nope.rdb'), '--target', target.url]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toMatch(/--rdb .*nope\.rdb: cannot read it \(ENOENT\)/);
    const junk = path.join(scratch, 'junk.rdb');
    writeFileSync(junk, 'hello, not an RDB');
    const foreign = await runCli(['import', '--rdb', junk, '--target', target.url]);
    expect(foreign.code).toBe(2);
    expect(foreign.stderr).toMatch(/not an RDB file/);
    const noInput = await runCli(['import', '--target', target.url]);
    expect(noInput.code).toBe(2);
    expect(noInput.stderr).toMatch(/give --rdb FILE or --aof DIR/);
    const noAof = await runCli(['import', '--aof', scratch, '--target', target.url]);
    expect(noAof.code).toBe(2);
    expect(noAof.stderr).toMatch(/no \*\.manifest file/);
    // A header is all the input check reads; the --server-bin checks come before any server starts.
    const header = path.join(scratch, 'header-only.rdb');
    writeFileSync(header, 'REDIS0010');
    const noBin = await runCli(['import', '--rdb', header, '--target', target.url, '--server-bin', path.join(scratch, 'no-server')]);
    expect(noBin.code).toBe(2);
    expect(noBin.stderr).toMatch(/--server-bin .*no-server: no such file/);
    const notBin = await runCli(['import', '--rdb', header, '--target', target.url, '--server-bin', '/bin/true']);
    expect(notBin.code).toBe(2);
    expect(notBin.stderr).toMatch(/--server-bin \/bin\/true: not a redis-server or valkey-server/);
    for (const r of [missing, foreign, noInput, noAof, noBin, notBin]) expect(r.stderr).not.toMatch(/loading/);
  });

  it('refuses a target that holds keys unless --allow-nonempty-target; then adds the file to them', async () => {
    const { file, held } = await rdbFrom(null);
    const target = await server();
    await target.client(0).set('already-here', 'x');
    const refused = await runImport(['--rdb', file], target);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/already holds 1 key \(db0 1\).*--allow-nonempty-target/);
    expect(refused.stderr).not.toMatch(/loading/);
    expect(await target.client(0).dbsize()).toBe(1);

    const ok = await runImport(['--rdb', file], target, ['--allow-nonempty-target']);
    expect(ok.code, ok.stderr).toBe(0);
    expect(await target.client(0).get('already-here')).toBe('x');
    await target.client(0).del('already-here');
    await expectSame(target, held, 1_000);
  }, 240_000);

  it('Redis 7.0 RDB -> Redis 7.0: every type, several dbs, binary keys; MIGRATE, TTLs within its transfer time', async () => {
    const { file, held } = await rdbFrom(null);
    const target = await server();
    const r = await runImport(['--rdb', file], target);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/\(RDB version 10\) with Redis 7\.0\.\d+ .*the oldest server here that reads RDB version 10/);
    expect(r.stderr).toMatch(/moves old -> new by migrate/);
    expect(r.stdout).toMatch(/imported .* keys\/s.*safe to cut over/);
    // MIGRATE sends a TTL relative to its own clock reading: the deadline moves by the transfer time.
    await expectSame(target, held, 1_000);
    await expectGone(r.stderr);
  }, 240_000);

  it('Redis 7.0 RDB -> Redis 7.0 by DUMP/RESTORE: TTLs to the millisecond', async () => {
    const { file, held } = await rdbFrom(null);
    const target = await server();
    const r = await runImport(['--rdb', file], target, ['--move-method', 'dump']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/moves old -> new by dump/);
    await expectSame(target, held, 0);
  }, 240_000);

  it('an AOF directory of Redis 7.0 (base RDB and incremental commands) -> Redis 7.0; the directory untouched', async () => {
    const s = await server(null, ['--appendonly', 'yes', '--appendfsync', 'always']);
    const held = await seed(s);
    await s.client(0).call('BGREWRITEAOF');
    // Written after the rewrite: these are only in the incremental file.
    const later: Held[] = [];
    const c = s.client(3);
    for (let i = 0; i < 20; i++) {
      const k = Buffer.from(`after-rewrite:${i}`);
      await c.set(k, `v${i}`, 'PXAT', Date.now() + 3_600_000 + i);
    }
    await waitRewritten(s);
    for (let i = 0; i < 20; i++) {
      const k = Buffer.from(`after-rewrite:${i}`);
      later.push({ db: 3, key: k, snap: await snapshot(c, k), deadline: await deadline(c, k) });
    }
    await s.stop();
    const dir = path.join(mkdtempSync(path.join(scratch, 'aof-')), 'appendonlydir');
    mkdirSync(dir);
    for (const n of readdirSync(path.join(s.dir, 'appendonlydir'))) copyFileSync(path.join(s.dir, 'appendonlydir', n), path.join(dir, n));
    expect(readdirSync(dir).some((n) => n.endsWith('.incr.aof'))).toBe(true);
    const target = await server();
    const before = fingerprint(dir);
    const r = await runImport(['--aof', dir], target, ['--move-method', 'dump']);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/AOF directory .*base .*RDB version 10.*1 incremental file/);
    expect(fingerprint(dir)).toBe(before);
    await expectSame(target, [...held, ...later], 0);
    await expectGone(r.stderr);
  }, 240_000);

  it('a single appendonly.aof of commands -> Redis 7.0', async () => {
    const file = path.join(mkdtempSync(path.join(scratch, 'aof1-')), 'appendonly.aof');
    const cmd = (...a: Array<string | Buffer>) =>
      Buffer.concat([Buffer.from(`*${a.length}\r\n`), ...a.flatMap((x) => [Buffer.from(`$${Buffer.byteLength(x)}\r\n`), Buffer.from(x), Buffer.from('\r\n')])]);
    const at = Date.now() + 3_600_000;
    writeFileSync(
      file,
      Buffer.concat([cmd('SELECT', '0'), cmd('SET', BINARY, BINARY), cmd('RPUSH', 'l', 'a', 'b'), cmd('SELECT', '4'), cmd('SET', 'x', 'y'), cmd('PEXPIREAT', 'x', String(at))]),
    );
    const target = await server();
    const r = await runImport(['--aof', file], target);
    expect(r.code, r.stderr).toBe(0);
    expect(r.stderr).toMatch(/AOF file \(commands\)/);
    expect(await target.client(0).getBuffer(BINARY)).toEqual(BINARY);
    expect(await target.client(0).lrange('l', 0, -1)).toEqual(['a', 'b']);
    expect(Number(await target.client(4).call('PEXPIRETIME', 'x'))).toBeGreaterThan(at - 1_000);
  }, 240_000);

  it('a truncated RDB: the server that reads it fails to load it; exit 1 with its words, nothing left behind', async () => {
    const { file } = await rdbFrom(null);
    const cut = path.join(mkdtempSync(path.join(scratch, 'cut-')), 'dump.rdb');
    writeFileSync(cut, readFileSync(file).subarray(0, 40_000));
    const target = await server();
    const before = importDirs();
    const r = await runImport(['--rdb', cut], target, ['--server-bin', REDIS_SERVER]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/Redis 7\.0\.\d+ could not load it: .*(Short read|Unexpected EOF|Internal error in RDB)/);
    expect(r.stderr).toMatch(/no server could load/);
    expect(importDirs()).toEqual(before);
    expect(await target.client(0).dbsize()).toBe(0);
  }, 120_000);

  it('import SIGKILLed mid-import (no handler runs): its server still goes; its leftover markers are dropped by the next import, or refused next to data', async () => {
    const file = await manyKeysRdb(20_000);
    const target = await server();
    const c = target.client(0);
    // A proxy-side move, so that moved keys leave markers, which nobody gives a TTL after a kill.
    const run = startImport(file, target, ['--sweep-rate', '500', '--move-method', 'dump']);
    await run.importing;
    await waitFor(async () => (await c.keys('__rehome:*')).length > 0, 'a moved key', 60_000);
    const t = throwaway(run.stderr());
    run.proc.kill('SIGKILL');
    await run.exit;
    await waitFor(async () => !(await portOpen(t.port)) && !existsSync(t.dir), `the throwaway server on ${t.port} gone and ${t.dir} removed`, 30_000);
    expect((await c.keys('__rehome:m*')).length).toBeGreaterThan(0);

    // Next to data, markers may be another migration's: refused, nothing written.
    const refused = await runImport(['--rdb', file], target, ['--allow-nonempty-target', '--on-conflict', 'source']);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/holds rehome's move markers .*next to data/);

    // Without data they are leftovers: dropped, and every key arrives. Kept, a leftover marker
    // makes its key's proxy-side publish release it unpublished, and verify can't see the loss
    // (the source is empty, no key in both): this run lost those keys before the drop existed.
    const moved = await c.keys('k*');
    expect(moved.length).toBeGreaterThan(0);
    await c.del(...moved);
    const again = await runImport(['--rdb', file], target, ['--move-method', 'dump']);
    expect(again.code, again.stderr).toBe(0);
    expect(again.stderr).toMatch(/dropped \d+ move markers? left in the target/);
    expect(await c.dbsize()).toBe(20_000);
    for (let i = 0; i < 20_000; i += 997) expect(await c.get(`k${i}`)).toBe(`v${i}`);
  }, 180_000);

  it('the throwaway server dying mid-import: exit 1 saying so, not a sweeper retrying forever', async () => {
    const file = await manyKeysRdb(20_000);
    const target = await server();
    const run = startImport(file, target, ['--sweep-rate', '500']);
    await run.importing;
    const t = throwaway(run.stderr());
    const c = new Redis({ port: t.port, host: '127.0.0.1', maxRetriesPerRequest: 0 });
    c.on('error', () => {});
    await c.call('SHUTDOWN', 'NOSAVE').catch(() => {});
    c.disconnect();
    expect(await run.exit).toBe(1);
    expect(run.stderr()).toMatch(/the throwaway server exited before every key moved/);
    expect(existsSync(t.dir)).toBe(false);
  }, 120_000);

  it('Ctrl-C mid-import stops the throwaway server and removes its directory; moved keys are whole, no move marker left', async () => {
    const file = await manyKeysRdb(20_000);
    const target = await server();
    // A proxy-side move: each moved key leaves a marker in the target while the import runs.
    const run = startImport(file, target, ['--sweep-rate', '500', '--move-method', 'dump']);
    await run.importing;
    // Keys and their markers in the target (at 500 keys/s the import has 40 s to go).
    await waitFor(async () => (await target.client(0).keys('__rehome:*')).length > 0, 'a moved key', 60_000);
    run.proc.kill('SIGINT');
    expect(await run.exit).toBe(130);
    expect(run.stderr()).toMatch(/SIGINT: stopping the import/);
    await expectGone(run.stderr());
    const c = target.client(0);
    const n = await c.dbsize();
    expect(n).toBeGreaterThan(0);
    expect(n).toBeLessThan(20_000);
    for (const k of (await c.keys('k*')).slice(0, 500)) expect(await c.get(k)).toBe(`v${k.slice(1)}`);
    expect(await c.keys('__rehome:*')).toEqual([]);
  }, 120_000);
});

/** The throwaway servers' directories now in the temp dir. */
function importDirs(): string[] {
  return readdirSync(os.tmpdir()).filter((n) => n.startsWith('rehome-import-') && !n.startsWith('rehome-import-test-')).sort();
}

/** An RDB of `n` strings k<i> = v<i> in db 0. */
async function manyKeysRdb(n: number): Promise<string> {
  const s = await server();
  const c = s.client(0);
  for (let i = 0; i < n; i += 1_000) {
    const args: string[] = [];
    for (let j = i; j < Math.min(n, i + 1_000); j++) args.push(`k${j}`, `v${j}`);
    await c.mset(...args);
  }
  await s.stop({ save: true });
  const file = path.join(mkdtempSync(path.join(scratch, 'many-')), 'dump.rdb');
  copyFileSync(path.join(s.dir, 'dump.rdb'), file);
  return file;
}

/** A running import: its process, its stderr so far, "importing" seen, its exit code. */
function startImport(file: string, target: RedisServer, more: string[]) {
  const proc = spawn(process.execPath, [CLI_PATH, 'import', '--rdb', file, '--target', target.url, '--progress', 'log', ...more], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  trackProcess(proc);
  let stderr = '';
  const importing = new Promise<void>((resolve) =>
    proc.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr += d;
      if (/importing \d+ keys/.test(stderr)) resolve();
    }),
  );
  const exit = new Promise<number | null>((resolve) => proc.once('exit', (code) => resolve(code)));
  return { proc, importing, exit, stderr: () => stderr };
}

/** Waits until the AOF rewrite started by BGREWRITEAOF has finished. */
async function waitRewritten(s: RedisServer): Promise<void> {
  const c = s.client(0);
  for (;;) {
    const info = await c.info('persistence');
    if (/aof_rewrite_in_progress:0/.test(info) && /aof_rewrite_scheduled:0/.test(info)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
}
