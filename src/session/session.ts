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
 * put entries in the reply order (reply-order.ts) and the send queue (send-queue.ts). This file
 * owns the sockets, reading and back-pressure, holding a request, the fence, and teardown.
 */
import net from 'node:net';
import { ShareKind } from '../commands/table.js';
import { ErrorText, ProtocolError } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { type Request, RequestFramer } from '../resp/request-framer.js';
import { INVALIDATE_ALL } from '../resp/resp3.js';
import { describeEndpoint } from '../upstream/endpoint.js';
import type { ClientLimits } from '../config.js';
import { type IdleClient, trackActivity } from './limits.js';
import { type Carried, replayRequests } from './carry.js';
import { dispatch, type DispatchPort } from './dispatch.js';
import { Entry } from './entry.js';
import { OwnConnection } from './own-connection.js';
import { ConnectionView, type SessionContext, type SessionHandle } from './port.js';
import { PubSub } from './pubsub.js';
import { ReplyOrder, type ReplyHost } from './reply-order.js';
import { SendQueue, type SendHost } from './send-queue.js';

export type { SessionContext } from './port.js';
export type { ClientLimits };

/** How long a closed client's connection stays after its last reply reached the kernel. */
const CLOSE_LINGER_MS = 1_000;

/** One client connection. */
export class Session implements IdleClient, SessionHandle, DispatchPort, SendHost, ReplyHost {
  readonly id: number;
  /** Last bytes in or replies taken (kept only with an idle timeout: see limits.ts). */
  lastActivity = Date.now();
  readonly conn: ConnectionView;
  readonly pubsub: PubSub;
  upstreamFailed: string | null = null;
  dead = false;
  /** See LaneOwner (shared-lane.ts). */
  laneStamp = 0;
  private readonly framer: RequestFramer;
  private readonly sendQ: SendQueue;
  private readonly replies: ReplyOrder;
  /** The client's own connection to the target; the port uses its fence controls. */
  readonly own: OwnConnection;
  /** A request whose dispatch waits (connection state, pub/sub barrier, AUTH, run alone). */
  held: Request | null = null;
  /** The held request is keyspace-wide and waits for every earlier reply. */
  private heldForIdle = false;
  /** A keyspace-wide command is running: nothing after it starts (not even moves) until it ends. */
  private exclusive = false;
  /** No more requests are read; the connection closes once every reply is out. */
  private closing = false;
  /** Closing, every reply written: see linger(). */
  private lingering = false;
  /** The client half-closed: answer what it sent, then close. */
  private inputEnded = false;
  /** pump() stopped because too many replies are outstanding. */
  private fullPipeline = false;
  private clientBlocked = false;
  private upstreamFull = false;
  private pumping = false;
  /** The table's ShareKind for the request being dispatched (entries of it take it: enqueue). */
  private dispatchShare = ShareKind.No;
  /** A phase switch is under way: nothing more is dispatched (see quiesce). */
  private quiet = false;
  private quiesced: (() => void) | null = null;
  /** Requests dispatched before the client's next ones, and those of them replayed unseen. */
  private readonly front: Request[] = [];
  private readonly replayed = new Set<Request>();
  /** The request being dispatched is replayed: its entries are silent. */
  private replaying = false;

  constructor(
    readonly client: net.Socket,
    readonly ctx: SessionContext,
    id: number,
    carried: Carried | null = null,
  ) {
    this.id = id;
    const lane = ctx.lanes === null || ctx.targetAuthRequired ? null : ctx.lanes.pick(id);
    this.conn = new ConnectionView(!ctx.targetAuthRequired, lane === null || carried?.pinned === true);
    this.framer = carried?.framer ?? new RequestFramer(ctx.limits);
    this.sendQ = new SendQueue(this, lane);
    this.replies = new ReplyOrder(this, this.sendQ);
    this.pubsub = new PubSub(this);
    this.own = new OwnConnection({
      ctx,
      conn: this.conn,
      sendInternal: (bytes, f) => this.sendQ.sendInternal(bytes, f),
      fenceLifted: () => this.fenceLifted(),
      fenceFailed: (reason) => this.guard(() => this.onUpstreamGone(reason)),
      ownData: (chunk) => this.guard(() => this.replies.onUpstreamData(chunk)),
      ownGone: (reason) => this.onUpstreamGone(reason),
      ownDrained: () => {
        this.upstreamFull = false;
        this.updateReading();
      },
    });
    client.setNoDelay(true);
    client.on('data', (chunk: Buffer) => this.guard(() => this.onClientData(chunk)));
    client.on('end', () => {
      this.inputEnded = true;
      // Redis frees a client as soon as it reads its end of stream, which ends a blocking command
      // or a MONITOR it left behind. Kept running here, a blocking command would pop an element
      // for a client that is gone.
      if (this.conn.monitoring || this.replies.some((e) => e.req !== null && !e.inMulti && this.ctx.table.blocks(e.req))) {
        this.destroy();
      } else {
        this.pump();
      }
    });
    client.on('error', () => this.destroy());
    client.on('close', () => this.destroy());
    client.on('drain', () => {
      this.clientBlocked = false;
      if (!this.dead) {
        this.own.socket.resume();
        this.updateReading();
      }
    });
    if (ctx.clientLimits.idleTimeoutMs > 0) trackActivity(client, this);
    // Without a lane every command needs the own connection: open it now.
    if (lane === null) this.own.open();
    if (carried !== null) {
      if (carried.invalidate) client.write(INVALIDATE_ALL);
      for (const req of carried.replay) this.replayed.add(req);
      this.front.push(...carried.replay);
      if (carried.held !== null) this.front.push(carried.held);
      client.resume();
      this.pump();
    }
  }

