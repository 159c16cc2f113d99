/**
 * A client's replies, in the order it sent its requests (docs/DESIGN.md "Per-client semantics").
 *
 * Every request is an Entry in `out`. Replies from the target are framed by the reply scanner
 * (never decoded) and each completes the oldest entry sent on the own connection; replies from
 * the shared lane arrive through laneReply(). Replies are written from the front of `out` only,
 * so replies the proxy makes itself (errors, merged results) and replies that complete out of
 * order still reach the client in order.
 *
 * Steady state: a reply for the entry at the front is written straight from the target's chunk
 * (several in one write when they are contiguous in it). No promise, no copy.
 *
 * RESP3 push messages (`>`: pub/sub messages, tracking invalidations) answer no request: each is
 * written to the client as soon as it is complete, between two replies, and completes no entry.
 * The one exception is a (un)subscribe's acknowledgement, which in RESP3 is that command's only
 * reply (Entry.pushReply). A push is never streamed in pieces, so it can never land inside
 * another reply's bytes.
 */
import type net from 'node:net';
import { encodeError } from '../resp/encode.js';
import { ReplyScanner } from '../resp/reply-scanner.js';
import { SpanningReply } from '../resp/spanning-reply.js';
import { pushKind, SUBSCRIBE_ACKS } from '../resp/resp3.js';
import { Deque } from '../util/deque.js';
import { type Entry, St } from './entry.js';
import type { SessionContext } from './port.js';
import type { SendQueue } from './send-queue.js';

/** What the reply order needs of its session. */
export interface ReplyHost {
  readonly client: net.Socket;
  readonly ctx: SessionContext;
  readonly dead: boolean;
  /** A reply on the own connection that belongs to a stream entry (pub/sub, MONITOR). */
  onStreamReply(e: Entry, reply: Buffer): void;
  /** A RESP3 (un)subscribe acknowledgement push (it carries the subscriptions left). */
  onSubscribeAck(push: Buffer): void;
  /** The own connection can no longer be trusted (see onUpstreamData). */
  upstreamGone(reason: string, refusedByServer: boolean): void;
  /** flushOut() has written what it could. */
  afterFlush(): void;
  /** The client's socket is full and there is no output limit: stop reading the target. */
  clientFull(): void;
  /** The client's held replies passed --client-output-buffer-limit. */
  outputLimitExceeded(limit: number): void;
}

export class ReplyOrder {
  readonly out = new Deque<Entry>();
  private readonly scanner = new ReplyScanner();
  /** A target reply that spans chunks (not streamed). */
  private readonly spanning = new SpanningReply();
  private readonly ends: number[] = [];
  /** A reply continues from the previous chunk, and whether it is a push. */
  private continuing = false;
  private continuingPush = false;

  constructor(
    private readonly host: ReplyHost,
    private readonly sendQ: SendQueue,
  ) {}

  get length(): number {
    return this.out.length;
  }

  /** Whether all that is outstanding is an open stream with nothing of it waiting to be written. */
  get onlyOpenStream(): boolean {
    const e = this.out.peek();
    return this.out.length === 1 && e !== undefined && e.stream && !e.streamEnded && e.pending === null;
  }

  push(e: Entry): void {
    this.out.push(e);
  }

  /** Frames the target's replies in `chunk` and completes the entries they answer. */
  onUpstreamData(chunk: Buffer): void {
    const host = this.host;
    if (host.dead) return;
    const ends = this.ends;
    ends.length = 0;
    try {
      this.scanner.scan(chunk, ends);
    } catch (e) {
      host.upstreamGone(`protocol error from target: ${(e as Error).message}`, false);
      return;
    }
    const up = this.sendQ.up;
    const client = host.client;
    client.cork();
    let s = 0;
    let run = -1; // start of a run of replies written straight through
    for (let k = 0; k < ends.length; k++) {
      const end = ends[k]!;
      const entry = up.peek();
      if (s === 0 && this.continuing ? this.continuingPush : chunk[s] === 0x3e) {
        if (run >= 0) {
          this.write(chunk.subarray(run, s));
          run = -1;
        }
        const push = this.spanning.take(chunk, s, end);
        s = end;
        const ack = SUBSCRIBE_ACKS.has(pushKind(push) ?? '');
        if (ack) host.onSubscribeAck(push);
        if (entry !== undefined && entry.pushReply && ack) {
          entry.pushReply = false;
          up.shift();
          this.complete(entry, push);
        } else {
          this.write(push);
        }
        continue;
      }
      if (entry === undefined) {
        // A reply nobody asked for. An error is the target refusing this connection (its
        // maxclients, protected mode): reported like a failed connect, with the target's words,
        // to the client's next command. Anything else: out of step; give up on the connection.
        client.uncork();
        const refused = chunk[s] === 0x2d;
        host.upstreamGone(refused ? chunk.toString('latin1', s + 1, end - 2) : 'unexpected reply from target', refused);
        return;
      }
      if (entry.stream) {
        if (run >= 0) {
          this.write(chunk.subarray(run, s));
          run = -1;
        }
        host.onStreamReply(entry, this.spanning.take(chunk, s, end));
        s = end;
        continue;
      }
      up.shift();
      if (entry.hook === null && entry.post === null && !entry.swallow && !entry.silent && this.out.peek() === entry && (this.spanning.empty || entry.streaming)) {
        if (run < 0) run = s;
        this.spanning.drop();
        this.out.shift();
        entry.state = St.Done;
        if (entry.t0 !== 0) host.ctx.observeLatency((performance.now() - entry.t0) / 1000);
        if (entry.side !== null) entry.side.counters.done(entry.side, chunk[s]);
        const next = this.out.peek();
        if (next !== undefined && next.state === St.Done) {
          this.write(chunk.subarray(run, end));
          run = -1;
          this.flushOut();
        }
      } else {
        if (run >= 0) {
          this.write(chunk.subarray(run, s));
          run = -1;
        }
        this.complete(entry, this.spanning.take(chunk, s, end));
      }
      s = end;
    }
    if (run >= 0) this.write(chunk.subarray(run, s));
    this.continuing = s < chunk.length;
    if (s < chunk.length) {
      // The start (or middle) of a reply that continues in the next chunk.
      const piece = chunk.subarray(s);
      const head = up.peek();
      this.continuingPush = this.scanner.topType === 0x3e;
      if (!this.continuingPush && head !== undefined && !head.stream && head.hook === null && head.post === null && !head.swallow && !head.silent &&
          this.out.peek() === head && (this.spanning.empty || head.streaming)) {
        head.streaming = true;
        this.write(piece);
      } else {
        this.spanning.hold(piece);
      }
    }
    client.uncork();
    this.sendQ.ownIdle();
    if (this.out.length === 0) host.afterFlush();
  }

