/**
 * A bare RESP connection for the demo's bulk work (seeding 200k keys, reading them all back):
 * batches of commands go out as one string, and each batch resolves with its replies' raw bytes
 * and where each reply ends, framed by the proxy's own reply scanner, never decoded. Several
 * batches may be in flight; replies come back in order.
 */
import net from 'node:net';
import { ReplyScanner } from '../resp/reply-scanner.js';

/** A bulk string. Everything the demo sends is ASCII, so length is byte length. */
export function bulk(s: string): string {
  return `$${s.length}\r\n${s}\r\n`;
}

/** One command in RESP. */
export function resp(cmd: ReadonlyArray<string | number>): string {
  let out = `*${cmd.length}\r\n`;
  for (const a of cmd) out += bulk(String(a));
  return out;
}

/** The replies to one batch: their bytes, and the end offset of each reply in `buf`. */
export interface Replies {
  buf: Buffer;
  ends: number[];
}

interface Batch {
  left: number;
  pieces: Buffer[];
  size: number;
  ends: number[];
  resolve: (r: Replies) => void;
  reject: (e: Error) => void;
}

export class RawConn {
  private readonly scanner = new ReplyScanner();
  private readonly queue: Batch[] = [];
  private error: Error | null = null;

  private constructor(private readonly sock: net.Socket) {
    const ends: number[] = [];
    sock.on('data', (chunk: Buffer) => {
      ends.length = 0;
      try {
        this.scanner.scan(chunk, ends);
      } catch (e) {
        return this.fail(e as Error);
      }
      let start = 0;
      for (const e of ends) {
        const b = this.queue[0];
        if (!b) return this.fail(new Error('a reply nobody asked for'));
        b.pieces.push(chunk.subarray(start, e));
        b.size += e - start;
        b.ends.push(b.size);
        start = e;
        if (--b.left === 0) {
          this.queue.shift();
          b.resolve({ buf: b.pieces.length === 1 ? b.pieces[0]! : Buffer.concat(b.pieces, b.size), ends: b.ends });
        }
      }
      if (start < chunk.length) {
        const b = this.queue[0];
        if (!b) return this.fail(new Error('a reply nobody asked for'));
        b.pieces.push(chunk.subarray(start));
        b.size += chunk.length - start;
      }
    });
    sock.on('error', (e) => this.fail(e));
    sock.on('close', () => this.fail(new Error('connection closed')));
  }

  static connect(port: number, host = '127.0.0.1'): Promise<RawConn> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.once('error', reject);
      s.once('connect', () => {
        s.off('error', reject);
        resolve(new RawConn(s));
      });
    });
  }

  /** Sends a batch of `replies` commands' worth of RESP; resolves with exactly their replies. */
  send(cmds: string, replies: number): Promise<Replies> {
    if (this.error) return Promise.reject(this.error);
    return new Promise((resolve, reject) => {
      this.queue.push({ left: replies, pieces: [], size: 0, ends: [], resolve, reject });
      this.sock.write(cmds, 'latin1');
    });
  }

  close(): void {
    this.sock.destroy();
  }

  private fail(e: Error): void {
    this.error ??= e;
    this.sock.destroy();
    for (const b of this.queue.splice(0)) b.reject(this.error);
  }
}

/** The reply starting at `start` in `r.buf` (reply number `i`). */
export function replyText(r: Replies, i: number): string {
  return r.buf.toString('latin1', i === 0 ? 0 : r.ends[i - 1], r.ends[i]).trimEnd();
}
