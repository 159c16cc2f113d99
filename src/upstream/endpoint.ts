/**
 * Parsing of redis:// and rediss:// (TLS) [user:pass@]host:port URLs and host:port addresses. A db
 * in the URL (`/2`, `?db=2`) is refused: rehome migrates every db of the server, so a db there
 * would only mislead.
 */
import net from 'node:net';
import { ConfigError } from '../errors.js';

/**
 * TLS to a server (a rediss:// URL): the CA that signs its certificate (default: Node's bundled
 * CAs), the client certificate and key it may ask for, and the name sent as SNI and checked in its
 * certificate (default: the URL's host).
 */
export interface ServerTls {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
  servername?: string;
}

/** Where a server is, how to authenticate to it, and TLS (rediss://) when set. */
export interface Endpoint {
  host: string;
  port: number;
  username?: string;
  password?: string;
  tls?: ServerTls;
}

export function parseRedisUrl(what: string, url: string): Endpoint {
  let u: URL;
  try {
    u = new URL(url.includes('://') ? url : `redis://${url}`);
  } catch {
    throw new ConfigError(`${what}: not a redis:// URL: ${url}`);
  }
  if (u.protocol !== 'redis:' && u.protocol !== 'rediss:') {
    throw new ConfigError(`${what}: only redis:// and rediss:// (TLS) URLs are supported (got ${u.protocol}//)`);
  }
  const host = u.hostname.replace(/^\[|\]$/g, '');
  if (!host) throw new ConfigError(`${what}: missing host in ${url}`);
  const port = u.port ? Number(u.port) : 6379;
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(`${what}: bad port in ${url}`);
  }
  const db = u.pathname.replace(/^\/+/, '') || u.searchParams.get('db');
  if (db) {
    throw new ConfigError(
      `${what}: the URL names db ${db}, but rehome migrates every db of the server: give it without a db (redis://[user:pass@]host:port)`,
    );
  }
  const ep: Endpoint = { host, port };
  if (u.protocol === 'rediss:') ep.tls = {};
  const user = decodeURIComponent(u.username);
  const pass = decodeURIComponent(u.password);
  if (pass) {
    ep.password = pass;
    if (user && user !== 'default') ep.username = user;
    else if (user === 'default') ep.username = 'default';
  } else if (user) {
    // redis://secret@host is a password-only URL, as redis-cli and ioredis read it.
    ep.password = user;
  }
  return ep;
}

/**
 * host:port, [v6]:port, or with `defaultHost` also PORT and :PORT alone (that host, then).
 */
export function parseHostPort(what: string, s: string, defaultHost?: string): { host: string; port: number } {
  const m = defaultHost !== undefined && /^:?\d+$/.test(s) ? [s, defaultHost, s.replace(/^:/, '')] : /^\[?([^\]]*?)\]?:(\d+)$/.exec(s);
  if (!m || !m[1]) throw new ConfigError(`${what}: expected ${defaultHost !== undefined ? '[host]:port' : 'host:port'}, got '${s}'`);
  const port = Number(m[2]);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new ConfigError(`${what}: bad port in '${s}'`);
  }
  return { host: m[1], port };
}

/**
 * Whether a host names this machine's loopback interface only: localhost, 127.0.0.0/8, ::1 (also
 * IPv4-mapped). Any other name or address, 0.0.0.0 and :: included, reaches beyond it.
 */
export function isLoopback(host: string): boolean {
  const h = host.toLowerCase().replace(/^::ffff:(?=\d+\.)/, '');
  if (h === 'localhost' || h === '::1' || h === '0:0:0:0:0:0:0:1') return true;
  return net.isIPv4(h) && h.startsWith('127.');
}

export function describeEndpoint(ep: { host: string; port: number }): string {
  return ep.host.includes(':') ? `[${ep.host}]:${ep.port}` : `${ep.host}:${ep.port}`;
}

/** MIGRATE's credential arguments for a target: AUTH2 user pass, AUTH pass, or none. */
export function migrateAuthArgs(ep: { username?: string | undefined; password?: string | undefined }): string[] {
  if (ep.password === undefined) return [];
  return ep.username !== undefined ? ['AUTH2', ep.username, ep.password] : ['AUTH', ep.password];
}
