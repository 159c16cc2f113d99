/**
 * `rehome import`'s input: what the file (or AOF directory) is, which RDB version a server must
 * read to load it, and a private copy of it for the throwaway server.
 *
 * The user's file is never written: the server's --dir is a temporary directory, where a big file
 * that Redis only reads (an RDB, an AOF's base) is a symlink, and a file Redis appends to while it
 * runs (an AOF's incremental files, a single appendonly.aof, the manifest it rewrites) is a copy.
 * Whatever Redis writes or renames lands in the temporary directory: a rename over a symlink
 * replaces the link, not the file it points to.
 */
import { closeSync, copyFileSync, mkdirSync, openSync, readdirSync, readFileSync, readSync, statSync, symlinkSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.js';

/** The Redis 7 AOF layout: a manifest naming a base file and incremental files. */
const MANIFEST_MIN_RDB = 10;

export interface ImportInput {
  kind: 'rdb' | 'aof-dir' | 'aof-file';
  /** The user's path, absolute. */
  path: string;
  /**
   * The RDB version a server must read: the RDB file's, or an AOF's RDB part (its base or
   * preamble); the manifest layout needs Redis 7.0 (RDB 10). null: plain commands, any server.
   */
  rdbVersion: number | null;
  /** For the log: what was found ("RDB version 10", "AOF directory, base RDB 12, 2 incremental files"). */
  description: string;
  /** An AOF directory's manifest: its file name and the files it lists. */
  manifest: { name: string; files: Array<{ name: string; type: string }> } | null;
}

/** The first bytes of a file, or a ConfigError saying why it can't be read. */
function head(file: string, what: string, n = 16): Buffer {
  let fd: number;
  try {
    fd = openSync(file, 'r');
  } catch (e) {
    throw new ConfigError(`${what} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  try {
    const buf = Buffer.alloc(n);
    const got = readSync(fd, buf, 0, n, 0);
    return buf.subarray(0, got);
  } catch (e) {
    throw new ConfigError(`${what} ${file}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  } finally {
    closeSync(fd);
  }
}

/** The RDB version in a header (`REDIS0010`, Valkey 9's `VALKEY080`), or null when it is none. */
export function rdbVersionOf(bytes: Buffer): number | null {
  const m = /^(?:REDIS|VALKEY)(\d{3,4})/.exec(bytes.toString('latin1'));
  return m ? Number(m[1]) : null;
}

/** The tokens of a manifest line; a name with spaces is double-quoted there, with backslash escapes. */
function manifestTokens(line: string): string[] {
  const out: string[] = [];
  const re = /"((?:[^"\\]|\\.)*)"|(\S+)/g;
  for (let m = re.exec(line); m !== null; m = re.exec(line)) out.push(m[1] !== undefined ? m[1].replace(/\\(.)/g, '$1') : m[2]!);
  return out;
}

/** Parses a Redis 7 AOF manifest (`file NAME seq N type b|h|i` per line). */
export function parseManifest(text: string): Array<{ name: string; type: string }> {
  const files: Array<{ name: string; type: string }> = [];
  for (const line of text.split('\n')) {
    if (line.trim() === '' || line.startsWith('#')) continue;
    const t = manifestTokens(line);
    const fields = new Map<string, string>();
    for (let i = 0; i + 1 < t.length; i += 2) fields.set(t[i]!, t[i + 1]!);
    const name = fields.get('file');
    const type = fields.get('type');
    if (name === undefined || type === undefined || name.includes('/')) throw new ConfigError(`not an AOF manifest line: ${line}`);
    files.push({ name, type });
  }
  return files;
}

