/**
 * One db's keys known absent from the source, in a table laid out for the look-up that every
 * request with keys makes (absent-cache.ts says why it must be cheap).
 *
 * A JS Map or Set of 100,000 strings costs some 2.5 µs of CPU per look-up in the proxy on a busy
 * 2-core machine (bench/throughput.mjs --drained measures it): its buckets, its entries and every
 * candidate key string lie in different places in memory, each a cache and TLB miss by the time
 * the next request comes, and an LRU's list adds more. Here a key of up to INLINE bytes lives whole
 * in one 64-byte slot of one typed array, beside a 32-bit hash of it: a hit touches one slot (and a
 * miss the slots of its probe run, usually the same one or two cache lines). Longer keys, rarer,
 * go to a Set. The price is memory: 64 bytes a slot, at most 70% of slots used, so about 90 bytes
 * a key (16 MB for 100,000 keys as 256k slots; 128 MB at the default bound of a million); a Map
 * with an LRU list of 20-byte keys took about as much.
 *
 * Slots use open addressing with linear probing; a slot's first word is the key's hash with its
 * lowest bit set (0: empty). Deletion shifts the rest of the probe run back (no tombstones).
 * Eviction is CLOCK: a hit sets the slot's reference bit; the hand clears set bits and evicts the
 * first slot it finds clear, so a key asked for since the hand last passed outlives keys that were
 * not. Exactness matters (a key taken as absent while the source holds it would be shadowed): a
 * hash match is confirmed by comparing every byte.
 */

/** Bytes of one slot: a cache line. */
const SLOT = 64;
/** Byte 4 of a slot: the key's length (low 7 bits) and the reference bit (0x80). */
const LEN = 4;
const REF = 0x80;
/** Keys of up to this many bytes (latin1: one byte per char) are kept in a slot. */
export const INLINE = SLOT - LEN - 1;
const FIRST_CAPACITY = 1024;
/** At most this share of slots is used before the table doubles (or, at its bound, evicts). */
const MAX_LOAD = 0.7;

/** A per-process seed: which keys share a probe run can't be arranged from outside. */
const SEED = (Math.random() * 0x100000000) >>> 0;

/**
 * 32-bit hash of a latin1 string (FNV-1a over the seed, then a final mix), lowest bit set; 0 for
 * a string with a char above 0xff (keys are latin1, one char per byte: such a string could not
 * be stored byte for byte, so it goes to the Set).
 */
function hashOf(key: string): number {
  let h = SEED ^ 0x811c9dc5;
  let all = 0;
  for (let i = 0; i < key.length; i++) {
    const c = key.charCodeAt(i);
    all |= c;
    h = Math.imul(h ^ c, 0x01000193);
  }
  if (all > 0xff) return 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  return (h | 1) >>> 0;
}

/** One db's known-absent keys, at most `max` of them. */
export class AbsentTable {
  private bytes = new Uint8Array(FIRST_CAPACITY * SLOT);
  private words = new Uint32Array(this.bytes.buffer);
  private mask = FIRST_CAPACITY - 1;
  /** Keys in slots. */
  private used = 0;
  private hand = 0;
  /** Keys longer than INLINE, oldest first (Sets iterate in insertion order). */
  private readonly long = new Set<string>();
  /** Kept from one eviction to the next: see evictLong. */
  private longKeys: Iterator<string> = this.long.values();

  constructor(private readonly max: number) {}

  get size(): number {
    return this.used + this.long.size;
  }

  has(key: string): boolean {
    const h = key.length > INLINE ? 0 : hashOf(key);
    if (h === 0) return this.long.has(key);
    const s = this.find(key, h);
    if (s < 0) return false;
    const at = s * SLOT + LEN;
    const b = this.bytes[at]!;
    if ((b & REF) === 0) this.bytes[at] = b | REF;
    return true;
  }

  add(key: string): void {
    if (this.max === 0) return;
    const h = key.length > INLINE ? 0 : hashOf(key);
    if (h === 0) {
      if (this.long.has(key)) return;
      if (this.size >= this.max) this.evict(true);
      this.long.add(key);
      return;
    }
    if (this.find(key, h) >= 0) return;
    if (this.size >= this.max) this.evict(false);
    else if (this.used + 1 > (this.mask + 1) * MAX_LOAD) this.grow();
    this.place(key, h);
  }

