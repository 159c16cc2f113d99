/**
 * Proxies with an admin endpoint on a free port, stopped after each test, and /status reads.
 */
import type { Redis } from 'ioredis';
import { afterEach, expect } from 'vitest';
import type { PairContext } from './fixture.js';
import { assertNoKeyInBoth } from './invariant.js';
import { startProxy, type ProxyHandle } from './proxy.js';
import { freePort } from './redis.js';
import { waitFor } from './util.js';

/** A proxy and the host:port of its admin endpoint. */
export interface AdminProxy {
  proxy: ProxyHandle;
  admin: string;
}

/**
 * Registers cleanup for the calling test file and returns a starter: a proxy (sweeper on unless
 * sweep is false, progress off unless args say otherwise) with an admin endpoint on a free port;
 * `spawn`: as a child process (test/helpers/proxy.ts).
 */
export function useAdminProxies(): (ctx: PairContext, args?: string[], sweep?: boolean, spawn?: boolean) => Promise<AdminProxy> {
  const running: ProxyHandle[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop('SIGTERM', 3_000)));
  });
  return async (ctx, args = [], sweep = true, spawn = false) => {
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const admin = `127.0.0.1:${await freePort()}`;
      try {
        const proxy = await startProxy({
          source: ctx.source,
          target: ctx.target,
          sweep,
          args: ['--admin', admin, ...(args.includes('--progress') ? [] : ['--progress', 'off']), ...args],
          spawn,
        });
        running.push(proxy);
        return { proxy, admin };
      } catch (e) {
        lastErr = e; // the free port may have been taken in between: try another
      }
    }
    throw lastErr;
  };
}

/** GET /status as JSON (asserts HTTP 200 and a JSON content type). */
export async function fetchStatus<T>(admin: string): Promise<T> {
  const r = await fetch(`http://${admin}/status`);
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/application\/json/);
  return (await r.json()) as T;
}

/** Waits until /status says phase 'drained'; includes the last status and stderr on timeout. */
export async function waitDrained<T extends { phase: string }>(ap: AdminProxy, timeoutMs = 20_000): Promise<T> {
  try {
    return await waitFor(
      async () => {
        const st = await fetchStatus<T>(ap.admin);
        return st.phase === 'drained' ? st : null;
      },
      'phase drained',
      timeoutMs,
      100,
    );
  } catch (e) {
    const st = await fetchStatus<T>(ap.admin).catch(() => null);
    throw new Error(`${(e as Error).message}\nlast status: ${JSON.stringify(st)}\nproxy stderr:\n${ap.proxy.stderr.slice(-4000)}`);
  }
}

/** assertNoKeyInBoth, with the proxies' stderr in the failure message. */
export async function noKeyInBoth(ctx: PairContext, proxies: AdminProxy[]): Promise<void> {
  await assertNoKeyInBoth(ctx.source, ctx.target).catch((e: Error) => {
    throw new Error(`${e.message}\n${proxies.map((p) => `proxy stderr:\n${p.proxy.stderr.slice(-3000)}`).join('\n')}`);
  });
}

/** SETs n string keys `${prefix}${i}` = `v-${db}-${i}` in `db` (pipelined); the client is left on db 0. */
export async function seedStrings(c: Redis, db: number, n: number, prefix = 'k:'): Promise<void> {
  await c.select(db);
  for (let i = 0; i < n; i += 500) {
    const p = c.pipeline();
    for (let j = i; j < Math.min(n, i + 500); j++) p.set(`${prefix}${j}`, `v-${db}-${j}`);
    await p.exec();
  }
  await c.select(0);
}

/** Checks that every `${prefix}${i}` of seedStrings() has its value (through `c`, on `db`). */
export async function expectStrings(c: Redis, db: number, n: number, prefix = 'k:'): Promise<void> {
  await c.select(db);
  for (let i = 0; i < n; i += 500) {
    const keys = Array.from({ length: Math.min(n, i + 500) - i }, (_, j) => `${prefix}${i + j}`);
    const vals = await c.mget(...keys);
    const bad = keys.filter((k, j) => vals[j] !== `v-${db}-${k.slice(prefix.length)}`);
    expect(bad.slice(0, 10), `db${db}: keys with a wrong or missing value`).toEqual([]);
  }
  await c.select(0);
}
