import { describe, expect, it } from 'vitest';
import { splitAt } from '../helpers/chunks.js';
import { ProtocolError } from '../../src/errors.js';
import {
  DEFAULT_FRAMER_LIMITS,
  RequestFramer,
  argBuf,
  argStr,
  encodeRequest,
  type FramerLimits,
  type Request,
} from '../../src/resp/request-framer.js';
import { splitInlineArgs } from '../../src/resp/inline-args.js';

// ---------------------------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------------------------

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

/** Reference multibulk encoding, written independently of encodeRequest. */
function mb(args: Array<string | Buffer>): Buffer {
  const parts: Buffer[] = [b(`*${args.length}\r\n`)];
  for (const a of args) {
    const ab = typeof a === 'string' ? b(a) : a;
    parts.push(b(`$${ab.length}\r\n`), ab, b('\r\n'));
  }
  return Buffer.concat(parts);
}

interface Framed {
  raw: Buffer;
  args: Buffer[];
  name: string;
  argc: number;
}

/** Snapshot of a request (copied, so later framer activity cannot alter what we compare). */
function snap(req: Request): Framed {
  const args: Buffer[] = [];
  for (let i = 0; i < req.argc; i++) args.push(Buffer.from(argBuf(req, i)));
  if (req.offs.length !== req.argc * 2) expect(req.offs.length).toBe(req.argc * 2);
  return { raw: Buffer.from(req.raw), args, name: req.name, argc: req.argc };
}

function drain(f: RequestFramer, out: Framed[], live?: Request[]): void {
  for (;;) {
    const r = f.next();
    if (r === null) return;
    live?.push(r);
    out.push(snap(r));
  }
}

/** Feeds chunks, draining after each push (the proxy's usage pattern). */
function frameChunks(chunks: Buffer[], limits?: FramerLimits): Framed[] {
  const f = new RequestFramer(limits);
  const out: Framed[] = [];
  const live: Request[] = [];
  for (const c of chunks) {
    f.push(c);
    drain(f, out, live);
  }
  if (f.buffered !== 0) expect(f.buffered, 'bytes left over').toBe(0);
  // The requests handed out earlier must not have been altered by later pushes.
  live.forEach((r, i) => {
    if (!r.raw.equals(out[i]!.raw)) expect(Buffer.from(r.raw), `request ${i} altered`).toEqual(out[i]!.raw);
  });
  return out;
}

function bytewise(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i++) out.push(buf.subarray(i, i + 1));
  return out;
}

/** Expected framing: each request's multibulk bytes and arguments. */
function expected(reqs: Array<Array<string | Buffer>>): Framed[] {
  return reqs.map((args) => {
    const bufs = args.map((a) => (typeof a === 'string' ? b(a) : a));
    return {
      raw: mb(bufs),
      args: bufs,
      name: bufs[0]!.toString('latin1').toLowerCase(),
      argc: bufs.length,
    };
  });
}

/**
 * Checks that `input` frames to `want` when delivered whole, split at every single byte boundary,
 * split at every pair of boundaries (short inputs), byte by byte, and byte by byte without
 * draining between pushes.
 */
function checkAllSplits(input: Buffer, want: Framed[]): void {
  expect(frameChunks([input])).toEqual(want);
  for (let k = 0; k <= input.length; k++) {
    const got = frameChunks(splitAt(input, k));
    if (!equalFramed(got, want)) {
      expect(got, `split at byte ${k}`).toEqual(want);
    }
  }
  if (input.length <= 160) {
    for (let i = 1; i < input.length; i++) {
      for (let j = i + 1; j < input.length; j++) {
        const got = frameChunks(splitAt(input, i, j));
        if (!equalFramed(got, want)) {
          expect(got, `split at bytes ${i} and ${j}`).toEqual(want);
        }
      }
    }
  }
  expect(frameChunks(bytewise(input)), 'byte by byte').toEqual(want);

  // Push everything byte by byte first, then drain once.
  const f = new RequestFramer();
  for (const c of bytewise(input)) f.push(c);
  expect(f.buffered).toBe(input.length);
  const out: Framed[] = [];
  drain(f, out);
  expect(out, 'all pushed, then drained').toEqual(want);
  expect(f.buffered).toBe(0);
}

