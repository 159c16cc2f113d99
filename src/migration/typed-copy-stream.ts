/**
 * The type-aware copy of a stream, in this order (each step needs the one before on the target):
 *
 *   entries        XADD key id f v ...        XRANGE pages, ids kept
 *   (no entries)   XADD key MAXLEN 0 0-1 ..   creates the empty stream; XSETID below fixes its ids
 *   last id        XSETID key last [ENTRIESADDED n MAXDELETEDID id]   (options on 7.0+ targets)
 *   groups         XGROUP CREATE key g last-delivered-id [ENTRIESREAD n]
 *   consumers      XGROUP CREATECONSUMER key g c
 *   pending        XCLAIM key g c 0 id IDLE ms RETRYCOUNT n FORCE JUSTID      XPENDING pages
 *
 * What doesn't survive: a consumer's seen/active times (the target's clock starts them anew), and a
 * pending entry whose message was deleted from the stream (XCLAIM ... FORCE creates a pending entry
 * only for a message that exists). Groups and a group's consumers are read whole (XINFO has no
 * pages); entries and pending entries are read in pages.
 */
import type { Redis } from 'ioredis';
import { bytesOf, ChunkBuilder, type CopyChunk, PageSizer } from './typed-copy-chunks.js';

/** What the target accepts of a stream's metadata. */
export interface StreamTarget {
  xsetidEntriesAdded: boolean;
  xgroupEntriesRead: boolean;
}

/** A RESP map sent as a flat array (XINFO's replies) as name -> value. */
function fields(reply: unknown): Map<string, unknown> {
  const out = new Map<string, unknown>();
  const a = reply as unknown[];
  for (let i = 0; i + 1 < a.length; i += 2) out.set(String(a[i]), a[i + 1]);
  return out;
}

const text = (v: unknown): string => (Buffer.isBuffer(v) ? v.toString('latin1') : String(v));

/** The id just after `id` (exclusive ranges by hand: `(` arrived only in Redis 6.2). */
export function nextStreamId(id: string): string {
  const dash = id.indexOf('-');
  const ms = BigInt(id.slice(0, dash));
  const seq = BigInt(id.slice(dash + 1));
  return seq === 0xffff_ffff_ffff_ffffn ? `${ms + 1n}-0` : `${ms}-${seq + 1n}`;
}

type Entry = [id: Buffer, fieldsAndValues: Buffer[]];
type Pending = [id: Buffer, consumer: Buffer, idleMs: number, deliveries: number];

/** Yields the stream's chunks; `b` may already hold nothing else (the stream starts the copy). */
export async function* streamChunks(
  source: Redis,
  key: Buffer,
  b: ChunkBuilder,
  estimate: number | 'small' | undefined,
  target: StreamTarget,
): AsyncGenerator<CopyChunk> {
  const info = fields(await source.callBuffer('XINFO', 'STREAM', key));
  const lastId = text(info.get('last-generated-id'));

  let copied = 0;
  const sizer = new PageSizer(b, estimate);
  for (let start = '-'; ; ) {
    const count = sizer.next();
    const page = (await source.callBuffer('XRANGE', key, start, '+', 'COUNT', count)) as Entry[];
    for (const [id, fv] of page) {
      b.command({ name: 'XADD', args: [id, ...fv] });
      if (b.full()) yield b.take();
    }
    sizer.saw(page.length, page.reduce((n, [id, fv]) => n + id.length + bytesOf(fv), 0));
    copied += page.length;
    const last = page[page.length - 1];
    if (page.length < count || !last) break;
    start = nextStreamId(text(last[0]));
  }
  if (copied === 0) b.command({ name: 'XADD', args: ['MAXLEN', '0', '0-1', 'x', ''] });

  const setid: string[] = [lastId];
  if (target.xsetidEntriesAdded) {
    // A source before 7.0 keeps neither; what its RDB would load as: every entry added, none deleted.
    const added = info.get('entries-added');
    const maxDeleted = info.get('max-deleted-entry-id');
    setid.push('ENTRIESADDED', added === undefined ? String(copied) : text(added));
    setid.push('MAXDELETEDID', maxDeleted === undefined ? '0-0' : text(maxDeleted));
  }
  b.command({ name: 'XSETID', args: setid });

  const groups = ((await source.callBuffer('XINFO', 'GROUPS', key)) as unknown[]).map(fields);
  for (const g of groups) {
    const name = g.get('name') as Buffer;
    const args = [name, text(g.get('last-delivered-id'))];
    const read = g.get('entries-read');
    // nil: the source doesn't know either; the target then estimates lag the same way.
    if (target.xgroupEntriesRead && read !== undefined && read !== null) args.push('ENTRIESREAD', text(read));
    b.command({ name: 'XGROUP', subcommand: 'CREATE', args });
    if (b.full()) yield b.take();
  }

  for (const g of groups) {
    const group = g.get('name') as Buffer;
    const consumers = ((await source.callBuffer('XINFO', 'CONSUMERS', key, group)) as unknown[]).map(fields);
    for (const c of consumers) {
      b.command({ name: 'XGROUP', subcommand: 'CREATECONSUMER', args: [group, c.get('name') as Buffer] });
      if (b.full()) yield b.take();
    }
    yield* pendingChunks(source, key, group, b);
  }
  if (!b.empty()) yield b.take();
}

/** The group's pending entries, each claimed by its consumer with its idle time and delivery count. */
async function* pendingChunks(source: Redis, key: Buffer, group: Buffer, b: ChunkBuilder): AsyncGenerator<CopyChunk> {
  const sizer = new PageSizer(b, undefined);
  for (let start = '-'; ; ) {
    const count = sizer.next();
    const page = (await source.callBuffer('XPENDING', key, group, start, '+', count)) as Pending[];
    for (const [id, consumer, idle, deliveries] of page) {
      b.command({
        name: 'XCLAIM',
        args: [group, consumer, '0', id, 'IDLE', String(idle), 'RETRYCOUNT', String(deliveries), 'FORCE', 'JUSTID'],
      });
      if (b.full()) yield b.take();
    }
    sizer.saw(page.length, page.reduce((n, [id, c]) => n + id.length + c.length + group.length + 40, 0));
    const last = page[page.length - 1];
    if (page.length < count || !last) break;
    start = nextStreamId(text(last[0]));
  }
}
