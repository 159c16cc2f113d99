/**
 * A raw RESP client for byte-exact tests: it writes whatever bytes it is given and reads replies as
 * raw Buffers (framed by a minimal RESP2/RESP3 reply scanner), so tests can compare the proxy's
 * bytes with a direct server's bytes.
 */
import net from 'node:net';

/** Encodes a command as a RESP array of bulk strings. */
export function encodeCommand(args: ReadonlyArray<string | number | Buffer>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${args.length}\r\n`)];
  for (const a of args) {
    const b = Buffer.isBuffer(a) ? a : Buffer.from(String(a));
    parts.push(Buffer.from(`$${b.length}\r\n`), b, Buffer.from('\r\n'));
  }
  return Buffer.concat(parts);
}

/**
 * Returns the offset just past one complete reply starting at `off`, or -1 if `buf` does not yet
 * hold a complete reply. Throws on a byte that cannot start a reply.
 */
export function scanReply(buf: Buffer, off = 0): number {
  if (off >= buf.length) return -1;
  const eol = buf.indexOf('\r\n', off, 'latin1');
  if (eol < 0) return -1;
  const type = String.fromCharCode(buf[off]!);
  const line = buf.toString('latin1', off + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
    case '-':
    case ':':
    case '_':
    case ',':
    case '#':
    case '(':
      return next;
    case '$':
    case '=':
    case '!': {
      const n = Number(line);
      if (n < 0) return next;
      const end = next + n + 2;
      return buf.length >= end ? end : -1;
    }
    case '*':
    case '~':
    case '>':
    case '%':
    case '|': {
      let n = Number(line);
      if (n < 0) return next;
      if (type === '%' || type === '|') n *= 2;
      let p = next;
      for (let i = 0; i < n; i++) {
        p = scanReply(buf, p);
        if (p < 0) return -1;
      }
      return p;
    }
    default:
      throw new Error(`not a RESP reply at offset ${off}: ${JSON.stringify(buf.toString('latin1', off, off + 40))}`);
  }
}

/** An error reply; JSON-serialises as {"error": "..."} so replies can be compared structurally. */
export class RespError {
  constructor(readonly error: string) {}
}

export type RespValue = string | number | null | RespError | RespValue[];

/** Parses one complete reply (as framed by scanReply) into a JS value. Bulk strings are utf8. */
export function parseReply(buf: Buffer): RespValue {
  const [v] = parseAt(buf, 0);
  return v;
}

function parseAt(buf: Buffer, off: number): [RespValue, number] {
  const eol = buf.indexOf('\r\n', off, 'latin1');
  if (eol < 0) throw new Error('incomplete reply');
  const type = String.fromCharCode(buf[off]!);
  const line = buf.toString('utf8', off + 1, eol);
  const next = eol + 2;
  switch (type) {
    case '+':
    case ',':
      return [line, next];
    case '-':
      return [new RespError(line), next];
    case ':':
    case '(':
      return [Number(line), next];
    case '_':
      return [null, next];
    case '#':
      return [line === 't' ? 1 : 0, next];
    case '$':
    case '=':
    case '!': {
      const n = Number(line);
      if (n < 0) return [null, next];
      return [buf.toString('utf8', next, next + n), next + n + 2];
    }
    default: {
      let n = Number(line);
      if (n < 0) return [null, next];
      if (type === '%' || type === '|') n *= 2;
      const out: RespValue[] = [];
      let p = next;
      for (let i = 0; i < n; i++) {
        const [v, q] = parseAt(buf, p);
        out.push(v);
        p = q;
      }
      return [out, p];
    }
  }
}

/** A raw TCP connection speaking RESP by hand. */
export class RawClient {
  private buf: Buffer = Buffer.alloc(0);
  private waiter: (() => void) | null = null;
  private closedFlag = false;
  private closeWaiters: Array<() => void> = [];

  private constructor(private readonly sock: net.Socket) {
    sock.on('data', (d: Buffer) => {
      this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
      this.wake();
    });
    const onClose = () => {
      this.closedFlag = true;
      this.wake();
      for (const w of this.closeWaiters.splice(0)) w();
    };
    sock.on('close', onClose);
    sock.on('end', () => this.wake());
    sock.on('error', () => {});
  }

  static connect(port: number, host = '127.0.0.1', timeoutMs = 5_000): Promise<RawClient> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host });
      s.setNoDelay(true);
      const t = setTimeout(() => {
        s.destroy();
        reject(new Error(`raw connect to ${host}:${port} timed out`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(t);
        s.removeAllListeners('error');
        resolve(new RawClient(s));
      });
      s.once('error', (e) => {
        clearTimeout(t);
        reject(e);
      });
    });
  }

  private wake(): void {
    const w = this.waiter;
    this.waiter = null;
    w?.();
  }

  get closed(): boolean {
    return this.closedFlag;
  }

  /** Writes raw bytes (a string is sent as latin1 bytes). */
  write(data: string | Buffer): void {
    this.sock.write(typeof data === 'string' ? Buffer.from(data, 'latin1') : data);
  }

  /** Sends one command (RESP array) and reads its reply. */
  async command(...args: Array<string | number | Buffer>): Promise<Buffer> {
    this.write(encodeCommand(args));
    return this.readReply();
  }

  /** Sends one command and parses its reply. */
  async call(...args: Array<string | number | Buffer>): Promise<RespValue> {
    return parseReply(await this.command(...args));
  }

  /** Reads exactly one reply (raw bytes), waiting up to timeoutMs. */
  async readReply(timeoutMs = 10_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const end = scanReply(this.buf, 0);
      if (end >= 0) {
        const r = this.buf.subarray(0, end);
        this.buf = this.buf.subarray(end);
        return Buffer.from(r);
      }
      if (this.closedFlag) {
        throw new Error(`connection closed while waiting for a reply (unread bytes: ${JSON.stringify(this.buf.toString('latin1'))})`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`no complete reply within ${timeoutMs} ms (unread bytes: ${JSON.stringify(this.buf.toString('latin1').slice(0, 200))})`);
      }
      await new Promise<void>((resolve) => {
        const t = setTimeout(() => {
          if (this.waiter === resolve) this.waiter = null;
          resolve();
        }, left);
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
  }

  /** Reads n replies in order. */
  async readReplies(n: number, timeoutMs = 10_000): Promise<Buffer[]> {
    const out: Buffer[] = [];
    for (let i = 0; i < n; i++) out.push(await this.readReply(timeoutMs));
    return out;
  }

  /** Waits until the peer closes the connection; resolves true if it did within timeoutMs. */
  waitClosed(timeoutMs = 5_000): Promise<boolean> {
    if (this.closedFlag) return Promise.resolve(true);
    return new Promise((resolve) => {
      const t = setTimeout(() => resolve(false), timeoutMs);
      this.closeWaiters.push(() => {
        clearTimeout(t);
        resolve(true);
      });
    });
  }

  /** Bytes received but not yet consumed by readReply. */
  pending(): Buffer {
    return this.buf;
  }

  /** Waits until at least n bytes are pending or the connection closes (or timeout). */
  async waitBytes(n: number, timeoutMs = 5_000): Promise<Buffer> {
    const deadline = Date.now() + timeoutMs;
    while (this.buf.length < n && !this.closedFlag && Date.now() < deadline) {
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.max(1, deadline - Date.now()));
        this.waiter = () => {
          clearTimeout(t);
          resolve();
        };
      });
    }
    return this.buf;
  }

  close(): void {
    this.sock.destroy();
  }

  /** Half-closes: the client sends its end of stream but still reads replies. */
  end(): void {
    this.sock.end();
  }
}

/** Printable form of raw reply bytes for assertion messages. */
export function show(b: Buffer): string {
  return JSON.stringify(b.toString('latin1'));
}
