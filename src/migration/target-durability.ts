/**
 * WAITAOF before a proxy-side move's release (docs/DESIGN.md "Moves", the contract's assumption
 * that the target doesn't lose acknowledged writes): releasing deletes the source's copy, so the
 * target's copy (and its publish-once marker) should be on the target's disk first. WAITAOF 1 0
 * waits until every write made so far on the connection that published is in the target's AOF
 * (fsynced); Redis 7.2 and later have it.
 *
 *   off    never
 *   on     always (an error where the target can't: no WAITAOF, or appendonly no)
 *   auto   where the target has WAITAOF and runs with appendonly yes (checked again every 10 s,
 *          so a CONFIG SET appendonly on the target is followed)
 */
import type { ControlPool } from '../upstream/control.js';

/** How long one WAITAOF may take before the release is given up (the claim stays). */
const WAIT_MS = 5_000;
const RECHECK_MS = 10_000;

export class TargetDurability {
  /** WAITAOF calls made (status, tests). */
  waits = 0;
  private enabled: { at: number; on: Promise<boolean> } | null = null;

  constructor(
    private readonly target: ControlPool,
    private readonly mode: 'auto' | 'on' | 'off',
    /** A cluster target: WAIT for a replica of each master the keys went to (cluster/replica-wait.ts). */
    private readonly replicated?: (keys: readonly Buffer[]) => Promise<void>,
  ) {}

  /**
   * Resolves once the writes made so far on the target's pooled connection for `db` are in its
   * AOF, where durability applies, and (a cluster target) `keys` are on a replica of their
   * masters; rejects otherwise (the caller keeps its claims).
   */
  async wait(db: number, keys: readonly Buffer[] = []): Promise<void> {
    if (keys.length > 0 && this.replicated !== undefined) await this.replicated(keys);
    if (this.mode === 'off' || !(await this.applies())) return;
    this.waits++;
    const r = (await this.target.db(db).call('WAITAOF', '1', '0', String(WAIT_MS))) as [number, number];
    if (Number(r[0]) < 1) throw new Error(`the target did not write the move to its AOF within ${WAIT_MS} ms (WAITAOF)`);
  }

  private applies(): Promise<boolean> {
    const now = Date.now();
    if (this.mode === 'on') return Promise.resolve(true);
    if (this.enabled === null || now - this.enabled.at > RECHECK_MS) {
      const on = this.detect();
      this.enabled = { at: now, on };
      // A failed look is asked again next time.
      on.catch(() => (this.enabled = null));
    }
    return this.enabled.on;
  }

  private async detect(): Promise<boolean> {
    const c = this.target.db(0);
    const [info] = (await c.call('COMMAND', 'INFO', 'waitaof')) as Array<unknown[] | null>;
    if (!Array.isArray(info)) return false;
    return /^aof_enabled:1/m.test(String(await c.info('persistence')));
  }
}
