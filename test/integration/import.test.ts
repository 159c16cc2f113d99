/**
 * `rehome import` (issue 15 item 5): RDB and AOF files written by real servers, loaded by a
 * throwaway server of a version that reads them, moved into the target, and checked byte for byte
 * against the server that wrote them, as it was before it saved. Version binaries come from
 * REHOME_SERVERS; a case whose binary is missing skips with a one-line notice.
 */
import { spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Redis } from 'ioredis';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { CLI_PATH, runCli } from '../helpers/proxy.js';
import { startRedis, stopAll, trackProcess, type RedisServer } from '../helpers/redis.js';
import { serverBinaries, serverBinary } from '../helpers/servers.js';
import { BINARY, comparable, seedEveryType, snapshot } from '../helpers/typed-data.js';
import { seedTypes } from '../helpers/moves.js';
import { waitFor } from '../helpers/util.js';

const open: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...open.splice(0));
});
const scratch = mkdtempSync(path.join(os.tmpdir(), 'rehome-import-test-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

async function server(binary: string | null = null, args: string[] = []): Promise<RedisServer> {
  const s = await startRedis({ ...(binary ? { binary } : {}), args });
  open.push(s);
  return s;
}

/** One key as the server that wrote it held it: everything observable, and its absolute expiry. */
interface Held {
  db: number;
  key: Buffer;
  snap: Record<string, unknown>;
  /** PEXPIRETIME (now + PTTL on 6.2), -1 without a TTL. */
  deadline: number;
}

async function deadline(c: Redis, k: Buffer): Promise<number> {
  const pttl = await c.pttl(k);
  if (pttl < 0) return -1;
  try {
    return Number(await c.call('PEXPIRETIME', k));
  } catch {
    return Date.now() + pttl;
  }
}

/**
 * Writes every type (binary names and values, empty-ish cases) in db 0, keys with TTLs to the
 * millisecond in db 2, binary keys with TTLs in db 7; returns each key as the server holds it.
 */
async function seed(s: RedisServer): Promise<Held[]> {
  const held: Held[] = [];
  const record = async (db: number, keys: Buffer[]) => {
    const c = s.client(db);
    for (const key of keys) held.push({ db, key, snap: await snapshot(c, key), deadline: await deadline(c, key) });
  };
  await record(0, await seedEveryType(s.client(0)));
  await record(2, await seedTypes(s.client(2)));
  const c7 = s.client(7);
  const bin: Buffer[] = [];
  for (let i = 0; i < 50; i++) {
    const k = Buffer.concat([BINARY, Buffer.from(`:${i}`)]);
    await c7.set(k, Buffer.concat([Buffer.from(`v${i}`), BINARY]), 'PXAT', Date.now() + 7_200_000 + i * 13);
    bin.push(k);
  }
  await record(7, bin);
  return held;
}

/** Every key in the target as it was in the server that wrote the file; TTLs within `tolMs`. */
async function expectSame(target: RedisServer, held: Held[], tolMs: number): Promise<void> {
  for (const h of held) {
    const c = target.client(h.db);
    const [want, got] = comparable(h.snap, await snapshot(c, h.key));
    expect(got, `db${h.db} ${h.key.toString('hex')}`).toEqual(want);
    const d = await deadline(c, h.key);
    if (h.deadline < 0) expect(d, `db${h.db} ${h.key.toString('hex')} has no TTL`).toBe(-1);
    else expect(Math.abs(d - h.deadline), `db${h.db} ${h.key.toString('hex')} deadline ${d} vs ${h.deadline}`).toBeLessThanOrEqual(tolMs);
  }
  const per = new Map<number, number>();
  for (const h of held) if (h.snap.type !== 'none') per.set(h.db, (per.get(h.db) ?? 0) + 1);
  for (const [db, n] of per) expect(await target.client(db).dbsize(), `db${db} holds only the file's keys`).toBe(n);
}

/** Hash of every file under `p` (a file or a directory), to show import wrote none of them. */
function fingerprint(p: string): string {
  const h = createHash('sha256');
  const walk = (q: string) => {
    if (readdirSafe(q) === null) {
      h.update(q).update(readFileSync(q));
      return;
    }
    for (const n of readdirSafe(q)!.sort()) walk(path.join(q, n));
  };
  walk(p);
  return h.digest('hex');
}

function readdirSafe(p: string): string[] | null {
  try {
    return readdirSync(p);
  } catch {
    return null;
  }
}

/** Seeds a server of `binary`, saves it, stops it; the RDB (copied out) and what it held. */
async function rdbFrom(binary: string | null): Promise<{ file: string; held: Held[] }> {
  const s = await server(binary);
  const held = await seed(s);
  await s.stop({ save: true });
  const dir = mkdtempSync(path.join(scratch, 'rdb-'));
  const file = path.join(dir, 'dump.rdb');
  copyFileSync(path.join(s.dir, 'dump.rdb'), file);
  return { file, held };
}

/** Imports and checks the exit code and that nothing was written next to the input. */
async function runImport(input: string[], target: RedisServer, more: string[] = [], env: Record<string, string> = {}) {
  const watched = input[1]!;
  const before = fingerprint(path.dirname(watched));
  const r = await runCli(['import', ...input, '--target', target.url, '--progress', 'log', ...more], 180_000, env);
  expect(fingerprint(path.dirname(watched)), 'the input and its directory are untouched').toBe(before);
  return r;
}

/** The throwaway server's port and directory, from the "loaded ... on 127.0.0.1:P (dir D)" line. */
function throwaway(stderr: string): { port: number; dir: string } {
  const m = /throwaway server on 127\.0\.0\.1:(\d+) \(dir (\S+)\)/.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return { port: Number(m![1]), dir: m![2]! };
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

async function expectGone(stderr: string): Promise<void> {
  const t = throwaway(stderr);
  expect(existsSync(t.dir), `${t.dir} removed`).toBe(false);
  expect(await portOpen(t.port), `throwaway server on ${t.port} stopped`).toBe(false);
}

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

  const v74 = serverBinaries('redis-7.4.1', 'valkey-8.0.1');
  describe.skipIf(!v74)('Redis 7.4.1 RDB (version 12)', () => {
    it('-> Valkey 8.0.1: loaded by Redis 7.4.1, moved by the type-aware copy, TTLs to the ms', async () => {
      const { file, held } = await rdbFrom(v74!['redis-7.4.1']);
      const target = await server(v74!['valkey-8.0.1']);
      const r = await runImport(['--rdb', file], target);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/\(RDB version 12\) with Redis 7\.4\.1/);
      expect(r.stderr).toMatch(/moves old -> new by copy/);
      await expectSame(target, held, 0);
      await expectGone(r.stderr);
    }, 240_000);

    it('-> Valkey 8.0.1 with a hash whose fields have TTLs (Valkey has none): refused before any key moves, the key named', async () => {
      const s = await server(v74!['redis-7.4.1']);
      await s.client(0).set('plain', 'v');
      await s.client(0).hset('fields-ttl', 'a', '1', 'b', '2');
      await s.client(0).call('HPEXPIRE', 'fields-ttl', 3_600_000, 'FIELDS', 1, 'a');
      await s.stop({ save: true });
      const file = path.join(mkdtempSync(path.join(scratch, 'hfe-')), 'dump.rdb');
      copyFileSync(path.join(s.dir, 'dump.rdb'), file);
      const target = await server(v74!['valkey-8.0.1']);
      const r = await runImport(['--rdb', file], target);
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/FAIL .*can't hold[\s\S]*'fields-ttl'/);
      expect(await target.client(0).dbsize()).toBe(0);
      await expectGone(r.stderr);
    }, 240_000);

    it('with only Redis 7.0 here: fails naming the version it needs and what was found, before any server starts', async () => {
      const { file } = await rdbFrom(v74!['redis-7.4.1']);
      const target = await server();
      const empty = mkdtempSync(path.join(scratch, 'no-servers-'));
      const r = await runImport(['--rdb', file], target, [], { REHOME_SERVERS: empty, PATH: path.dirname(serverBinary('redis-7.0')!) });
      expect(r.code).toBe(1);
      expect(r.stderr).toMatch(/no server here reads RDB version 12 .*found Redis 7\.0\.\d+ .*reads RDB up to version 10.*--server-bin/);
      expect(r.stderr).not.toMatch(/loading/);
      const forced = await runImport(['--rdb', file], target, ['--server-bin', serverBinary('redis-7.0')!]);
      expect(forced.code).toBe(1);
      expect(forced.stderr).toMatch(/--server-bin Redis 7\.0\.\d+ .* cannot read RDB version 12/);
      expect(await target.client(0).dbsize()).toBe(0);
    }, 240_000);
  });

  const v62 = serverBinaries('redis-6.2.16');
  describe.skipIf(!v62)('Redis 6.2 RDB (version 9)', () => {
    it('-> Redis 7.0: loaded by Redis 6.2 (the oldest that reads it)', async () => {
      const { file, held } = await rdbFrom(v62!['redis-6.2.16']);
      const target = await server();
      const r = await runImport(['--rdb', file], target);
      expect(r.code, r.stderr).toBe(0);
      expect(r.stderr).toMatch(/\(RDB version 9\) with Redis 6\.2\.16 .*also able: Redis 7\.0/);
      // 6.2 has no PEXPIRETIME: the deadlines were read as now + PTTL.
      await expectSame(target, held, 1_000);
    }, 240_000);
  });

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
    const r = await runImport(['--rdb', cut], target, ['--server-bin', serverBinary('redis-7.0')!]);
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
