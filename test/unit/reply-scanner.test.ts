import { describe, expect, it } from 'vitest';
import { splitAt } from '../helpers/chunks.js';
import { ProtocolError } from '../../src/errors.js';
import { ReplyScanner, arrayElements, splitReplies } from '../../src/resp/reply-scanner.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

// Independent RESP2 builders.
const simple = (s: string) => b(`+${s}\r\n`);
const err = (s: string) => b(`-${s}\r\n`);
const int = (n: number) => b(`:${n}\r\n`);
const bulk = (v: string | Buffer | null) => {
  if (v === null) return b('$-1\r\n');
  const vb = typeof v === 'string' ? b(v) : v;
  return Buffer.concat([b(`$${vb.length}\r\n`), vb, b('\r\n')]);
};
const arr = (items: Buffer[] | null) =>
  items === null ? b('*-1\r\n') : Buffer.concat([b(`*${items.length}\r\n`), ...items]);

/** Absolute end offsets of the replies, computed from their lengths. */
function endsOf(replies: Buffer[]): number[] {
  const out: number[] = [];
  let e = 0;
  for (const r of replies) {
    e += r.length;
    out.push(e);
  }
  return out;
}

/** Scans the chunks with one scanner and returns absolute end offsets. */
function scanChunks(chunks: Buffer[]): number[] {
  const sc = new ReplyScanner();
  const abs: number[] = [];
  let base = 0;
  for (const c of chunks) {
    const ends: number[] = [];
    sc.scan(c, ends);
    for (const e of ends) {
      if (e <= 0 || e > c.length) throw new Error(`offset ${e} outside chunk of ${c.length}`);
      abs.push(base + e);
    }
    base += c.length;
  }
  return abs;
}

function sameArr(a: number[], c: number[]): boolean {
  return a.length === c.length && a.every((x, i) => x === c[i]);
}

/** Every split (one cut at every boundary, two cuts for short inputs, byte by byte) agrees. */
function checkAllSplits(replies: Buffer[]): void {
  const input = Buffer.concat(replies);
  const want = endsOf(replies);
  expect(scanChunks([input])).toEqual(want);
  for (let k = 0; k <= input.length; k++) {
    const got = scanChunks(splitAt(input, k));
    if (!sameArr(got, want)) expect(got, `split at ${k}`).toEqual(want);
  }
  if (input.length <= 200) {
    for (let i = 1; i < input.length; i++) {
      for (let j = i + 1; j < input.length; j++) {
        const got = scanChunks(splitAt(input, i, j));
        if (!sameArr(got, want)) expect(got, `split at ${i} and ${j}`).toEqual(want);
      }
    }
  }
  const bytes: Buffer[] = [];
  for (let i = 0; i < input.length; i++) bytes.push(input.subarray(i, i + 1));
  expect(scanChunks(bytes), 'byte by byte').toEqual(want);
}

