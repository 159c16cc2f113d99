/** Typed configuration, defaults, and validation with clear messages. */
import { ConfigError } from './errors.js';
import { parseDbMap } from './db-map.js';
import { DEFAULT_FRAMER_LIMITS, type FramerLimits } from './resp/request-framer.js';
import { type ClientTlsConfig, parseClientTls, type RawServerTlsOptions, type RawTlsOptions, withServerTls } from './tls-config.js';
import { type Endpoint, describeEndpoint, isLoopback, parseHostPort, parseRedisUrl } from './upstream/endpoint.js';

/**
 * Per-client limits, with Redis's defaults where Redis has one: the number of clients
 * (maxclients), the bytes of unfinished requests held for a client (client-query-buffer-limit),
 * the reply bytes held for a client that does not read them (client-output-buffer-limit) and the
 * idle timeout (timeout). The framing limits (proto-max-bulk-len and the like) are the request
 * framer's (src/resp/request-framer.ts).
 */
export interface ClientLimits {
  /** Most clients connected at once; the next one gets Redis's error and is closed. */
  maxClients: number;
  /** Most bytes of not yet complete requests held for one client. */
  queryBufferLimit: number;
  /**
   * Most reply bytes held for one client that does not read them; past it the client is
   * disconnected. 0: no limit, the proxy stops reading the target for that client instead.
   */
  outputBufferLimit: number;
  /** A client idle this long (ms) is closed; 0: never. */
  idleTimeoutMs: number;
}

/**
 * Redis's defaults for maxclients, the query buffer and timeout; Redis sets no output limit for
 * normal clients, and rehome bounds what it holds for one at 256 MB.
 */
export const DEFAULT_CLIENT_LIMITS: ClientLimits = {
  maxClients: 10_000,
  queryBufferLimit: 1024 * 1024 * 1024,
  outputBufferLimit: 256 * 1024 * 1024,
  idleTimeoutMs: 0,
};

/**
 * The admin endpoint. With a token, every request that changes something must carry it, and so
 * must every request but /healthz and /readyz when the endpoint is bound beyond loopback (where it
 * may not be bound without one). See src/admin/http.ts.
 */
export interface AdminConfig {
  host: string;
  port: number;
  /** `Authorization: Bearer <token>`; null: none (loopback only). */
  token: string | null;
}

/** The environment variable that holds the admin token (`--admin-token` wins over it). */
export const ADMIN_TOKEN_ENV = 'REHOME_ADMIN_TOKEN';

/** Everything the proxy needs to run. */
/** What the proxy uses of a cluster target (src/cluster/front.ts implements it). */
export interface ClusterTargetHandle {
  /** The master serving a key's slot now, where MIGRATE sends it; null while no master does. */
  nodeForKey(key: string): { host: string; port: number } | null;
  /** A node answered MOVED: the slot is served at `to` (the map is read again). */
  moved(slot: number, to: { host: string; port: number }): void;
  /** Masters and the slots each serves, for status and plan. */
  masters(): Array<{ host: string; port: number; slots: number }>;
  /** Each master with its slot count and DBSIZE (or why it did not answer): plan, status. */
  census(): Promise<Array<{ host: string; port: number; slots: number; keys: number | null; error: string | null }>>;
  /** Slots no master serves ("0-99, 5000"), '' when every slot is served. */
  uncovered(): string;
  /** Whether the master at this address has replicas: moves into it then wait for one (replicated). */
  hasReplicas(node: { host: string; port: number }): boolean;
  /** WAIT 1 on that master for every write it made so far; rejects with ReplicaNotConfirmed. */
  replicated(node: { host: string; port: number }): Promise<void>;
  /** For /status: masters with their slots and keys (counted every few seconds), the slot map. */
  status(): Record<string, unknown>;
  close(): Promise<void>;
}

