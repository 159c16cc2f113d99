#!/usr/bin/env node
/**
 * rehome's command line: flags -> config -> start; exit codes; signals.
 * Exit codes: 0 clean stop, 1 runtime failure (unreachable server, port in use), 2 bad usage.
 */
import { parseArgs } from 'node:util';
import { buildConfig, DEFAULTS } from './config.js';
import { ConfigError, RehomeError } from './errors.js';
import { RehomeProxy } from './proxy/server.js';
import { describeEndpoint } from './upstream/endpoint.js';

const USAGE = `usage: rehome --source redis://[user:pass@]host:port --target redis://[user:pass@]host:port [options]

  --listen host:port             where clients connect (default ${DEFAULTS.listen}; port 0 picks one)
  --source URL                   the old instance, keys move out of it
  --target URL                   the new instance, keys move into it
  --target-from-source host:port the target's address as the source dials it for MIGRATE
  --no-sweep                     do not move untouched keys in the background
  --absent-cache-size N          keys remembered as absent from the source, per db (default ${DEFAULTS.absentCacheSize})
  --migrate-timeout-ms N         MIGRATE timeout (default ${DEFAULTS.migrateTimeoutMs})
  --max-pending-per-client N     outstanding requests per client before reading pauses (default ${DEFAULTS.maxPendingPerClient})
  --shutdown-timeout-ms N        wait for in-flight commands on SIGTERM/SIGINT (default ${DEFAULTS.shutdownTimeoutMs})
  -h, --help                     this text`;

function fail(code: number, msg: string): never {
  process.stderr.write(`rehome: ${msg}\n`);
  process.exit(code);
}

function log(line: string): void {
  process.stderr.write(`${new Date().toISOString()} rehome: ${line}\n`);
}

async function main(): Promise<void> {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      options: {
        listen: { type: 'string' },
        source: { type: 'string' },
        target: { type: 'string' },
        'target-from-source': { type: 'string' },
        'no-sweep': { type: 'boolean' },
        'absent-cache-size': { type: 'string' },
        'migrate-timeout-ms': { type: 'string' },
        'max-pending-per-client': { type: 'string' },
        'shutdown-timeout-ms': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
      allowPositionals: false,
      strict: true,
    }));
  } catch (e) {
    fail(2, `${(e as Error).message.split('\n')[0]} (see --help)`);
  }
  if (values.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  let config;
  try {
    config = buildConfig(values as Parameters<typeof buildConfig>[0]);
  } catch (e) {
    if (e instanceof ConfigError) fail(2, e.message);
    throw e;
  }
  let proxy: RehomeProxy;
  try {
    proxy = await RehomeProxy.start(config, log);
  } catch (e) {
    if (e instanceof RehomeError) fail(1, e.message);
    fail(1, (e as Error).message);
  }
  const addr = proxy.address();
  process.stdout.write(`rehome: listening on ${describeEndpoint(addr)}\n`);
  if (config.sweep) log('background sweeper: not available in this version; keys move when touched');
  let stopping = false;
  const stop = (sig: string) => {
    if (stopping) return;
    stopping = true;
    log(`${sig}: no longer accepting clients; finishing in-flight commands`);
    proxy.close().then(
      () => process.exit(0),
      (e: Error) => fail(1, e.message),
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((e: Error) => fail(1, e.message));
