/**
 * The TLS flags: clients to rehome (`--tls-*`, Redis's config names and defaults) and rehome to
 * the servers (`--source-tls-*`, `--target-tls-*` for rediss:// URLs). Files are read here, at
 * start, so a missing or mismatched one stops start-up with one line naming the flag.
 */
import { readFileSync } from 'node:fs';
import tls from 'node:tls';
import { ConfigError, RehomeError } from './errors.js';
import type { Endpoint, ServerTls } from './upstream/endpoint.js';
import { parseHostPort } from './upstream/endpoint.js';

/** TLS for clients: a second listening port, as Redis's tls-port. */
export interface ClientTlsConfig {
  host: string;
  port: number;
  certFile: string;
  keyFile: string;
  /** The CA client certificates must chain to (required unless authClients is 'no'). */
  caFile: string | null;
  /** yes: a client certificate is required; optional: checked when sent; no: not asked for. */
  authClients: 'yes' | 'no' | 'optional';
}

export interface RawTlsOptions {
  'tls-port'?: string | undefined;
  'tls-cert-file'?: string | undefined;
  'tls-key-file'?: string | undefined;
  'tls-ca-cert-file'?: string | undefined;
  'tls-auth-clients'?: string | undefined;
}

/** The per-server flags, as parseArgs options (shared by the proxy, plan and verify). */
export const SERVER_TLS_FLAGS = {
  'source-tls-ca-cert-file': { type: 'string' },
  'source-tls-cert-file': { type: 'string' },
  'source-tls-key-file': { type: 'string' },
  'source-tls-sni': { type: 'string' },
  'target-tls-ca-cert-file': { type: 'string' },
  'target-tls-cert-file': { type: 'string' },
  'target-tls-key-file': { type: 'string' },
  'target-tls-sni': { type: 'string' },
} as const;

export type RawServerTlsOptions = { [K in keyof typeof SERVER_TLS_FLAGS]?: string | undefined };

/** Reads a PEM file named by a flag; a failure is one line naming the flag and the file. */
export function readPem(flag: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new RehomeError('ETLS', `${flag} ${file}: cannot read it: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/**
 * Checks that certificate, key and CA load together (a key that does not match its certificate,
 * a file that is not PEM), as Node would find out only at the first connection.
 */
export function checkContext(what: string, opts: tls.SecureContextOptions): void {
  try {
    tls.createSecureContext(opts);
  } catch (e) {
    throw new RehomeError('ETLS', `${what}: ${(e as Error).message}`);
  }
}

/** Adds the --source-tls-* / --target-tls-* files to a rediss:// endpoint; refuses them for redis://. */
export function withServerTls(role: 'source' | 'target', ep: Endpoint, o: RawServerTlsOptions): Endpoint {
  const flag = (f: string) => `--${role}-tls-${f}`;
  const ca = o[`${role}-tls-ca-cert-file`];
  const cert = o[`${role}-tls-cert-file`];
  const key = o[`${role}-tls-key-file`];
  const sni = o[`${role}-tls-sni`];
  const given = [ca && flag('ca-cert-file'), cert && flag('cert-file'), key && flag('key-file'), sni && flag('sni')].filter(Boolean);
  if (ep.tls === undefined) {
    if (given.length > 0) throw new ConfigError(`${given[0]} needs a rediss:// --${role} (TLS)`);
    return ep;
  }
  if ((cert === undefined) !== (key === undefined)) {
    throw new ConfigError(`${flag('cert-file')} and ${flag('key-file')} go together (the client certificate rehome shows the ${role})`);
  }
  const t: ServerTls = {};
  if (ca !== undefined) t.ca = readPem(flag('ca-cert-file'), ca);
  if (cert !== undefined && key !== undefined) {
    t.cert = readPem(flag('cert-file'), cert);
    t.key = readPem(flag('key-file'), key);
  }
  if (sni !== undefined) t.servername = sni;
  checkContext(`--${role} TLS files`, { ...t });
  return { ...ep, tls: t };
}

/** --tls-port and its files; null without --tls-port (then no other --tls-* flag may be given). */
export function parseClientTls(o: RawTlsOptions, listenHost: string): ClientTlsConfig | null {
  const port = o['tls-port'];
  if (port === undefined) {
    const other = (['tls-cert-file', 'tls-key-file', 'tls-ca-cert-file', 'tls-auth-clients'] as const).find((k) => o[k] !== undefined);
    if (other) throw new ConfigError(`--${other} needs --tls-port`);
    return null;
  }
  const addr = parseHostPort('--tls-port', port, listenHost);
  const certFile = o['tls-cert-file'];
  const keyFile = o['tls-key-file'];
  if (certFile === undefined || keyFile === undefined) {
    throw new ConfigError('--tls-port needs --tls-cert-file and --tls-key-file (the certificate rehome shows clients)');
  }
  const auth = o['tls-auth-clients'] ?? 'yes';
  if (auth !== 'yes' && auth !== 'no' && auth !== 'optional') {
    throw new ConfigError(`--tls-auth-clients must be yes, no or optional, got '${auth}'`);
  }
  const caFile = o['tls-ca-cert-file'] ?? null;
  if (caFile === null && auth !== 'no') {
    throw new ConfigError(`--tls-auth-clients ${auth} (yes is the default) needs --tls-ca-cert-file, the CA that signs client certificates; or give --tls-auth-clients no`);
  }
  return { ...addr, certFile, keyFile, caFile, authClients: auth };
}
