/**
 * Helpers shared by `plan` and `verify`: one-shot connections to a server (no retries), INFO
 * parsing, binary-safe SCAN of one db, and pipelined EXISTS checks for keys found in both servers.
 *
 * Keys are handled as Buffers on the wire and reported as latin1 strings (one char per byte), the
 * same convention as the rest of rehome, so any key round-trips exactly and prints with showKey.
 */
import { Redis } from 'ioredis';
import { RehomeError } from '../errors.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import { ioredisTls } from '../upstream/connect.js';
import { PHASE_KEY, RESERVED_PREFIX } from '../phase/phase.js';

export type Role = 'source' | 'target';

/** One open connection to one server, logged in with the URL's credentials. */
export interface ServerConn {
  readonly role: Role;
  readonly endpoint: Endpoint;
  readonly redis: Redis;
  /** Set when the URL carries a password the server does not need (it works, but is useless). */
  readonly authWarning: string | null;
}

export interface OpenOptions {
  connectTimeoutMs?: number;
  /** Longest wait for any one command (MIGRATE's own timeout must fit under it). */
  commandTimeoutMs?: number;
  /** CLIENT SETNAME (default rehome-tools-<role>); a proxy's pre-flight names it for its epoch. */
  name?: string;
}

/** A key found in some db. */
export interface DbKey {
  db: number;
  key: string;
}

/** How many keys one SCAN call asks for, and how many EXISTS go in one pipeline. */
export const SCAN_COUNT = 1000;
export const PIPELINE_BATCH = 1000;

/** An error's first line (ioredis appends its own lines to some messages). */
export function errText(e: unknown): string {
  const m = e instanceof Error ? e.message : String(e);
  return m.split('\n')[0] ?? m;
}

export function describeRole(role: Role, ep: Endpoint): string {
  return `${role} ${describeEndpoint(ep)}`;
}

/** For a certificate that does not verify, which flags decide it. */
function tlsHint(role: Role, ep: Endpoint, err: unknown): string {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? '';
  if (ep.tls === undefined || !/CERT|SIGNATURE|ISSUER|ALTNAME/.test(code)) return '';
  return ` (TLS: the ${role}'s certificate does not verify against --${role}-tls-ca-cert-file and --${role}-tls-sni or the URL's host)`;
}

/**
 * Connects without retries, logs in with the URL's credentials (AUTH sent explicitly, so a
 * refusal is reported exactly) and PINGs. Throws RehomeError EUPSTREAM (unreachable) or EAUTH.
 */
export async function openServer(role: Role, ep: Endpoint, opts: OpenOptions = {}): Promise<ServerConn> {
  const redis = new Redis({
    host: ep.host,
    port: ep.port,
    ...ioredisTls(ep),
    lazyConnect: true,
    connectTimeout: opts.connectTimeoutMs ?? 5_000,
    commandTimeout: opts.commandTimeoutMs ?? 30_000,
    maxRetriesPerRequest: 0,
    enableReadyCheck: false,
    retryStrategy: () => null,
    connectionName: opts.name ?? `rehome-tools-${role}`,
    // Less of a handshake for ioredis to wait for (see namedRedis in upstream/control.ts).
    disableClientInfo: true,
  });
  // Errors surface on the commands that fail; an unhandled 'error' event would be fatal. The
  // socket error (ECONNREFUSED, ETIMEDOUT, ...) is kept: connect() itself only says the
  // connection is closed.
  let socketError: unknown;
  redis.on('error', (e) => (socketError = e));
  const who = describeRole(role, ep);
  try {
    try {
      await redis.connect();
    } catch (e) {
      throw new RehomeError('EUPSTREAM', `${who} unreachable: ${errText(socketError ?? e)}${tlsHint(role, ep, socketError)}`);
    }
    let authWarning: string | null = null;
    if (ep.password !== undefined) {
      const args = ep.username !== undefined ? [ep.username, ep.password] : [ep.password];
      try {
        await redis.call('AUTH', ...args);
      } catch (e) {
        const msg = errText(e);
        if (/without any password configured|no password is set/i.test(msg)) {
          authWarning = `${who}: the URL has a password but the server needs none`;
        } else {
          throw new RehomeError('EAUTH', `${who}: authentication failed: ${msg}`);
        }
      }
    }
    try {
      await redis.ping();
    } catch (e) {
      const msg = errText(e);
      if (/^NOAUTH/.test(msg)) {
        throw new RehomeError('EAUTH', `${who}: authentication required (${msg}); put the credentials in the URL`);
      }
      if (/^NOPERM/.test(msg)) throw new RehomeError('EAUTH', `${who}: ${msg}`);
      throw new RehomeError('EUPSTREAM', `${who} unreachable: ${msg}`);
    }
    return { role, endpoint: ep, redis, authWarning };
  } catch (e) {
    disconnect(redis);
    throw e;
  }
}

