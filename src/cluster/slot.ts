/**
 * Redis Cluster's hash slot of a key: CRC16/XMODEM of the key, or of its hash tag, mod 16384. The
 * tag is what lies between the first `{` and the first `}` after it, when not empty; otherwise
 * (no `{`, no `}` after it, or `{}`) the whole key is hashed.
 *
 * Hand-written rather than the `cluster-key-slot` package (which ioredis uses): that package, given
 * a key whose first `{}` is empty, goes on to hash a later tag ("foo{}{bar}" -> the slot of "{bar"),
 * where Redis hashes the whole key (test/unit/cluster-split.test.ts has Redis's own answers).
 */

export const SLOTS = 16384;

/** CRC16/XMODEM (poly 0x1021, init 0), one table lookup per byte. */
const TABLE = (() => {
  const t = new Uint16Array(256);
  for (let i = 0; i < 256; i++) {
    let c = i << 8;
    for (let b = 0; b < 8; b++) c = c & 0x8000 ? ((c << 1) ^ 0x1021) & 0xffff : (c << 1) & 0xffff;
    t[i] = c;
  }
  return t;
})();

/** CRC16/XMODEM of key's latin1 bytes [from, to). */
function crc16(key: string, from: number, to: number): number {
  let crc = 0;
  for (let i = from; i < to; i++) crc = ((crc << 8) & 0xffff) ^ TABLE[((crc >> 8) ^ key.charCodeAt(i)) & 0xff]!;
  return crc;
}

/** Slot of a key given as a latin1 string (one char per byte, as the framer hands keys out). */
export function keySlot(key: string): number {
  const open = key.indexOf('{');
  if (open >= 0) {
    const close = key.indexOf('}', open + 1);
    if (close > open + 1) return crc16(key, open + 1, close) & (SLOTS - 1);
  }
  return crc16(key, 0, key.length) & (SLOTS - 1);
}

/** The one slot every key hashes to, -1 when they hash to different slots, -2 for no keys. */
export function commonSlot(keys: readonly string[]): number {
  if (keys.length === 0) return -2;
  const s = keySlot(keys[0]!);
  for (let i = 1; i < keys.length; i++) if (keySlot(keys[i]!) !== s) return -1;
  return s;
}

let tags: string[] | null = null;

/** A short string that hashes to `slot` (for a key of rehome's own on a given master: `{tag}`). */
export function slotTag(slot: number): string {
  if (tags === null) {
    // Every slot is hit within a few hundred thousand decimal strings (built once, in ms).
    const t = new Array<string>(SLOTS);
    let left = SLOTS;
    for (let i = 0; left > 0; i++) {
      const s = String(i);
      const k = keySlot(s);
      if (t[k] === undefined) {
        t[k] = s;
        left--;
      }
    }
    tags = t;
  }
  return tags[slot]!;
}
