/**
 * Copying one key with the type-aware copy's reader (src/migration/typed-copy.ts) the way the
 * proxy-side move applies it, and comparing the result by a deep snapshot; shared by the type-aware
 * copy's tests on Redis 7.0 and across versions.
 */
import type { Redis } from 'ioredis';
import { expect } from 'vitest';
import { readChunks, type CopyChunk, type CopyOptions } from '../../src/migration/typed-copy.js';
import { applyChunk, chunkBytes, comparable, snapshot } from './typed-data.js';

export const OPTS: CopyOptions = { maxBytes: 16 * 1024, targetSupportsHashFieldTtl: false };

export interface CopyStats {
  chunks: number;
  largestBytes: number;
  largestItems: number;
}

/** Copies `key` from src to `dest` on dst chunk by chunk; `afterFirst` runs once the first chunk is in. */
export async function copyKey(
  src: Redis,
  dst: Redis,
  key: Buffer,
  opts: CopyOptions = OPTS,
  dest: Buffer = key,
  afterFirst?: () => Promise<void>,
): Promise<CopyStats> {
  const stats: CopyStats = { chunks: 0, largestBytes: 0, largestItems: 0 };
  for await (const chunk of readChunks(src, key, opts)) {
    await applyChunk(dst, dest, chunk);
    stats.chunks++;
    stats.largestBytes = Math.max(stats.largestBytes, chunkBytes(chunk));
    stats.largestItems = Math.max(stats.largestItems, elements(chunk));
    if (stats.chunks === 1) await afterFirst?.();
  }
  return stats;
}

/** Elements in a chunk: a command's arguments past its fixed head, counted the way the builder counts them. */
function elements(chunk: CopyChunk): number {
  const width: Record<string, number> = { HSET: 2, ZADD: 2, SADD: 1, RPUSH: 1 };
  return chunk.reduce((n, c) => n + (width[c.name] ? c.args.length / width[c.name]! : 1), 0);
}

export async function expectSame(src: Redis, dst: Redis, key: Buffer, dest: Buffer = key): Promise<void> {
  const [a, b] = comparable(await snapshot(src, key), await snapshot(dst, dest));
  expect(b, `key ${key.toString('latin1')}`).toEqual(a);
}
