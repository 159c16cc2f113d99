/**
 * `rehome import --rdb FILE | --aof DIR --target URL`: a file as the old server.
 *
 * A throwaway redis-server that can read the file loads it (import-binaries.ts picks it,
 * import-server.ts runs it), and then a rehome proxy with that server as its source migrates
 * every key into the target: the same runtime, method choice (plan's probe), sweeper, progress
 * and drained as a migration, with no client but the sweeper. At drained, verify must find the
 * throwaway server empty and no key in both; only then does import exit 0.
 *
 * Order: the usage and the target's emptiness are checked before any server starts; whatever
 * happens after that (a failure, Ctrl-C), the throwaway server is killed and its directory
 * removed before the process exits.
 */
import { existsSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { buildConfig, type ProxyConfig, type RawOptions } from '../config.js';
import { ConfigError, RehomeError } from '../errors.js';
import { createOutput, type Output } from '../log.js';
import { dropMarkers } from '../migration/drop-markers.js';
import { showProgress } from '../progress.js';
import type { RehomeProxy } from '../proxy/server.js';
import { startRehome } from '../start.js';
import { SERVER_TLS_FLAGS } from '../tls-config.js';
import { describeEndpoint, parseRedisUrl } from '../upstream/endpoint.js';
import { describeBinary, findServerBinaries, probeBinary, readsRdb, serversDir, serversFor, type ServerBinary } from './import-binaries.js';
import { describeInput, type ImportInput } from './import-input.js';
import { LoadError, startThrowaway, type ThrowawayServer } from './import-server.js';
import { checkTarget } from './import-target.js';
import { plural } from '../tools/scan-both.js';
import { formatVerifyReport, verify } from '../tools/verify.js';

const IMPORT_USAGE = `usage: rehome import --rdb FILE | --aof DIR|FILE --target redis://[user:pass@]host:port [options]

Loads an RDB file (or an AOF) into a throwaway redis-server on a free loopback port, moves every
key into the target as a migration does (MIGRATE, DUMP/RESTORE or the type-aware copy, chosen as
rehome plan does), runs rehome verify, and stops the throwaway server. Exit code 0: every key is
in the target; 1: a failure (nothing was lost: what did not move is still in the file); 2: bad
usage; 130/143: interrupted (SIGINT/SIGTERM; keys moved so far stay in the target).

  --rdb FILE                the RDB file to import (dump.rdb); never written
  --aof DIR|FILE            an appendonlydir of Redis 7+, or a single appendonly.aof: the server
                            loads the AOF instead of an RDB
  --target URL              the server the keys go into (rediss:// for TLS)
  --server-bin PATH         the redis-server (or valkey-server) that loads the file; default: the
                            oldest found that reads the file's RDB version, among redis-server and
                            valkey-server on PATH and <REHOME_SERVERS>/*/ (default ../shared/servers)
  --allow-nonempty-target   import into a target that already holds keys (a key in both: see
                            --on-conflict)
  --on-conflict source|target  keys both in the file and the target: keep the file's copy
                            (source) or the target's
  --move-method auto|migrate|dump|copy, --sweep-budget-ms N, --sweep-rate N, --big-key-mb N,
  --move-lease-ms N, --move-wait-aof auto|on|off, --admin [host:]port, --admin-token TOKEN,
  --log-format text|json, --progress bar|log|off
                            as for the proxy (rehome --help)
  --target-tls-ca-cert-file, --target-tls-cert-file, --target-tls-key-file, --target-tls-sni
                            TLS to a rediss:// target
  -h, --help                this text`;

/** The proxy's flags that import passes through unchanged. */
const PASSED = [
  'move-method', 'sweep-budget-ms', 'sweep-rate', 'big-key-mb', 'move-lease-ms', 'move-wait-aof',
  'admin', 'admin-token', 'log-format', 'progress', 'on-conflict',
] as const;

const TARGET_TLS_FLAGS = Object.fromEntries(Object.entries(SERVER_TLS_FLAGS).filter(([k]) => k.startsWith('target-')));

interface ImportArgs {
  input: ImportInput;
  config: ProxyConfig;
  serverBin: string | null;
  allowNonempty: boolean;
}

/** Flags -> what to do; ConfigError on bad usage. Null: --help was printed. */
function parseImportArgs(argv: string[]): ImportArgs | null {
  const { values } = parseArgs({
    args: argv,
    options: {
      rdb: { type: 'string' },
      aof: { type: 'string' },
      target: { type: 'string' },
      'server-bin': { type: 'string' },
      'allow-nonempty-target': { type: 'boolean' },
      ...Object.fromEntries(PASSED.map((f) => [f, { type: 'string' as const }])),
      ...TARGET_TLS_FLAGS,
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: false,
    strict: true,
  });
  if (values.help) return null;
  if (values.target === undefined) throw new ConfigError('--target is required (redis://[user:pass@]host:port or rediss:// for TLS)');
  const raw: RawOptions = { target: values.target as string, listen: '127.0.0.1:0', source: 'redis://127.0.0.1:1' };
  for (const f of [...PASSED, ...Object.keys(TARGET_TLS_FLAGS)]) {
    const v = (values as Record<string, unknown>)[f];
    if (typeof v === 'string') (raw as Record<string, unknown>)[f] = v;
  }
  // Validates every passed flag now, before a server starts; the source is filled in later.
  const config = buildConfig(raw);
  const input = describeInput(values.rdb as string | undefined, values.aof as string | undefined);
  return { input, config, serverBin: (values['server-bin'] as string | undefined) ?? null, allowNonempty: values['allow-nonempty-target'] === true };
}

/**
 * The servers to try, in order, with the reason for the first; or a RehomeError saying that none
 * here reads the file.
 */
async function chooseServers(input: ImportInput, serverBin: string | null): Promise<{ order: ServerBinary[]; why: string }> {
  const need = input.rdbVersion === null ? 'any RDB version' : `RDB version ${input.rdbVersion}`;
  if (serverBin !== null) {
    if (!existsSync(serverBin)) throw new ConfigError(`--server-bin ${serverBin}: no such file`);
    const b = await probeBinary(serverBin);
    if (b === null) throw new ConfigError(`--server-bin ${serverBin}: not a redis-server or valkey-server (its --version says neither)`);
    if (input.rdbVersion !== null && !readsRdb(b, input.rdbVersion)) {
      throw new RehomeError('EIMPORT', `--server-bin ${describeBinary(b)} cannot read ${need} (${input.path})`);
    }
    return { order: [b], why: 'given by --server-bin' };
  }
  const all = await findServerBinaries(process.env);
  const order = serversFor(all, input.rdbVersion);
  if (order.length === 0) {
    const found = all.length > 0 ? all.map(describeBinary).join('; ') : 'none';
    throw new RehomeError(
      'EIMPORT',
      `no server here reads ${need} (${input.path}): found ${found} (on PATH and under ${serversDir(process.env) ?? 'REHOME_SERVERS'}); install a server that writes that version or newer (RDB 12: Redis 7.4+) and pass it with --server-bin PATH, or set REHOME_SERVERS to a directory of <name>/redis-server binaries`,
    );
  }
  const others = order.slice(1).map((b) => `${b.engine === 'valkey' ? 'Valkey' : 'Redis'} ${b.version}`);
  return {
    order,
    why: `the oldest server here that reads ${need}, so its DUMP payloads suit the most targets${others.length > 0 ? `; also able: ${others.join(', ')}` : ''}`,
  };
}

/** The import command line. Returns the exit code (0 every key imported, 1 failure, 2 usage). */
export async function runImportCli(argv: string[]): Promise<number> {
  let args: ImportArgs | null;
  try {
    args = parseImportArgs(argv);
  } catch (e) {
    process.stderr.write(`rehome import: ${(e as Error).message.split('\n')[0]} (see --help)\n`);
    return 2;
  }
  if (args === null) {
    process.stdout.write(`${IMPORT_USAGE}\n`);
    return 0;
  }
  const out = createOutput(args.config.logFormat);
  const run = new ImportRun(args, out);
  const onSignal = (sig: NodeJS.Signals) => void run.interrupt(sig);
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    return await run.run();
  } catch (e) {
    await run.cleanUp();
    if (e instanceof ConfigError) {
      process.stderr.write(`rehome import: ${e.message} (see --help)\n`);
      return 2;
    }
    out.fatal(`import: ${(e as Error).message}`);
    return 1;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

/** One import, from the server's start to its stop; interrupt() may come at any point. */
class ImportRun {
  private server: ThrowawayServer | null = null;
  private stopServer: (() => Promise<void>) | null = null;
  private proxy: RehomeProxy | null = null;
  private stopProgress: () => void = () => {};
  private interrupted = false;
  private readonly log;

  constructor(
    private readonly args: ImportArgs,
    private readonly out: Output,
  ) {
    this.log = out.log;
  }

  async run(): Promise<number> {
    const { input, config } = this.args;
    const { order, why } = await chooseServers(input, this.args.serverBin);
    await checkTarget(config.target, this.args.allowNonempty, config.connectTimeoutMs, this.log);
    const failures: string[] = [];
    for (const bin of order) {
      if (this.interrupted) return this.never();
      this.log(`loading ${input.path} (${input.description}) with ${describeBinary(bin)}: ${failures.length === 0 ? why : 'the next that reads it'}`);
      const t0 = Date.now();
      try {
        this.server = await startThrowaway(bin, input, this.log, (stop) => (this.stopServer = stop));
      } catch (e) {
        if (!(e instanceof LoadError)) throw e;
        failures.push(`${bin.engine} ${bin.version}: ${e.message}`);
        this.log(`${bin.engine === 'valkey' ? 'Valkey' : 'Redis'} ${bin.version} could not load it: ${e.message}`);
        continue;
      }
      if (this.interrupted) return this.never();
      this.log(`loaded in ${((Date.now() - t0) / 1000).toFixed(1)} s by the throwaway server on 127.0.0.1:${this.server.port} (dir ${this.server.dir})`);
      break;
    }
    if (this.server === null) throw new RehomeError('EIMPORT', `no server could load ${input.path}: ${failures.join('; ')}`);
    return this.migrate();
  }

  /** Moves every key out of the loaded server, verifies, stops it. */
  private async migrate(): Promise<number> {
    const server = this.server!;
    const source = parseRedisUrl('throwaway server', `redis://127.0.0.1:${server.port}`);
    const config: ProxyConfig = { ...this.args.config, source };
    const started = Date.now();
    this.proxy = await startRehome(config, this.log);
    const proxy = this.proxy;
    const keys = proxy.migration.initialKeys;
    this.log(`importing ${plural(keys, 'key')} into ${describeEndpoint(config.target)}`);
    this.stopProgress = await showProgress(proxy, config.progress, this.log);
    // A server that dies mid-import (killed, out of memory) would leave the sweeper retrying forever.
    const died = await Promise.race([new Promise<null>((resolve) => proxy.onDrained(() => resolve(null))), server.died]);
    this.stopProgress();
    if (this.interrupted) return this.never();
    if (died !== null) throw new RehomeError('EIMPORT', `the throwaway server exited before every key moved (${died}); keys moved so far are in the target, the rest are still in the file`);
    await proxy.close();
    const took = (Date.now() - started) / 1000;
    const v = await verify({ source, target: config.target });
    const report = formatVerifyReport(v, source, config.target).trimEnd();
    await this.cleanUp();
    if (!v.ok) {
      this.out.fatal(`import: not every key reached the target: ${report}`);
      return 1;
    }
    const moved = proxy.mover.stats.keysMovedBySweeper + proxy.mover.stats.keysMovedOnTouch;
    process.stdout.write(
      `rehome: imported ${this.args.input.path} into ${describeEndpoint(config.target)}: ${plural(moved, 'key')} in ${took.toFixed(1)} s (${Math.round(moved / Math.max(took, 0.001))} keys/s; ${keys - moved} expired or already gone); verify: ${report}\n`,
    );
    return 0;
  }

  /** Ctrl-C: stop moving, stop the server, remove its directory, exit 128 + the signal. */
  async interrupt(sig: NodeJS.Signals): Promise<void> {
    if (this.interrupted) return;
    this.interrupted = true;
    this.stopProgress();
    this.log(`${sig}: stopping the import; keys moved so far stay in the target, the rest stay in the file`);
    await this.cleanUp();
    process.exit(sig === 'SIGINT' ? 130 : 143);
  }

  /** Waits for interrupt() to exit the process. */
  private never(): Promise<number> {
    return new Promise(() => {});
  }

  /**
   * Closes the proxy, kills the throwaway server, removes its directory, and drops the markers of
   * proxy-side moves from the target (every one there is this import's: import-target.ts): with
   * the only source gone, no mover can publish again, so the markers (which guard against a late
   * publish from that source) guard nothing, and left behind they would make a later import's
   * publish of the same key release it unpublished.
   */
  async cleanUp(): Promise<void> {
    const proxy = this.proxy;
    this.proxy = null;
    await proxy?.close().catch(() => {});
    const stop = this.stopServer;
    this.stopServer = null;
    await stop?.();
    if (proxy !== null) await dropMarkers(this.args.config.target, this.args.config.connectTimeoutMs).catch(() => 0);
  }
}

