/**
 * MULTI/EXEC and WATCH through the cluster front (front-conn.ts). A transaction runs on one node
 * and, in Redis Cluster, on one slot: its commands are kept here (each answered QUEUED) and at
 * EXEC sent whole, MULTI ... EXEC, to the master of that slot. A command of another slot gets
 * the cluster's CROSSSLOT at once and the EXEC then EXECABORT, as a queue-time error does. WATCH
 * fixes the slot first (its keys must share it), and the transaction goes where the WATCH went.
 * If the slot moved before EXEC (every queued command answered MOVED, so nothing ran), the
 * transaction is sent again where the slot is now, unless a WATCH was on the old node.
 */
import type { CommandTable } from '../commands/table.js';
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import type { Request } from '../resp/request-framer.js';
import type { NodeLink } from './node-link.js';
import { commonSlot } from './slot.js';
import type { ClusterNode, Topology } from './topology.js';

/** A request's place in a front connection's reply order. */
export interface Pend {
  reply: Buffer | null;
}

/** What a transaction needs of its front connection. */
export interface TxnHost {
  readonly ctx: { topo: Topology; table: CommandTable };
  readonly closed: boolean;
  link(n: ClusterNode): NodeLink;
  defaultNode(): ClusterNode | null;
  push(): Pend;
  local(reply: Buffer): void;
  done(p: Pend, reply: Buffer): void;
}

export const OK = Buffer.from('+OK\r\n');
const QUEUED = Buffer.from('+QUEUED\r\n');
const MULTI = Buffer.from('*1\r\n$5\r\nMULTI\r\n');
const EXEC = Buffer.from('*1\r\n$4\r\nEXEC\r\n');
const UNWATCH = Buffer.from('*1\r\n$7\r\nUNWATCH\r\n');
const IGNORE = (): void => undefined;
/** Redirects followed for one request before giving up (a slot bouncing between nodes). */
export const MAX_REDIRECTS = 16;

/** A MOVED or ASK error: the slot and where it is served. */
export function redirect(r: Buffer): { ask: boolean; slot: number; node: ClusterNode } | null {
  if (r[0] !== 0x2d || !(r[1] === 0x4d || r[1] === 0x41)) return null;
  const m = /^-(MOVED|ASK) (\d+) (.+):(\d+)\r\n$/.exec(r.toString('latin1'));
  if (m === null) return null;
  return { ask: m[1] === 'ASK', slot: Number(m[2]), node: { host: m[3]!.replace(/^\[|\]$/g, ''), port: Number(m[4]) } };
}

interface Txn {
  /** The slot of every keyed command so far (-2: none yet). */
  slot: number;
  queued: Buffer[];
  failed: boolean;
}

export class ClusterTxn {
  private txn: Txn | null = null;
  private watch: { slot: number; node: ClusterNode } | null = null;

  constructor(private readonly host: TxnHost) {}

  get open(): boolean {
    return this.txn !== null;
  }

  reset(): void {
    this.txn = null;
    this.watch = null;
  }

  multi(): void {
    if (this.txn !== null) return this.host.local(encodeError('ERR MULTI calls can not be nested'));
    this.txn = { slot: this.watch?.slot ?? -2, queued: [], failed: false };
    this.host.local(OK);
  }

  queue(req: Request): void {
    const t = this.txn!;
    const keys = this.host.ctx.table.keys(req);
    if (keys !== null && keys.length > 0) {
      const s = commonSlot(keys);
      if (s === -1 || (t.slot >= 0 && s !== t.slot)) {
        t.failed = true;
        const watched = s !== -1 && this.watch !== null && this.watch.slot === t.slot;
        return this.host.local(encodeError(watched ? ErrorText.clusterWatchSlot() : ErrorText.crossSlot()));
      }
      t.slot = s;
    }
    t.queued.push(req.raw);
    this.host.local(QUEUED);
  }

  discard(): void {
    this.txn = null;
    this.unwatch();
    this.host.local(OK);
  }

  exec(p: Pend): void {
    const t = this.txn!;
    this.txn = null;
    const w = this.watch;
    this.watch = null;
    if (t.failed) {
      if (w !== null) this.host.link(w.node).send(UNWATCH, IGNORE);
      return this.host.done(p, encodeError(ErrorText.execAbort()));
    }
    this.run(p, t, w, 0);
  }

  private run(p: Pend, t: Txn, w: { slot: number; node: ClusterNode } | null, tries: number): void {
    const host = this.host;
    const n = w !== null ? w.node : t.slot >= 0 ? host.ctx.topo.nodeFor(t.slot) : host.defaultNode();
    if (n === null) return host.done(p, encodeError(ErrorText.slotUnserved()));
    const l = host.link(n);
    let moved: { slot: number; node: ClusterNode } | null = null;
    l.send(MULTI, IGNORE);
    for (const q of t.queued) {
      l.send(q, (r) => {
        const rd = redirect(r);
        if (rd !== null) moved = rd;
      });
    }
    l.send(EXEC, (r) => {
      const m = moved as { slot: number; node: ClusterNode } | null;
      // Nothing ran (EXECABORT): sent again where the slot is now, unless a WATCH was on the
      // old node (its watch is gone: the EXECABORT stands).
      if (m !== null && w === null && tries < MAX_REDIRECTS && !host.closed) {
        host.ctx.topo.moved(m.slot, m.node);
        return this.run(p, t, null, tries + 1);
      }
      host.done(p, r);
    });
  }

  watchKeys(req: Request): void {
    const host = this.host;
    const keys = host.ctx.table.keys(req);
    const p = host.push();
    if (keys === null || keys.length === 0) {
      // The server's arity error.
      const n = host.defaultNode();
      if (n === null) return host.done(p, encodeError(ErrorText.slotUnserved()));
      return host.link(n).send(req.raw, (r) => host.done(p, r));
    }
    const s = commonSlot(keys);
    if (s === -1) return host.done(p, encodeError(ErrorText.crossSlot()));
    if (this.watch !== null && this.watch.slot !== s) return host.done(p, encodeError(ErrorText.clusterWatchSlot()));
    const n = host.ctx.topo.nodeFor(s);
    if (n === null) return host.done(p, encodeError(ErrorText.slotUnserved()));
    this.watch = { slot: s, node: n };
    host.link(n).send(req.raw, (r) => host.done(p, r));
  }

  unwatch(): void {
    const w = this.watch;
    this.watch = null;
    if (w !== null) this.host.link(w.node).send(UNWATCH, IGNORE);
  }
}
