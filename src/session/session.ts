/**
 * One client connection: its socket, its own connection to the target, and its place on a shared
 * one. A request's life, in reading order:
 *
 *   client ──► framer ──► dispatch.ts ──► send-queue.ts ──► target socket (or shared-lane.ts)
 *                             │                                   │
 *                             └──────► reply-order.ts ◄───────────┘ reply scanner
 *
 * dispatch.ts looks the command up once and hands it to its family (connection-state.ts,
 * gate.ts, keyspace.ts, pubsub.ts), which talk to the session through the port (port.ts) and
 * put entries in the reply order (reply-order.ts) and the send queue (send-queue.ts).
 * session-io.ts owns the sockets, reading and back-pressure, holding a request, the fence, and
 * teardown; this file is the request half: the port the families call, the hosts the queues
 * call back, and handing the client over at a phase switch.
 */
import type net from 'node:net';
import { ShareKind } from '../commands/table.js';
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import type { Request } from '../resp/request-framer.js';
import { INVALIDATE_ALL } from '../resp/resp3.js';
import type { ClientLimits } from '../config.js';
import { type Carried, replayRequests } from './carry.js';
import { dispatch, type DispatchPort } from './dispatch.js';
import { Entry } from './entry.js';
import type { SessionContext } from './port.js';
import { PubSub } from './pubsub.js';
import type { ReplyHost } from './reply-order.js';
import type { SendHost } from './send-queue.js';
import type { SideMark } from './scope-routing.js';
import { SessionIo } from './session-io.js';

export type { SessionContext } from './port.js';
export type { ClientLimits };

/** One client connection. */
export class Session extends SessionIo implements DispatchPort, SendHost, ReplyHost {
  readonly pubsub: PubSub = new PubSub(this);
  /** The table's ShareKind for the request being dispatched (entries of it take it: enqueue). */
  private dispatchShare = ShareKind.No;
  /** Carried requests replayed unseen (their replies are dropped). */
  private readonly replayed = new Set<Request>();
  /** The request being dispatched is replayed: its entries are silent. */
  private replaying = false;
  /** A canary migration: the side of the scope of the request being dispatched (markSide). */
  private dispatchSide: SideMark | null = null;

  constructor(client: net.Socket, ctx: SessionContext, id: number, carried: Carried | null = null) {
    super(client, ctx, id, carried);
    // A client carried over a phase switch: replay its connection state unseen, then what it sent.
    if (carried !== null) {
      if (carried.invalidate) client.write(INVALIDATE_ALL);
      for (const req of carried.replay) this.replayed.add(req);
      this.front.push(...carried.replay);
      if (carried.held !== null) this.front.push(carried.held);
      client.resume();
      this.pump();
    }
  }

  protected dispatch(req: Request): void {
    this.ctx.counters.commands++;
    const c = this.ctx.table.classify(req);
    this.dispatchShare = c.share;
    this.replaying = this.replayed.size > 0 && this.replayed.has(req);
    dispatch(this, req, c);
    // A replayed request that waits (held) is still replayed when dispatched again.
    if (this.replaying && this.held !== req) this.replayed.delete(req);
    this.replaying = false;
    this.dispatchShare = ShareKind.No;
    this.dispatchSide = null;
  }

  // ---------------------------------------------------------------- the port (port.ts)

  enqueue(e: Entry): void {
    e.inMulti = e.inMulti || this.conn.inMulti;
    // Entries are made while their request is dispatched: they take the table's answer for it.
    if (e.req !== null) e.share = this.dispatchShare;
    e.silent = this.replaying;
    if (this.dispatchSide !== null && e.req !== null) e.side = this.dispatchSide;
    if ((this.ctx.counters.commands & 15) === 0) e.t0 = performance.now();
    this.replies.push(e);
    this.sendQ.add(e);
  }

  markSide(mark: SideMark): void {
    this.dispatchSide = mark;
  }

  forwardPlain(req: Request): void {
    this.enqueue(new Entry(req));
  }

  localReply(req: Request | null, reply: Buffer): void {
    const e = new Entry(req);
    e.local = true;
    e.reply = reply;
    this.enqueue(e);
  }

  refuse(req: Request, text: string): void {
    const e = new Entry(req);
    e.failed = encodeError(text);
    this.enqueue(e);
  }

  callAsClient(bytes: Buffer): Promise<Buffer> {
    return this.sendQ.callAsClient(bytes);
  }

  /**
   * CLIENT SETINFO (which most client libraries send when they connect) while the client has no
   * own connection: it goes on the shared lane, which answers it as the server does, and is sent
   * again on the own connection when that opens. Returns false when the own connection is there.
   */
  clientInfo(req: Request): boolean {
    if (this.own.opened || this.conn.pinned) return false;
    this.own.deferInfo(req.raw);
    this.dispatchShare = ShareKind.Read;
    this.forwardPlain(req);
    return true;
  }

