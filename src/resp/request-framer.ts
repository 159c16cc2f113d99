/**
 * Request framing: finds where each client request ends and where its arguments lie, without
 * decoding or copying them. A framed request keeps the original bytes (`raw`) so the proxy can
 * forward them untouched; arguments are [start, end) offsets into `raw`.
 *
 * Buffer ownership: Node hands every 'data' event a fresh Buffer, so a request that lies inside one
 * chunk is a zero-copy subarray of it. Only a request that spans chunks is copied, once, when all of
 * its bytes have arrived (the framer knows how many bytes a bulk needs, so a 100 MB value arriving
 * in 64 KB chunks is concatenated once, not once per chunk).
 *
 * Inline commands (telnet style) are split like Redis does (inline-args.ts) and re-encoded as a
 * multibulk request: they are rare and only humans type them.
 */
import { ProtocolError } from '../errors.js';
import { splitInlineArgs } from './inline-args.js';

/** One framed request. */
export interface Request {
  /** The request's bytes in multibulk form, forwarded as they are. */
  raw: Buffer;
  /** Number of arguments, command name included. */
  argc: number;
  /** Argument i lies at raw[offs[2i], offs[2i+1]). */
  offs: number[];
  /** Command name, lowercased. */
  name: string;
}

/** Limits applied while framing (Redis's own defaults unless configured). */
export interface FramerLimits {
  /** Largest bulk argument (proto-max-bulk-len). */
  maxBulkLen: number;
  /** Largest number of arguments in one request. */
  maxArgs: number;
  /** Longest inline request or header line. */
  maxInline: number;
}

export const DEFAULT_FRAMER_LIMITS: FramerLimits = {
  maxBulkLen: 512 * 1024 * 1024,
  maxArgs: 1024 * 1024,
  maxInline: 64 * 1024,
};

const CR = 13;
const LF = 10;
/** Longest command name whose bytes the framer remembers (see RequestFramer.commandName). */
const NAME_CACHE_MAX = 32;

/** Pull-style request framer: push() chunks, then call next() until it returns null. */
export class RequestFramer {
  private buf: Buffer = Buffer.alloc(0);
  private pos = 0;
  /** Chunks received while the current request is known to be incomplete. */
  private waiting: Buffer[] = [];
  private waitingLen = 0;
  /** Total bytes (from pos) needed before parsing can make progress. */
  private need = 0;
  /**
   * Where the parse of an incomplete multibulk request at `pos` stopped (p relative to pos), so
   * the next chunk resumes there instead of rescanning the request from its start.
   */
  private mb: { count: number; i: number; p: number; offs: number[] } | null = null;
  /** Storage `buf` lies at the start of while a request spans chunks (has spare room to append). */
  private acc: Buffer | null = null;
  /**
   * The previous request's command name: its bytes (a copy) and the lowercased string. A client
   * mostly repeats a few commands, so the same string is handed out again (no allocation, and
   * its hash, computed once, serves every later table lookup).
   */
  private readonly nameBytes = Buffer.alloc(NAME_CACHE_MAX);
  private nameLen = -1;
  private name = '';

  constructor(private readonly limits: FramerLimits = DEFAULT_FRAMER_LIMITS) {}

  /** Bytes held but not yet framed. */
  get buffered(): number {
    return this.buf.length - this.pos + this.waitingLen;
  }

  /** Drops every byte held (the connection is being closed): nothing more is framed. */
  discard(): void {
    this.buf = Buffer.alloc(0);
    this.pos = 0;
    this.waiting = [];
    this.waitingLen = 0;
    this.need = 0;
    this.mb = null;
    this.acc = null;
  }

  push(chunk: Buffer): void {
    const have = this.buf.length - this.pos;
    if (have === 0 && this.waitingLen === 0) {
      this.buf = chunk;
      this.pos = 0;
      return;
    }
    this.waiting.push(chunk);
    this.waitingLen += chunk.length;
    if (have + this.waitingLen < this.need) return;
    this.consolidate();
  }

  /**
   * Joins the waiting chunks to the unframed bytes. A request that spans many chunks grows in
   * one buffer with room to spare (appends copy only the new chunk), so a large request costs
   * linear time, not a copy of everything so far per chunk.
   */
  private consolidate(): void {
    if (this.waitingLen === 0) return;
    const have = this.buf.length - this.pos;
    const total = have + this.waitingLen;
    let acc = this.acc;
    let off: number;
    if (acc !== null && this.pos === 0 && this.buf.buffer === acc.buffer &&
        this.buf.byteOffset === acc.byteOffset && acc.length >= total) {
      off = have; // append after what is there; nothing points past it
    } else {
      acc = Buffer.allocUnsafe(total + Math.min(total, 1 << 20));
      this.buf.copy(acc, 0, this.pos);
      off = have;
      this.acc = acc;
    }
    for (const w of this.waiting) {
      w.copy(acc, off);
      off += w.length;
    }
    this.buf = acc.subarray(0, total);
    this.pos = 0;
    this.waiting = [];
    this.waitingLen = 0;
  }

