/**
 * Control connections (ioredis) to one server: moves, probes, COMMAND, keyspace-wide reads.
 * One connection per db, created on first use, because MIGRATE, EXISTS and SCAN act on the
 * connection's selected db.
 *
 * Every connection, including each reconnect, is named before ioredis gets it (namedRedis says
 * why). With a fence (phases in use, see src/phase/phase.ts), the name is the pool's epoch's and
 * the connection is then checked against the shared phase before ioredis may use it: a
 * connection that fails the check is never used.
 */
import net from 'node:net';
import { AbstractConnector, Redis } from 'ioredis';
import { connectSocket, connectedEvent, ioredisTls } from './connect.js';
import type { Endpoint } from './endpoint.js';

export interface ControlOptions {
  /** Longest wait for any one control command before it fails as uncertain. */
  commandTimeoutMs: number;
  connectTimeoutMs: number;
}

/** How a fenced pool names its connections and checks them. */
export interface Fence {
  /** CLIENT SETNAME value, e.g. rehome-e3-source. */
  name: string;
  /** Resolves when the phase (read after the call) still matches; rejects otherwise. */
  check(): Promise<void>;
}

function encode(args: readonly string[]): string {
  let s = `*${args.length}\r\n`;
  for (const a of args) s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
  return s;
}

/**
 * Opens a socket and runs AUTH (when the endpoint has credentials) and CLIENT SETNAME on it,
 * waiting for each +OK. Rejects with the server's error or on timeout. Unless the name is
 * `required` (a fence), a refused CLIENT SETNAME (CLIENT denied by ACL) leaves it unnamed.
 */
export function namedSocket(ep: Endpoint, name: string, timeoutMs: number, required = true): Promise<net.Socket> {
  const cmds: string[][] = [];
  if (ep.password !== undefined) {
    cmds.push(ep.username !== undefined ? ['AUTH', ep.username, ep.password] : ['AUTH', ep.password]);
  }
  cmds.push(['CLIENT', 'SETNAME', name]);
  return new Promise((resolve, reject) => {
    const sock = connectSocket(ep);
    sock.setNoDelay(true);
    let buf = '';
    let got = 0;
    const fail = (e: Error) => {
      clearTimeout(timer);
      sock.removeListener('data', onData);
      sock.destroy();
      reject(e);
    };
    const timer = setTimeout(() => fail(new Error(`connect to ${ep.host}:${ep.port} timed out`)), timeoutMs);
    const closed = () => fail(new Error('connection closed'));
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\r\n'); nl >= 0 && got < cmds.length; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        got++;
        const unnamed = !required && got === cmds.length && line[0] === '-';
        if (line[0] !== '+' && !unnamed) return fail(new Error(line.slice(1)));
      }
      if (got === cmds.length) {
        clearTimeout(timer);
        sock.removeListener('data', onData);
        sock.removeListener('error', fail);
        sock.removeListener('close', closed);
        resolve(sock);
      }
    };
    sock.on('data', onData);
    sock.once('error', fail);
    sock.once('close', closed);
    sock.once(connectedEvent(ep), () => sock.write(cmds.map(encode).join('')));
  });
}

/** An ioredis connector that hands over only sockets it has named and, with a check, checked. */
function namedConnector(ep: Endpoint, name: string, check: (() => Promise<void>) | null, timeoutMs: number): new (o: unknown) => AbstractConnector {
  return class NamedConnector extends AbstractConnector {
    constructor(_o: unknown) {
      super(2_000);
    }

    /**
     * A socket that failed before it was named comes back destroyed: ioredis then reconnects by
     * its retryStrategy, as for a connection that drops. A failed check (the phase moved on)
     * rejects: ioredis ends the connection for good, and it is never used.
     */
    connect(): Promise<net.Socket> {
      this.connecting = true;
      return namedSocket(ep, name, timeoutMs, check !== null).then(
        async (sock) => {
          this.stream = sock;
          try {
            await check?.();
          } catch (e) {
            sock.destroy();
            throw e;
          }
          if (!this.connecting) {
            sock.destroy();
            throw new Error('Connection is closed.');
          }
          return sock;
        },
        (err: Error) => {
          this.firstError = err;
          const dead = new net.Socket();
          dead.destroy();
          return dead;
        },
      );
    }
  };
}