export interface ProxyConfig {
  /** The plain port; null with `--listen none` (clients then connect over TLS only). */
  listen: { host: string; port: number } | null;
  /** The TLS port for clients (--tls-port), or null. */
  tls: ClientTlsConfig | null;
  source: Endpoint;
  target: Endpoint;
  /**
   * Set at start when the target is a Redis Cluster (src/cluster/target.ts): `target` is then the
   * cluster front, and `clusterSeed` what --target named.
   */
  cluster?: ClusterTargetHandle;
  clusterSeed?: Endpoint;
  /** --target-cluster: more seed nodes of a cluster target (with --target's credentials and TLS). */
  targetSeeds: Array<{ host: string; port: number }>;
  /** --db-map N:0: the old server's dbs merged into a cluster target's db 0 (src/cluster/db-map.ts). */
  dbMap: number[];
  /** The target's address as the source must dial it for MIGRATE (default: the target's). */
  targetFromSource: { host: string; port: number } | null;
  sweep: boolean;
  /** Keys remembered as absent from the source, per db. */
  absentCacheSize: number;
  /** MIGRATE's own timeout, in ms. */
  migrateTimeoutMs: number;
  /** Most outstanding requests per client before the proxy stops reading from it. */
  maxPendingPerClient: number;
  /** Longest wait for in-flight commands on SIGTERM/SIGINT. */
  shutdownTimeoutMs: number;
  connectTimeoutMs: number;
  limits: FramerLimits;
  /** maxclients, query and output buffer limits, idle timeout (enforced in src/session/limits.ts). */
  clientLimits: ClientLimits;
  /** Longest a sweeper MIGRATE should block the source. */
  sweepBudgetMs: number;
  /** How long a sweeper step may hold the source while clients touch unmoved keys (ms). */
  sweepTouchBudgetMs: number;
  /** Sweeper keys per second at most (0: unlimited). */
  sweepRate: number;
  /** Keys at least this many bytes are moved alone (in chunks, where a proxy-side move is at hand). */
  bigKeyBytes: number;
  /**
   * How keys move (docs/DESIGN.md "Moves"): auto picks per direction at start-up by probing as
   * `rehome plan` does (MIGRATE, then DUMP/RESTORE, then the type-aware copy).
   */
  moveMethod: 'auto' | 'migrate' | 'dump' | 'copy';
  /** A proxy-side move's claim lease (source clock), renewed by long copies. */
  moveLeaseMs: number;
  /** WAITAOF on the target before a proxy-side move releases the source copy (auto: where the target has appendonly yes). */
  moveWaitAof: 'auto' | 'on' | 'off';
  exitWhenDrained: boolean;
  /** Admin HTTP endpoint (status, metrics, control, probes), or null. */
  admin: AdminConfig | null;
  /** Log lines as text (`<time> rehome: <line>`) or as JSON objects (pino), one per line. */
  logFormat: 'text' | 'json';
  /** Show a progress bar (TTY) or log progress lines. */
  progress: 'bar' | 'log' | 'off';
  /** Which copy of a key found in both servers at start to keep (null: refuse to start). */
  onConflict: 'source' | 'target' | null;
  /** Start even when the pre-flight checks fail. */
  force: boolean;
  /** Phases (src/phase): the phase a fresh deployment starts in; null = phases only if the old server has a phase key. */
  phase: 'hold' | 'migrate' | null;
  /** The old server's address as the new one dials it for MIGRATE in reverse (default: the source's). */
  sourceFromTarget: { host: string; port: number } | null;
  /** How often each process reads the shared phase. */
  phasePollMs: number;
  /** Longest clients wait for a phase switch to finish before they are disconnected. */
  fenceWaitMs: number;
  /**
   * The gentle switch: how long a phase switch waits for commands in flight to finish before it
   * fences (those still running are then cut off); 0 = fence at once, closing every client.
   */
  switchDrainMs: number;
  /** Processes serving the one listening port (node:cluster); 1 = this process alone. */
  workers: number;
  /**
   * Connections to the target shared by clients' commands without connection state
   * (src/session/shared-lane.ts); 0 = every client uses only its own connection.
   */
  sharedConnections: number;
  /** PING idle shared connections, and idle own connections of clients on them, this often (0: never). */
  keepaliveMs: number;
}

export const DEFAULTS = {
  listen: '127.0.0.1:6380',
  /** The admin endpoint's host when --admin gives only a port. */
  adminHost: '127.0.0.1',
  absentCacheSize: 1_000_000,
  migrateTimeoutMs: 5_000,
  maxPendingPerClient: 10_000,
  shutdownTimeoutMs: 10_000,
  connectTimeoutMs: 3_000,
  sweepBudgetMs: 20,
  sweepTouchBudgetMs: 0.5,
  sweepRate: 0,
  bigKeyMb: 8,
  switchDrainMs: 1_000,
  moveLeaseMs: 10_000,
  workers: 1,
  sharedConnections: 1,
  keepaliveSeconds: 15,
} as const;

