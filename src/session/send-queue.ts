/**
 * Sending a client's requests to the target in the order it sent them (docs/DESIGN.md "Per-client
 * semantics"), over its own connection or the shared lane.
 *
 * An entry whose keys must first be moved (its `pre` step) waits in `waiting`, and every later
 * entry waits behind it, while the moves of later entries already run. Entries sent on the own
 * connection sit in `up` until their reply (reply-order.ts completes the oldest one per reply);
 * entries sent on the lane wait in the lane's own queue.
 *
 * A client moves between the two connections in order: at each change a barrier entry goes into
 * `waiting`, and nothing after it is sent until every earlier command on the other connection has
 * its reply. Requests framed from one client chunk lie next to each other in that chunk, so
 * consecutive ones are written as one view of it with a single call.
 */
import type net from 'node:net';
import { ShareKind } from '../commands/table.js';
import { ErrorText, RehomeError } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { encodeRequest } from '../resp/request-framer.js';
import { Deque } from '../util/deque.js';
import { Entry, St } from './entry.js';
import type { ConnectionView } from './port.js';
import type { LaneOwner, SharedLane, SharedLanes } from './shared-lane.js';

/** A wrong-arity command: queued inside MULTI, it makes the target abort the EXEC. */
const POISON = Buffer.from('*1\r\n$3\r\nGET\r\n');

/**
 * Sent on a client's own connection before its WAIT (or WAITAOF) when it has written through the
 * shared lane since the last one: a PUBLISH is propagated to replicas, so the connection's
 * replication offset moves past the client's writes on the lane, and the WAIT waits for them too.
 */
const WAIT_PRELUDE = encodeRequest(['PUBLISH', '__rehome:wait', '']).raw;

/** What the send queue needs of its session. */
export interface SendHost extends LaneOwner {
  readonly upstream: net.Socket;
  readonly conn: ConnectionView;
  /** Why the own connection failed, or null while it works. */
  readonly upstreamFailed: string | null;
  readonly dead: boolean;
  /** An entry is done without a target reply: write what can be written. */
  flushOut(): void;
  /** Nothing waits any more: frame and dispatch what the client sent. */
  pump(): void;
  /** Opens the own connection if needed; a promise while it may not be used yet (its fence). */
  ownConnection(): Promise<void> | null;
  /** The own connection was opened (it may still be connecting or fenced). */
  readonly ownOpened: boolean;
  /** The own connection's socket buffer is full. */
  upstreamBlocked(): void;
}

export class SendQueue {
  /** Entries sent on the own connection, oldest first, each waiting for its reply. */
  readonly up = new Deque<Entry>();
  /** Entries that may not be sent yet (a pre step, or an earlier entry's). */
  readonly waiting = new Deque<Entry>();
  /** Bytes for the target not yet written (see sendBytes). */
  private wParts: Buffer[] = [];
  /** The last run of queued bytes: `wLen` bytes from the start of `wLast`'s memory. */
  private wLast: Buffer | null = null;
  private wLen = 0;
  /** Which connection the last request routed went to. */
  private onShared = false;
  /** Commands of this client on the lane without a reply yet. */
  private sharedInFlight = 0;
  /** The client wrote through the lane since its last WAIT (see WAIT_PRELUDE). */
  private sharedWrites = false;
  /** Resolves the armed barrier at the front of `waiting` once its connection is idle. */
  private idleWaiter: (() => void) | null = null;
  private idleFor: 'shared' | 'own' | null = null;
  /** Something was sent on the own connection since the last keepalive check. */
  ownActive = false;

  /** The db of the lane the last shared request went to. */
  private sharedDb = 0;
  /** The lane last looked up, and its db: a client mostly stays in its db. */
  private laneOfDb = -1;
  private laneCached: SharedLane | null = null;

  constructor(
    private readonly host: SendHost,
    /** The runtime's lanes, or null when this client has none (no lanes, or AUTH needed). */
    private readonly lanes: SharedLanes | null,
    private readonly id: number,
  ) {}

  /** The client's lane in `db`. */
  private lane(db: number): SharedLane {
    if (db !== this.laneOfDb) {
      this.laneOfDb = db;
      this.laneCached = this.lanes!.pick(this.id, db);
    }
    return this.laneCached!;
  }

  /** The db whose lane `e` goes on: its SELECT's, or the client's (the same as when routed). */
  private sharedDbOf(e: Entry): number {
    return e.laneDb >= 0 ? e.laneDb : this.host.conn.db;
  }

