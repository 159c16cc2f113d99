/**
 * Redis Cluster's hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the part
 * between the first `{` and the next `}` when not empty), mod 16384. The CRC is the
 * `cluster-key-slot` package's (the one ioredis uses), so rehome and a cluster client agree.
 */
import calculate from 'cluster-key-slot';

export const SLOTS = 16384;

/** Slot of a key given as a latin1 string (one char per byte, as the framer hands keys out). */
export function keySlot(key: string): number {
  return calculate(Buffer.from(key, 'latin1'));
}

/** The one slot every key hashes to, -1 when they hash to different slots, -2 for no keys. */
export function commonSlot(keys: readonly string[]): number {
  if (keys.length === 0) return -2;
  const s = keySlot(keys[0]!);
  for (let i = 1; i < keys.length; i++) if (keySlot(keys[i]!) !== s) return -1;
  return s;
}
