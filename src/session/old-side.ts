/**
 * A canary migration serves the keys out of its scope from the old server, as hold does
 * (docs/DESIGN.md "Scope"). This is one client's connection to the old server for them: opened at
 * the client's first command out of scope, it carries the client's own identity (the AUTH the new
 * server accepted from it, replayed) and its db (SELECT before a command when the client's db
 * changed), and the fenced name of the epoch like every upstream connection (src/phase/phase.ts),
 * checked against the phase before the first command runs on it.
 *
 * Commands reach it one at a time (scope-route.ts runs each alone), so a reply is the answer to
 * the one command in flight; replies are framed by the reply scanner, never decoded.
 */
import type net from 'node:net';
import { ErrorText, RehomeError } from '../errors.js';
import { fencedName } from '../phase/phase.js';
import { ReplyScanner } from '../resp/reply-scanner.js';
import { encodeRequest } from '../resp/request-framer.js';
import { connectedEvent, connectSocket } from '../upstream/connect.js';
import { describeEndpoint, type Endpoint } from '../upstream/endpoint.js';
import type { SessionFence } from './port.js';
import type { Protocol } from '../resp/resp3.js';

type Waiter = { resolve: (reply: Buffer) => void; reject: (e: Error) => void };

export class OldSide {
  private sock: net.Socket | null = null;
  private opening: Promise<void> | null = null;
  private scanner = new ReplyScanner();
  private parts: Buffer[] = [];
  private waiting: Waiter[] = [];
  /** The db the connection is in (-1: not known yet). */
  private db = -1;
  /** The client's AUTH the connection was opened with (the client's identity then). */
  private authUsed: Buffer | null = null;
  /** The protocol the connection speaks (HELLO), so replies have the shape the client chose. */
  private resp: Protocol = 2;
  private closed = false;

  constructor(
    private readonly old: Endpoint,
    private readonly fence: SessionFence | null,
    private readonly timeoutMs: number,
  ) {}

  /**
   * Runs one client request on the old server in `db`, as the client (`auth`: the AUTH request
   * the client's server accepted, replayed once when the connection opens). Resolves with the
   * reply bytes (an error reply included); rejects when the old server cannot be reached.
   */
  async call(request: Buffer, db: number, auth: Buffer | null, resp: Protocol = 2): Promise<Buffer> {
    if (this.closed) throw new RehomeError('EOLDSIDE', ErrorText.oldUnavailable(describeEndpoint(this.old), 'the client closed'));
    // The client authenticated again (or RESET): its identity changed, so a new connection.
    if (this.sock !== null && this.opening === null && auth !== this.authUsed) this.gone('the client changed identity');
    if (this.sock === null || this.opening !== null) {
      this.opening ??= this.open(auth).finally(() => (this.opening = null));
      await this.opening;
    }
    if (resp !== this.resp) {
      const r = await this.send(encodeRequest(['HELLO', String(resp)]).raw);
      if (r[0] === 0x2d || r[0] === 0x21) return r; // the old server's own refusal (no RESP3 there)
      this.resp = resp;
    }
    if (db !== this.db) {
      const r = await this.send(encodeRequest(['SELECT', String(db)]).raw);
      if (r[0] !== 0x2b) return r; // the client's db does not exist there: the server's own error
      this.db = db;
    }
    return this.send(request);
  }

  private async open(auth: Buffer | null): Promise<void> {
    const sock = connectSocket(this.old);
    sock.setNoDelay(true);
    this.sock = sock;
    this.db = -1;
    this.resp = 2;
    this.authUsed = auth;
    // A socket replaced meanwhile (a new identity) says nothing about the current one.
    sock.on('data', (chunk: Buffer) => this.sock === sock && this.onData(chunk));
    sock.on('error', (e) => this.sock === sock && this.gone(e.message));
    sock.on('close', () => this.sock === sock && this.gone('connection closed'));
    const connected = new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`connect timed out after ${this.timeoutMs} ms`)), this.timeoutMs);
      sock.once(connectedEvent(this.old), () => {
        clearTimeout(t);
        resolve();
      });
      sock.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
    try {
      await connected;
      // The client's identity first, then the fenced name: checked after naming (phase.ts).
      if (auth !== null) {
        await this.expectOk(auth, 'AUTH');
        // A HELLO 3 AUTH replayed chose the protocol too.
        if (/^\*\d+\r\n\$5\r\nhello\r\n\$1\r\n3\r\n/i.test(auth.toString('latin1', 0, 24))) this.resp = 3;
      }
      if (this.fence !== null) {
        await this.expectOk(encodeRequest(['CLIENT', 'SETNAME', fencedName(this.fence.epoch, 'side')]).raw, 'CLIENT SETNAME');
        await this.fence.verify();
      }
    } catch (e) {
      sock.destroy();
      this.sock = null;
      throw new RehomeError('EOLDSIDE', ErrorText.oldUnavailable(describeEndpoint(this.old), (e as Error).message));
    }
  }

  private async expectOk(bytes: Buffer, what: string): Promise<void> {
    const r = await this.send(bytes);
    // (An AUTH replayed as HELLO answers with a map, as an array in RESP2.)
    if (r[0] === 0x2d) throw new Error(`${what} was refused: ${r.toString('latin1').slice(1).trim()}`);
  }

  private send(bytes: Buffer): Promise<Buffer> {
    const sock = this.sock;
    if (sock === null) return Promise.reject(new RehomeError('EOLDSIDE', ErrorText.oldUnavailable(describeEndpoint(this.old), 'connection closed')));
    return new Promise((resolve, reject) => {
      this.waiting.push({ resolve, reject });
      sock.write(bytes);
    });
  }

  private onData(chunk: Buffer): void {
    const ends: number[] = [];
    try {
      this.scanner.scan(chunk, ends);
    } catch (e) {
      this.sock?.destroy();
      this.gone((e as Error).message);
      return;
    }
    let start = 0;
    for (const end of ends) {
      this.parts.push(chunk.subarray(start, end));
      const reply = this.parts.length === 1 ? Buffer.from(this.parts[0]!) : Buffer.concat(this.parts);
      this.parts = [];
      start = end;
      this.waiting.shift()?.resolve(reply);
    }
    if (start < chunk.length) this.parts.push(Buffer.from(chunk.subarray(start)));
  }

  /** The connection failed: what waits gets the error; the next call opens a new one. */
  private gone(reason: string): void {
    if (this.sock === null) return;
    this.sock.destroy();
    this.sock = null;
    this.scanner = new ReplyScanner();
    this.parts = [];
    const err = new RehomeError('EOLDSIDE', ErrorText.oldUnavailable(describeEndpoint(this.old), reason));
    for (const w of this.waiting.splice(0)) w.reject(err);
  }

  close(): void {
    this.closed = true;
    this.gone('the client closed');
  }
}
