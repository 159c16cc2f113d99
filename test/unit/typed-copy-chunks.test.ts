/** ChunkBuilder and PageSizer, the two pieces that bound the type-aware copy (no servers needed). */
import { describe, expect, it } from 'vitest';
import { ChunkBuilder, MAX_COMMAND_ARGS, MAX_PAGE_ITEMS, PageSizer } from '../../src/migration/typed-copy-chunks.js';

describe('ChunkBuilder', () => {
  it('joins elements of one command name, up to MAX_COMMAND_ARGS arguments', () => {
    const b = new ChunkBuilder(1 << 30, 1 << 30);
    for (let i = 0; i < MAX_COMMAND_ARGS; i++) b.append('HSET', [`f${i}`, 'v']);
    b.append('SADD', ['m']);
    b.append('SADD', ['n']);
    const chunk = b.take();
    expect(chunk.map((c) => [c.name, c.args.length])).toEqual([
      ['HSET', MAX_COMMAND_ARGS],
      ['HSET', MAX_COMMAND_ARGS],
      ['SADD', 2],
    ]);
    expect(b.empty()).toBe(true);
  });

  it('never joins an element to a command added whole', () => {
    const b = new ChunkBuilder(1 << 30, 1 << 30);
    b.append('HSET', ['a', '1']);
    b.command({ name: 'HPEXPIREAT', args: ['1', 'FIELDS', '1', 'a'] });
    b.append('HSET', ['b', '2']);
    expect(b.take().map((c) => c.name)).toEqual(['HSET', 'HPEXPIREAT', 'HSET']);
  });

  it('is full at maxBytes of arguments or at maxItems elements', () => {
    const bytes = new ChunkBuilder(10, 100);
    bytes.append('RPUSH', [Buffer.alloc(9)]);
    expect(bytes.full()).toBe(false);
    bytes.append('RPUSH', [Buffer.alloc(1)]);
    expect(bytes.full()).toBe(true);
    const items = new ChunkBuilder(1 << 20, 3);
    for (let i = 0; i < 3; i++) items.append('SADD', [String(i)]);
    expect(items.full()).toBe(true);
  });
});

describe('PageSizer', () => {
  it('reads a small key whole, and asks little of a key whose size is unknown', () => {
    expect(new PageSizer(new ChunkBuilder(1 << 20, 1 << 20), 'small').next()).toBe(MAX_PAGE_ITEMS);
    expect(new PageSizer(new ChunkBuilder(1 << 20, 1 << 20), undefined).next()).toBe(16);
    expect(new PageSizer(new ChunkBuilder(1 << 20, 1 << 20), 1024).next()).toBe(1024);
  });

  it('fills what is left of the chunk, but no less than an eighth of one', () => {
    const b = new ChunkBuilder(8000, 1 << 20);
    const s = new PageSizer(b, undefined);
    s.saw(10, 100);
    expect(s.next()).toBe(800);
    b.append('RPUSH', [Buffer.alloc(6000)]);
    expect(s.next()).toBe(200);
    b.append('RPUSH', [Buffer.alloc(1999)]);
    expect(s.next()).toBe(100);
  });

  it('shrinks the next page at once after a page of bigger elements', () => {
    const s = new PageSizer(new ChunkBuilder(100_000, 1 << 20), undefined);
    s.saw(1000, 10_000);
    expect(s.next()).toBe(MAX_PAGE_ITEMS);
    s.saw(10, 10_000);
    expect(s.next()).toBe(100);
  });
});