  /** SendHost: the own connection's socket (connected once open() was called). */
  get upstream(): net.Socket {
    return this.own.socket;
  }

  ownConnection(): Promise<void> | null {
    return this.own.open();
  }

  get ownOpened(): boolean {
    return this.own.opened;
  }

  /** The fence (phases) no longer holds: dispatch what waits. */
  private fenceLifted(): void {
    if (this.dead) return;
    if (this.held !== null && this.conn.statePending === 0) process.nextTick(() => this.releaseHeld());
    else process.nextTick(() => this.pump());
  }

  /** Called every few seconds (server.ts): see OwnConnection.keepAlive. */
  keepOwnAlive(): void {
    const idle = !this.sendQ.ownActive;
    this.sendQ.ownActive = false;
    this.own.keepAlive(idle, !this.dead && !this.closing && this.upstreamFailed === null && this.sendQ.idle);
  }

  /**
   * Runs a socket event handler. An unexpected exception (a bug) closes this client's
   * connection only; every other client carries on.
   */
  private guard(f: () => void): void {
    try {
      f();
    } catch (e) {
      process.stderr.write(`${new Date().toISOString()} rehome: internal error on client ${this.id}, connection closed: ${(e as Error).stack ?? String(e)}\n`);
      this.destroy();
    }
  }

  // ---------------------------------------------------------------- reading the client

  private onClientData(chunk: Buffer): void {
    if (this.closing || this.dead) return;
    this.framer.push(chunk);
    this.pump();
    // What is left is an unfinished request, or requests waiting their turn (the client then
    // is paused): bounded like Redis's client-query-buffer-limit.
    const limit = this.ctx.clientLimits.queryBufferLimit;
    if (this.framer.buffered > limit && !this.closing && !this.dead) {
      this.ctx.log(`client ${this.id} closed: query buffer limit (${limit} bytes) reached`);
      this.framer.discard();
      this.closeWithError(ErrorText.queryBufferLimit(limit));
    }
  }

  /** Frames and dispatches buffered requests until done or held. */
  pump(): void {
    if (this.pumping || this.dead) return;
    this.pumping = true;
    const up = this.upstream;
    up.cork();
    try {
      for (;;) {
        if (this.closing || this.quiet || this.held !== null || this.own.fence.holding) break;
        if (this.exclusive) {
          if (this.replies.length > 0) break;
          this.exclusive = false;
        }
        if (this.replies.length >= this.ctx.maxPending) {
          this.fullPipeline = true;
          break;
        }
        let req: Request | null = this.front.shift() ?? null;
        try {
          req ??= this.framer.next();
        } catch (e) {
          if (e instanceof ProtocolError) {
            this.closeWithError(ErrorText.protocol(e.message));
            break;
          }
          throw e;
        }
        if (req === null) {
          // Nothing more will come from a client that half-closed. While subscribed, the
          // end of the replies is known only from a barrier's answer.
          if (this.inputEnded) {
            this.closing = true;
            if (this.conn.subscribed) this.pubsub.startBarrier(null);
          }
          break;
        }
        this.dispatch(req);
      }
    } finally {
      this.pumping = false;
      this.sendQ.flushUp();
      up.uncork();
    }
    if (this.closing) this.flushOut();
    this.updateReading();
  }

  private dispatch(req: Request): void {
    this.ctx.counters.commands++;
    const c = this.ctx.table.classify(req);
    this.dispatchShare = c.share;
    this.replaying = this.replayed.size > 0 && this.replayed.has(req);
    dispatch(this, req, c);
    // A replayed request that waits (held) is still replayed when dispatched again.
    if (this.replaying && this.held !== req) this.replayed.delete(req);
    this.replaying = false;
    this.dispatchShare = ShareKind.No;
  }

