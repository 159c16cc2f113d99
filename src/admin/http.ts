/**
 * The admin endpoint: the dashboard page GET / (src/admin/dashboard.ts) and the per-second client
 * latency behind its chart GET /latency, GET /status (JSON), GET /metrics (Prometheus text), the
 * probes GET /healthz (the process is up) and GET /readyz (clients are served in the current
 * phase), and sweeper control: POST /sweeper/pause, POST /sweeper/resume,
 * POST /sweeper/rate?keys_per_sec=N (the fleet's settings where phases are in use:
 * src/proxy/fleet.ts), and the fleet-wide phase switch
 * POST /phase?to=hold|migrate|reverse. Who may send what: src/admin/auth.ts.
 *
 * It sits above the proxy and knows it only as the AdminSubject below, so the proxy never
 * imports this file: the composition root (src/start.ts) hands it the running proxy.
 */
import http from 'node:http';
import type net from 'node:net';
import { ConfigError } from '../errors.js';
import { RehomeError } from '../errors.js';
import type { SweepChange } from '../phase/fleet-record.js';
import { SWITCHABLE, type SwitchablePhase } from '../phase/phase.js';
import type { ScopeFlags } from '../phase/scope.js';
import { describeEndpoint, isLoopback } from '../upstream/endpoint.js';
import { BearerToken, browserAttack, needsToken, type TokenRefusal } from './auth.js';
import { serveDashboard } from './dashboard.js';
import { LatencyHistory } from './latency-history.js';
import type { ProxyMetrics } from './metrics.js';

/** What the endpoint reads and drives: a running proxy. */
export interface AdminSubject {
  /** Where the migration stands: the /status body. */
  status(): Record<string, unknown>;
  /** The fleet-wide phase switch; rejects with the reason it was refused. */
  switchPhase(to: SwitchablePhase, scope: ScopeFlags): Promise<unknown>;
  /** Changes the sweeper's rate or pause; rejects with why not (ENOSWEEP: no sweeper to change). */
  setSweeper(change: SweepChange): Promise<unknown>;
  /** Whether clients are served in the current phase right now, and if not why: /readyz. */
  readiness(): Readiness;
}

/** The /readyz body. */
export interface Readiness {
  ready: boolean;
  /** Why not ready; null when ready. */
  reason: string | null;
  phase: string;
  epoch: number | null;
}

/** Where the endpoint listens, its token, and where requests that change something are logged. */
export interface AdminOptions {
  host: string;
  port: number;
  /** Required beyond loopback; see src/admin/auth.ts for what it guards. */
  token: string | null;
  log: (line: string, fields?: Record<string, unknown>) => void;
}

/** A listening admin endpoint. */
export interface AdminServer {
  address(): { host: string; port: number };
  close(): void;
}

export function startAdmin(subject: AdminSubject, metrics: ProxyMetrics, opts: AdminOptions): Promise<AdminServer> {
  const { host, port, log } = opts;
  const loopback = isLoopback(host);
  if (opts.token === null && !loopback) {
    return Promise.reject(new ConfigError(`an admin endpoint beyond loopback (${describeEndpoint({ host, port })}) needs a token`));
  }
  const token = opts.token === null ? null : new BearerToken(opts.token);
  const latency = new LatencyHistory(metrics.commandLatency, () => subject.readiness().phase);
  latency.start();
  const endpoint = { latency, tokenRequired: token !== null };
  const server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://admin');
    const method = req.method ?? 'GET';
    // Requests that change something, and refused ones, are logged once answered; reads are not
    // (scrapes and probes would drown the log).
    if (method !== 'GET') {
      const t0 = Date.now();
      res.once('finish', () => {
        const from = req.socket.remoteAddress ?? '?';
        log(`admin: ${method} ${url.pathname}${url.search} from ${from}: ${res.statusCode}`, {
          admin: { method, path: url.pathname, query: url.search, from, status: res.statusCode, ms: Date.now() - t0 },
        });
      });
    }
    const attack = browserAttack(method, req.headers, loopback);
    if (attack !== null) return json(res, 403, { error: attack });
    if (token !== null && needsToken(method, url.pathname, { token: true, loopback })) {
      const refused = token.check(req.headers.authorization);
      if (refused !== null) return unauthorized(res, refused, method, url, req.socket.remoteAddress, log);
    }
    void handle(subject, metrics, endpoint, method, url, res).catch((e: Error) => {
      res.writeHead(500, { 'content-type': 'text/plain' });
      res.end(`${e.message}\n`);
    });
  });
  return new Promise((resolve, reject) => {
    server.once('error', (e) => {
      latency.stop();
      reject(e);
    });
    server.listen(port, host, () =>
      resolve({
        address: () => {
          const a = server.address() as net.AddressInfo;
          return { host: a.address, port: a.port };
        },
        close: () => {
          latency.stop();
          server.close();
        },
      }),
    );
  });
}