function equalFramed(a: Framed[], want: Framed[]): boolean {
  if (a.length !== want.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i]!;
    const y = want[i]!;
    if (x.name !== y.name || x.argc !== y.argc || !x.raw.equals(y.raw)) return false;
    if (x.args.length !== y.args.length) return false;
    for (let j = 0; j < x.args.length; j++) if (!x.args[j]!.equals(y.args[j]!)) return false;
  }
  return true;
}

/** Expects `input` to be rejected with a ProtocolError, whole and byte by byte. */
function expectProtocolError(input: Buffer, limits?: FramerLimits, pattern?: RegExp): void {
  const attempts: Array<[string, Buffer[]]> = [['whole', [input]]];
  if (input.length <= 4096) attempts.push(['byte by byte', bytewise(input)]);
  else attempts.push(['1 KB chunks', chunked(input, 1024)]);
  for (const [how, chunks] of attempts) {
    const f = new RequestFramer(limits);
    let err: unknown = null;
    try {
      for (const c of chunks) {
        f.push(c);
        while (f.next() !== null) {
          /* requests before the bad one are fine */
        }
      }
    } catch (e) {
      err = e;
    }
    expect(err, `${how}: no error thrown`).toBeInstanceOf(ProtocolError);
    const msg = (err as ProtocolError).message;
    expect(msg, how).toMatch(/^Protocol error/);
    expect((err as ProtocolError).code).toBe('EPROTOCOL');
    if (pattern) expect(msg, how).toMatch(pattern);
  }
}

function chunked(buf: Buffer, size: number): Buffer[] {
  const out: Buffer[] = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  return out;
}

const small: FramerLimits = { maxBulkLen: 1000, maxArgs: 10, maxInline: 100 };

// ---------------------------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------------------------

describe('DEFAULT_FRAMER_LIMITS', () => {
  it("matches Redis's defaults", () => {
    expect(DEFAULT_FRAMER_LIMITS).toEqual({
      maxBulkLen: 512 * 1024 * 1024,
      maxArgs: 1024 * 1024,
      maxInline: 64 * 1024,
    });
  });
});

describe('encodeRequest / argStr / argBuf', () => {
  it('encodes arguments as multibulk with correct offsets', () => {
    const req = encodeRequest(['SET', 'k', 'v']);
    expect(req.raw.toString('latin1')).toBe('*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n');
    expect(req.argc).toBe(3);
    expect(req.name).toBe('set');
    expect(req.offs).toEqual([8, 11, 17, 18, 24, 25]);
    expect(argStr(req, 0)).toBe('SET');
    expect(argStr(req, 1)).toBe('k');
    expect(argStr(req, 2)).toBe('v');
  });

  it('is binary safe and lowercases the name', () => {
    const bin = Buffer.from([0, 0xff, 13, 10, 0x2a, 0x24, 0x80]);
    const req = encodeRequest(['HsEt', bin, '', Buffer.alloc(0)]);
    expect(req.raw).toEqual(mb(['HsEt', bin, '', '']));
    expect(req.name).toBe('hset');
    expect(argBuf(req, 1)).toEqual(bin);
    expect(argStr(req, 1)).toBe(bin.toString('latin1'));
    expect(Buffer.from(argStr(req, 1), 'latin1')).toEqual(bin);
    expect(argBuf(req, 2).length).toBe(0);
    expect(argStr(req, 3)).toBe('');
  });

  it('encodes multi-byte UTF-8 strings by byte length', () => {
    const req = encodeRequest(['SET', 'ключ', '✓']);
    expect(req.raw).toEqual(mb(['SET', Buffer.from('ключ'), Buffer.from('✓')]));
    expect(argBuf(req, 1).toString('utf8')).toBe('ключ');
    expect(argBuf(req, 2).toString('utf8')).toBe('✓');
  });
});

