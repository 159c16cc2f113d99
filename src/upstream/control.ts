/**
 * Control connections (ioredis) to one server: moves, probes, COMMAND, keyspace-wide reads.
 * One connection per db, created on first use, because MIGRATE, EXISTS and SCAN act on the
 * connection's selected db.
 */
import { Redis } from 'ioredis';
import type { Endpoint } from './endpoint.js';

export interface ControlOptions {
  /** Longest wait for any one control command before it fails as uncertain. */
  commandTimeoutMs: number;
  connectTimeoutMs: number;
}

/** Lazily created per-db ioredis connections to one server. */
export class ControlPool {
  private readonly conns = new Map<number, Redis>();
  private closed = false;

  constructor(
    readonly endpoint: Endpoint,
    private readonly opts: ControlOptions,
    readonly role: 'source' | 'target',
  ) {}

  db(n: number): Redis {
    let c = this.conns.get(n);
    if (!c) {
      c = this.create(n, this.opts.commandTimeoutMs);
      this.conns.set(n, c);
    }
    return c;
  }

  /** A dedicated connection (not pooled) for long or blocking work; the caller quits it. */
  dedicated(db: number, commandTimeoutMs?: number): Redis {
    return this.create(db, commandTimeoutMs);
  }

  private create(db: number, commandTimeoutMs: number | undefined): Redis {
    const ep = this.endpoint;
    const c = new Redis({
      host: ep.host,
      port: ep.port,
      ...(ep.username !== undefined ? { username: ep.username } : {}),
      ...(ep.password !== undefined ? { password: ep.password } : {}),
      db,
      connectionName: `rehome-control-${this.role}`,
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
