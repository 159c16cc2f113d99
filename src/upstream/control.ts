/**
 * Control connections (ioredis) to one server: moves, probes, COMMAND, keyspace-wide reads.
 * One connection per db, created on first use, because MIGRATE, EXISTS and SCAN act on the
 * connection's selected db.
 *
 * With a fence (phases in use, see src/phase/phase.ts), every connection, including each
 * reconnect, is named for the pool's epoch and then checked against the shared phase before
 * ioredis may use it: a connection that fails the check is never used.
 */
import type net from 'node:net';
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
 * waiting for each +OK. Rejects with the server's error or on timeout.
 */
export function namedSocket(ep: Endpoint, name: string, timeoutMs: number): Promise<net.Socket> {
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
    const onData = (d: Buffer) => {
      buf += d.toString('latin1');
      for (let nl = buf.indexOf('\r\n'); nl >= 0 && got < cmds.length; nl = buf.indexOf('\r\n')) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        got++;
        if (line[0] !== '+') return fail(new Error(line.slice(1)));
      }
      if (got === cmds.length) {
        clearTimeout(timer);
        sock.removeListener('data', onData);
        sock.removeListener('error', fail);
        resolve(sock);
      }
    };
    sock.on('data', onData);
    sock.once('error', fail);
    sock.once(connectedEvent(ep), () => sock.write(cmds.map(encode).join('')));
  });
}

/** An ioredis connector that hands over only named, checked sockets. */
function fencedConnector(ep: Endpoint, fence: Fence, timeoutMs: number): new (o: unknown) => AbstractConnector {
  return class FencedConnector extends AbstractConnector {
    constructor(_o: unknown) {
      super(2_000);
    }

    connect(): Promise<net.Socket> {
      this.connecting = true;
      return namedSocket(ep, fence.name, timeoutMs).then(async (sock) => {
        this.stream = sock;
        try {
          await fence.check();
        } catch (e) {
          sock.destroy();
          throw e;
        }
        if (!this.connecting) {
          sock.destroy();
          throw new Error('Connection is closed.');
        }
        return sock;
      });
    }
  };
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
    // A fenced connection whose (re)connect failed has ended for good: open a new one.
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
    const ep = this.endpoint;
    const fence = this.fence;
    const c = new Redis({
      host: ep.host,
      port: ep.port,
      ...ioredisTls(ep),
      ...(fence
        ? { Connector: fencedConnector(ep, fence, this.opts.connectTimeoutMs) as never }
        : {
            ...(ep.username !== undefined ? { username: ep.username } : {}),
            ...(ep.password !== undefined ? { password: ep.password } : {}),
            connectionName: `rehome-control-${this.role}`,
          }),
      db,
      connectTimeout: this.opts.connectTimeoutMs,
      ...(commandTimeoutMs !== undefined ? { commandTimeout: commandTimeoutMs } : {}),
      maxRetriesPerRequest: 1,
      enableReadyCheck: false,
      lazyConnect: false,
      retryStrategy: (times: number) => (this.closed ? null : Math.min(times * 100, 1000)),
    });
    // Errors surface on the commands that fail; the 'error' event would otherwise be fatal.
    c.on('error', () => {});
    return c;
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.conns.values()];
    this.conns.clear();
    await Promise.all(all.map((c) => c.quit().catch(() => c.disconnect())));
  }
}