  /**
   * The next complete request, or null if more bytes are needed.
   * Throws ProtocolError on malformed input; the connection must then be closed.
   */
  next(): Request | null {
    for (;;) {
      if (this.waitingLen > 0) {
        if (this.buf.length - this.pos + this.waitingLen < this.need) return null;
        this.consolidate();
      }
      const buf = this.buf;
      const start = this.pos;
      if (start >= buf.length) return null;
      const first = buf[start];
      let req: Request | null | undefined;
      if (first === 0x2a /* '*' */) {
        req = this.parseMultibulk(buf, start);
      } else {
        req = this.parseInline(buf, start);
      }
      if (req === undefined) continue; // empty request skipped
      return req;
    }
  }

  /** Returns undefined when an empty request was skipped, null when incomplete. */
  private parseMultibulk(buf: Buffer, start: number): Request | null | undefined {
    const limits = this.limits;
    let p = start + 1;
    const eol = findCR(buf, p);
    if (eol < 0 || eol + 1 >= buf.length) {
      if (buf.length - start > limits.maxInline) {
        throw new ProtocolError('Protocol error: too big mbulk count string');
      }
      this.need = buf.length - start + 1;
      return null;
    }
    const resume = this.mb;
    this.mb = null;
    if (resume !== null) return this.parseArgs(buf, start, resume.count, resume.i, start + resume.p, resume.offs);
    const count = parseDecimal(buf, p, eol);
    if (count === null || count > limits.maxArgs) {
      throw new ProtocolError('Protocol error: invalid multibulk length');
    }
    if (buf[eol + 1] !== LF) throw new ProtocolError('Protocol error: invalid multibulk length');
    p = eol + 2;
    if (count <= 0) {
      // Redis ignores *0 and *-1 requests.
      this.pos = p;
      this.need = 0;
      return undefined;
    }
    return this.parseArgs(buf, start, count, 0, p, new Array<number>(count * 2));
  }

  /** The arguments of a multibulk request from argument i at p on; null (state kept) when incomplete. */
  private parseArgs(buf: Buffer, start: number, count: number, i0: number, p: number, offs: number[]): Request | null {
    const limits = this.limits;
    for (let i = i0; i < count; i++) {
      if (p >= buf.length) {
        this.need = p - start + 1;
        this.mb = { count, i, p: p - start, offs };
        return null;
      }
      if (buf[p] !== 0x24 /* '$' */) {
        throw new ProtocolError(`Protocol error: expected '$', got '${printable(buf[p]!)}'`);
      }
      const heol = findCR(buf, p + 1);
      if (heol < 0 || heol + 1 >= buf.length) {
        if (buf.length - p > limits.maxInline) {
          throw new ProtocolError('Protocol error: too big bulk count string');
        }
        this.need = buf.length - start + 1;
        this.mb = { count, i, p: p - start, offs };
        return null;
      }
      const len = parseDecimal(buf, p + 1, heol);
      if (len === null || len < 0 || len > limits.maxBulkLen || buf[heol + 1] !== LF) {
        throw new ProtocolError('Protocol error: invalid bulk length');
      }
      const dataStart = heol + 2;
      const dataEnd = dataStart + len;
      if (dataEnd + 2 > buf.length) {
        // Everything up to here is known good: wait for the whole bulk.
        this.need = dataEnd + 2 - start;
        this.mb = { count, i, p: p - start, offs };
        return null;
      }
      if (buf[dataEnd] !== CR || buf[dataEnd + 1] !== LF) {
        throw new ProtocolError('Protocol error: bulk not terminated by CRLF');
      }
      offs[2 * i] = dataStart - start;
      offs[2 * i + 1] = dataEnd - start;
      p = dataEnd + 2;
    }
    this.pos = p;
    this.need = 0;
    const raw = buf.subarray(start, p);
    return { raw, argc: count, offs, name: this.commandName(buf, start + offs[0]!, start + offs[1]!) };
  }

