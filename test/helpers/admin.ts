/**
 * Proxies with an admin endpoint on a free port, stopped after each test, and /status reads.
 */
import { afterEach, expect } from 'vitest';
import type { PairContext } from './fixture.js';
import { startProxy, type ProxyHandle } from './proxy.js';
import { freePort } from './redis.js';

/** A proxy and the host:port of its admin endpoint. */
export interface AdminProxy {
  proxy: ProxyHandle;
  admin: string;
}

/**
 * Registers cleanup for the calling test file and returns a starter: a proxy (sweeper on unless
 * sweep is false, progress off unless args say otherwise) with an admin endpoint on a free port.
 */
export function useAdminProxies(): (ctx: PairContext, args?: string[], sweep?: boolean) => Promise<AdminProxy> {
  const running: ProxyHandle[] = [];
  afterEach(async () => {
    await Promise.all(running.splice(0).map((p) => p.stop('SIGTERM', 3_000)));
  });
  return async (ctx, args = [], sweep = true) => {
    let lastErr: unknown;
    for (let attempt = 0; attempt < 3; attempt++) {
      const admin = `127.0.0.1:${await freePort()}`;
      try {
        const proxy = await startProxy({
          source: ctx.source,
          target: ctx.target,
          sweep,
          args: ['--admin', admin, ...(args.includes('--progress') ? [] : ['--progress', 'off']), ...args],
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