/**
 * Closes a connection. Skipped once ioredis has ended it: disconnect() on an already closed
 * socket arms a timer (disconnectTimeout) that would keep the process alive for 2 s.
 */
function disconnect(redis: Redis): void {
  if (redis.status !== 'end') redis.disconnect();
}

/** Opens both servers; if either fails, the other is closed and the first error is thrown. */
export async function openBoth(
  source: Endpoint,
  target: Endpoint,
  opts: OpenOptions = {},
): Promise<{ source: ServerConn; target: ServerConn }> {
  const [s, t] = await Promise.allSettled([openServer('source', source, opts), openServer('target', target, opts)]);
  if (s.status === 'fulfilled' && t.status === 'fulfilled') return { source: s.value, target: t.value };
  if (s.status === 'fulfilled') disconnect(s.value.redis);
  if (t.status === 'fulfilled') disconnect(t.value.redis);
  throw s.status === 'rejected' ? s.reason : (t as PromiseRejectedResult).reason;
}

export function closeServer(c: ServerConn | null | undefined): void {
  if (c) disconnect(c.redis);
}

/** `field:value` lines of an INFO reply. */
export function parseInfo(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split(/\r?\n/)) {
    if (line === '' || line.startsWith('#')) continue;
    const i = line.indexOf(':');
    if (i > 0) out.set(line.slice(0, i), line.slice(i + 1));
  }
  return out;
}

/** db index -> key count, from the `db0:keys=12,expires=0,avg_ttl=0` lines of INFO keyspace. */
export function parseKeyspace(text: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of text.split(/\r?\n/)) {
    const m = /^db(\d+):keys=(\d+)/.exec(line);
    if (m) {
      const n = Number(m[2]);
      if (n > 0) out.set(Number(m[1]), n);
    }
  }
  return out;
}

export async function info(c: ServerConn, section: string): Promise<Map<string, string>> {
  return parseInfo(await c.redis.info(section));
}

/** Keys per db, rehome's phase key left out (it is not data). The connection must be on db 0. */
export async function keyspace(c: ServerConn): Promise<Map<number, number>> {
  return withoutPhaseKey(parseKeyspace(await c.redis.info('keyspace')), await c.redis.exists(PHASE_KEY));
}

/** A keyspace count with the phase key (when present in db 0) taken out. */
export function withoutPhaseKey(m: Map<number, number>, phaseKeys: number): Map<number, number> {
  if (phaseKeys > 0 && m.has(0)) {
    const n = m.get(0)! - phaseKeys;
    if (n > 0) m.set(0, n);
    else m.delete(0);
  }
  return m;
}

/** The server's `databases` setting, or null when CONFIG GET is denied or renamed. */
export async function configDatabases(c: ServerConn): Promise<number | null> {
  try {
    const r = (await c.redis.call('CONFIG', 'GET', 'databases')) as unknown[];
    const n = Number(r[1]);
    return r.length === 2 && Number.isInteger(n) && n > 0 ? n : null;
  } catch {
    return null;
  }
}

/** Record form of a db -> count map (dbs in ascending order). */
export function toRecord(m: ReadonlyMap<number, number>): Record<number, number> {
  const out: Record<number, number> = {};
  for (const db of [...m.keys()].sort((a, b) => a - b)) out[db] = m.get(db)!;
  return out;
}

/** "db0 12, db3 2" */
export function describeCounts(rec: Record<number, number>): string {
  return Object.entries(rec)
    .map(([db, n]) => `db${db} ${n}`)
    .join(', ');
}

export function sumCounts(rec: Record<number, number>): number {
  return Object.values(rec).reduce((a, b) => a + b, 0);
}

export function plural(n: number, one: string, many = `${one}s`): string {
  return `${n} ${n === 1 ? one : many}`;
}

