/**
 * Reply framing: a resumable byte-level scanner that finds where each RESP2 or RESP3 reply ends,
 * across chunk boundaries, without decoding or copying anything. The proxy uses the boundaries to
 * hand each reply's bytes to the request that asked for it; a reply split across chunks is handed
 * over as several pieces, so a large reply is streamed, never concatenated.
 *
 *   chunk:  [ ...rest of reply A | reply B | reply C | start of reply D... ]
 *   scan(): ends = [a, b, c]          -> pieces: [0,a) ends A, [a,b) is B, [b,c) is C,
 *                                        [c,len) is the first piece of D (reply still open)
 *
 * RESP3 adds line types (`_ , # (`), length-prefixed strings (`= !`), aggregates of n elements
 * (`~ >`) and of n pairs (`%`), attributes (`|`: n pairs, then the value they describe, all one
 * reply here) and streamed strings (`$?` then `;len` parts up to `;0`) and aggregates (`*? %? ~?
 * >? |?` up to `.`). `topType` tells which type the reply in progress started with, so a push
 * (`>`) is told from a reply.
 */
import { ProtocolError } from '../errors.js';

const CR = 13;
const LF = 10;

const enum State {
  Type, // expecting a type byte
  Line, // inside a line-only reply (+ - : _ , # ( and the streamed end '.'), looking for LF
  Header, // inside a length, accumulating digits until CR
  HeaderLf, // saw CR of a header, expecting LF
  Bulk, // skipping a string's payload + CRLF
}

/** Element count of an open streamed aggregate (it ends at '.', not after a count). */
const STREAMED = -1;

/** Resumable scanner of RESP2 and RESP3 replies. */
export class ReplyScanner {
  private state = State.Type;
  /** Type byte of the header being read ('$', '*', '%', ...). */
  private headerType = 0;
  private headerValue = 0;
  private headerNeg = false;
  private headerDigits = 0;
  /** The header is '?' (a streamed string or aggregate). */
  private headerStreamed = false;
  private bulkRemaining = 0;
  /** Remaining elements of each open aggregate, innermost last (STREAMED: until '.'). */
  private stack: number[] = [];
  /** Inside a streamed string ('$?'): parts (';len') follow until ';0'. */
  private inStreamedString = false;
  /** Type byte of the top-level reply being scanned, or of the last one completed. */
  topType = 0;

  /** True when the scanner is between replies. */
  get idle(): boolean {
    return this.state === State.Type && this.stack.length === 0 && !this.inStreamedString;
  }

  /**
   * Scans a chunk and returns the offsets (exclusive ends) at which replies complete.
   * Throws ProtocolError when the bytes are not RESP.
   */
  scan(chunk: Buffer, ends: number[]): void {
    const n = chunk.length;
    let i = 0;
    while (i < n) {
      switch (this.state) {
        case State.Type: {
          const t = chunk[i++]!;
          if (this.stack.length === 0 && !this.inStreamedString) this.topType = t;
          if (this.inStreamedString) {
            if (t !== 0x3b /* ; */) throw new ProtocolError('malformed streamed string in reply');
            this.startHeader(t);
          } else if (t === 0x2b /* + */ || t === 0x2d /* - */ || t === 0x3a /* : */ || t === 0x5f /* _ */ ||
              t === 0x2c /* , */ || t === 0x23 /* # */ || t === 0x28 /* ( */) {
            this.state = State.Line;
          } else if (t === 0x2e /* . */) {
            // The end of a streamed aggregate: only where one is open.
            if (this.stack[this.stack.length - 1] !== STREAMED) throw new ProtocolError('unexpected reply type byte 0x2e');
            // The aggregate ends with this line: the line's end completes it as one element.
            this.stack.pop();
            this.state = State.Line;
          } else if (t === 0x24 /* $ */ || t === 0x2a /* * */ || t === 0x3d /* = */ || t === 0x21 /* ! */ ||
              t === 0x25 /* % */ || t === 0x7e /* ~ */ || t === 0x3e /* > */ || t === 0x7c /* | */) {
            this.startHeader(t);
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
          } else if (c === 0x3f /* ? */ && this.headerDigits === 0 && !this.headerNeg && !this.headerStreamed &&
              this.headerType !== 0x3b && this.headerType !== 0x3d && this.headerType !== 0x21) {
            this.headerStreamed = true;
          } else if (c === 0x2d && this.headerDigits === 0 && !this.headerNeg && !this.headerStreamed) {
            this.headerNeg = true;
          } else if (c >= 48 && c <= 57 && this.headerDigits < 16 && !this.headerStreamed) {
            this.headerValue = this.headerValue * 10 + (c - 48);
            this.headerDigits++;
          } else {
            throw new ProtocolError('malformed length in reply');
          }
          break;
        }
        case State.HeaderLf: {
          if (chunk[i++] !== LF) throw new ProtocolError('malformed length in reply');
          if (this.headerStreamed) {
            this.startStreamed();
            break;
          }
          const v = this.headerNeg ? -this.headerValue : this.headerValue;
          const t = this.headerType;
          this.state = State.Type;
          if (t === 0x3b /* ; */) {
            if (v > 0) {
              this.bulkRemaining = v + 2;
              this.state = State.Bulk;
            } else if (v === 0) {
              this.inStreamedString = false;
              if (this.elementDone()) ends.push(i);
            } else {
              throw new ProtocolError('malformed streamed string in reply');
            }
          } else if (t === 0x24 || t === 0x3d || t === 0x21) {
            if (v >= 0) {
              this.bulkRemaining = v + 2;
              this.state = State.Bulk;
            } else if (this.elementDone()) {
              ends.push(i);
            }
          } else {
            // Maps and attributes hold pairs; an attribute is followed by the value it describes.
            const count = t === 0x25 ? v * 2 : t === 0x7c ? v * 2 + 1 : v;
            if (count > 0) this.stack.push(count);
            else if (this.elementDone()) ends.push(i);
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
            // A part of a streamed string is not an element: the string ends at ';0'.
            if (!this.inStreamedString && this.elementDone()) ends.push(i);
          }
          break;
        }
      }
    }
  }

  private startHeader(t: number): void {
    this.state = State.Header;
    this.headerType = t;
    this.headerValue = 0;
    this.headerNeg = false;
    this.headerDigits = 0;
    this.headerStreamed = false;
  }

  private startStreamed(): void {
    this.state = State.Type;
    const t = this.headerType;
    if (t === 0x24) {
      this.inStreamedString = true;
    } else if (t === 0x7c) {
      throw new ProtocolError('malformed length in reply'); // a streamed attribute has no end rule
    } else {
      this.stack.push(STREAMED);
    }
  }

  /** Marks one element complete; true when that completes a top-level reply. */
  private elementDone(): boolean {
    const stack = this.stack;
    while (stack.length > 0) {
      const top = stack.length - 1;
      const left = stack[top]!;
      if (left === STREAMED) return false;
      if (left > 1) {
        stack[top] = left - 1;
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