  private updateReading(): void {
    if (this.dead || this.lingering) return;
    const stop =
      this.closing || this.quiet || this.held !== null || this.upstreamFull || this.own.fence.holding ||
      this.replies.length >= this.ctx.maxPending ||
      (this.clientBlocked && this.ctx.clientLimits.outputBufferLimit === 0);
    if (stop) this.client.pause();
    else this.client.resume();
  }

  /** Answers `text` after every earlier reply, then closes; nothing more is read. */
  private closeWithError(text: string): void {
    this.localReply(null, encodeError(text));
    this.closing = true;
    this.client.pause();
    this.flushOut();
  }

  // ---------------------------------------------------------------- the port (port.ts)

  enqueue(e: Entry): void {
    e.inMulti = e.inMulti || this.conn.inMulti;
    // Entries are made while their request is dispatched: they take the table's answer for it.
    if (e.req !== null) e.share = this.dispatchShare;
    e.silent = this.replaying;
    if ((this.ctx.counters.commands & 15) === 0) e.t0 = performance.now();
    this.replies.push(e);
    this.sendQ.add(e);
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

  private releaseHeld(): void {
    const req = this.held;
    if (req === null || this.dead || this.quiet || this.own.fence.holding) return;
    this.held = null;
    this.upstream.cork();
    this.dispatch(req);
    this.sendQ.flushUp();
    this.upstream.uncork();
    this.pump();
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
    if (this.closing && left === 0 && !this.dead) {
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

  // ---------------------------------------------------------------- teardown

  /** The target connection is gone: fail what waits on it, then close the client. */
  private onUpstreamGone(reason: string): void {
    if (this.dead || this.upstreamFailed !== null) return;
    const why = this.own.connected ? reason : `cannot connect to ${describeEndpoint(this.ctx.targetEndpoint)}: ${reason}`;
    this.upstreamFailed = why;
    this.upstream.destroy();
    const err = encodeError(ErrorText.targetUnavailable(why));
    this.sendQ.failAll(err);
    this.replies.dropPartial();
    this.conn.subscribed = false;
    this.conn.monitoring = false;
    if (this.held !== null) {
      this.localReply(this.held, err);
      this.held = null;
    }
    // A connection that was up and went away closes the client too, as a direct connection
    // would. One that never came up stays open so the client's next command gets the reason.
    if (this.replies.length > 0 || this.own.connected) this.closing = true;
    // Paused before flushOut(): once every reply is out, linger() reads again.
    if (this.closing && !this.lingering) this.client.pause();
    this.flushOut();
  }

  /**
   * The phase this session belongs to is over: what is in flight gets an error, as on a dropped
   * connection, and the client is closed (it reconnects under the new phase).
   */
  fail(reason: string): void {
    this.guard(() => this.onUpstreamGone(reason));
    // A session that is closing ends the client's socket once its replies are written; one with
    // nothing in flight and no upstream yet has nothing to say.
    if (!this.dead && !this.closing) this.destroy();
  }

  /** Graceful stop: finish what was received, then close. */
  shutdown(): void {
    if (this.dead) return;
    this.closing = true;
    if (!this.lingering) this.client.pause();
    this.flushOut();
  }

  /**
   * Every reply is out and the client's side is ended. A paused socket would never see its peer
   * close, so keep reading (input is dropped while closing), and let the connection go shortly
   * after the last reply has reached the kernel, whether or not the peer closes.
   */
  private linger(): void {
    if (this.lingering) return;
    this.lingering = true;
    this.client.resume();
    this.client.once('finish', () => setTimeout(() => this.destroy(), CLOSE_LINGER_MS).unref());
  }

  // ---------------------------------------------------------------- a phase switch (carry.ts)

  /** A phase switch begins: nothing more is dispatched; resolves once nothing is in flight. */
  quiesce(): Promise<void> {
    this.quiet = true;
    this.client.pause();
    if (this.idle || this.dead) return Promise.resolve();
    return new Promise((resolve) => (this.quiesced = resolve));
  }

  private endQuiesce(): void {
    const f = this.quiesced;
    this.quiesced = null;
    f?.();
  }

  private get idle(): boolean {
    return this.replies.length === 0 && this.sendQ.idle && this.conn.statePending === 0;
  }

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

  /** Closes an idle client without a reply, as Redis does. */
  closeIdle(): void {
    this.destroy();
  }

  destroy(): void {
    if (this.dead) return;
    this.dead = true;
    this.endQuiesce();
    this.client.destroy();
    this.upstream.destroy();
    this.ctx.onClose(this);
  }
}
