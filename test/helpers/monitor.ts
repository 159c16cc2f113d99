/**
 * MONITOR on a server (usually the source) to observe what the proxy sends it, e.g. how many
 * MIGRATE commands a touch causes. sync() makes sure everything executed so far has been seen.
 */
import type { Redis } from 'ioredis';
import type { RedisServer } from './redis.js';
import { withTimeout } from './util.js';

export interface Monitor {
  /** Every command seen (args as strings), in execution order. */
  readonly commands: string[][];
  /** The MIGRATE commands seen. */
  migrates(): string[][];
  /** Resolves once every command executed on the server before this call has been observed. */
  sync(): Promise<void>;
  /** Forgets what was seen so far. */
  clear(): void;
  stop(): Promise<void>;
}

let syncCounter = 0;

export async function startMonitor(server: RedisServer): Promise<Monitor> {
  const base = server.client(0);
  const mon: Redis = await base.monitor();
  const commands: string[][] = [];
  const seen = new Set<string>();
  mon.on('monitor', (_time: string, args: string[]) => {
    if (args[0]?.toUpperCase() === 'ECHO' && args[1]?.startsWith('__rehome_monitor_sync_')) {
      seen.add(args[1]);
      return;
    }
    commands.push(args);
  });
  const pinger = server.client(0);
  return {
    commands,
    migrates: () => commands.filter((a) => a[0]?.toUpperCase() === 'MIGRATE'),
    async sync() {
      const token = `__rehome_monitor_sync_${process.pid}_${++syncCounter}`;
      await pinger.echo(token);
      await withTimeout(
        (async () => {
          while (!seen.has(token)) await new Promise((r) => setTimeout(r, 5));
        })(),
        5_000,
        'MONITOR sync',
      );
    },
    clear() {
      commands.length = 0;
    },
    async stop() {
      mon.disconnect();
      base.disconnect();
      pinger.disconnect();
    },
  };
}

/** The keys a MIGRATE command moves (single-key form or the KEYS form). */
export function migrateKeys(args: readonly string[]): string[] {
  const upper = args.map((a) => a.toUpperCase());
  const k = upper.indexOf('KEYS', 6);
  if (k >= 0) return args.slice(k + 1);
  return args[3] !== undefined && args[3] !== '' ? [args[3]] : [];
}