/**
 * A size in bytes, written as Redis writes them in its config: a number with an optional unit,
 * k/m/g (powers of 1000) or kb/mb/gb (powers of 1024), case-insensitive.
 */
export function byteSize(flag: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  const m = /^(\d+)(b|k|kb|m|mb|g|gb)?$/i.exec(v);
  const unit = { '': 1, b: 1, k: 1e3, kb: 1024, m: 1e6, mb: 1024 ** 2, g: 1e9, gb: 1024 ** 3 }[m?.[2]?.toLowerCase() ?? ''];
  const n = m && unit !== undefined ? Number(m[1]) * unit : NaN;
  if (!Number.isSafeInteger(n) || n < min) {
    throw new ConfigError(`${flag} must be a size in bytes >= ${min} (like 512mb, 1gb, 65536), got '${v}'`);
  }
  return n;
}

function positiveInt(flag: string, v: string | undefined, def: number, min = 1): number {
  if (v === undefined) return def;
  if (!/^\d+$/.test(v) || Number(v) < min || !Number.isSafeInteger(Number(v))) {
    throw new ConfigError(`${flag} must be an integer >= ${min}, got '${v}'`);
  }
  return Number(v);
}

/** A duration in milliseconds, fractions allowed (0.5), above 0. */
function positiveMs(flag: string, v: string | undefined, def: number): number {
  if (v === undefined) return def;
  if (!/^\d+(\.\d+)?$/.test(v) || !(Number(v) > 0)) throw new ConfigError(`${flag} must be a number of milliseconds > 0, got '${v}'`);
  return Number(v);
}

/** Raw flag values as the CLI parsed them. */
export interface RawOptions extends RawTlsOptions, RawServerTlsOptions {
  listen?: string | undefined;
  source?: string | undefined;
  target?: string | undefined;
  'target-from-source'?: string | undefined;
  'target-cluster'?: string | undefined;
  'db-map'?: string[] | string | undefined;
  'no-sweep'?: boolean | undefined;
  'absent-cache-size'?: string | undefined;
  'migrate-timeout-ms'?: string | undefined;
  'max-pending-per-client'?: string | undefined;
  'shutdown-timeout-ms'?: string | undefined;
  'sweep-budget-ms'?: string | undefined;
  'sweep-touch-budget-ms'?: string | undefined;
  'sweep-rate'?: string | undefined;
  'switch-drain-ms'?: string | undefined;
  'big-key-mb'?: string | undefined;
  'move-method'?: string | undefined;
  'move-lease-ms'?: string | undefined;
  'move-wait-aof'?: string | undefined;
  'exit-when-drained'?: boolean | undefined;
  admin?: string | undefined;
  'admin-token'?: string | undefined;
  'log-format'?: string | undefined;
  progress?: string | undefined;
  'on-conflict'?: string | undefined;
  force?: boolean | undefined;
  phase?: string | undefined;
  'source-from-target'?: string | undefined;
  maxclients?: string | undefined;
  'proto-max-bulk-len'?: string | undefined;
  'client-query-buffer-limit'?: string | undefined;
  'client-output-buffer-limit'?: string | undefined;
  timeout?: string | undefined;
  workers?: string | undefined;
  'shared-connections'?: string | undefined;
  keepalive?: string | undefined;
}

/**
 * --source and --target, required, as endpoints, with their TLS files for rediss:// (shared by the
 * proxy, plan and verify).
 */
export function parseSourceTarget(o: { source?: string | undefined; target?: string | undefined } & RawServerTlsOptions): {
  source: Endpoint;
  target: Endpoint;
} {
  if (!o.source) throw new ConfigError('--source is required (redis://[user:pass@]host:port or rediss:// for TLS)');
  if (!o.target) throw new ConfigError('--target is required (redis://[user:pass@]host:port or rediss:// for TLS)');
  return {
    source: withServerTls('source', parseRedisUrl('--source', o.source), o),
    target: withServerTls('target', parseRedisUrl('--target', o.target), o),
  };
}

