/**
 * The socket half of one client's session (session.ts is the request half): the client's socket
 * and its own connection to the target, reading and back-pressure, holding a request until it may
 * run, the fence, pausing for a phase switch, and teardown. The request half implements the hosts
 * the queues call back (send-queue.ts, reply-order.ts) and the port the dispatch families use.
 */
import net from 'node:net';
import { ErrorText, ProtocolError } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { type Request, RequestFramer } from '../resp/request-framer.js';
import { describeEndpoint } from '../upstream/endpoint.js';
import { type IdleClient, trackActivity } from './limits.js';
import type { Carried } from './carry.js';
import type { Entry } from './entry.js';
import { OwnConnection } from './own-connection.js';
import { ConnectionView, type SessionContext, type SessionHandle } from './port.js';
import type { PubSub } from './pubsub.js';
import { ReplyOrder, type ReplyHost } from './reply-order.js';
import { SendQueue, type SendHost } from './send-queue.js';

/** How long a closed client's connection stays after its last reply reached the kernel. */
const CLOSE_LINGER_MS = 1_000;

/** One client connection, its socket half. */
export abstract class SessionIo implements IdleClient, SessionHandle, SendHost, ReplyHost {
  readonly id: number;
  /** Last bytes in or replies taken (kept only with an idle timeout: see limits.ts). */
  lastActivity = Date.now();
  readonly conn: ConnectionView;
  abstract readonly pubsub: PubSub;
  upstreamFailed: string | null = null;
  dead = false;
  /** See LaneOwner (shared-lane.ts). */
  laneStamp = 0;
  protected readonly framer: RequestFramer;
  protected readonly sendQ: SendQueue;
  protected readonly replies: ReplyOrder;
  /** The client's own connection to the target; the port uses its fence controls. */
  readonly own: OwnConnection;
  /** A request whose dispatch waits (connection state, pub/sub barrier, AUTH, run alone). */
  held: Request | null = null;
  /** The held request is keyspace-wide and waits for every earlier reply. */
  protected heldForIdle = false;
  /** A keyspace-wide command is running: nothing after it starts (not even moves) until it ends. */
  protected exclusive = false;
  /** No more requests are read; the connection closes once every reply is out. */
  protected closing = false;
  /** Closing, every reply written: see linger(). */
  private lingering = false;
  /** The client half-closed: answer what it sent, then close. */
  protected inputEnded = false;
  /** pump() stopped because too many replies are outstanding. */
  protected fullPipeline = false;
  protected clientBlocked = false;
  protected upstreamFull = false;
  private pumping = false;
  /** A phase switch is under way: nothing more is dispatched (see quiesce). */
  protected quiet = false;
  protected quiesced: (() => void) | null = null;
  /** Requests dispatched before the client's next ones (a carried client's replay and held request). */
  protected readonly front: Request[] = [];

  constructor(
    readonly client: net.Socket,
    readonly ctx: SessionContext,
    id: number,
    carried: Carried | null = null,
  ) {
    this.id = id;
    const lanes = ctx.lanes === null || ctx.targetAuthRequired ? null : ctx.lanes;
    this.conn = new ConnectionView(!ctx.targetAuthRequired, lanes === null || carried?.pinned === true);
    this.framer = carried?.framer ?? new RequestFramer(ctx.limits);
    this.sendQ = new SendQueue(this, lanes, id);
    this.replies = new ReplyOrder(this, this.sendQ);
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
    client.on('data', (chunk: Buffer) => {
      // guard()'s work written out: this runs for every read, and a closure per read adds up.
      try {
        this.onClientData(chunk);
      } catch (e) {
        this.internalError(e);
      }
    });
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
    if (lanes === null) this.own.open();
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
      this.internalError(e);
    }
  }

  private internalError(e: unknown): void {
    process.stderr.write(`${new Date().toISOString()} rehome: internal error on client ${this.id}, connection closed: ${(e as Error).stack ?? String(e)}\n`);
    this.destroy();
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

  private updateReading(): void {
    if (this.dead || this.lingering) return;
    const stop =
      this.closing || this.quiet || this.held !== null || this.upstreamFull || this.own.fence.holding ||
      this.replies.length >= this.ctx.maxPending ||
      (this.clientBlocked && this.ctx.clientLimits.outputBufferLimit === 0);
    // Only on a change: this runs after every read, and resume() is not free.
    if (stop === this.client.isPaused()) return;
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

  protected releaseHeld(): void {
    const req = this.held;
    if (req === null || this.dead || this.quiet || this.own.fence.holding) return;
    this.held = null;
    this.upstream.cork();
    this.dispatch(req);
    this.sendQ.flushUp();
    this.upstream.uncork();
    this.pump();
  }

  // ---------------------------------------------------------------- teardown

  /** The target connection is gone: fail what waits on it, then close the client. */
  protected onUpstreamGone(reason: string): void {
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
    // A subscription has no end of its own: as on a half-close, the closing barrier marks where
    // the replies the client asked for end, and the stream ends there.
    if (this.conn.subscribed && !this.inputEnded && !this.pubsub.barrierPending) this.pubsub.startBarrier(null);
    if (!this.lingering) this.client.pause();
    this.flushOut();
  }

  /**
   * Every reply is out and the client's side is ended. A paused socket would never see its peer
   * close, so keep reading (input is dropped while closing), and let the connection go shortly
   * after the last reply has reached the kernel, whether or not the peer closes.
   */
  protected linger(): void {
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

  protected endQuiesce(): void {
    const f = this.quiesced;
    this.quiesced = null;
    f?.();
  }

  protected get idle(): boolean {
    return this.replies.length === 0 && this.sendQ.idle && this.conn.statePending === 0;
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

  // ---------------------------------------------------------------- the request half (session.ts)

  /** Dispatches one request (session.ts: classify, then the command's family). */
  protected abstract dispatch(req: Request): void;
  abstract get busy(): boolean;
  abstract laneReply(e: Entry, reply: Buffer): void;
  abstract laneFailed(e: Entry, reason: string): void;
  abstract localReply(req: Request | null, reply: Buffer): void;
  abstract flushOut(): void;
  abstract afterFlush(): void;
  abstract upstreamBlocked(): void;
  abstract clientFull(): void;
  abstract outputLimitExceeded(limit: number): void;
  abstract onStreamReply(e: Entry, reply: Buffer): void;
  abstract onSubscribeAck(push: Buffer): void;
  abstract upstreamGone(reason: string, refusedByServer: boolean): void;
}