  /** Drops a reply being assembled (the connection it came on is gone). */
  dropPartial(): void {
    this.spanning.drop();
    this.continuing = false;
  }

  write(buf: Buffer): void {
    const host = this.host;
    if (host.dead) return;
    if (host.client.write(buf)) return;
    const limit = host.ctx.clientLimits.outputBufferLimit;
    if (limit > 0) {
      // The client reads slower than replies come: hold them, up to the limit (as Redis's
      // client-output-buffer-limit does), rather than leave them piling up in the target.
      if (this.heldReplyBytes() > limit) host.outputLimitExceeded(limit);
    } else {
      host.clientFull();
    }
  }

  /**
   * Reply bytes held for the client: what its socket has not sent yet and a reply being
   * assembled. Finished replies waiting in `out` behind an earlier one are not counted: there
   * are at most --max-pending-per-client of them, each one of the proxy's own short replies.
   */
  private heldReplyBytes(): number {
    return this.host.client.writableLength + this.spanning.bytes;
  }

  complete(e: Entry, reply: Buffer): void {
    if (e.swallow) {
      e.onReply?.(reply);
      return;
    }
    let out = reply;
    if (e.hook !== null) {
      try {
        out = e.hook(reply, e);
      } catch (err) {
        out = encodeError(`ERR rehome: ${(err as Error).message}`);
      }
    }
    const post = e.post;
    if (post !== null) {
      e.post = null;
      post(out).then(
        (r) => this.complete(e, r),
        (err: unknown) => this.complete(e, encodeError(err instanceof Error ? err.message : String(err))),
      );
      return;
    }
    e.reply = out;
    e.state = St.Done;
    this.flushOut();
  }

  /** The target's reply to a command sent on the shared lane. */
  laneReply(e: Entry, reply: Buffer): void {
    if (this.out.peek() === e && e.hook === null) {
      this.out.shift();
      e.state = St.Done;
      if (!e.silent) this.write(reply);
      if (e.t0 !== 0) this.host.ctx.observeLatency((performance.now() - e.t0) / 1000);
      if (e.side !== null) e.side.counters.done(e.side, reply[0]);
      this.flushOut();
    } else {
      this.complete(e, reply);
    }
  }

  /** Writes finished replies from the front of the reply order. */
  flushOut(): void {
    const out = this.out;
    for (;;) {
      const e = out.peek();
      if (e === undefined) break;
      if (e.stream) {
        if (e.pending !== null) {
          for (const b of e.pending) this.write(b);
          e.pending = null;
        }
        if (!e.streamEnded) break;
        out.shift();
        continue;
      }
      if (e.state !== St.Done) break;
      out.shift();
      if (e.reply !== null && !e.silent) this.write(e.reply);
      if (e.t0 !== 0) this.host.ctx.observeLatency((performance.now() - e.t0) / 1000);
      if (e.side !== null) e.side.counters.done(e.side, e.reply?.[0]);
    }
    this.host.afterFlush();
  }

  /** Writes a stream's reply now if its entry is at the front, else keeps it for later. */
  emit(e: Entry, buf: Buffer): void {
    if (this.out.peek() === e) this.write(buf);
    else (e.pending ??= []).push(buf);
  }

  /** Ends a stream entry: the replies after it can go out. */
  endStream(e: Entry): void {
    e.streamEnded = true;
    e.state = St.Done;
    if (this.sendQ.up.peek() === e) this.sendQ.up.shift();
    this.flushOut();
  }

  /** Whether any outstanding entry satisfies `f` (a blocking command, say). */
  some(f: (e: Entry) => boolean): boolean {
    return this.out.some(f);
  }
}
