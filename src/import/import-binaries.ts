/**
 * Which redis-server can load a file: the binaries on this machine (`redis-server` and
 * `valkey-server` on PATH, and each `<dir>/*\/redis-server|valkey-server` under REHOME_SERVERS,
 * by default ../shared/servers beside the project), each with the newest RDB version it reads.
 *
 * Choice: the oldest server that reads the file's RDB version. It loads everything the file can
 * hold, and its DUMP payloads are the ones most targets accept, so MIGRATE works for more pairs.
 */
import { execFile } from 'node:child_process';
import { accessSync, constants, existsSync, readdirSync, readFileSync, realpathSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface ServerBinary {
  path: string;
  engine: 'redis' | 'valkey';
  version: string;
  /** The newest RDB version it reads (and writes). */
  maxRdb: number;
}

/**
 * The RDB version each release line writes, and so the newest it reads, oldest first. A release
 * past the table reads what the newest line before it reads.
 */
const RDB_BY_RELEASE: Record<ServerBinary['engine'], Array<[string, number]>> = {
  redis: [['2.6', 6], ['3.2', 8], ['5.0', 9], ['7.0', 10], ['7.2', 11], ['7.4', 12]],
  valkey: [['7.2', 11], ['9.0', 80]],
};

function versionNumbers(v: string): number[] {
  return v.split('.').map((x) => Number.parseInt(x, 10) || 0);
}

function atLeast(v: string, than: string): boolean {
  const a = versionNumbers(v);
  const b = versionNumbers(than);
  for (let i = 0; i < Math.max(a.length, b.length); i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d > 0;
  }
  return true;
}

/** The newest RDB version a release writes and reads (0: older than the table). */
export function maxRdbOf(engine: ServerBinary['engine'], version: string): number {
  let max = 0;
  for (const [from, rdb] of RDB_BY_RELEASE[engine]) if (atLeast(version, from)) max = rdb;
  return max;
}

/**
 * Whether a server reads an RDB version. Valkey reads Redis's versions up to 11; 12 to 79 are
 * Redis 7.4 and later formats it refuses; 80 on are its own.
 */
export function readsRdb(b: ServerBinary, v: number): boolean {
  if (b.engine === 'valkey') return v <= 11 || (v >= 80 && v <= b.maxRdb);
  return v <= b.maxRdb;
}

/** `redis-server --version`: "Redis server v=7.0.15 ..." or "Valkey server v=8.0.1 ...". */
export function parseServerVersion(text: string): { engine: ServerBinary['engine']; version: string } | null {
  const m = /^(Redis|Valkey) server v=(\d+(?:\.\d+)*)/m.exec(text);
  if (!m) return null;
  return { engine: m[1] === 'Valkey' ? 'valkey' : 'redis', version: m[2]! };
}

/** Asks a binary its version; null when it can't run or says something else. */
export function probeBinary(file: string): Promise<ServerBinary | null> {
  return new Promise((resolve) => {
    execFile(file, ['--version'], { timeout: 10_000 }, (err, stdout) => {
      const v = err ? null : parseServerVersion(stdout);
      resolve(v && { path: file, ...v, maxRdb: maxRdbOf(v.engine, v.version) });
    });
  });
}

/** The project's root (the directory of its package.json), from this module, bundled or not. */
function projectRoot(): string | null {
  let dir = path.dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    try {
      if ((JSON.parse(readFileSync(path.join(dir, 'package.json'), 'utf8')) as { name?: string }).name === 'rehome') return dir;
    } catch {
      /* not here */
    }
    dir = path.dirname(dir);
  }
  return null;
}

/** Where version binaries are looked for: REHOME_SERVERS, else ../shared/servers beside the project. */
export function serversDir(env: Record<string, string | undefined>): string | null {
  if (env.REHOME_SERVERS) return path.resolve(env.REHOME_SERVERS);
  const root = projectRoot();
  return root === null ? null : path.resolve(root, '../shared/servers');
}

function executable(p: string): boolean {
  try {
    accessSync(p, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Candidate binary paths, each real file once. */
function candidatePaths(env: Record<string, string | undefined>): string[] {
  const out: string[] = [];
  const names = ['redis-server', 'valkey-server'];
  for (const dir of (env.PATH ?? '').split(path.delimiter).filter(Boolean)) {
    for (const n of names) if (executable(path.join(dir, n))) out.push(path.join(dir, n));
  }
  const root = serversDir(env);
  if (root !== null && existsSync(root)) {
    let subdirs: string[] = [];
    try {
      subdirs = readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    } catch {
      /* unreadable: PATH's only */
    }
    for (const d of subdirs) for (const n of names) if (executable(path.join(root, d, n))) out.push(path.join(root, d, n));
  }
  const seen = new Set<string>();
  return out.filter((p) => {
    const real = realpathSync(p);
    if (seen.has(real)) return false;
    seen.add(real);
    return true;
  });
}

/** Every server binary found on this machine that answers --version. */
export async function findServerBinaries(env: Record<string, string | undefined>): Promise<ServerBinary[]> {
  const found = await Promise.all(candidatePaths(env).map(probeBinary));
  return found.filter((b): b is ServerBinary => b !== null);
}

export function describeBinary(b: ServerBinary): string {
  return `${b.engine === 'valkey' ? 'Valkey' : 'Redis'} ${b.version} (${b.path}, reads RDB up to version ${b.maxRdb})`;
}

/**
 * The binaries that read `rdbVersion` (null: any), in the order to try them: oldest first, Redis
 * before Valkey at the same RDB version.
 */
export function serversFor(bins: readonly ServerBinary[], rdbVersion: number | null): ServerBinary[] {
  return bins
    .filter((b) => rdbVersion === null || readsRdb(b, rdbVersion))
    .sort((a, b) => a.maxRdb - b.maxRdb || (a.engine === b.engine ? 0 : a.engine === 'redis' ? -1 : 1));
}