  /** The slot holding `key`, or -1. */
  private find(key: string, h: number): number {
    const words = this.words;
    const bytes = this.bytes;
    const mask = this.mask;
    const n = key.length;
    for (let s = h & mask; ; s = (s + 1) & mask) {
      const w = words[s * (SLOT / 4)]!;
      if (w === 0) return -1;
      if (w !== h) continue;
      const at = s * SLOT;
      if ((bytes[at + LEN]! & ~REF) !== n) continue;
      let i = 0;
      while (i < n && bytes[at + LEN + 1 + i] === key.charCodeAt(i)) i++;
      if (i === n) return s;
    }
  }

  /** The first empty slot of the probe run of hash `h` (there is one: the load stays below 1). */
  private emptySlot(h: number): number {
    let s = h & this.mask;
    while (this.words[s * (SLOT / 4)] !== 0) s = (s + 1) & this.mask;
    return s;
  }

  /** Writes `key` into the first empty slot of its probe run. */
  private place(key: string, h: number): void {
    const s = this.emptySlot(h);
    const at = s * SLOT;
    this.words[s * (SLOT / 4)] = h;
    this.bytes[at + LEN] = key.length; // reference bit clear: not asked for yet
    for (let i = 0; i < key.length; i++) this.bytes[at + LEN + 1 + i] = key.charCodeAt(i);
    this.used++;
  }

  /** Doubles the table (below its bound only, so at most about max / MAX_LOAD slots). */
  private grow(): void {
    const old = this.bytes;
    const oldWords = this.words;
    const slots = (this.mask + 1) * 2;
    this.bytes = new Uint8Array(slots * SLOT);
    this.words = new Uint32Array(this.bytes.buffer);
    this.mask = slots - 1;
    this.used = 0;
    this.hand = 0;
    for (let s = 0; s < old.length / SLOT; s++) {
      const h = oldWords[s * (SLOT / 4)]!;
      if (h === 0) continue;
      this.bytes.set(old.subarray(s * SLOT, (s + 1) * SLOT), this.emptySlot(h) * SLOT);
      this.used++;
    }
  }

  /** Makes room for one key: from the Set of long keys when `long` (or no slot is used), else a slot. */
  private evict(long: boolean): void {
    if ((long && this.long.size > 0) || this.used === 0) this.evictLong();
    else this.evictSlot();
  }

  /**
   * The oldest long key goes. The iterator is kept between evictions: a fresh one would step over
   * every hole the evictions before it left at the front of the Set's table (quadratic).
   */
  private evictLong(): void {
    let next = this.longKeys.next();
    if (next.done === true) {
      this.longKeys = this.long.values();
      next = this.longKeys.next();
    }
    if (next.done !== true) this.long.delete(next.value);
  }

  /** CLOCK: clears reference bits until it finds a slot without one, and empties that slot. */
  private evictSlot(): void {
    const words = this.words;
    const bytes = this.bytes;
    const mask = this.mask;
    for (;;) {
      const s = this.hand;
      this.hand = (s + 1) & mask;
      if (words[s * (SLOT / 4)] === 0) continue;
      const at = s * SLOT + LEN;
      if ((bytes[at]! & REF) !== 0) {
        bytes[at] = bytes[at]! & ~REF;
        continue;
      }
      this.remove(s);
      return;
    }
  }

  /**
   * Empties slot `s` and shifts back the rest of its probe run: every later key of the run whose
   * home slot is not between the hole and itself moves into the hole (linear probing's deletion).
   */
  private remove(s: number): void {
    const words = this.words;
    const bytes = this.bytes;
    const mask = this.mask;
    let hole = s;
    for (let j = (s + 1) & mask; words[j * (SLOT / 4)] !== 0; j = (j + 1) & mask) {
      const home = words[j * (SLOT / 4)]! & mask;
      // Stays when its home lies cyclically in (hole, j]: the hole is not on its probe path.
      const stays = hole <= j ? hole < home && home <= j : hole < home || home <= j;
      if (stays) continue;
      bytes.copyWithin(hole * SLOT, j * SLOT, (j + 1) * SLOT);
      hole = j;
    }
    bytes.fill(0, hole * SLOT, (hole + 1) * SLOT);
    this.used--;
  }
}