  /** Sends `e` now if nothing waits before it, else queues it behind. */
  add(e: Entry): void {
    if (this.lanes !== null && !e.local && e.failed === null) this.route(e);
    if (!e.shared && !e.local && e.failed === null) this.waitForOwn(e);
    if (e.pre === null && this.waiting.length === 0) {
      this.send(e);
      return;
    }
    this.waiting.push(e);
    if (e.pre !== null) {
      e.pre.then(
        () => {
          e.pre = null;
          this.drainWaiting();
        },
        (err: unknown) => {
          e.pre = null;
          e.failed = encodeError(
            err instanceof RehomeError ? err.message : `ERR rehome: ${err instanceof Error ? err.message : String(err)}`,
          );
          this.drainWaiting();
        },
      );
    }
  }

  /** Whether nothing is sent and unanswered, and nothing waits. */
  get idle(): boolean {
    return this.up.length === 0 && this.waiting.length === 0;
  }

  /**
   * Chooses the connection for a request: the shared lane of the client's db for shareable
   * commands of a client that is not pinned, its own connection otherwise, with a barrier at each
   * change (from one db's lane to another's too). A WAIT after writes on the lane gets
   * WAIT_PRELUDE. Requests after a SELECT wait for its reply (connection-state.ts), so the db a
   * request is routed in is the one it is sent in.
   */
  private route(e: Entry): void {
    let kind = ShareKind.No;
    if (!this.host.conn.pinned && e.req !== null && (e.hook === null || e.laneDb >= 0) && e.bytes === null && !e.inMulti) kind = e.share;
    const shared = kind !== ShareKind.No;
    const db = this.sharedDbOf(e);
    if (shared !== this.onShared || (shared && db !== this.sharedDb)) {
      const b = new Entry(null);
      b.barrier = shared && this.onShared ? 'shared' : shared ? 'own' : 'shared';
      b.swallow = true;
      this.onShared = shared;
      this.addInternal(b);
    }
    if (shared) this.sharedDb = db;
    if (shared) {
      e.shared = true;
      if (kind === ShareKind.Write) this.sharedWrites = true;
    } else if (this.sharedWrites && e.req !== null && (e.req.name === 'wait' || e.req.name === 'waitaof')) {
      this.sharedWrites = false;
      const p = new Entry(null);
      p.swallow = true;
      p.bytes = WAIT_PRELUDE;
      this.addInternal(p);
    }
  }

  /** An entry for the own connection waits until that connection may be used (opened lazily). */
  private waitForOwn(e: Entry): void {
    const ready = this.host.ownConnection();
    if (ready === null) return;
    e.pre = e.pre === null ? ready : Promise.all([e.pre, ready]).then(() => undefined);
  }

  /** Queues one of the proxy's own entries (not in the reply order) in sending order. */
  private addInternal(b: Entry): void {
    if (b.bytes !== null) {
      this.waitForOwn(b);
      if (b.pre !== null) {
        this.waiting.push(b);
        b.pre.then(() => {
          b.pre = null;
          this.drainWaiting();
        }, () => undefined);
        return;
      }
    }
    if (this.waiting.length === 0) {
      if (b.barrier === null || !this.busyOn(b.barrier)) {
        this.send(b);
        return;
      }
      this.waiting.push(b);
      this.armBarrier(b);
      return;
    }
    // Behind other waiting entries, a barrier is armed when it reaches the front (drainWaiting).
    this.waiting.push(b);
  }

  /**
   * Sends a request of the proxy's own on the client's connection at once (outside `waiting`:
   * callers make sure nothing of the client's waits to go before it); its reply goes to `f`.
   */
  sendInternal(bytes: Buffer, f: (reply: Buffer) => void): void {
    const p = new Entry(null);
    p.swallow = true;
    p.state = St.Forwarded;
    p.onReply = f;
    this.up.push(p);
    this.ownActive = true;
    this.sendBytes(bytes);
    this.flushUp();
  }

  /**
   * SessionPort.callAsClient: on the own connection once the client has one, or on the shared
   * lane while the client uses it (the same user: lanes exist only where clients need no AUTH).
   */
  async callAsClient(bytes: Buffer): Promise<Buffer> {
    const host = this.host;
    if (!host.conn.pinned && !host.ownOpened) return new Promise((resolve) => this.sendInternalShared(bytes, resolve));
    const ready = host.ownConnection();
    if (ready !== null) await ready;
    if (host.upstreamFailed !== null || host.dead) {
      return encodeError(ErrorText.targetUnavailable(host.upstreamFailed ?? 'connection closed'));
    }
    return new Promise((resolve) => this.sendInternal(bytes, resolve));
  }