describe('RequestFramer: multibulk', () => {
  it('frames a simple request without copying when it lies in one chunk', () => {
    const input = mb(['GET', 'foo']);
    const f = new RequestFramer();
    f.push(input);
    const r = f.next();
    expect(r).not.toBeNull();
    expect(r!.raw).toEqual(input);
    expect(r!.raw.buffer).toBe(input.buffer); // a view of the chunk
    expect(r!.name).toBe('get');
    expect(r!.argc).toBe(2);
    expect(argStr(r!, 1)).toBe('foo');
    expect(f.next()).toBeNull();
    expect(f.buffered).toBe(0);
  });

  it('is binary safe (CRLF, NUL, high bytes, "*" and "$" inside arguments)', () => {
    const v = Buffer.from([13, 10, 0, 0xff, 0x2a, 0x33, 13, 10, 0x24, 0x35, 13, 10, 13]);
    const reqs = [['SET', Buffer.from('k\r\n'), v], ['GET', Buffer.from([0xc3, 0x28])]];
    checkAllSplits(Buffer.concat(reqs.map(mb)), expected(reqs));
  });

  it('handles empty arguments', () => {
    const reqs = [['SET', '', ''], ['ECHO', ''], ['GET', 'x']];
    checkAllSplits(Buffer.concat(reqs.map(mb)), expected(reqs));
  });

  it('accepts an empty command name (framed, name "")', () => {
    const input = mb(['', 'a']);
    const got = frameChunks([input]);
    expect(got).toEqual(expected([['', 'a']]));
  });

  it('keeps the command name lowercased and args intact', () => {
    const reqs = [['sEt', 'Key', 'VALUE'], ['ZADD', 'z', '1', 'One']];
    const got = frameChunks([Buffer.concat(reqs.map(mb))]);
    expect(got.map((g) => g.name)).toEqual(['set', 'zadd']);
    expect(got.map((g) => g.args.map((a) => a.toString()))).toEqual(reqs);
  });

  it('frames many pipelined requests from one chunk, in order', () => {
    const reqs: string[][] = [];
    for (let i = 0; i < 2000; i++) {
      reqs.push(i % 3 === 0 ? ['SET', `key:${i}`, 'x'.repeat(i % 50)] : ['GET', `key:${i}`]);
    }
    const input = Buffer.concat(reqs.map(mb));
    const got = frameChunks([input]);
    expect(got.length).toBe(2000);
    expect(got).toEqual(expected(reqs));
    expect(Buffer.concat(got.map((g) => g.raw))).toEqual(input);
  });

  it('frames pipelined requests split at every byte boundary', () => {
    const reqs = [
      ['PING'],
      ['SET', 'a', '1'],
      ['MSET', 'k1', 'v1', 'k2', ''],
      ['GET', 'a'],
      ['DEL', 'a', 'k1', 'k2'],
    ];
    checkAllSplits(Buffer.concat(reqs.map(mb)), expected(reqs));
  });

  it('frames a request with a bulk length of more than one digit split everywhere', () => {
    const reqs = [['SET', 'k', 'v'.repeat(123)], ['APPEND', 'k', 'w'.repeat(10)]];
    checkAllSplits(Buffer.concat(reqs.map(mb)), expected(reqs));
  });

  it('frames a request with more than 9 arguments split everywhere', () => {
    const args = ['DEL'];
    for (let i = 0; i < 12; i++) args.push(`k${i}`);
    checkAllSplits(mb(args), expected([args]));
  });

  it('skips *0 and *-1 requests', () => {
    const input = Buffer.concat([
      b('*0\r\n'),
      mb(['GET', 'a']),
      b('*-1\r\n'),
      b('*0\r\n'),
      mb(['GET', 'b']),
      b('*-1\r\n'),
    ]);
    checkAllSplits(input, expected([['GET', 'a'], ['GET', 'b']]));
  });

  it('returns null for *0 alone and leaves nothing buffered', () => {
    const f = new RequestFramer();
    f.push(b('*0\r\n*-1\r\n'));
    expect(f.next()).toBeNull();
    expect(f.buffered).toBe(0);
    f.push(mb(['PING']));
    expect(f.next()?.name).toBe('ping');
  });

  it('frames a 5 MB bulk pushed in 64 KB chunks', () => {
    const big = Buffer.alloc(5 * 1024 * 1024);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31 + (i >> 8)) & 0xff;
    const input = Buffer.concat([mb(['SET', 'big', big]), mb(['GET', 'big'])]);
    const f = new RequestFramer();
    const got: Request[] = [];
    let pushes = 0;
    for (let off = 0; off < input.length; off += 64 * 1024) {
      f.push(input.subarray(off, off + 64 * 1024));
      pushes++;
      for (let r = f.next(); r !== null; r = f.next()) got.push(r);
      if (got.length === 0 && off + 64 * 1024 < input.length) {
        expect(f.buffered).toBe(Math.min(off + 64 * 1024, input.length));
      }
    }
    expect(pushes).toBeGreaterThan(80);
    expect(got.length).toBe(2);
    const set = got[0]!;
    expect(set.name).toBe('set');
    expect(set.argc).toBe(3);
    expect(argStr(set, 1)).toBe('big');
    expect(argBuf(set, 2).equals(big)).toBe(true);
    expect(set.raw.equals(mb(['SET', 'big', big]))).toBe(true);
    expect(got[1]!.raw).toEqual(mb(['GET', 'big']));
    expect(f.buffered).toBe(0);
  });

  it('frames a large bulk whose header is split from its payload', () => {
    const big = Buffer.alloc(300_000, 0x61);
    const input = mb(['SET', 'k', big]);
    const hdrEnd = input.indexOf(b('$300000\r\n')) + 3; // split inside the length digits
    for (const cuts of [[hdrEnd], [hdrEnd, hdrEnd + 100], [input.length - 1], [input.length - 2]]) {
      const got = frameChunks(splitAt(input, ...cuts));
      expect(got.length).toBe(1);
      expect(got[0]!.raw.equals(input)).toBe(true);
      expect(got[0]!.args[2]!.equals(big)).toBe(true);
    }
  });

  it('reports pending bytes in buffered', () => {
    const f = new RequestFramer();
    expect(f.buffered).toBe(0);
    const one = mb(['SET', 'key', 'value']);
    const two = mb(['GET', 'key']);
    f.push(one.subarray(0, 10));
    expect(f.next()).toBeNull();
    expect(f.buffered).toBe(10);
    f.push(one.subarray(10, 20));
    expect(f.buffered).toBe(20);
    expect(f.next()).toBeNull();
    expect(f.buffered).toBe(20);
    f.push(Buffer.concat([one.subarray(20), two.subarray(0, 5)]));
    expect(f.buffered).toBe(one.length + 5);
    expect(f.next()?.raw).toEqual(one);
    expect(f.buffered).toBe(5);
    expect(f.next()).toBeNull();
    expect(f.buffered).toBe(5);
    f.push(two.subarray(5));
    expect(f.buffered).toBe(two.length);
    expect(f.next()?.raw).toEqual(two);
    expect(f.buffered).toBe(0);
    expect(f.next()).toBeNull();
  });

  it('reports buffered bytes while waiting for a large bulk', () => {
    const f = new RequestFramer();
    const input = mb(['SET', 'k', Buffer.alloc(100_000, 1)]);
    let pushed = 0;
    for (const c of chunked(input, 7_000)) {
      f.push(c);
      pushed += c.length;
      if (pushed < input.length) {
        expect(f.next()).toBeNull();
        expect(f.buffered).toBe(pushed);
      }
    }
    expect(f.next()?.raw.equals(input)).toBe(true);
    expect(f.buffered).toBe(0);
  });

  it('accepts an empty chunk anywhere', () => {
    const input = mb(['GET', 'k']);
    const got = frameChunks([Buffer.alloc(0), input.subarray(0, 6), Buffer.alloc(0), input.subarray(6), Buffer.alloc(0)]);
    expect(got).toEqual(expected([['GET', 'k']]));
  });
});