function json(res: http.ServerResponse, code: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(code, { 'content-type': 'application/json', ...headers });
  res.end(`${JSON.stringify(body, null, 2)}\n`);
}

/** 401 with the challenge of RFC 6750; a refused read is logged here (writes are on finish). */
function unauthorized(
  res: http.ServerResponse,
  why: TokenRefusal,
  method: string,
  url: URL,
  from: string | undefined,
  log: AdminOptions['log'],
): void {
  const challenge = why === 'missing' ? 'Bearer realm="rehome"' : 'Bearer realm="rehome", error="invalid_token"';
  const error = why === 'missing'
    ? 'this request needs the admin token: Authorization: Bearer TOKEN (rehome status|phase|sweeper send it from --admin-token or REHOME_ADMIN_TOKEN)'
    : 'the Authorization header does not carry the admin token';
  if (method === 'GET') {
    log(`admin: GET ${url.pathname} from ${from ?? '?'}: 401 (${why} token)`, {
      admin: { method, path: url.pathname, query: url.search, from, status: 401 },
    });
  }
  json(res, 401, { error }, { 'www-authenticate': challenge });
}

/** What the endpoint itself adds to the proxy's figures. */
interface EndpointState {
  latency: LatencyHistory;
  tokenRequired: boolean;
}

async function handle(
  subject: AdminSubject,
  metrics: ProxyMetrics,
  endpoint: EndpointState,
  method: string,
  url: URL,
  res: http.ServerResponse,
): Promise<void> {
  if (method === 'GET' && url.pathname === '/') return serveDashboard(res);
  if (method === 'GET' && url.pathname === '/healthz') return json(res, 200, { alive: true, uptime_s: Math.round(process.uptime()) });
  if (method === 'GET' && url.pathname === '/readyz') {
    const r = subject.readiness();
    return json(res, r.ready ? 200 : 503, r);
  }
  if (method === 'GET' && url.pathname === '/status') {
    // served_at_ms lets a reader judge each process's seen_at by this host's clock, not its own.
    return json(res, 200, {
      ...subject.status(),
      client_latency: endpoint.latency.summary(),
      admin_token_required: endpoint.tokenRequired,
      served_at_ms: Date.now(),
    });
  }
  if (method === 'GET' && url.pathname === '/latency') {
    // Ten minutes of seconds, fetched every second by the page: not indented.
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(endpoint.latency.report()));
    return;
  }
  if (method === 'GET' && url.pathname === '/metrics') {
    res.writeHead(200, { 'content-type': metrics.registry.contentType });
    res.end(await metrics.registry.metrics());
    return;
  }
  if (method === 'POST' && url.pathname === '/phase') {
    const to = url.searchParams.get('to') ?? '';
    if (!(SWITCHABLE as readonly string[]).includes(to)) return json(res, 400, { error: 'to must be hold, migrate or reverse' });
    try {
      // Patterns are bytes, as keys are (latin1 strings in the proxy): the operator's UTF-8 text as sent.
      const scope = { patterns: url.searchParams.getAll('scope').map((p) => Buffer.from(p, 'utf8').toString('latin1')), dbs: url.searchParams.getAll('scope_db') };
      if (to !== 'migrate' && (scope.patterns.length > 0 || scope.dbs.length > 0)) return json(res, 400, { error: 'a scope (--scope, --scope-db) is for migrate only' });
      const r = await subject.switchPhase(to as SwitchablePhase, scope);
      return json(res, 200, r);
    } catch (e) {
      return json(res, 409, { error: (e as Error).message });
    }
  }
  if (method === 'POST' && url.pathname.startsWith('/sweeper/')) {
    const what = url.pathname.slice('/sweeper/'.length);
    let change: SweepChange;
    if (what === 'pause') change = { paused: 'paused by operator' };
    else if (what === 'resume') change = { paused: null };
    else if (what === 'rate') {
      const n = Number(url.searchParams.get('keys_per_sec'));
      if (!Number.isInteger(n) || n < 0) return json(res, 400, { error: 'keys_per_sec must be an integer >= 0 (0: no limit)' });
      change = { rate: n };
    } else return json(res, 404, { error: `unknown sweeper action '${what}'` });
    try {
      return json(res, 200, await subject.setSweeper(change));
    } catch (e) {
      // No sweeper to change (without phases, --no-sweep): 409; the old server did not take it: 503.
      const code = e instanceof RehomeError && e.code === 'ENOSWEEP' ? 409 : 503;
      return json(res, code, { error: (e as Error).message });
    }
  }
  json(res, 404, { error: 'GET / (the dashboard), GET /status, GET /latency, GET /metrics, GET /healthz, GET /readyz, POST /sweeper/pause|resume|rate?keys_per_sec=N, POST /phase?to=hold|migrate|reverse' });
}