  selectOnLane(e: Entry, db: number): boolean {
    if (this.own.opened || this.conn.pinned) return false;
    e.laneDb = db;
    this.dispatchShare = ShareKind.Read;
    return true;
  }

  sendRaw(bytes: Buffer): void {
    this.sendQ.sendBytes(bytes);
  }

  flushUp(): void {
    this.sendQ.flushUp();
  }

  hold(req: Request): void {
    this.held = req;
  }

  takeHeld(): Request | null {
    const req = this.held;
    this.held = null;
    return req;
  }

  runAlone(req: Request): boolean {
    if (this.replies.length > 0) {
      this.held = req;
      this.heldForIdle = true;
      return false;
    }
    this.exclusive = true;
    return true;
  }

  failRequest(req: Request): void {
    this.localReply(req, encodeError(ErrorText.targetUnavailable(this.upstreamFailed ?? 'connection closed')));
    this.closing = true;
  }

  release(): void {
    if (this.conn.statePending > 0 || this.held === null || this.conn.subscribed || this.own.fence.holding) return;
    // Resume on the next tick: this runs inside reply processing.
    process.nextTick(() => this.releaseHeld());
  }

  resume(): void {
    process.nextTick(() => this.pump());
  }

  emit(e: Entry, reply: Buffer): void {
    this.replies.emit(e, reply);
  }

  endStream(e: Entry): void {
    this.replies.endStream(e);
  }

  // ---------------------------------------------------------------- hosts (send queue, replies)

  flushOut(): void {
    this.replies.flushOut();
  }

  afterFlush(): void {
    if (this.quiesced !== null && this.idle) this.endQuiesce();
    const left = this.replies.length;
    if (left === 0 && !this.dead) {
      if (this.heldForIdle) {
        this.heldForIdle = false;
        process.nextTick(() => this.releaseHeld());
      } else if (this.exclusive) {
        this.exclusive = false;
        process.nextTick(() => this.pump());
      }
    }
    // MONITOR's stream has no end: closing, it goes once all before it is out.
    if (this.closing && (left === 0 || (this.conn.monitoring && this.replies.onlyOpenStream)) && !this.dead) {
      this.client.end();
      this.upstream.destroy();
      this.linger();
    } else if (this.fullPipeline && left < this.ctx.maxPending / 2) {
      // Room again: frame what was already received (pump() resumes reading too).
      this.fullPipeline = false;
      setImmediate(() => this.pump());
    }
  }

  upstreamBlocked(): void {
    this.upstreamFull = true;
  }

  clientFull(): void {
    // No output limit: stop reading the target, and the client, until the client catches up.
    if (this.clientBlocked) return;
    this.clientBlocked = true;
    this.upstream.pause();
  }

  outputLimitExceeded(limit: number): void {
    this.ctx.log(`client ${this.id} closed: output buffer limit (${limit} bytes) reached, it does not read its replies`);
    this.destroy();
  }

  onStreamReply(e: Entry, reply: Buffer): void {
    this.pubsub.onStreamReply(e, reply);
  }

  onSubscribeAck(push: Buffer): void {
    this.pubsub.onPushAck(push);
  }

  upstreamGone(reason: string, refusedByServer: boolean): void {
    if (refusedByServer) this.own.connected = false;
    this.onUpstreamGone(reason);
  }

  /** LaneOwner: the target's reply to a command sent on the shared lane. */
  laneReply(e: Entry, reply: Buffer): void {
    this.sendQ.sharedDone();
    if (!this.dead) this.replies.laneReply(e, reply);
  }

  /** LaneOwner: the lane failed with this command in flight; whether it ran is unknown. */
  laneFailed(e: Entry, reason: string): void {
    this.sendQ.sharedDone();
    if (!this.dead) this.replies.complete(e, encodeError(ErrorText.targetUnavailable(reason)));
  }
// ---------------------------------------------------------------- a phase switch (carry.ts)

  /**
   * After quiesce: the client, detached from this session for the next phase's, or null when its
   * connection's state can't be carried or something is still in flight (then fail() it).
   */
  detach(): Carried | null {
    const conn = this.conn;
    if (this.dead || !this.quiet || !this.idle || this.closing || this.inputEnded || this.upstreamFailed !== null ||
        !conn.carriable || conn.inMulti || conn.subscribed || conn.monitoring) return null;
    this.dead = true;
    const client = this.client;
    for (const event of ['data', 'end', 'error', 'close', 'drain']) client.removeAllListeners(event);
    this.upstream.destroy();
    this.ctx.onClose(this);
    return {
      client, id: this.id, framer: this.framer, replay: replayRequests(conn), held: this.held, pinned: conn.pinned,
      invalidate: conn.tracking !== null && conn.resp === 3,
    };
  }
  /** Waiting on a reply (a blocking command too), subscribed, or holding a request: not idle. */
  get busy(): boolean {
    return this.replies.length > 0 || !this.sendQ.idle || this.held !== null || this.conn.subscribed || this.conn.pushSubscribed;
  }
}