function isDir(p: string, what: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch (e) {
    throw new ConfigError(`${what} ${p}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
}

function describeAofDir(dir: string): ImportInput {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new ConfigError(`--aof ${dir}: cannot read it (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const manifests = names.filter((n) => n.endsWith('.manifest'));
  if (manifests.length !== 1) {
    throw new ConfigError(
      `--aof ${dir}: ${manifests.length === 0 ? 'no' : 'more than one'} *.manifest file: give the appendonlydir of Redis 7 or later, or a single appendonly.aof file`,
    );
  }
  const name = manifests[0]!;
  let text: string;
  try {
    text = readFileSync(path.join(dir, name), 'latin1');
  } catch (e) {
    throw new ConfigError(`--aof ${dir}: cannot read ${name} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const files = parseManifest(text);
  const base = files.find((f) => f.type === 'b');
  const incr = files.filter((f) => f.type === 'i');
  for (const f of [...(base ? [base] : []), ...incr]) head(path.join(dir, f.name), `--aof ${dir}:`, 0);
  const baseRdb = base ? rdbVersionOf(head(path.join(dir, base.name), `--aof ${dir}:`)) : null;
  const parts = [
    base ? (baseRdb !== null ? `base ${base.name} (RDB version ${baseRdb})` : `base ${base.name} (commands)`) : 'no base file',
    `${incr.length} incremental file${incr.length === 1 ? '' : 's'}`,
  ];
  return {
    kind: 'aof-dir',
    path: dir,
    rdbVersion: Math.max(MANIFEST_MIN_RDB, baseRdb ?? 0),
    description: `AOF directory (${name}: ${parts.join(', ')}; the manifest needs Redis 7.0 or later)`,
    manifest: { name, files },
  };
}

/**
 * What to import: --aof when given (a server with appendonly yes loads its AOF, not its RDB),
 * else --rdb. Throws ConfigError (a usage error) for a missing, unreadable or unknown input.
 */
export function describeInput(rdb: string | undefined, aof: string | undefined): ImportInput {
  if (aof !== undefined) {
    const p = path.resolve(aof);
    if (isDir(p, '--aof')) return describeAofDir(p);
    const v = rdbVersionOf(head(p, '--aof'));
    const first = head(p, '--aof', 1);
    if (v === null && first.length > 0 && first[0] !== 0x2a) {
      throw new ConfigError(`--aof ${p}: not an AOF file (it starts with neither '*' nor an RDB preamble)`);
    }
    return {
      kind: 'aof-file',
      path: p,
      rdbVersion: v,
      description: v === null ? 'AOF file (commands)' : `AOF file with an RDB preamble (RDB version ${v})`,
      manifest: null,
    };
  }
  if (rdb === undefined) throw new ConfigError('give --rdb FILE or --aof DIR: the data to import');
  const p = path.resolve(rdb);
  if (isDir(p, '--rdb')) throw new ConfigError(`--rdb ${p}: a directory, not an RDB file`);
  const v = rdbVersionOf(head(p, '--rdb'));
  if (v === null) throw new ConfigError(`--rdb ${p}: not an RDB file (it does not start with REDIS and a version number)`);
  return { kind: 'rdb', path: p, rdbVersion: v, description: `RDB version ${v}`, manifest: null };
}

/**
 * Lays the input out in `dir` (the server's --dir) and returns the server arguments that load it.
 * See the file comment for what is linked and what is copied.
 */
export function stageInput(input: ImportInput, dir: string): string[] {
  const common = ['--dir', dir, '--save', '', '--auto-aof-rewrite-percentage', '0'];
  if (input.kind === 'rdb') {
    symlinkSync(input.path, path.join(dir, 'dump.rdb'));
    return [...common, '--dbfilename', 'dump.rdb', '--appendonly', 'no'];
  }
  if (input.kind === 'aof-file') {
    copyFileSync(input.path, path.join(dir, 'appendonly.aof'));
    return [...common, '--dbfilename', 'dump.rdb', '--appendonly', 'yes', '--appendfilename', 'appendonly.aof'];
  }
  const aofDir = path.join(dir, 'appendonlydir');
  mkdirSync(aofDir);
  const { name, files } = input.manifest!;
  copyFileSync(path.join(input.path, name), path.join(aofDir, name));
  for (const f of files) {
    const from = path.join(input.path, f.name);
    const to = path.join(aofDir, f.name);
    // Incremental files are opened for appending; a base or history file is only read or unlinked.
    if (f.type === 'i') copyFileSync(from, to);
    else symlinkSync(from, to);
  }
  const appendFilename = name.slice(0, -'.manifest'.length);
  return [...common, '--dbfilename', 'dump.rdb', '--appendonly', 'yes', '--appenddirname', 'appendonlydir', '--appendfilename', appendFilename];
}
