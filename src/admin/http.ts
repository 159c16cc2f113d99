/**
 * The admin endpoint: GET /status (JSON), GET /metrics (Prometheus text), and sweeper control:
 * POST /sweeper/pause, POST /sweeper/resume, POST /sweeper/rate?keys_per_sec=N, and the
 * fleet-wide phase switch POST /phase?to=hold|migrate|reverse.
 *
 * It sits above the proxy and knows it only as the AdminSubject below, so the proxy never
 * imports this file: the composition root (src/start.ts) hands it the running proxy.
 */
import http from 'node:http';
import type net from 'node:net';
import type { Sweeper } from '../migration/sweeper.js';
import { SWITCHABLE, type SwitchablePhase } from '../phase/phase.js';
import type { ProxyMetrics } from './metrics.js';

/** What the endpoint reads and drives: a running proxy. */
export interface AdminSubject {
  /** Where the migration stands: the /status body. */
  status(): Record<string, unknown>;
  /** The fleet-wide phase switch; rejects with the reason it was refused. */
  switchPhase(to: SwitchablePhase): Promise<unknown>;
  /** The current phase's migration: read on every request, since a switch replaces it. */
  readonly migration: { readonly sweeper: SweeperControl | null };
}

/** The sweeper as the operator controls it. */
export type SweeperControl = Pick<Sweeper, 'pause' | 'resume' | 'setRate' | 'state' | 'pauseReason' | 'opts'>;

/** A listening admin endpoint. */
export interface AdminServer {
  address(): { host: string; port: number };
  close(): void;
}

export function startAdmin(subject: AdminSubject, metrics: ProxyMetrics, host: string, port: number): Promise<AdminServer> {
  const server = http.createServer((req, res) => {
    void handle(subject, metrics, req, res).catch((e: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${e.message}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () =>
      resolve({
        address: () => {
          const a = server.address() as net.AddressInfo;
          return { host: a.address, port: a.port };
        },
        close: () => server.close(),
      }),
    );
  });
}

function json(res: http.ServerResponse, code: number, body: unknown): void {
  res.writeHead(code, { 'content-type': 'application/json' });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

async function handle(subject: AdminSubject, metrics: ProxyMetrics, req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
  const url = new URL(req.url ?? '/', 'http://admin');
  const sw = subject.migration.sweeper;
  if (req.method === 'GET' && url.pathname === '/status') return json(res, 200, subject.status());
  if (req.method === 'GET' && url.pathname === '/metrics') {
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(await metrics.registry.metrics());
    return;
  }
  if (req.method === 'POST' && url.pathname === '/phase') {
    const to = url.searchParams.get('to') ?? '';
    if (!(SWITCHABLE as readonly string[]).includes(to)) return json(res, 400, { error: 'to must be hold, migrate or reverse' });
    try {
      const r = await subject.switchPhase(to as SwitchablePhase);
      return json(res, 200, r);
    } catch (e) {
      return json(res, 409, { error: (e as Error).message });
    }
  }
  if (req.method === 'POST' && url.pathname.startsWith('/sweeper/')) {
    if (!sw) return json(res, 409, { error: 'the sweeper is disabled (--no-sweep)' });
    const what = url.pathname.slice('/sweeper/'.length);
    if (what === 'pause') sw.pause('paused by operator');
    else if (what === 'resume') sw.resume();
    else if (what === 'rate') {
      const n = Number(url.searchParams.get('keys_per_sec'));
      if (!Number.isInteger(n) || n < 0) return json(res, 400, { error: 'keys_per_sec must be an integer >= 0 (0: no limit)' });
      sw.setRate(n);
    } else return json(res, 404, { error: `unknown sweeper action '${what}'` });
    return json(res, 200, { sweeper: sw.state, pause_reason: sw.pauseReason || null, rate_limit: sw.opts.rate || null });
  }
  json(res, 404, { error: 'GET /status, GET /metrics, POST /sweeper/pause|resume|rate?keys_per_sec=N, POST /phase?to=hold|migrate|reverse' });
}
