/**
 * The proxy command, `rehome --source URL --target URL [options]`: flags -> config -> start;
 * progress, signals and exit codes. It runs against a ProcessHost: cli.ts gives it the process's
 * own streams, signals and exit; the test suite gives it captured streams and a handle, to run
 * proxies inside the test process (starting a process costs about 0.3 s of CPU, and the suite
 * starts some 400 proxies).
 * Exit codes: 0 clean stop, 1 runtime failure (unreachable server, port in use), 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { ADMIN_TOKEN_ENV, buildConfig, DEFAULT_CLIENT_LIMITS, DEFAULTS } from './config.js';
import { ConfigError, RehomeError } from './errors.js';
import { createOutput, type Output, type OutputSink } from './log.js';
import type { RehomeProxy } from './proxy/server.js';
import { showProgress } from './progress.js';
import { SERVER_TLS_FLAGS } from './tls-config.js';
import { describeEndpoint, isLoopback } from './upstream/endpoint.js';
import type { FleetAnnouncement } from './workers.js';

/** What the proxy command needs of the process it runs in. */
export interface ProcessHost extends OutputSink {
  /** Ends the process with this code (a real process never returns from it). */
  exit(code: number): void;
  /** Runs `f` on the signal. */
  onSignal(signal: 'SIGTERM' | 'SIGINT' | 'SIGHUP', f: () => void): void;
  /** The environment the config reads (REHOME_ADMIN_TOKEN). */
  readonly env: Record<string, string | undefined>;
}

/** Thrown after host.exit() where the host returns from it, to end the command there. */
class Exited extends Error {}

const USAGE = `usage: rehome --source redis://[user:pass@]host:port --target redis://[user:pass@]host:port [options]
       rehome plan --source URL --target URL [--target-from-source host:port] [--target-cluster h:p,...] [--db-map N:0] [--on-conflict source|target [--apply]]
       rehome verify --source URL --target URL
       rehome import --rdb FILE | --aof DIR --target URL [--allow-nonempty-target] [--server-bin PATH] (see rehome import --help)
       rehome status --admin [host:]port [--admin-token TOKEN] [--json]
       rehome sweeper pause|resume|rate KEYS_PER_SEC --admin [host:]port [--admin-token TOKEN]
       rehome phase hold|migrate|reverse --admin [host:]port [--admin-token TOKEN]

  --listen host:port|none        where clients connect (default ${DEFAULTS.listen}; port 0 picks one;
                                 none: TLS only, with --tls-port)
  --source URL                   the old instance, keys move out of it (rediss:// for TLS)
  --target URL                   the new instance, keys move into it (rediss:// for TLS)
  --tls-port [host:]port         also serve clients over TLS here (host: --listen's); SIGHUP reloads the files
  --tls-cert-file FILE           the certificate rehome shows clients (PEM, with its chain)
  --tls-key-file FILE            its private key (PEM)
  --tls-ca-cert-file FILE        the CA that client certificates must chain to
  --tls-auth-clients yes|no|optional  require client certificates, don't ask, or check one if sent (default yes)
  --source-tls-ca-cert-file FILE the CA of a rediss:// source's certificate (default: Node's bundled CAs)
  --source-tls-cert-file FILE    with --source-tls-key-file: the client certificate shown to the source
  --source-tls-key-file FILE
  --source-tls-sni NAME          the name sent as SNI and checked in the source's certificate (default: the URL's host)
  --target-tls-ca-cert-file, --target-tls-cert-file, --target-tls-key-file, --target-tls-sni: the same for the target
  --target-from-source host:port the target's address as the source dials it for MIGRATE
  --target-cluster HOST:PORT,...  more seed nodes of a cluster target (--target is one): the slot
                                 map is read from the first that answers (README "New server is a cluster")
  --db-map N:0                   a cluster target: merge the old server's db N into the cluster's db 0
                                 (repeatable; rehome plan checks for keys in two merged dbs)
  --phase hold|migrate           use phases; the phase a fresh deployment starts in (see rehome phase)
  --source-from-target host:port the source's address as the target dials it for MIGRATE (reverse)
  --no-sweep                     do not move untouched keys in the background
  --absent-cache-size N          keys remembered as absent from the source, per db (default ${DEFAULTS.absentCacheSize})
  --migrate-timeout-ms N         MIGRATE timeout (default ${DEFAULTS.migrateTimeoutMs})
  --max-pending-per-client N     outstanding requests per client before reading pauses (default ${DEFAULTS.maxPendingPerClient})
  --shutdown-timeout-ms N        wait for in-flight commands on SIGTERM/SIGINT (default ${DEFAULTS.shutdownTimeoutMs})
  --maxclients N                 most clients at once; the next gets an error and is closed (default ${DEFAULT_CLIENT_LIMITS.maxClients})
  --proto-max-bulk-len BYTES     largest bulk argument of a request (default 512mb)
  --client-query-buffer-limit BYTES  most bytes of unfinished requests held for one client (default 1gb)
  --client-output-buffer-limit BYTES most reply bytes held for a client that does not read them;
                                 past it the client is disconnected; 0 = no limit (default 256mb)
  --timeout SECONDS              close clients idle this long, 0 = never (default 0)
  --sweep-budget-ms N            longest one sweeper MIGRATE should block the source (default ${DEFAULTS.sweepBudgetMs})
  --sweep-touch-budget-ms N      while clients touch unmoved keys, longest one sweeper step holds
                                 the source, so a touch waits behind at most that (default ${DEFAULTS.sweepTouchBudgetMs})
  --sweep-rate N                 sweeper keys per second at most, 0 = no limit (default ${DEFAULTS.sweepRate}); with
                                 phases only the fleet's first value: a rate stored with the phase wins
  --switch-drain-ms N            at a phase switch, longest wait for commands in flight before the
                                 fence; clients keep their connections (default ${DEFAULTS.switchDrainMs}, 0 = close them)
  --big-key-mb N                 keys at least this large are moved alone, in chunks where a proxy-side
                                 move is at hand, and reported (default ${DEFAULTS.bigKeyMb})
  --move-method auto|migrate|dump|copy  how keys move: the source's MIGRATE, DUMP on the source and
                                 RESTORE on the target, or the type-aware copy; auto probes the pair
                                 at start as rehome plan does, per direction (default auto)
  --move-lease-ms N              lease of a proxy-side move's claim; a claim of a process that died is
                                 taken over once it lapses (default ${DEFAULTS.moveLeaseMs})
  --move-wait-aof auto|on|off    a proxy-side move waits (WAITAOF, Redis 7.2+) until the target has its
                                 copy in its AOF before deleting the source's; auto: where the target
                                 runs with appendonly yes (default auto)
  --exit-when-drained            exit 0 once the source is empty
  --on-conflict source|target    keys found in both servers at start: keep this copy, delete the other
  --force                        start even when the pre-flight checks (rehome plan) fail
  --admin [host:]port            serve /status, /metrics, /healthz, /readyz, sweeper and phase control over
                                 HTTP; a port alone binds ${DEFAULTS.adminHost}
  --admin-token TOKEN            requests that change something must send Authorization: Bearer TOKEN, and
                                 beyond loopback every request but /healthz and /readyz (required there);
                                 also read from ${ADMIN_TOKEN_ENV}, which keeps it out of the process list
  --log-format text|json         log lines as text or one JSON object per line (default text)
  --progress bar|log|off         progress display (default: bar on a terminal, log lines otherwise)
  --workers N                    processes serving the one --listen port (default ${DEFAULTS.workers}); worker 1
                                 also runs the sweeper, --admin and the progress output
  --shared-connections N         connections to the target shared by the commands of clients that use no
                                 connection state (GET, SET, HSET...); a client moves to its own connection
                                 at its first other command; 0 = own connections only (default ${DEFAULTS.sharedConnections})
  --keepalive SECONDS            PING idle shared connections, and the idle own connections of clients using
                                 them, this often, below the server's timeout; 0 = never (default ${DEFAULTS.keepaliveSeconds})
  -h, --help                     this text`;