export interface NamedRedisOptions {
  db?: number;
  connectTimeoutMs: number;
  /** Longest wait for one command (none: as long as it takes). */
  commandTimeoutMs?: number | undefined;
  /** ioredis's retryStrategy: the delay before reconnect number `times`, or null to give up. */
  retry: (times: number) => number | null;
  /** Runs once the socket is named, before ioredis may use it (a fence); rejects to refuse it. */
  check?: (() => Promise<void>) | undefined;
}

/**
 * An ioredis connection of rehome's own, named `name` (CLIENT SETNAME) on every (re)connect.
 *
 * Why the socket is named (and authenticated) before ioredis gets it, and ioredis sends no
 * CLIENT SETNAME or SETINFO of its own: ioredis marks a connection ready only once those
 * replies arrive, and when the server drops the connection before they do (a CLIENT KILL, a
 * restart) at the second failed attempt in a row, it still marks that dead connection ready
 * later, and from then on refuses to reconnect: every command waited in its queue for good.
 * With nothing to wait for, it is ready at once, before any socket event can intervene.
 */
export function namedRedis(ep: Endpoint, name: string, o: NamedRedisOptions): Redis {
  const c = new Redis({
    host: ep.host,
    port: ep.port,
    ...ioredisTls(ep),
    Connector: namedConnector(ep, name, o.check ?? null, o.connectTimeoutMs) as never,
    disableClientInfo: true,
    ...(o.db !== undefined ? { db: o.db } : {}),
    connectTimeout: o.connectTimeoutMs,
    ...(o.commandTimeoutMs !== undefined ? { commandTimeout: o.commandTimeoutMs } : {}),
    maxRetriesPerRequest: 1,
    enableReadyCheck: false,
    lazyConnect: false,
    retryStrategy: o.retry,
  });
  // Errors surface on the commands that fail; the 'error' event would otherwise be fatal.
  c.on('error', () => {});
  return c;
}

/** Lazily created per-db ioredis connections to one server. */
export class ControlPool {
  private readonly conns = new Map<number, Redis>();
  private closed = false;

  constructor(
    readonly endpoint: Endpoint,
    private readonly opts: ControlOptions,
    readonly role: 'source' | 'target',
    private readonly fence: Fence | null = null,
  ) {}

  db(n: number): Redis {
    let c = this.conns.get(n);
    // A fenced connection whose check failed at a reconnect (the phase moved on, or could not be
    // read) has ended for good: open a new one.
    if (!c || (c.status === 'end' && !this.closed)) {
      c = this.create(n, this.opts.commandTimeoutMs);
      this.conns.set(n, c);
    }
    return c;
  }

  /**
   * A dedicated connection (not pooled) for background work; the caller quits it. Its commands
   * time out like the pool's (a silently dead connection must not hang the sweeper or the source
   * watch), unless the caller gives a longer limit.
   */
  dedicated(db: number, commandTimeoutMs = this.opts.commandTimeoutMs): Redis {
    return this.create(db, commandTimeoutMs);
  }

  private create(db: number, commandTimeoutMs: number | undefined): Redis {
    const fence = this.fence;
    return namedRedis(this.endpoint, fence ? fence.name : `rehome-control-${this.role}`, {
      db,
      connectTimeoutMs: this.opts.connectTimeoutMs,
      commandTimeoutMs,
      retry: (times: number) => (this.closed ? null : Math.min(times * 100, 1000)),
      check: fence ? () => fence.check() : undefined,
    });
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