describe('RequestFramer: inline commands', () => {
  it('re-encodes PING as multibulk', () => {
    const got = frameChunks([b('PING\r\n')]);
    expect(got).toEqual(expected([['PING']]));
    expect(got[0]!.raw.toString()).toBe('*1\r\n$4\r\nPING\r\n');
  });

  it('splits on whitespace and honours double quotes', () => {
    checkAllSplits(b('SET a "b c"\r\n'), expected([['SET', 'a', 'b c']]));
  });

  it('accepts LF without CR and tabs / repeated spaces as separators', () => {
    checkAllSplits(b('  GET \t  k  \nEXISTS\ta\tb\r\n'), expected([['GET', 'k'], ['EXISTS', 'a', 'b']]));
  });

  it('skips empty lines', () => {
    checkAllSplits(b('\n\r\n   \r\n\t\nPING\n\n'), expected([['PING']]));
  });

  it('decodes escapes inside double quotes', () => {
    checkAllSplits(b('ECHO "\\x41\\n"\r\n'), expected([['ECHO', 'A\n']]));
    expect(frameChunks([b('ECHO "\\t\\r\\b\\a\\\\\\"\\x7a\\xFf"\r\n')])).toEqual(
      expected([['ECHO', Buffer.from([9, 13, 8, 7, 0x5c, 0x22, 0x7a, 0xff])]]),
    );
    // \x without two hex digits is just an escaped 'x'; an unknown escape yields the character
    expect(frameChunks([b('ECHO "\\xZZ" "\\q"\r\n')])).toEqual(expected([['ECHO', 'xZZ', 'q']]));
  });

  it('handles single quotes (only \\\' is an escape)', () => {
    checkAllSplits(b("SET k 'it\\'s here'\r\n"), expected([['SET', 'k', "it's here"]]));
    expect(frameChunks([b("ECHO 'a\\nb' 'x\"y'\r\n")])).toEqual(
      expected([['ECHO', 'a\\nb', 'x"y']]),
    );
  });

  it('keeps empty quoted arguments', () => {
    checkAllSplits(b('SET k ""\r\nSET j \'\'\r\n'), expected([['SET', 'k', ''], ['SET', 'j', '']]));
  });

  it('joins a quoted part to an unquoted prefix like Redis', () => {
    expect(frameChunks([b('SET a"b c" v\r\n')])).toEqual(expected([['SET', 'ab c', 'v']]));
  });

  it('mixes inline and multibulk requests in one pipeline', () => {
    const input = Buffer.concat([
      b('PING\r\n'),
      mb(['SET', 'k', 'v w']),
      b('get k\n'),
      b('*0\r\n'),
      b('\r\n'),
      mb(['DEL', 'k']),
    ]);
    checkAllSplits(input, expected([['PING'], ['SET', 'k', 'v w'], ['get', 'k'], ['DEL', 'k']]));
  });

  it('lowercases the name of an inline command', () => {
    expect(frameChunks([b('GeT X\r\n')])[0]!.name).toBe('get');
  });
});

