import { describe, expect, it } from 'vitest';
import { isText, nullReply, pushKind, textLike, textOf } from '../../src/resp/resp3.js';

const b = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('RESP3 helpers', () => {
  it('nulls in each protocol', () => {
    expect(nullReply(2).toString()).toBe('$-1\r\n');
    expect(nullReply(3).toString()).toBe('_\r\n');
  });

  it('text replies: a bulk string or a verbatim string, rebuilt in the same shape', () => {
    const bulk = b('$11\r\n# Keyspace\n\r\n');
    const verbatim = b('=15\r\ntxt:# Keyspace\n\r\n');
    expect(isText(bulk) && isText(verbatim)).toBe(true);
    expect(isText(b('$-1\r\n')) || isText(b('_\r\n')) || isText(b('-ERR x\r\n'))).toBe(false);
    expect(textOf(bulk).toString()).toBe('# Keyspace\n');
    expect(textOf(verbatim).toString()).toBe('# Keyspace\n');
    expect(textLike(bulk, b('db0:keys=1\r\n')).toString()).toBe('$12\r\ndb0:keys=1\r\n\r\n');
    expect(textLike(verbatim, b('db0:keys=1\r\n')).toString()).toBe('=16\r\ntxt:db0:keys=1\r\n\r\n');
  });

  it("a push's kind", () => {
    expect(pushKind(b('>2\r\n$10\r\ninvalidate\r\n_\r\n'))).toBe('invalidate');
    expect(pushKind(b('>3\r\n$9\r\nsubscribe\r\n$2\r\nch\r\n:1\r\n'))).toBe('subscribe');
    expect(pushKind(b('>2\r\n+message\r\n:1\r\n'))).toBe('message');
    expect(pushKind(b('>1\r\n:1\r\n'))).toBeNull();
    expect(pushKind(b('>1\r\n$100\r\n'))).toBeNull();
  });
});
