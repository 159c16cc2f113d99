/**
 * One connection from a front connection (front-conn.ts) to one cluster node. Requests go out in
 * order and each reply goes to the callback given with its request (replies come back in request
 * order on one connection). Opened lazily; before any request of the client runs on it, the
 * connection state the client set up (AUTH, HELLO, CLIENT SETNAME...) is replayed on it, so every
 * node sees the same client.
 */
import type net from 'node:net';
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { ReplyScanner } from '../resp/reply-scanner.js';
import { SpanningReply } from '../resp/spanning-reply.js';
import { connectSocket, connectedEvent } from '../upstream/connect.js';
import type { Endpoint } from '../upstream/endpoint.js';
import { Deque } from '../util/deque.js';

/** Receives one reply (whole bytes). */
export type ReplyFn = (reply: Buffer) => void;

/** What a link tells its front connection. */
export interface LinkHost {
  /**
   * The link failed or closed (its requests got an error); `connected` says whether it was up
   * (a node that went away) or never connected (a node that is down).
   */
  linkGone(link: NodeLink, reason: string, connected: boolean): void;
  /** One whole message while the link carries a stream (pub/sub, MONITOR: front-stream.ts). */
  tunnelData(link: NodeLink, msg: Buffer): void;
}

const IGNORE: ReplyFn = () => undefined;

export class NodeLink {
  private readonly sock: net.Socket;
  private readonly waiting = new Deque<ReplyFn>();
  private readonly scanner = new ReplyScanner();
  private readonly ends: number[] = [];
  private readonly spanning = new SpanningReply();
  private gone = false;
  private connected = false;
  /** Messages beyond the replies awaited go to the host (subscribed or monitoring). */
  tunnel = false;

  constructor(
    readonly key: string,
    ep: Endpoint,
    private readonly host: LinkHost,
    replay: readonly Buffer[],
  ) {
    const sock = connectSocket(ep);
    sock.setNoDelay(true);
    this.sock = sock;
    sock.on(connectedEvent(ep), () => {
      this.connected = true;
    });
    sock.on('data', (chunk: Buffer) => this.onData(chunk));
    const fail = (why: string) => this.fail(this.connected ? why : `cannot connect to ${key}: ${why}`);
    sock.on('error', (e) => fail(e.message));
    sock.on('close', () => fail('connection closed'));
    for (const r of replay) this.send(r, IGNORE);
  }

  get busy(): boolean {
    return this.waiting.length > 0;
  }

  send(bytes: Buffer, f: ReplyFn): void {
    if (this.gone) {
      f(encodeError(ErrorText.clusterNodeLost(this.key, 'closed')));
      return;
    }
    this.waiting.push(f);
    if (!this.corked) {
      // Requests sent to this node in one turn of the event loop leave in one write.
      this.corked = true;
      this.sock.cork();
      process.nextTick(this.uncork);
    }
    this.sock.write(bytes);
  }

  private corked = false;
  private readonly uncork = (): void => {
    this.corked = false;
    this.sock.uncork();
  };

  /** Sends bytes whose replies the stream carries (pub/sub, MONITOR). */
  write(bytes: Buffer): void {
    if (!this.gone) this.sock.write(bytes);
  }

  /** Resolves with the reply (rehome's own requests: keyspace-wide commands). */
  call(bytes: Buffer): Promise<Buffer> {
    return new Promise((resolve) => this.send(bytes, resolve));
  }

  pause(): void {
    this.sock.pause();
  }

  resume(): void {
    this.sock.resume();
  }

  close(): void {
    this.gone = true;
    this.sock.destroy();
  }

  private onData(chunk: Buffer): void {
    const ends = this.ends;
    ends.length = 0;
    try {
      this.scanner.scan(chunk, ends);
    } catch (e) {
      this.fail(`protocol error from ${this.key}: ${(e as Error).message}`);
      return;
    }
    let s = 0;
    for (const end of ends) {
      const reply = this.spanning.take(chunk, s, end);
      s = end;
      // Replies to requests sent with a callback come first (a new link's replayed AUTH...);
      // after them, a stream's messages (front-stream.ts) go to the host whole.
      const f = this.waiting.shift();
      if (f !== undefined) f(reply);
      else if (this.tunnel) this.host.tunnelData(this, reply);
      else {
        this.fail(`unexpected reply from ${this.key}`);
        return;
      }
      if (this.gone) return;
    }
    if (s < chunk.length) this.spanning.hold(chunk.subarray(s));
  }

  private fail(reason: string): void {
    if (this.gone && this.waiting.length === 0) return;
    this.gone = true;
    this.sock.destroy();
    const err = encodeError(ErrorText.clusterNodeLost(this.key, reason));
    for (const f of this.waiting.drain()) f(err);
    this.host.linkGone(this, reason, this.connected);
  }
}
