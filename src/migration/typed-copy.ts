/**
 * Stand-in for the type-aware reader (another branch writes the real one with this interface):
 * strings only, read in ranges of about maxBytes. Every other type is refused before anything is
 * yielded, as the real reader refuses what the target can't hold.
 */
import type { Redis } from 'ioredis';

/** One write to apply to the staging key: the command name and its arguments after the key. */
export interface CopyCommand {
  name: string;
  args: Array<string | Buffer>;
}
/** A chunk: commands applied together, in order, to the staging key (one script call). */
export type CopyChunk = CopyCommand[];

/** The key's type (or a feature of it) can't be copied to this target. */
export class UnsupportedTypeError extends Error {}

/**
 * Reads key `key` (a claim key nobody else writes) from `source` (an ioredis client on the right
 * db) in chunks of about maxBytes each; throws UnsupportedTypeError (module types, hash-field TTLs
 * the target can't hold) before yielding anything.
 */
export async function* readChunks(
  source: Redis,
  key: Buffer,
  opts: { maxBytes: number; targetSupportsHashFieldTtl: boolean },
): AsyncGenerator<CopyChunk> {
  const type = await source.type(key);
  if (type !== 'string') throw new UnsupportedTypeError(`type ${type} can't be copied yet (strings only)`);
  const len = await source.strlen(key);
  if (len === 0) {
    yield [{ name: 'SET', args: [''] }];
    return;
  }
  for (let at = 0; at < len; at += opts.maxBytes) {
    const part = await source.getrangeBuffer(key, at, Math.min(len, at + opts.maxBytes) - 1);
    yield [{ name: 'APPEND', args: [part] }];
  }
}