/** --listen host:port, or none (TLS only: then --tls-port is required). */
function parseListen(v: string | undefined, hasTls: boolean): { host: string; port: number } | null {
  if (v !== 'none') return parseHostPort('--listen', v ?? DEFAULTS.listen);
  if (!hasTls) throw new ConfigError('--listen none needs --tls-port: clients must be able to connect somewhere');
  return null;
}

/**
 * The proxy's configuration from its flags; the admin token may also come from `env`
 * (REHOME_ADMIN_TOKEN).
 */
export function buildConfig(o: RawOptions, env: Record<string, string | undefined> = process.env): ProxyConfig {
  const listenHost = o.listen !== undefined && o.listen !== 'none' ? parseHostPort('--listen', o.listen).host : parseHostPort('--listen', DEFAULTS.listen).host;
  const tls = parseClientTls(o, listenHost);
  const { source, target } = parseSourceTarget(o);
  return {
    listen: parseListen(o.listen, tls !== null),
    tls,
    source,
    target,
    targetSeeds: (o['target-cluster'] ?? '').split(',').filter((x) => x.trim() !== '').map((x) => parseHostPort('--target-cluster', x.trim())),
    dbMap: parseDbMap(o['db-map']),
    targetFromSource: o['target-from-source']
      ? parseHostPort('--target-from-source', o['target-from-source'])
      : null,
    sweep: !o['no-sweep'],
    absentCacheSize: positiveInt('--absent-cache-size', o['absent-cache-size'], DEFAULTS.absentCacheSize, 0),
    migrateTimeoutMs: positiveInt('--migrate-timeout-ms', o['migrate-timeout-ms'], DEFAULTS.migrateTimeoutMs),
    maxPendingPerClient: positiveInt(
      '--max-pending-per-client',
      o['max-pending-per-client'],
      DEFAULTS.maxPendingPerClient,
    ),
    shutdownTimeoutMs: positiveInt('--shutdown-timeout-ms', o['shutdown-timeout-ms'], DEFAULTS.shutdownTimeoutMs, 0),
    connectTimeoutMs: DEFAULTS.connectTimeoutMs,
    limits: {
      ...DEFAULT_FRAMER_LIMITS,
      maxBulkLen: byteSize('--proto-max-bulk-len', o['proto-max-bulk-len'], DEFAULT_FRAMER_LIMITS.maxBulkLen),
    },
    clientLimits: {
      maxClients: positiveInt('--maxclients', o.maxclients, DEFAULT_CLIENT_LIMITS.maxClients),
      queryBufferLimit: byteSize(
        '--client-query-buffer-limit',
        o['client-query-buffer-limit'],
        DEFAULT_CLIENT_LIMITS.queryBufferLimit,
      ),
      outputBufferLimit: byteSize(
        '--client-output-buffer-limit',
        o['client-output-buffer-limit'],
        DEFAULT_CLIENT_LIMITS.outputBufferLimit,
        0,
      ),
      idleTimeoutMs: positiveInt('--timeout', o.timeout, DEFAULT_CLIENT_LIMITS.idleTimeoutMs / 1000, 0) * 1000,
    },
    sweepBudgetMs: positiveInt('--sweep-budget-ms', o['sweep-budget-ms'], DEFAULTS.sweepBudgetMs),
    sweepTouchBudgetMs: positiveMs('--sweep-touch-budget-ms', o['sweep-touch-budget-ms'], DEFAULTS.sweepTouchBudgetMs),
    sweepRate: positiveInt('--sweep-rate', o['sweep-rate'], DEFAULTS.sweepRate, 0),
    bigKeyBytes: positiveInt('--big-key-mb', o['big-key-mb'], DEFAULTS.bigKeyMb) * 1024 * 1024,
    moveMethod: parseMoveMethod(o['move-method']),
    moveLeaseMs: positiveInt('--move-lease-ms', o['move-lease-ms'], DEFAULTS.moveLeaseMs, 100),
    moveWaitAof: parseWaitAof(o['move-wait-aof']),
    exitWhenDrained: Boolean(o['exit-when-drained']),
    admin: parseAdmin(o.admin, o['admin-token'], env),
    logFormat: parseLogFormat(o['log-format']),
    progress: parseProgress(o.progress),
    onConflict: parseOnConflict(o['on-conflict']),
    force: Boolean(o.force),
    phase: parsePhase(o.phase),
    sourceFromTarget: o['source-from-target'] ? parseHostPort('--source-from-target', o['source-from-target']) : null,
    phasePollMs: 250,
    fenceWaitMs: 10_000,
    switchDrainMs: positiveInt('--switch-drain-ms', o['switch-drain-ms'], DEFAULTS.switchDrainMs, 0),
    workers: positiveInt('--workers', o.workers, DEFAULTS.workers),
    sharedConnections: positiveInt('--shared-connections', o['shared-connections'], DEFAULTS.sharedConnections, 0),
    keepaliveMs: 1000 * positiveInt('--keepalive', o.keepalive, DEFAULTS.keepaliveSeconds, 0),
  };
}

