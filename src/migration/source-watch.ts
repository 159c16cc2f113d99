/**
 * Watches the source for a restart or failover (run_id or replication id changes): keys deleted
 * from it after their move may come back from an old snapshot, so the known-absent cache is no
 * longer true and the sweeper must wait for an operator (docs/DESIGN.md failure table).
 */
import type { Redis } from 'ioredis';
import { PHASE_KEY } from '../phase/phase.js';

/** What identifies one life of the source server. */
export interface SourceIdentity {
  runId: string;
  replId: string;
}

export function parseIdentity(info: string): SourceIdentity {
  return {
    runId: /run_id:(\w+)/.exec(info)?.[1] ?? '',
    replId: /master_replid:(\w+)/.exec(info)?.[1] ?? '',
  };
}

/** Keys per db (only dbs holding keys), from INFO keyspace. */
export function parseKeyspace(text: string): Record<number, number> {
  const out: Record<number, number> = {};
  const re = /^db(\d+):keys=(\d+)/gm;
  for (let m = re.exec(text); m !== null; m = re.exec(text)) {
    if (Number(m[2]) > 0) out[Number(m[1])] = Number(m[2]);
  }
  return out;
}

/** Keys per db as INFO keyspace counts them, rehome's phase key left out. `c` is on db 0. */
export async function visibleKeyspace(c: Redis): Promise<Record<number, number>> {
  const [text, phaseKeys] = await Promise.all([c.info('keyspace'), c.exists(PHASE_KEY)]);
  const out = parseKeyspace(text);
  if (phaseKeys > 0 && out[0] !== undefined) {
    if (out[0] > phaseKeys) out[0] -= phaseKeys;
    else delete out[0];
  }
  return out;
}

/** Polls INFO on a dedicated connection and reports identity changes. */
export class SourceWatch {
  private timer: NodeJS.Timeout | null = null;
  private busy = false;
  identity: SourceIdentity | null = null;
  restarts = 0;
  reachable = true;

  private conn: Redis;

  /** `open` gives the connection INFO is read on, and a new one when the last has ended for good. */
  constructor(
    private readonly open: () => Redis,
    private readonly intervalMs: number,
    private readonly onChange: (before: SourceIdentity, after: SourceIdentity) => void,
  ) {
    this.conn = open();
  }

  async start(): Promise<void> {
    await this.poll();
    this.timer = setInterval(() => void this.poll(), this.intervalMs);
    this.timer.unref();
  }

  private async poll(): Promise<void> {
    if (this.busy) return;
    this.busy = true;
    // A fenced connection whose check failed at a reconnect has ended for good: a restarted
    // source would otherwise never be seen again.
    if (this.conn.status === 'end') this.conn = this.open();
    try {
      const info = (await this.conn.info('server')) + (await this.conn.info('replication'));
      this.reachable = true;
      const id = parseIdentity(info);
      const before = this.identity;
      this.identity = id;
      if (before && (before.runId !== id.runId || (before.replId !== '' && before.replId !== id.replId))) {
        this.restarts++;
        this.onChange(before, id);
      }
    } catch {
      this.reachable = false;
    } finally {
      this.busy = false;
    }
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    await this.conn.quit().catch(() => this.conn.disconnect());
  }
}
