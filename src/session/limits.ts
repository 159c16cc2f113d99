/**
 * The per-connection side of the client limits (their values and defaults are config.ts's
 * ClientLimits): refusing a connection past maxclients as Redis does, and closing idle clients.
 */
import type net from 'node:net';
import { ErrorText } from '../errors.js';

/** Exactly what Redis answers a connection past maxclients. */
const MAX_CLIENTS_REPLY = `-${ErrorText.maxClients()}\r\n`;

/** How long a refused connection may linger for its peer to read the error and close. */
const REFUSED_LINGER_MS = 1_000;

/**
 * Answers a connection past --maxclients as Redis does: the error, then close. The socket is
 * half-closed first and what the client already sent is read and dropped, so the error is not
 * lost to a reset; it is destroyed when the peer closes, or after a short linger.
 */
export function refuseConnection(sock: net.Socket): void {
  sock.on('error', () => {});
  sock.on('data', () => {});
  sock.on('end', () => sock.destroy());
  sock.end(MAX_CLIENTS_REPLY);
  setTimeout(() => sock.destroy(), REFUSED_LINGER_MS).unref();
}

/** What the idle sweep needs to know about a client. */
export interface IdleClient {
  /** Date.now() when the client last sent bytes or took replies (see trackActivity). */
  lastActivity: number;
  /**
   * True while the client waits for something: a reply (a blocking command included), a
   * subscription's messages, or a request of its own being held. Such a client is never idle.
   */
  readonly busy: boolean;
  /** Closes the connection without a reply, as Redis does for an idle client. */
  closeIdle(): void;
}

/** Keeps `c.lastActivity` current from the socket's own events: bytes in, replies taken. */
export function trackActivity(sock: net.Socket, c: IdleClient): void {
  const touch = () => {
    c.lastActivity = Date.now();
  };
  sock.on('data', touch);
  sock.on('drain', touch);
}

/** Closes clients idle longer than the timeout (Redis's `timeout`), checking a few times a second. */
export class IdleReaper {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly timeoutMs: number,
    private readonly clients: () => Iterable<IdleClient>,
  ) {}

  start(): void {
    if (this.timeoutMs <= 0 || this.timer !== null) return;
    const every = Math.min(1_000, Math.max(50, Math.floor(this.timeoutMs / 4)));
    this.timer = setInterval(() => this.sweep(), every);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
  }

  /** Closes every client idle past the timeout; returns how many. */
  sweep(now = Date.now()): number {
    let n = 0;
    for (const c of [...this.clients()]) {
      if (!c.busy && now - c.lastActivity > this.timeoutMs) {
        c.closeIdle();
        n++;
      }
    }
    return n;
  }
}
