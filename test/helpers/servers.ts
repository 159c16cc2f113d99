/**
 * Server binaries of other versions and engines for version tests (../shared/servers by default,
 * or the directory in REHOME_SERVERS). Tests that need one skip with a one-line notice when it is
 * missing, so the suite passes on a machine with Debian's redis-server alone.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { REDIS_SERVER } from './redis.js';

const PROJECT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

export const SERVERS_DIR = process.env.REHOME_SERVERS ?? path.resolve(PROJECT, '../shared/servers');

/** The engines and versions tests can ask for; 'redis-7.0' is Debian's default binary. */
export type ServerName = 'redis-6.2.16' | 'redis-7.0' | 'redis-7.2.6' | 'redis-7.4.1' | 'valkey-8.0.1';

const ALL: ServerName[] = ['redis-6.2.16', 'redis-7.0', 'redis-7.2.6', 'redis-7.4.1', 'valkey-8.0.1'];

/** Path of a server binary, or null when it is not on this machine. */
export function serverBinary(name: ServerName): string | null {
  if (name === 'redis-7.0') return existsSync(REDIS_SERVER) ? REDIS_SERVER : null;
  const file = name.startsWith('valkey-') ? 'valkey-server' : 'redis-server';
  const p = path.join(SERVERS_DIR, name, file);
  return existsSync(p) ? p : null;
}

const noticed = new Set<string>();

/**
 * The binaries for `names`, or null after printing one line saying which are missing (once per
 * set). Use with `describe.skipIf(!bins)`.
 */
export function serverBinaries<N extends ServerName>(...names: N[]): Record<N, string> | null {
  const out = {} as Record<N, string>;
  const missing: string[] = [];
  for (const n of names) {
    const p = serverBinary(n);
    if (p) out[n] = p;
    else missing.push(n);
  }
  if (missing.length === 0) return out;
  const line = `skipping version tests that need ${missing.join(', ')}: not found under ${SERVERS_DIR} (set REHOME_SERVERS)`;
  if (!noticed.has(line)) {
    noticed.add(line);
    console.log(line);
  }
  return null;
}

/**
 * One line for the start of a version-matrix run: which binaries it found and which it lacks.
 * The per-test notices above are console output, which a passing run does not show (vitest's
 * `silent: 'passed-only'`); this line is printed by the run itself (test/helpers/versions-setup.ts).
 */
export function serversSummary(): string {
  const missing = ALL.filter((n) => serverBinary(n) === null);
  const found = ALL.filter((n) => !missing.includes(n));
  if (missing.length === 0) return `version matrix: all of ${found.join(', ')} found (under ${SERVERS_DIR})`;
  return `version matrix: found ${found.join(', ') || 'none'}; skipping the tests that need ${missing.join(', ')}: not found under ${SERVERS_DIR} (set REHOME_SERVERS)`;
}