  /** The lowercased command name in buf[from, to), reusing the previous one when the bytes match. */
  private commandName(buf: Buffer, from: number, to: number): string {
    const len = to - from;
    const known = this.nameBytes;
    if (len === this.nameLen) {
      let i = 0;
      while (i < len && buf[from + i] === known[i]) i++;
      if (i === len) return this.name;
    }
    const name = buf.toString('latin1', from, to).toLowerCase();
    if (len <= NAME_CACHE_MAX) {
      buf.copy(known, 0, from, to);
      this.nameLen = len;
      this.name = name;
    }
    return name;
  }

  private parseInline(buf: Buffer, start: number): Request | null | undefined {
    const eol = buf.indexOf(LF, start);
    if (eol < 0) {
      if (buf.length - start > this.limits.maxInline) {
        throw new ProtocolError('Protocol error: too big inline request');
      }
      this.need = buf.length - start + 1;
      return null;
    }
    if (eol - start > this.limits.maxInline) {
      throw new ProtocolError('Protocol error: too big inline request');
    }
    let lineEnd = eol;
    if (lineEnd > start && buf[lineEnd - 1] === CR) lineEnd--;
    this.pos = eol + 1;
    this.need = 0;
    const args = splitInlineArgs(buf.subarray(start, lineEnd));
    if (args === null) throw new ProtocolError('Protocol error: unbalanced quotes in request');
    if (args.length === 0) return undefined;
    if (args.length > this.limits.maxArgs) {
      throw new ProtocolError('Protocol error: invalid multibulk length');
    }
    return encodeRequest(args);
  }
}

/** Encodes arguments as a multibulk request and frames it. */
export function encodeRequest(args: ReadonlyArray<Buffer | string>): Request {
  const bufs = args.map((a) => (typeof a === 'string' ? Buffer.from(a) : a));
  let size = 1 + String(bufs.length).length + 2;
  for (const b of bufs) size += 1 + String(b.length).length + 2 + b.length + 2;
  const raw = Buffer.allocUnsafe(size);
  let p = raw.write(`*${bufs.length}\r\n`, 0, 'latin1');
  const offs: number[] = new Array(bufs.length * 2);
  for (let i = 0; i < bufs.length; i++) {
    const b = bufs[i]!;
    p += raw.write(`$${b.length}\r\n`, p, 'latin1');
    offs[2 * i] = p;
    b.copy(raw, p);
    p += b.length;
    offs[2 * i + 1] = p;
    raw[p++] = CR;
    raw[p++] = LF;
  }
  const name = raw.toString('latin1', offs[0]!, offs[1]!).toLowerCase();
  return { raw, argc: bufs.length, offs, name };
}

/** `PING` as a request, for the proxy's own probes and keep-alives. */
export const PING_REQUEST: Buffer = encodeRequest(['PING']).raw;

/** Argument i of a request, as a Buffer view (no copy). */
export function argBuf(req: Request, i: number): Buffer {
  return req.raw.subarray(req.offs[2 * i]!, req.offs[2 * i + 1]!);
}

/** Argument i of a request as a latin1 string (one char per byte: binary safe, reversible). */
export function argStr(req: Request, i: number): string {
  return req.raw.toString('latin1', req.offs[2 * i]!, req.offs[2 * i + 1]!);
}

/** Argument i, lowercased (for option keywords). */
export function argLower(req: Request, i: number): string {
  return argStr(req, i).toLowerCase();
}

/**
 * The index of the first CR at or after `from`, or -1. Header lines are a few bytes long: a short
 * loop costs less than a call into the native indexOf, which takes over past that.
 */
function findCR(buf: Buffer, from: number): number {
  const n = buf.length;
  const end = from + 24 < n ? from + 24 : n;
  for (let i = from; i < end; i++) if (buf[i] === CR) return i;
  return end < n ? buf.indexOf(CR, end) : -1;
}

/** Parses an optionally negative decimal integer in buf[from, to); null if malformed. */
function parseDecimal(buf: Buffer, from: number, to: number): number | null {
  if (from >= to || to - from > 18) return null;
  let neg = false;
  let i = from;
  if (buf[i] === 0x2d /* '-' */) {
    neg = true;
    i++;
    if (i >= to) return null;
  }
  // As Redis reads lengths: no leading zeros, and no "-0".
  if (buf[i] === 0x30 /* '0' */ && (neg || to - i > 1)) return null;
  let n = 0;
  for (; i < to; i++) {
    const c = buf[i]! - 48;
    if (c < 0 || c > 9) return null;
    n = n * 10 + c;
  }
  return neg ? -n : n;
}

function printable(c: number): string {
  return c >= 32 && c < 127 ? String.fromCharCode(c) : `\\x${c.toString(16).padStart(2, '0')}`;
}
