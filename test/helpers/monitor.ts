/**
 * MONITOR on a server (usually the source) to observe what the proxy sends it, e.g. how many
 * MIGRATE commands a touch causes. sync() makes sure everything executed so far has been seen.
 */
import net from 'node:net';
import type { RedisServer } from './redis.js';
import { withTimeout } from './util.js';

export interface Monitor {
  /** Every command seen (args as strings), in execution order. */
  readonly commands: string[][];
  /** Who sent each of `commands` (same index): the client's address, or 'lua' inside a script. */
  readonly senders: string[];
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
  const commands: string[][] = [];
  const senders: string[] = [];
  const seen = new Set<string>();
  const mon = await monitorSocket(server, (args, sender) => {
    if (args[0]?.toUpperCase() === 'ECHO' && args[1]?.startsWith('__rehome_monitor_sync_')) {
      seen.add(args[1]);
      return;
    }
    commands.push(args);
    senders.push(sender);
  });
  const pinger = server.client(0);
  return {
    commands,
    senders,
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
      senders.length = 0;
    },
    async stop() {
      mon.destroy();
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

/**
 * MONITOR on a raw socket. (ioredis's monitor() can throw "Command queue state error" from inside
 * its parser when the server's first monitor line arrives in the same chunk as MONITOR's OK: an
 * uncaught exception that failed whichever test ran then.) Resolves once MONITOR is on.
 */
function monitorSocket(server: RedisServer, onCommand: (args: string[], sender: string) => void): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(server.port, server.host);
    const oks = server.password !== undefined ? 2 : 1;
    let seenOks = 0;
    let buf = '';
    sock.setEncoding('latin1');
    sock.on('connect', () => {
      const auth = server.password === undefined ? [] : server.username !== undefined ? ['AUTH', server.username, server.password] : ['AUTH', server.password];
      const cmd = (args: string[]) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a, 'latin1')}\r\n${a}\r\n`).join('')}`;
      sock.write((auth.length > 0 ? cmd(auth) : '') + cmd(['MONITOR']));
    });
    sock.on('error', reject);
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (seenOks < oks) {
          if (line.startsWith('-')) {
            sock.destroy();
            reject(new Error(`MONITOR: ${line}`));
            return;
          }
          if (++seenOks === oks) resolve(sock);
          continue;
        }
        // +<time> [<db> <address or lua>] "ARG" ...
        const start = line.indexOf('] ');
        const open = line.indexOf(' [');
        if (line.startsWith('+') && start >= 0) onCommand(parseQuoted(line.slice(start + 2)), line.slice(open + 2, start).split(' ')[1] ?? '');
      }
    });
  });
}

/** The arguments of a monitor line: double-quoted strings with the server's escapes (sdscatrepr). */
export function parseQuoted(s: string): string[] {
  const out: string[] = [];
  let i = 0;
  while (i < s.length) {
    if (s[i] !== '"') {
      i++;
      continue;
    }
    let cur = '';
    i++;
    while (i < s.length && s[i] !== '"') {
      if (s[i] === '\\' && i + 1 < s.length) {
        const e = s[i + 1]!;
        if (e === 'x' && i + 3 < s.length) {
          cur += String.fromCharCode(parseInt(s.slice(i + 2, i + 4), 16));
          i += 4;
          continue;
        }
        cur += e === 'n' ? '\n' : e === 'r' ? '\r' : e === 't' ? '\t' : e === 'a' ? '\x07' : e === 'b' ? '\b' : e;
        i += 2;
        continue;
      }
      cur += s[i];
      i++;
    }
    out.push(cur);
    i++;
  }
  return out;
}
