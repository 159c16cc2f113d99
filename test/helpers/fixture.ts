/**
 * Vitest fixture: one source + target pair per test file, both flushed and a fresh proxy (empty
 * known-absent cache) started before each test, the proxy stopped after each test.
 */
import { afterAll, afterEach, beforeAll, beforeEach } from 'vitest';
import { startProxy, type ProxyHandle } from './proxy.js';
import { flushAll, startPair, startRedis, stopAll, type RedisServer, type StartRedisOptions } from './redis.js';

export interface PairContext {
  readonly source: RedisServer;
  readonly target: RedisServer;
  readonly proxy: ProxyHandle;
  /** Starts an extra proxy on the same pair (stopped after the test); `sweep`: with its sweeper. */
  extraProxy(args?: string[], sweep?: boolean): Promise<ProxyHandle>;
  /** Replaces the current proxy with a fresh one (new cache); `spawn`: as a child process. */
  restartProxy(args?: string[], spawn?: boolean): Promise<ProxyHandle>;
}

export interface PairOptions {
  source?: StartRedisOptions;
  target?: StartRedisOptions;
  proxyArgs?: string[];
  /** Start the proxy before each test (default true). */
  autoProxy?: boolean;
  /** Flush both servers before each test (default true). */
  flush?: boolean;
  /** Run its proxies as child processes (test/helpers/proxy.ts: pids, signals). */
  spawn?: boolean;
}

export function usePair(opts: PairOptions = {}): PairContext {
  let source: RedisServer | undefined;
  let target: RedisServer | undefined;
  let proxy: ProxyHandle | undefined;
  const extras: ProxyHandle[] = [];

  beforeAll(async () => {
    const p = await startPair({
      ...(opts.source ? { source: opts.source } : {}),
      ...(opts.target ? { target: opts.target } : {}),
    });
    source = p.source;
    target = p.target;
  });
  afterAll(async () => {
    await stopAll(source, target);
  });
  beforeEach(async () => {
    if (!source!.running) await source!.restart({ keepData: false });
    if (!target!.running) await target!.restart({ keepData: false });
    if (opts.flush !== false) await flushAll(source!, target!);
    if (opts.autoProxy !== false) {
      proxy = await startProxy({ source: source!, target: target!, args: opts.proxyArgs ?? [], spawn: opts.spawn ?? false });
    }
  });
  afterEach(async () => {
    const all = [proxy, ...extras.splice(0)];
    proxy = undefined;
    await Promise.all(all.map((p) => p?.stop('SIGTERM', 3_000)));
  });

  return {
    get source() {
      return source!;
    },
    get target() {
      return target!;
    },
    get proxy() {
      if (!proxy) throw new Error('no proxy running in this test');
      return proxy;
    },
    async extraProxy(args?: string[], sweep = false) {
      const p = await startProxy({ source: source!, target: target!, sweep, args: args ?? opts.proxyArgs ?? [], spawn: opts.spawn ?? false });
      extras.push(p);
      return p;
    },
    async restartProxy(args?: string[], spawn = opts.spawn ?? false) {
      if (proxy) await proxy.stop('SIGTERM', 3_000);
      proxy = await startProxy({ source: source!, target: target!, args: args ?? opts.proxyArgs ?? [], spawn });
      return proxy;
    },
  };
}

/** A plain reference redis-server for the calling test file (started once, stopped after it). */
export function useReferenceRedis(): { readonly server: RedisServer } {
  let server: RedisServer | undefined;
  beforeAll(async () => {
    server = await startRedis();
  });
  afterAll(async () => {
    await stopAll(server);
  });
  return {
    get server() {
      return server!;
    },
  };
}

/**
 * Starts redis-servers for one test at a time: each one `server()` starts is stopped after the
 * test that started it. `binary` null is Debian's redis-server.
 */
export function useServers(): (binary?: string | null, args?: string[], more?: Pick<StartRedisOptions, 'username' | 'password'>) => Promise<RedisServer> {
  const open: RedisServer[] = [];
  afterEach(async () => {
    await stopAll(...open.splice(0));
  });
  return async (binary = null, args = [], more = {}) => {
    const s = await startRedis({ ...(binary ? { binary } : {}), args, ...more });
    open.push(s);
    return s;
  };
}