  /** Like sendInternal(), on the shared lane (the client has no connection state to keep). */
  sendInternalShared(bytes: Buffer, f: (reply: Buffer) => void): void {
    const p = new Entry(null);
    p.swallow = true;
    p.state = St.Forwarded;
    p.shared = true;
    p.onReply = f;
    this.sharedInFlight++;
    this.lane(this.host.conn.db).send(this.host, p, bytes);
  }

  private busyOn(which: 'shared' | 'own'): boolean {
    return which === 'shared' ? this.sharedInFlight > 0 : this.up.length > 0;
  }

  private armBarrier(b: Entry): void {
    this.idleFor = b.barrier;
    b.pre = new Promise<void>((resolve) => {
      this.idleWaiter = resolve;
    });
    b.pre.then(() => {
      b.pre = null;
      this.drainWaiting();
    }, () => undefined);
  }

  /** The own connection has nothing in flight: releases a barrier armed for it. */
  ownIdle(): void {
    if (this.idleFor === 'own' && this.up.length === 0) this.checkIdle();
  }

  private checkIdle(): void {
    const f = this.idleWaiter;
    if (f === null || this.busyOn(this.idleFor!)) return;
    this.idleWaiter = null;
    this.idleFor = null;
    f();
  }

  /** A command on the lane has its reply (or failed). */
  sharedDone(): void {
    if (--this.sharedInFlight === 0 && this.idleFor === 'shared') this.checkIdle();
  }

  private drainWaiting(): void {
    const host = this.host;
    if (host.dead) return;
    host.upstream.cork();
    while (this.waiting.length > 0 && this.waiting.peek()!.pre === null) {
      const e = this.waiting.peek()!;
      if (e.barrier !== null && this.busyOn(e.barrier)) {
        this.armBarrier(e);
        break;
      }
      this.send(this.waiting.shift()!);
    }
    this.flushUp();
    host.upstream.uncork();
    host.flushOut();
    if (this.waiting.length === 0) host.pump();
  }

  private send(e: Entry): void {
    if (e.barrier !== null) return; // nothing to send: the barrier has passed
    const host = this.host;
    if (e.failed !== null) {
      if (e.inMulti) {
        const p = new Entry(null);
        p.swallow = true;
        p.state = St.Forwarded;
        this.up.push(p);
        this.sendBytes(POISON);
      }
      e.reply = e.failed;
      e.state = St.Done;
      host.flushOut();
      return;
    }
    if (e.local) {
      e.state = St.Done;
      host.flushOut();
      return;
    }
    if (host.upstreamFailed !== null) {
      e.reply = encodeError(ErrorText.targetUnavailable(host.upstreamFailed));
      e.state = St.Done;
      host.flushOut();
      return;
    }
    e.state = St.Forwarded;
    if (e.shared) {
      this.sharedInFlight++;
      this.lane(this.sharedDbOf(e)).send(host, e, e.req!.raw);
      return;
    }
    this.up.push(e);
    this.ownActive = true;
    this.sendBytes(e.bytes ?? e.req!.raw);
  }

  /** Queues bytes for the target (consecutive views of one chunk merge into one). */
  sendBytes(b: Buffer): void {
    const last = this.wLast;
    if (last !== null && last.buffer === b.buffer && last.byteOffset + this.wLen === b.byteOffset) {
      this.wLen += b.length; // the view is made once, in lastRun()
      return;
    }
    if (last !== null) this.wParts.push(this.lastRun(last));
    this.wLast = b;
    this.wLen = b.length;
  }

  private lastRun(last: Buffer): Buffer {
    return this.wLen === last.length ? last : Buffer.from(last.buffer, last.byteOffset, this.wLen);
  }

  /** Writes what sendBytes() queued. */
  flushUp(): void {
    const last = this.wLast;
    if (last === null || this.host.dead) return;
    this.wLast = null;
    const up = this.host.upstream;
    let ok = true;
    if (this.wParts.length > 0) {
      for (const p of this.wParts) ok = up.write(p) && ok;
      this.wParts = [];
    }
    ok = up.write(this.lastRun(last)) && ok;
    if (!ok) this.host.upstreamBlocked();
  }

  /**
   * The own connection is gone: what was sent on it and what waits gets `err` (rehome's own
   * requests see it too), and no barrier waits any more.
   */
  failAll(err: Buffer): void {
    for (const e of this.up.drain()) {
      if (e.swallow) {
        e.onReply?.(err);
        continue;
      }
      if (e.stream) {
        e.streamEnded = true;
        continue;
      }
      e.reply = err;
      e.state = St.Done;
    }
    this.idleWaiter = null;
    this.idleFor = null;
    // Requests still waiting on moves fail too: their connection state is gone.
    for (const e of this.waiting.drain()) {
      e.pre = null;
      e.reply = err;
      e.state = St.Done;
    }
  }
}
