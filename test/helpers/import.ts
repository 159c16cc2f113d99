/**
 * What the `rehome import` tests share: servers seeded with every type and saved to an RDB, the
 * import run with a check that it wrote nothing next to its input, and the checks after it (every
 * key as the server that wrote the file held it; the throwaway server gone).
 */
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { Redis } from 'ioredis';
import { afterAll, expect } from 'vitest';
import { useServers } from './fixture.js';
import { seedTypes } from './moves.js';
import { runCli } from './proxy.js';
import type { RedisServer } from './redis.js';
import { BINARY, comparable, seedEveryType, snapshot } from './typed-data.js';

/** One key as the server that wrote it held it: everything observable, and its absolute expiry. */
export interface Held {
  db: number;
  key: Buffer;
  snap: Record<string, unknown>;
  /** PEXPIRETIME (now + PTTL on 6.2), -1 without a TTL. */
  deadline: number;
}

export async function deadline(c: Redis, k: Buffer): Promise<number> {
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
export async function seed(s: RedisServer): Promise<Held[]> {
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
export async function expectSame(target: RedisServer, held: Held[], tolMs: number): Promise<void> {
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
export function fingerprint(p: string): string {
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

/** Imports and checks the exit code and that nothing was written next to the input. */
export async function runImport(input: string[], target: RedisServer, more: string[] = [], env: Record<string, string> = {}) {
  const watched = input[1]!;
  const before = fingerprint(path.dirname(watched));
  const r = await runCli(['import', ...input, '--target', target.url, '--progress', 'log', ...more], 180_000, env);
  expect(fingerprint(path.dirname(watched)), 'the input and its directory are untouched').toBe(before);
  return r;
}

/** The throwaway server's port and directory, from the "loaded ... on 127.0.0.1:P (dir D)" line. */
export function throwaway(stderr: string): { port: number; dir: string } {
  const m = /throwaway server on 127\.0\.0\.1:(\d+) \(dir (\S+)\)/.exec(stderr);
  expect(m, stderr).not.toBeNull();
  return { port: Number(m![1]), dir: m![2]! };
}

export function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1' });
    s.on('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.on('error', () => resolve(false));
  });
}

export async function expectGone(stderr: string): Promise<void> {
  const t = throwaway(stderr);
  expect(existsSync(t.dir), `${t.dir} removed`).toBe(false);
  expect(await portOpen(t.port), `throwaway server on ${t.port} stopped`).toBe(false);
}

export interface ImportScope {
  /** A redis-server (`binary` null: Debian's), stopped after the test. */
  server(binary?: string | null, args?: string[]): Promise<RedisServer>;
  /** The calling file's scratch directory (under the temp dir, named rehome-import-test-*), removed after it. */
  readonly scratch: string;
  /** Seeds a server of `binary`, saves it, stops it; the RDB (copied out) and what it held. */
  rdbFrom(binary: string | null): Promise<{ file: string; held: Held[] }>;
}

/** Servers and a scratch directory for the calling test file. */
export function useImport(): ImportScope {
  const server = useServers();
  const scratch = mkdtempSync(path.join(os.tmpdir(), 'rehome-import-test-'));
  afterAll(() => rmSync(scratch, { recursive: true, force: true }));
  return {
    server: (binary = null, args = []) => server(binary, args),
    scratch,
    async rdbFrom(binary) {
      const s = await server(binary);
      const held = await seed(s);
      await s.stop({ save: true });
      const dir = mkdtempSync(path.join(scratch, 'rdb-'));
      const file = path.join(dir, 'dump.rdb');
      copyFileSync(path.join(s.dir, 'dump.rdb'), file);
      return { file, held };
    },
  };
}