describe('splitInlineArgs', () => {
  const split = (s: string) => splitInlineArgs(b(s))?.map((x) => x.toString('latin1')) ?? null;

  it('splits like sdssplitargs', () => {
    expect(split('')).toEqual([]);
    expect(split('   ')).toEqual([]);
    expect(split('a b  c')).toEqual(['a', 'b', 'c']);
    expect(split('set "a b" \'c d\'')).toEqual(['set', 'a b', 'c d']);
    expect(split('"\\x41\\x4a"')).toEqual(['AJ']);
    expect(split('"a\\"b"')).toEqual(['a"b']);
    expect(split("'a\\'b'")).toEqual(["a'b"]);
    expect(split("'a\\b'")).toEqual(['a\\b']);
    expect(split('"" x')).toEqual(['', 'x']);
  });

  it('returns null for unbalanced quotes', () => {
    expect(split('"abc')).toBeNull();
    expect(split("'abc")).toBeNull();
    expect(split('set "abc\\"')).toBeNull();
    expect(split('"a"b')).toBeNull(); // closing quote must be followed by a space
    expect(split("'a'b")).toBeNull();
  });
});

describe('RequestFramer: protocol errors', () => {
  it("rejects a type byte other than '$' after *N", () => {
    expectProtocolError(b('*2\r\n$3\r\nGET\r\n:1\r\n'), undefined, /expected '\$'/);
    expectProtocolError(b('*1\r\n+OK\r\n'), undefined, /expected '\$'/);
    expectProtocolError(b('*1\r\nGET\r\n'), undefined, /expected '\$'/);
  });

  it('rejects negative bulk lengths', () => {
    expectProtocolError(b('*1\r\n$-5\r\n'));
    expectProtocolError(b('*1\r\n$-1\r\n'));
    expectProtocolError(b('*2\r\n$3\r\nGET\r\n$-5\r\nabc\r\n'));
  });

  it('rejects absurd bulk lengths', () => {
    expectProtocolError(b('*1\r\n$99999999999\r\n'));
    expectProtocolError(b('*1\r\n$999999999999999999999999\r\n'));
    expectProtocolError(b(`*1\r\n$${512 * 1024 * 1024 + 1}\r\n`));
    expectProtocolError(b('*1\r\n$1001\r\n'), small);
  });

  it('accepts a bulk exactly at the length limit', () => {
    const v = Buffer.alloc(1000, 0x62);
    expect(frameChunks([mb(['SET', v])], small)).toEqual(expected([['SET', v]]));
  });

  it('rejects a multibulk count over the limit', () => {
    expectProtocolError(b(`*${1024 * 1024 + 1}\r\n`));
    expectProtocolError(b('*11\r\n'), small);
    expectProtocolError(b('*99999999999999999999\r\n'));
  });

  it('accepts a multibulk count at the limit', () => {
    const args = ['DEL', ...Array.from({ length: 9 }, (_, i) => `k${i}`)];
    expect(frameChunks([mb(args)], small)).toEqual(expected([args]));
  });

  it('rejects non-numeric lengths', () => {
    expectProtocolError(b('*x\r\n'));
    expectProtocolError(b('*\r\n'));
    expectProtocolError(b('*1x\r\n$3\r\nGET\r\n'));
    expectProtocolError(b('*1\r\n$abc\r\n'));
    expectProtocolError(b('*1\r\n$\r\n\r\n'));
    expectProtocolError(b('*1\r\n$3x\r\nGET\r\n'));
    expectProtocolError(b('*1\r\n$ 3\r\nGET\r\n'));
  });

  it('rejects lengths written with leading zeros or as -0, as Redis does', () => {
    expectProtocolError(b('*1\r\n$007\r\nabcdefg\r\n'));
    expectProtocolError(b('*1\r\n$00\r\n\r\n'));
    expectProtocolError(b('*1\r\n$-0\r\n'));
    expectProtocolError(b('*02\r\n$3\r\nGET\r\n$1\r\nk\r\n'));
    expectProtocolError(b('*-0\r\n'));
    expect(frameChunks([b('*1\r\n$0\r\n\r\n')])).toEqual(expected([['']]));
  });

  it('a request of many arguments arriving in many small chunks frames once, resuming where it stopped', () => {
    const args = ['MSET', ...Array.from({ length: 20_000 }, (_, i) => `k${i}`)];
    const whole = Buffer.concat([mb(args), mb(['PING'])]);
    const chunks: Buffer[] = [];
    for (let o = 0; o < whole.length; o += 7) chunks.push(whole.subarray(o, o + 7));
    expect(frameChunks(chunks, { ...DEFAULT_FRAMER_LIMITS, maxArgs: 30_000 })).toEqual(expected([args, ['PING']]));
    // Garbage inside such a request is still found as soon as its byte arrives.
    const f = new RequestFramer();
    f.push(mb(['SET', 'k', 'v']).subarray(0, 13));
    expect(f.next()).toBeNull();
    f.push(b('X'));
    expect(() => f.next()).toThrow(/expected '\$', got 'X'/);
  });

  it('rejects a length line whose CR is not followed by LF', () => {
    expectProtocolError(b('*1\rX$3\r\nGET\r\n'));
    expectProtocolError(b('*1\r\n$3\rXGET\r\n'));
  });

  it('rejects a bulk not terminated by CRLF', () => {
    expectProtocolError(b('*1\r\n$3\r\nGETXX'));
    expectProtocolError(b('*2\r\n$3\r\nGET\r\n$1\r\nab\r\n'));
  });

  it('rejects a multibulk count line with no CRLF longer than the inline limit', () => {
    expectProtocolError(b(`*${'1'.repeat(200)}`), small);
    expectProtocolError(Buffer.concat([b('*'), Buffer.alloc(70 * 1024, 0x31)]));
  });

  it('rejects a bulk length line with no CRLF longer than the inline limit', () => {
    expectProtocolError(b(`*1\r\n$${'1'.repeat(200)}`), small);
    expectProtocolError(Buffer.concat([b('*1\r\n$'), Buffer.alloc(70 * 1024, 0x31)]));
  });

  it('does not reject a header shorter than the limit while waiting for its CRLF', () => {
    const f = new RequestFramer(small);
    f.push(b('*1\r\n$100'));
    expect(f.next()).toBeNull();
    f.push(Buffer.concat([b('\r\n'), Buffer.alloc(100, 0x61), b('\r\n')]));
    expect(f.next()?.argc).toBe(1);
  });

  it('rejects an inline line longer than the limit without a newline', () => {
    expectProtocolError(b('A'.repeat(150)), small, /too big inline/);
    expectProtocolError(Buffer.alloc(70 * 1024, 0x41), undefined, /too big inline/);
  });

  it('rejects an inline line longer than the limit even with a newline', () => {
    expectProtocolError(b(`${'A'.repeat(150)}\r\n`), small);
    expectProtocolError(Buffer.concat([Buffer.alloc(70 * 1024, 0x41), b('\r\n')]));
  });

  it('accepts an inline line within the limit', () => {
    const line = `SET k ${'v'.repeat(80)}`;
    expect(frameChunks([b(`${line}\r\n`)], small)).toEqual(expected([['SET', 'k', 'v'.repeat(80)]]));
  });

  it('rejects unbalanced quotes in an inline command', () => {
    expectProtocolError(b('SET a "b\r\n'), undefined, /unbalanced quotes/);
    expectProtocolError(b("SET a 'b\r\n"), undefined, /unbalanced quotes/);
    expectProtocolError(b('SET "a"b c\r\n'), undefined, /unbalanced quotes/);
  });

  it('frames the good requests before a bad one', () => {
    const f = new RequestFramer();
    f.push(Buffer.concat([mb(['GET', 'a']), b('PING\r\n'), b('*1\r\n$-5\r\n')]));
    expect(f.next()?.name).toBe('get');
    expect(f.next()?.name).toBe('ping');
    expect(() => f.next()).toThrow(ProtocolError);
  });
});

describe('RequestFramer: command names across requests', () => {
  it('names each request by its own bytes when names repeat, change case, change length or are long', () => {
    const long = 'X'.repeat(40);
    const names = ['SET', 'set', 'SeT', 'GET', 'SET', 'SETEX', 'SET', '', long, long.toLowerCase(), 'SET', 'SEX', 'SET'];
    const f = new RequestFramer();
    f.push(Buffer.concat(names.map((n) => mb([n, 'k']))));
    const got: string[] = [];
    for (let r = f.next(); r !== null; r = f.next()) got.push(r.name);
    expect(got).toEqual(names.map((n) => n.toLowerCase()));
  });
});