function expectScanError(input: Buffer): void {
  for (const chunks of [[input], [...input].map((x) => Buffer.from([x]))]) {
    const sc = new ReplyScanner();
    let thrown: unknown = null;
    try {
      for (const c of chunks) sc.scan(c, []);
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(ProtocolError);
    expect((thrown as ProtocolError).code).toBe('EPROTOCOL');
  }
}

const execLike = arr([
  simple('OK'),
  err('WRONGTYPE Operation against a key holding the wrong kind of value'),
  int(3),
  bulk(null),
  arr([bulk('a'), bulk(''), arr([]), arr(null), arr([int(-1), simple('QUEUED')])]),
  arr([]),
  bulk('v'),
]);

describe('ReplyScanner: single replies', () => {
  const cases: Array<[string, Buffer]> = [
    ['simple string', simple('OK')],
    ['empty simple string', simple('')],
    ['error', err('ERR unknown command')],
    ['integer', int(42)],
    ['negative integer', int(-17)],
    ['bulk', bulk('hello')],
    ['empty bulk', bulk('')],
    ['nil bulk', bulk(null)],
    ['binary bulk with CRLF and type bytes inside', bulk(b('*2\r\n$1\r\n:1\r\n+OK\r\n-\r\n'))],
    ['empty array', arr([])],
    ['nil array', arr(null)],
    ['flat array', arr([bulk('a'), bulk(null), int(1), simple('x'), err('E')])],
    ['nested arrays', arr([arr([arr([arr([])])]), arr([bulk('x'), arr([int(1), int(2)])])])],
    ['EXEC-like reply', execLike],
  ];
  for (const [name, reply] of cases) {
    it(`finds the end of a ${name}`, () => {
      const ends: number[] = [];
      const sc = new ReplyScanner();
      sc.scan(reply, ends);
      expect(ends).toEqual([reply.length]);
      expect(sc.idle).toBe(true);
    });
  }

  it('reports no end for an incomplete reply, and is not idle', () => {
    for (const reply of [simple('OK'), bulk('hello'), arr([int(1), int(2)]), execLike]) {
      for (let k = 1; k < reply.length; k++) {
        const sc = new ReplyScanner();
        const ends: number[] = [];
        sc.scan(reply.subarray(0, k), ends);
        expect(ends).toEqual([]);
        expect(sc.idle).toBe(false);
      }
    }
  });
});

describe('ReplyScanner: sequences split everywhere', () => {
  it('simple, error, integer, bulk and nil replies', () => {
    checkAllSplits([simple('OK'), err('ERR x y'), int(0), int(-123), bulk('abc'), bulk(''), bulk(null), simple('PONG')]);
  });

  it('arrays: empty, nil, nested', () => {
    checkAllSplits([
      arr([]),
      arr(null),
      arr([bulk('a'), bulk(null)]),
      arr([arr([]), arr(null), arr([arr([int(1)])])]),
      int(1),
    ]);
  });

  it('EXEC-like replies with errors and simple strings inside', () => {
    checkAllSplits([simple('OK'), simple('QUEUED'), simple('QUEUED'), execLike, simple('OK')]);
  });

  it('bulks whose payload looks like RESP', () => {
    checkAllSplits([bulk('\r\n'), bulk('$-1\r\n'), bulk('*3\r\n'), bulk(':1\r\n+OK\r\n'), arr([bulk('\n\n\r')])]);
  });

  it('an array with more than 9 elements and a bulk with a multi-digit length', () => {
    const items: Buffer[] = [];
    for (let i = 0; i < 12; i++) items.push(bulk(`v${i}`));
    checkAllSplits([arr(items), bulk('x'.repeat(105))]);
  });

  it('a large bulk in various chunk sizes', () => {
    const big = Buffer.alloc(3 * 1024 * 1024 + 7);
    for (let i = 0; i < big.length; i++) big[i] = (i * 7) & 0xff;
    const replies = [simple('OK'), bulk(big), arr([bulk(big), int(5)]), bulk('tail')];
    const input = Buffer.concat(replies);
    const want = endsOf(replies);
    for (const size of [1 << 16, 1000, 4096 * 3 + 1]) {
      const chunks: Buffer[] = [];
      for (let i = 0; i < input.length; i += size) chunks.push(input.subarray(i, i + size));
      expect(scanChunks(chunks), `chunk size ${size}`).toEqual(want);
    }
    // cuts right around the payload boundaries
    const hdr = 5 + `$${big.length}\r\n`.length;
    for (const cut of [hdr - 1, hdr, hdr + 1, hdr + big.length, hdr + big.length + 1, hdr + big.length + 2]) {
      expect(scanChunks(splitAt(input, cut)), `cut at ${cut}`).toEqual(want);
    }
  });

  it('many pipelined replies in one chunk', () => {
    const replies: Buffer[] = [];
    for (let i = 0; i < 3000; i++) {
      const m = i % 5;
      replies.push(m === 0 ? simple('OK') : m === 1 ? bulk(`value-${i}`) : m === 2 ? int(i) : m === 3 ? bulk(null) : arr([bulk('k'), int(i)]));
    }
    expect(scanChunks([Buffer.concat(replies)])).toEqual(endsOf(replies));
  });

  it('offsets are relative to each chunk', () => {
    const sc = new ReplyScanner();
    const a: number[] = [];
    sc.scan(b('+OK\r\n:1'), a);
    expect(a).toEqual([5]);
    const c: number[] = [];
    sc.scan(b('\r\n$3\r\nabc\r\n+X'), c);
    expect(c).toEqual([2, 11]);
    expect(sc.idle).toBe(false);
    const d: number[] = [];
    sc.scan(b('\r\n'), d);
    expect(d).toEqual([2]);
    expect(sc.idle).toBe(true);
  });

  it('appends to the ends array it is given', () => {
    const sc = new ReplyScanner();
    const ends = [99];
    sc.scan(b('+A\r\n+B\r\n'), ends);
    expect(ends).toEqual([99, 4, 8]);
  });
});

describe('ReplyScanner: errors', () => {
  it('throws ProtocolError on a bad type byte', () => {
    expectScanError(b('?what\r\n'));
    expectScanError(b('+OK\r\n@oops\r\n'));
    expectScanError(b('*2\r\n:1\r\n/t\r\n')); // bad byte inside an array
    expectScanError(b('.\r\n')); // a streamed aggregate's end with none open
    expectScanError(b('*2\r\n.\r\n'));
    expectScanError(b('$?\r\n+x\r\n')); // a streamed string's parts start with ';'
    expectScanError(b('|?\r\n')); // a streamed attribute
    expectScanError(b('$1\r\nab\r\n')); // payload longer than declared: 'b' is not a type byte
  });

  it('throws ProtocolError on a malformed length', () => {
    expectScanError(b('$1x\r\n'));
    expectScanError(b('*a\r\n'));
    expectScanError(b('$3\rXabc\r\n'));
    expectScanError(b('$--1\r\n'));
    expectScanError(b('*?1\r\n'));
    expectScanError(b('=?\r\n'));
    expectScanError(b('$?\r\n;-1\r\n'));
  });
});

// Independent RESP3 builders.
const line = (t: string, s: string) => b(`${t}${s}\r\n`);
const str3 = (t: string, v: string) => Buffer.concat([b(`${t}${b(v).length}\r\n`), b(v), b('\r\n')]);
const agg = (t: string, n: number, items: Buffer[]) => Buffer.concat([b(`${t}${n}\r\n`), ...items]);
const map = (pairs: Array<[Buffer, Buffer]>) => agg('%', pairs.length, pairs.flat());
const streamedStr = (parts: string[]) =>
  Buffer.concat([b('$?\r\n'), ...parts.map((p) => str3(';', p)), b(';0\r\n')]);
const streamedAgg = (t: string, items: Buffer[]) => Buffer.concat([b(`${t}?\r\n`), ...items, b('.\r\n')]);

describe('ReplyScanner: RESP3', () => {
  const cases: Array<[string, Buffer]> = [
    ['null', line('_', '')],
    ['double', line(',', '3.14')],
    ['infinite double', line(',', '-inf')],
    ['boolean', line('#', 't')],
    ['big number', line('(', '3492890328409238509324850943850943825024385')],
    ['verbatim string', str3('=', 'txt:Some string\r\nwith CRLF')],
    ['blob error', str3('!', 'SYNTAX invalid\r\nsyntax')],
    ['map', map([[simple('first'), int(1)], [bulk('second'), arr([line('#', 'f'), line('_', '')])]])],
    ['empty map', map([])],
    ['set', agg('~', 3, [bulk('a'), int(1), line(',', '1.5')])],
    ['push', agg('>', 2, [bulk('invalidate'), arr([bulk('k1'), bulk('k2')])])],
    ['push with a null payload', agg('>', 2, [bulk('invalidate'), line('_', '')])],
    ['attribute before a reply', Buffer.concat([agg('|', 1, [simple('key-popularity'), map([[bulk('a'), line(',', '0.1923')]])]), arr([int(2039123), int(9543892)])])],
    ['attribute inside an array (it and the value it describes are one element)', agg('*', 2, [agg('|', 1, [simple('ttl'), int(3600)]), bulk('v'), int(2)])],
    ['nested map in set in push', agg('>', 3, [bulk('message'), bulk('ch'), agg('~', 1, [map([[bulk('x'), line('_', '')]])])])],
    ['streamed string', streamedStr(['Hell', 'o wor', 'd\r\n'])],
    ['streamed array', streamedAgg('*', [int(1), bulk('x'), streamedStr(['a'])])],
    ['streamed map', streamedAgg('%', [bulk('k'), streamedAgg('~', [int(1)]), bulk('k2'), line('_', '')])],
    ['empty streamed aggregate', streamedAgg('*', [])],
  ];
  for (const [name, reply] of cases) {
    it(`finds the end of a ${name}, split everywhere`, () => {
      checkAllSplits([reply]);
      checkAllSplits([simple('OK'), reply, int(1), reply]);
    });
  }

  it('reports the type a reply started with (a push is told from a reply)', () => {
    const sc = new ReplyScanner();
    const ends: number[] = [];
    const push = agg('>', 2, [bulk('invalidate'), arr([bulk('k')])]);
    sc.scan(push.subarray(0, 5), ends);
    expect(ends).toEqual([]);
    expect(String.fromCharCode(sc.topType)).toBe('>');
    sc.scan(push.subarray(5), ends);
    expect(ends).toEqual([push.length - 5]);
    sc.scan(map([[bulk('a'), int(1)]]).subarray(0, 3), ends);
    expect(String.fromCharCode(sc.topType)).toBe('%');
  });

  it('a mixed stream of RESP2 and RESP3 replies', () => {
    checkAllSplits([
      map([[bulk('server'), bulk('redis')], [bulk('proto'), int(3)]]),
      agg('>', 3, [bulk('subscribe'), bulk('ch'), int(1)]),
      simple('PONG'),
      agg('>', 3, [bulk('message'), bulk('ch'), bulk('hi')]),
      line('_', ''),
      execLike,
    ]);
  });
});

describe('splitReplies', () => {
  it('splits a buffer into one buffer per reply', () => {
    const replies = [simple('OK'), execLike, bulk(null), arr(null), int(7), bulk('x\r\ny')];
    const got = splitReplies(Buffer.concat(replies));
    expect(got).toEqual(replies);
  });

  it('returns [] for an empty buffer', () => {
    expect(splitReplies(Buffer.alloc(0))).toEqual([]);
  });
});

describe('arrayElements', () => {
  it('returns the elements of an array reply', () => {
    const items = [bulk('a'), bulk(null), int(3), arr([simple('x'), arr([])]), err('ERR e'), bulk('')];
    expect(arrayElements(arr(items))).toEqual(items);
  });

  it('returns the elements of an array with more than 9 elements', () => {
    const items = Array.from({ length: 15 }, (_, i) => bulk(`k${i}`));
    expect(arrayElements(arr(items))).toEqual(items);
  });

  it('returns [] for an empty array', () => {
    expect(arrayElements(arr([]))).toEqual([]);
  });

  it('returns null for a nil array and for non-arrays', () => {
    expect(arrayElements(arr(null))).toBeNull();
    expect(arrayElements(simple('OK'))).toBeNull();
    expect(arrayElements(bulk('abc'))).toBeNull();
    expect(arrayElements(bulk(null))).toBeNull();
    expect(arrayElements(int(1))).toBeNull();
    expect(arrayElements(err('ERR x'))).toBeNull();
  });

  it('returns null when the element count does not match', () => {
    expect(arrayElements(Buffer.concat([b('*3\r\n'), bulk('a'), bulk('b')]))).toBeNull();
  });
});
