/**
 * The composition root: a proxy with what its config asks for around it. The admin endpoint and
 * its metrics sit a layer above the proxy, which knows them only through StartOptions' hooks, so
 * no import runs from the proxy up to them. They are loaded only when asked for: prom-client and the
 * HTTP server cost a process without --admin start-up CPU for nothing.
 */
import type { ProxyConfig } from './config.js';
import { RehomeError } from './errors.js';
import { type Logger, RehomeProxy, type StartOptions } from './proxy/server.js';
import { describeEndpoint } from './upstream/endpoint.js';

/** Starts a proxy, with the admin endpoint and its metrics when config.admin asks for them. */
export async function startRehome(
  config: ProxyConfig,
  log: Logger = () => {},
  opts: Pick<StartOptions, 'preflight' | 'listening'> = {},
): Promise<RehomeProxy> {
  const admin = config.admin;
  if (admin === null) return RehomeProxy.start(config, log, opts);
  // The metrics observe the proxy from its first runtime on, before start returns it; they read
  // its figures only when /metrics is scraped, which needs the endpoint that the hook starts.
  const [{ startAdmin }, { ProxyMetrics }] = await Promise.all([import('./admin/http.js'), import('./admin/metrics.js')]);
  let proxy: RehomeProxy | null = null;
  const metrics = new ProxyMetrics(() => proxy!.figures());
  return RehomeProxy.start(config, log, {
    ...opts,
    observer: metrics,
    startAdmin: async (p) => {
      proxy = p;
      try {
        return await startAdmin(p, metrics, { ...admin, log });
      } catch (e) {
        throw new RehomeError('ELISTEN', `cannot listen on admin ${describeEndpoint(admin)}: ${(e as Error).message}`);
      }
    },
  });
}
