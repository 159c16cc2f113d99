/**
 * The shape of a type-aware copy (commands grouped into chunks) and the two pieces that keep it
 * bounded: ChunkBuilder closes a chunk at about maxBytes, PageSizer sizes each read from the source
 * so that the proxy never holds much more than one chunk of a key.
 */

/** An argument of a copy command: bytes from the source as Buffers, text rehome makes as strings. */
export type CopyArg = string | Buffer;

/**
 * One write to apply to the staging key: `redis.call(name, [subcommand,] stagingKey, ...args)`.
 * `subcommand` is set only for container commands whose key comes after it (XGROUP CREATE key ...,
 * XGROUP CREATECONSUMER key ...); every other command takes the key first.
 */
export interface CopyCommand {
  name: string;
  subcommand?: string;
  args: CopyArg[];
}

/** A chunk: commands applied together, in order, to the staging key (one script call). */
export type CopyChunk = CopyCommand[];

/**
 * Most arguments one command carries. Scripts pass a command's arguments through Lua's unpack,
 * which fails past about 8000 values; one stream entry (XADD) with more fields is the exception.
 */
export const MAX_COMMAND_ARGS = 1024;

/** Most elements one read from the source asks for, so that no single read holds the source long. */
export const MAX_PAGE_ITEMS = 4096;

/** First page of a key whose size the source would not tell (MEMORY USAGE refused). */
const BLIND_FIRST_PAGE = 16;

export function argBytes(a: CopyArg): number {
  return typeof a === 'string' ? Buffer.byteLength(a) : a.length;
}

/**
 * Collects commands into chunks. Elements added with `append` join the previous command when it
 * has the same name (HSET f1 v1 f2 v2 ...), up to MAX_COMMAND_ARGS arguments.
 */
export class ChunkBuilder {
  private cmds: CopyCommand[] = [];
  /** The last command while more elements may join it. */
  private open: CopyCommand | undefined;
  private bytes = 0;
  private items = 0;

  constructor(
    readonly maxBytes: number,
    readonly maxItems: number,
  ) {}

  /** Adds one element (a member, a field and its value, ...) to a `name` command. */
  append(name: string, element: readonly CopyArg[]): void {
    const open = this.open;
    if (open && open.name === name && open.args.length + element.length <= MAX_COMMAND_ARGS) {
      open.args.push(...element);
    } else {
      this.open = { name, args: [...element] };
      this.cmds.push(this.open);
    }
    this.count(element);
  }

  /** Adds a command that no element joins later. */
  command(cmd: CopyCommand): void {
    this.open = undefined;
    this.cmds.push(cmd);
    this.count(cmd.args);
  }

  private count(args: readonly CopyArg[]): void {
    for (const a of args) this.bytes += argBytes(a);
    this.items++;
  }

  full(): boolean {
    return this.bytes >= this.maxBytes || this.items >= this.maxItems;
  }

  empty(): boolean {
    return this.cmds.length === 0;
  }

  /** Bytes and elements the current chunk still has room for (at least 1 each). */
  room(): { bytes: number; items: number } {
    return { bytes: Math.max(1, this.maxBytes - this.bytes), items: Math.max(1, this.maxItems - this.items) };
  }

  /** Hands over the current chunk and starts an empty one. */
  take(): CopyChunk {
    const chunk = this.cmds;
    this.cmds = [];
    this.open = undefined;
    this.bytes = 0;
    this.items = 0;
    return chunk;
  }
}

/**
 * How many elements the next read asks for. A page fills what is left of the current chunk (at
 * least an eighth of a chunk, so a nearly full chunk doesn't cost a round trip for a few
 * elements), judged by the larger of the key's average element so far and the last page's, so a
 * run of bigger elements shrinks the next page at once. The proxy then holds at most about one
 * chunk and one page of a key: ~1.125 x maxBytes, more only when elements grow within one page or
 * one element alone is bigger than that.
 */
export class PageSizer {
  private totalItems = 0;
  private totalBytes = 0;
  private lastAvg = 0;

  /**
   * @param estimate bytes per element as the source reports them (MEMORY USAGE / length), or
   *   'small' when the whole key fits in one chunk, or undefined when the source didn't say.
   */
  constructor(
    private readonly builder: ChunkBuilder,
    private readonly estimate: number | 'small' | undefined,
  ) {}

  next(): number {
    const room = this.builder.room();
    const bytes = Math.max(room.bytes, this.builder.maxBytes / 8);
    let n: number;
    if (this.totalItems > 0) n = bytes / Math.max(this.lastAvg, this.totalBytes / this.totalItems, 1);
    else if (this.estimate === 'small') n = MAX_PAGE_ITEMS;
    else if (this.estimate === undefined) n = BLIND_FIRST_PAGE;
    else n = bytes / Math.max(this.estimate, 1);
    const items = Math.max(room.items, Math.floor(this.builder.maxItems / 8));
    return Math.max(1, Math.min(Math.floor(n), items, MAX_PAGE_ITEMS));
  }

  /** Records what a read returned (items elements of `bytes` bytes in all). */
  saw(items: number, bytes: number): void {
    if (items === 0) return;
    this.totalItems += items;
    this.totalBytes += bytes;
    this.lastAvg = bytes / items;
  }
}

/** Sum of the byte lengths of a reply's elements. */
export function bytesOf(parts: readonly Buffer[]): number {
  let n = 0;
  for (const p of parts) n += p.length;
  return n;
}