/** 1536 -> "1.5 KiB" */
export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let u = 0;
  while (Math.abs(v) >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${units[u]}`;
}

export function keyText(b: Buffer): string {
  return b.toString('latin1');
}

export function keyBuffer(k: string): Buffer {
  return Buffer.from(k, 'latin1');
}

/** Runs one pipeline; the first element is SELECT db. Returns the replies after SELECT. */
async function pipelineInDb(
  c: ServerConn,
  db: number,
  add: (p: ReturnType<Redis['pipeline']>) => void,
): Promise<unknown[]> {
  const p = c.redis.pipeline();
  p.select(db);
  add(p);
  const res = await p.exec();
  if (!res) throw new RehomeError('EUPSTREAM', `${describeRole(c.role, c.endpoint)}: pipeline aborted`);
  const [sel, ...rest] = res;
  if (sel?.[0]) throw sel[0];
  return rest.map(([err, v]) => {
    if (err) throw err;
    return v;
  });
}

/** True when SELECT db works on this server (false: the db index is out of its range). */
export async function hasDb(c: ServerConn, db: number): Promise<boolean> {
  try {
    await c.redis.select(db);
    return true;
  } catch (e) {
    if (/out of range|invalid DB index/i.test(errText(e))) return false;
    throw e;
  }
}

/** EXISTS of each key in `db`, pipelined. */
export async function existsEach(c: ServerConn, db: number, keys: readonly Buffer[]): Promise<boolean[]> {
  const out: boolean[] = [];
  for (let i = 0; i < keys.length; i += PIPELINE_BATCH) {
    const chunk = keys.slice(i, i + PIPELINE_BATCH);
    const r = await pipelineInDb(c, db, (p) => {
      for (const k of chunk) p.exists(k);
    });
    for (const v of r) out.push(Number(v) > 0);
  }
  return out;
}

/** DEL of each key in `db`, pipelined; returns how many were deleted. */
export async function delEach(c: ServerConn, db: number, keys: readonly Buffer[]): Promise<number> {
  let n = 0;
  for (let i = 0; i < keys.length; i += PIPELINE_BATCH) {
    const chunk = keys.slice(i, i + PIPELINE_BATCH);
    const r = await pipelineInDb(c, db, (p) => {
      for (const k of chunk) p.del(k);
    });
    for (const v of r) n += Number(v);
  }
  return n;
}

/**
 * Full SCAN of one db, page by page, each key once (SCAN may repeat keys while the server
 * rehashes). The connection is left SELECTed on `db`: anything else sent on it during the scan
 * must stay in the same db (the helpers here SELECT the db they act on).
 */
export async function* scanDb(c: ServerConn, db: number): AsyncGenerator<Buffer[]> {
  await c.redis.select(db);
  const seen = new Set<string>();
  let cursor = '0';
  do {
    const [next, page] = await c.redis.scanBuffer(cursor, 'COUNT', SCAN_COUNT);
    cursor = next.toString();
    const fresh: Buffer[] = [];
    for (const k of page) {
      const t = keyText(k);
      // rehome's own keys (the phase hash, plan's probes) are not data: never listed or moved.
      if (seen.has(t) || t.startsWith(RESERVED_PREFIX)) continue;
      seen.add(t);
      fresh.push(k);
    }
    if (fresh.length > 0) yield fresh;
  } while (cursor !== '0');
}

/**
 * Which of `keys` are in both servers in `db`, safe to ask while proxies move keys. A key
 * carried across between two EXISTS is seen in both when the side it leaves is asked first
 * (a key moving old -> new when the source is asked first, one moving back at phase reverse when
 * the target is). So each key is asked in both orders, and only one in both each time counts:
 * a key moving one way can't be seen in both in the order that asks its destination first,
 * while a key really in both is in both whatever the order.
 */
export async function confirmInBoth(
  source: ServerConn,
  target: ServerConn,
  db: number,
  keys: readonly Buffer[],
): Promise<Buffer[]> {
  const once = await inBothAsked(keys, db, target, source);
  return inBothAsked(once, db, source, target);
}

/** Which of `keys` `first` holds and then (after all of first's answers) `second` holds too. */
async function inBothAsked(keys: readonly Buffer[], db: number, first: ServerConn, second: ServerConn): Promise<Buffer[]> {
  if (keys.length === 0) return [];
  const inFirst = await existsEach(first, db, keys);
  const cand = keys.filter((_, i) => inFirst[i]);
  if (cand.length === 0) return [];
  const inSecond = await existsEach(second, db, cand);
  return cand.filter((_, i) => inSecond[i]);
}
