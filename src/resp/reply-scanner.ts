/**
 * Reply framing: a resumable byte-level scanner that finds where each RESP2 reply ends, across
 * chunk boundaries, without decoding or copying anything. The proxy uses the boundaries to hand
 * each reply's bytes to the request that asked for it; a reply split across chunks is handed over
 * as several pieces, so a large reply is streamed, never concatenated.
 *
 *   chunk:  [ ...rest of reply A | reply B | reply C | start of reply D... ]
 *   scan(): ends = [a, b, c]          -> pieces: [0,a) ends A, [a,b) is B, [b,c) is C,
 *                                        [c,len) is the first piece of D (reply still open)
 */
import { ProtocolError } from '../errors.js';

const CR = 13;
const LF = 10;

const enum State {
  Type, // expecting a type byte
  Line, // inside a +, -, : line, looking for LF
  Header, // inside a $ or * length, accumulating digits until CR
  HeaderLf, // saw CR of a header, expecting LF
  Bulk, // skipping bulk payload + CRLF
}

/** Resumable scanner of RESP2 replies. */
export class ReplyScanner {
  private state = State.Type;
  /** Type byte of the header being read ('$' or '*'). */
  private headerType = 0;
  private headerValue = 0;
  private headerNeg = false;
  private headerDigits = 0;
  private bulkRemaining = 0;
  /** Remaining elements of each open array, innermost last. */
  private stack: number[] = [];

  /** True when the scanner is between replies. */
  get idle(): boolean {
    return this.state === State.Type && this.stack.length === 0;
  }

  /**
   * Scans a chunk and returns the offsets (exclusive ends) at which replies complete.
   * Throws ProtocolError when the bytes are not RESP2.
   */
  scan(chunk: Buffer, ends: number[]): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Type: {
          const t = chunk[i++]!;
          if (t === 0x2b /* + */ || t === 0x2d /* - */ || t === 0x3a /* : */) {
            this.state = State.Line;
          } else if (t === 0x24 /* $ */ || t === 0x2a /* * */) {
            this.state = State.Header;
            this.headerType = t;
            this.headerValue = 0;
            this.headerNeg = false;
            this.headerDigits = 0;
          } else {
            throw new ProtocolError(`unexpected reply type byte 0x${t.toString(16)}`);
          }
          break;
        }
        case State.Line: {
          const lf = chunk.indexOf(LF, i);
          if (lf < 0) {
            i = n;
          } else {
            i = lf + 1;
            this.state = State.Type;
            if (this.elementDone()) ends.push(i);
          }
          break;
        }
        case State.Header: {
          const c = chunk[i++]!;
          if (c === CR) {
            this.state = State.HeaderLf;
          } else if (c === 0x2d && this.headerDigits === 0 && !this.headerNeg) {
            this.headerNeg = true;
          } else if (c >= 48 && c <= 57 && this.headerDigits < 16) {
            this.headerValue = this.headerValue * 10 + (c - 48);
            this.headerDigits++;
          } else {
            throw new ProtocolError('malformed length in reply');
          }
          break;
        }
        case State.HeaderLf: {
          if (chunk[i++] !== LF) throw new ProtocolError('malformed length in reply');
          const v = this.headerNeg ? -this.headerValue : this.headerValue;
          this.state = State.Type;
          if (this.headerType === 0x24) {
            if (v >= 0) {
              this.bulkRemaining = v + 2;
              this.state = State.Bulk;
            } else if (this.elementDone()) {
              ends.push(i);
            }
          } else if (v > 0) {
            this.stack.push(v);
          } else if (this.elementDone()) {
            ends.push(i);
          }
          break;
        }
        case State.Bulk: {
          const avail = n - i;
          if (avail < this.bulkRemaining) {
            this.bulkRemaining -= avail;
            i = n;
          } else {
            i += this.bulkRemaining;
            this.bulkRemaining = 0;
            this.state = State.Type;
            if (this.elementDone()) ends.push(i);
          }
          break;
        }
      }
    }
  }

  /** Marks one element complete; true when that completes a top-level reply. */
  private elementDone(): boolean {
    const stack = this.stack;
    while (stack.length > 0) {
      const top = stack.length - 1;
      const left = stack[top]! - 1;
      if (left > 0) {
        stack[top] = left;
        return false;
      }
      stack.pop();
    }
    return true;
  }
}

/** Splits a buffer holding whole replies into one Buffer per reply (for small, proxy-side use). */
export function splitReplies(buf: Buffer): Buffer[] {
  const sc = new ReplyScanner();
  const ends: number[] = [];
  sc.scan(buf, ends);
  const out: Buffer[] = [];
  let s = 0;
  for (const e of ends) {
    out.push(buf.subarray(s, e));
    s = e;
  }
  return out;
}

/** The elements of one array reply, each as its own reply bytes; null if not a (non-nil) array. */
export function arrayElements(reply: Buffer): Buffer[] | null {
  if (reply[0] !== 0x2a) return null;
  const eol = reply.indexOf(LF);
  const count = Number(reply.toString('latin1', 1, eol - 1));
  if (!(count >= 0)) return null;
  const elems = splitReplies(reply.subarray(eol + 1));
  return elems.length === count ? elems : null;
}
