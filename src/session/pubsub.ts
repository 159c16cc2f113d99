/**
 * Pub/sub and MONITOR: a stream entry in the reply order takes every reply on the client's own
 * connection while it lasts, and what the client sends meanwhile goes to the server as it is
 * (answered inside the stream).
 *
 * Whether a subscribed client is still subscribed is known only once the target has answered
 * everything before: a command not allowed while subscribed is held behind a PING with a unique
 * token (the barrier), and decided when the PING's reply comes back through the stream.
 */
import { randomBytes } from 'node:crypto';
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import type { Request } from '../resp/request-framer.js';
import { arrayElements } from '../resp/reply-scanner.js';
import { resetDone } from './connection-state.js';
import { Entry } from './entry.js';
import type { SessionPort } from './port.js';

const PUBSUB_ALLOWED = new Set([
  'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe',
  'ping', 'quit', 'reset',
]);
export const SUBSCRIBE_FAMILY = new Set([
  'subscribe', 'psubscribe', 'ssubscribe', 'unsubscribe', 'punsubscribe', 'sunsubscribe',
]);

const RESET_REPLY = '+RESET\r\n';
const ARRAY_MARK = Buffer.from('*');

/** What pub/sub needs of the session besides the port: the request it holds. */
export interface StreamPort extends SessionPort {
  readonly held: Request | null;
  takeHeld(): Request | null;
}

export class PubSub {
  private barrierToken: Buffer | null = null;
  private subCount = 0;
  private shardCount = 0;

  constructor(private readonly s: StreamPort) {}

  /**
   * A request while subscribed or monitoring. Returns false when it is not a stream's (RESET,
   * which connection-state.ts handles, and requests after the stream).
   */
  whileStreaming(req: Request): boolean {
    const s = this.s;
    const name = req.name;
    if (s.conn.monitoring) {
      if (name === 'reset') return false;
      s.sendRaw(req.raw); // answered in the stream, as on the server
      return true;
    }
    if (!PUBSUB_ALLOWED.has(name)) {
      this.startBarrier(req);
      return true;
    }
    if (name === 'reset') return false;
    s.sendRaw(req.raw); // its replies arrive through the stream entry
    return true;
  }

  subscribe(req: Request): void {
    const s = this.s;
    if (s.conn.inMulti) {
      s.forwardPlain(req);
      return;
    }
    if (req.name.endsWith('subscribe') && !req.name.includes('un') && req.argc < 2) {
      s.forwardPlain(req); // arity error from the target
      return;
    }
    if (s.conn.resp === 3) {
      // RESP3 has no subscribed mode: any command may follow, messages are pushes, and the
      // acknowledgement push is the command's reply.
      if (!req.name.includes('un')) {
        if (!s.conn.pushSubscribed) this.subCount = this.shardCount = 0; // (after a RESET)
        s.conn.pushSubscribed = true;
      }
      const e = new Entry(req);
      e.pushReply = true;
      s.enqueue(e);
      return;
    }
    s.conn.subscribed = true;
    this.subCount = 0;
    this.shardCount = 0;
    const e = new Entry(req);
    e.stream = true;
    s.enqueue(e);
  }

  /** MONITOR: the client's own connection streams what the target runs. */
  monitor(req: Request): void {
    const s = this.s;
    if (s.conn.inMulti) {
      s.forwardPlain(req);
      return;
    }
    s.conn.monitoring = true;
    const e = new Entry(req);
    e.stream = true;
    s.enqueue(e);
  }

  /** Whether a barrier's PING is out (its answer not yet back). */
  get barrierPending(): boolean {
    return this.barrierToken !== null;
  }

  /**
   * Sends the barrier: a PING with a unique token. `req` (null: the client half-closed) is
   * decided when its reply comes back through the stream.
   */
  startBarrier(req: Request | null): void {
    const s = this.s;
    if (req !== null) s.hold(req);
    const token = randomBytes(12).toString('hex');
    this.barrierToken = Buffer.from(token);
    s.sendRaw(Buffer.from(`*2\r\n$4\r\nPING\r\n$${token.length}\r\n${token}\r\n`));
    s.flushUp();
  }

  onStreamReply(e: Entry, reply: Buffer): void {
    const s = this.s;
    const token = this.barrierToken;
    if (token !== null && isBarrierReply(reply, token)) {
      this.barrierToken = null;
      this.onBarrier(e);
      return;
    }
    if (reply.length === RESET_REPLY.length && reply.toString('latin1') === RESET_REPLY) {
      s.emit(e, reply);
      s.conn.statePending--; // taken by reset() for this stream's RESET
      resetDone(s);
      s.endStream(e);
      if (s.held !== null) s.release();
      else s.resume();
      return;
    }
    if (s.conn.monitoring) {
      // MONITOR refused (its ACL user may not run it): the connection is a normal one again.
      if (reply[0] === 0x2d && !e.streaming) {
        s.conn.monitoring = false;
        s.emit(e, reply);
        s.endStream(e);
        s.resume();
        return;
      }
      e.streaming = true;
      s.emit(e, reply);
      return;
    }
    if (reply[0] === 0x2a) this.trackSubscriptions(reply);
    s.emit(e, reply);
  }

  /**
   * A RESP3 (un)subscribe acknowledgement: RESP3 has no subscribed mode, but while any
   * subscription remains, pushes may come at any time and the client is not idle.
   */
  onPushAck(push: Buffer): void {
    this.trackSubscriptions(Buffer.concat([ARRAY_MARK, push.subarray(1)]));
    this.s.conn.pushSubscribed = this.subCount + this.shardCount > 0;
  }

  private trackSubscriptions(reply: Buffer): void {
    const els = arrayElements(reply);
    if (els === null || els.length !== 3) return;
    const kindEl = els[0]!;
    const countEl = els[2]!;
    if (kindEl[0] !== 0x24 || countEl[0] !== 0x3a) return;
    const nl = kindEl.indexOf(10);
    const kind = kindEl.toString('latin1', nl + 1, kindEl.length - 2);
    const count = Number(countEl.toString('latin1', 1, countEl.length - 2));
    if (kind === 'subscribe' || kind === 'psubscribe' || kind === 'unsubscribe' || kind === 'punsubscribe') {
      this.subCount = count;
    } else if (kind === 'ssubscribe' || kind === 'sunsubscribe') {
      this.shardCount = count;
    }
  }

  private onBarrier(e: Entry): void {
    const s = this.s;
    if (s.held === null) {
      // The closing barrier: every reply the client asked for is out.
      s.conn.subscribed = false;
      s.endStream(e);
      return;
    }
    if (this.subCount + this.shardCount === 0) {
      // Back in normal mode: the held command runs as usual.
      s.conn.subscribed = false;
      s.endStream(e);
      s.release();
      return;
    }
    const req = s.takeHeld()!;
    s.emit(e, encodeError(ErrorText.pubsubContext(req.name)));
    s.resume();
  }
}

function isBarrierReply(reply: Buffer, token: Buffer): boolean {
  const t = token.toString('latin1');
  const r = reply.toString('latin1');
  return r === `*2\r\n$4\r\npong\r\n$${t.length}\r\n${t}\r\n` || r === `$${t.length}\r\n${t}\r\n`;
}