/** Runs the proxy command with `argv` (the flags, without the program's name) on `host`. */
export async function runProxyCommand(argv: string[], host: ProcessHost): Promise<void> {
  // Text until the flags say otherwise (and know the --workers slot).
  let out: Output = createOutput('text', null, host);
  // In a --workers worker: its log lines, held until the fleet's listening line is out.
  let workerLines = null as FleetAnnouncement | null;
  function fail(code: number, msg: string): never {
    workerLines?.release();
    out.fatal(msg);
    host.exit(code);
    throw new Exited();
  }
  const log = (line: string, fields?: Record<string, unknown>): void => {
    if (workerLines) workerLines.log(line, fields);
    else out.log(line, fields);
  };
  try {
    await run();
  } catch (e) {
    if (e instanceof Exited) return;
    workerLines?.release();
    out.fatal((e as Error).message);
    host.exit(1);
  }

  async function run(): Promise<void> {
    let values: Record<string, string | string[] | boolean | undefined>;
    try {
      ({ values } = parseArgs({
        args: argv,
        options: {
          'sweep-budget-ms': { type: 'string' },
          'sweep-touch-budget-ms': { type: 'string' },
          'sweep-rate': { type: 'string' },
          'switch-drain-ms': { type: 'string' },
          'big-key-mb': { type: 'string' },
          'move-method': { type: 'string' },
          'move-lease-ms': { type: 'string' },
          'move-wait-aof': { type: 'string' },
          'exit-when-drained': { type: 'boolean' },
          'on-conflict': { type: 'string' },
          force: { type: 'boolean' },
          phase: { type: 'string' },
          'source-from-target': { type: 'string' },
          admin: { type: 'string' },
          'admin-token': { type: 'string' },
          'log-format': { type: 'string' },
          progress: { type: 'string' },
          listen: { type: 'string' },
          'tls-port': { type: 'string' },
          'tls-cert-file': { type: 'string' },
          'tls-key-file': { type: 'string' },
          'tls-ca-cert-file': { type: 'string' },
          'tls-auth-clients': { type: 'string' },
          ...SERVER_TLS_FLAGS,
          source: { type: 'string' },
          target: { type: 'string' },
          'target-from-source': { type: 'string' },
          'target-cluster': { type: 'string' },
          'db-map': { type: 'string', multiple: true },
          'no-sweep': { type: 'boolean' },
          'absent-cache-size': { type: 'string' },
          'migrate-timeout-ms': { type: 'string' },
          'max-pending-per-client': { type: 'string' },
          'shutdown-timeout-ms': { type: 'string' },
          maxclients: { type: 'string' },
          'proto-max-bulk-len': { type: 'string' },
          'client-query-buffer-limit': { type: 'string' },
          'client-output-buffer-limit': { type: 'string' },
          timeout: { type: 'string' },
          workers: { type: 'string' },
          'shared-connections': { type: 'string' },
          keepalive: { type: 'string' },
          help: { type: 'boolean', short: 'h' },
        },
        allowPositionals: false,
        strict: true,
      }));
    } catch (e) {
      fail(2, `${(e as Error).message.split('\n')[0]} (see --help)`);
    }
    if (values.help) {
      host.stdout(`${USAGE}\n`);
      return;
    }
    let config;
    try {
      config = buildConfig(values as Parameters<typeof buildConfig>[0], host.env);
    } catch (e) {
      if (e instanceof ConfigError) fail(2, e.message);
      throw e;
    }
    // node:cluster and the fleet's code only for --workers (its workers run with the same flags): a
    // single process would pay their loading at every start for nothing.
    const fleet = config.workers > 1 ? await import('./workers.js') : null;
    const slot = fleet?.workerSlot() ?? null;
    out = createOutput(config.logFormat, slot?.id ?? null, host);
    if (fleet && slot !== null) workerLines = fleet.linesUntilAnnounced((line, fields) => out.log(line, fields));
    if (fleet && slot === null) await fleet.runPrimary(config, out);
    if (fleet && slot !== null) config = fleet.workerConfig(config, slot);
    // Printed from inside start, before the runtime's held log lines: a small dataset can be
    // migrated before start returns, and its "migration complete" must not come first.
    const listening = (p: RehomeProxy) => {
      const addr = p.address();
      // In a --workers fleet the primary prints this line once every worker listens.
      if (fleet && slot !== null) fleet.toPrimary({ rehome: 'listening', host: addr.host, port: addr.port });
      else out.listening(describeEndpoint(addr));
      const admin = p.adminAddress();
      if (admin && config.admin) {
        const lock = config.admin.token === null
          ? 'no token: anyone on this host can switch the phase'
          : isLoopback(config.admin.host) ? 'changes need the token' : 'every request but /, /healthz and /readyz needs the token';
        log(`admin endpoint on http://${describeEndpoint(admin)} (the dashboard at /; /status, /metrics, /healthz, /readyz; ${lock})`);
      }
    };
    let proxy: RehomeProxy;
    try {
      const { startRehome } = await import('./start.js');
      proxy = await startRehome(config, log, { preflight: slot?.preflight ?? true, listening });
    } catch (e) {
      if (e instanceof RehomeError) fail(1, e.message);
      fail(1, (e as Error).message);
    }
    const stopProgress = await showProgress(proxy, config.progress, log);
    let stopping = false;
    const stop = (sig: string) => {
      if (stopping) return;
      stopping = true;
      workerLines?.release();
      stopProgress();
      log(`${sig}: no longer accepting clients; finishing in-flight commands`);
      proxy.close().then(
        () => host.exit(0),
        (e: Error) => {
          out.fatal(e.message);
          host.exit(1);
        },
      );
    };
    host.onSignal('SIGTERM', () => stop('SIGTERM'));
    host.onSignal('SIGINT', () => stop('SIGINT'));
    // As Redis does with its TLS files: new connections get the certificate as it is on disk now.
    if (config.tls) host.onSignal('SIGHUP', () => proxy.reloadTls());
    if (fleet && slot !== null) {
      // Another worker's sweeper found the source empty (only sent without phases: see workers.ts).
      fleet.onPrimaryMessage((m) => {
        if (m.rehome === 'drained' && proxy.phases === null) proxy.migration.setDrained();
      });
    }
    proxy.onDrained(() => {
      fleet?.toPrimary({ rehome: 'drained', phases: proxy.phases !== null });
      stopProgress();
      if (!config.exitWhenDrained) return;
      if (workerLines) workerLines.afterAnnounced(() => stop('drained (--exit-when-drained)'));
      else stop('drained (--exit-when-drained)');
    });
  }
}