/**
 * The admin token from --admin-token, else from REHOME_ADMIN_TOKEN (empty there: none); null when
 * neither gives one. It travels in an HTTP header: visible ASCII only.
 */
export function adminToken(flag: string | undefined, env: Record<string, string | undefined>): string | null {
  const from = flag !== undefined ? '--admin-token' : ADMIN_TOKEN_ENV;
  const t = flag ?? (env[ADMIN_TOKEN_ENV] || undefined);
  if (t === undefined) return null;
  if (t === '') throw new ConfigError(`--admin-token must not be empty`);
  if (!/^[\x21-\x7e]+$/.test(t)) throw new ConfigError(`${from}: the token must be printable ASCII without spaces (it is sent in an HTTP header)`);
  return t;
}

/** --admin [host:]port (loopback when only a port is given) with its token. */
function parseAdmin(v: string | undefined, tokenFlag: string | undefined, env: Record<string, string | undefined>): AdminConfig | null {
  const token = adminToken(tokenFlag, env);
  if (v === undefined) {
    if (tokenFlag !== undefined) throw new ConfigError('--admin-token needs --admin');
    return null;
  }
  const a = parseHostPort('--admin', v, DEFAULTS.adminHost);
  if (token === null && !isLoopback(a.host)) {
    // Anyone who reaches an open endpoint can switch the whole fleet's phase.
    throw new ConfigError(
      `--admin ${describeEndpoint(a)} reaches beyond loopback: set a token with --admin-token or ${ADMIN_TOKEN_ENV}, or bind it to 127.0.0.1`,
    );
  }
  return { ...a, token };
}

function parseMoveMethod(v: string | undefined): ProxyConfig['moveMethod'] {
  if (v === undefined || v === 'auto' || v === 'migrate' || v === 'dump' || v === 'copy') return v ?? 'auto';
  throw new ConfigError(`--move-method must be auto, migrate, dump or copy, got '${v}'`);
}

function parseWaitAof(v: string | undefined): ProxyConfig['moveWaitAof'] {
  if (v === undefined || v === 'auto' || v === 'on' || v === 'off') return v ?? 'auto';
  throw new ConfigError(`--move-wait-aof must be auto, on or off, got '${v}'`);
}

function parseLogFormat(v: string | undefined): 'text' | 'json' {
  if (v === undefined || v === 'text' || v === 'json') return v ?? 'text';
  throw new ConfigError(`--log-format must be text or json, got '${v}'`);
}

function parsePhase(v: string | undefined): 'hold' | 'migrate' | null {
  if (v === undefined) return null;
  if (v === 'hold' || v === 'migrate') return v;
  throw new ConfigError(`--phase must be hold or migrate, got '${v}'`);
}

/** --on-conflict source|target, or null when absent. */
export function parseOnConflict(v: string | undefined): 'source' | 'target' | null {
  if (v === undefined) return null;
  if (v === 'source' || v === 'target') return v;
  throw new ConfigError(`--on-conflict must be source or target, got '${v}'`);
}

function parseProgress(v: string | undefined): 'bar' | 'log' | 'off' {
  if (v === undefined) return process.stderr.isTTY ? 'bar' : 'log';
  if (v === 'bar' || v === 'log' || v === 'off') return v;
  throw new ConfigError(`--progress must be bar, log or off, got '${v}'`);
}
