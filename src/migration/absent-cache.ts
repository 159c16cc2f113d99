/**
 * Keys known to be absent from the source, per db. Safe to remember because the source only ever
 * loses keys during a migration (docs/DESIGN.md rule 1): once absent, a key stays absent.
 */
import { LRUCache } from 'lru-cache';

/** A bounded LRU, per db, of keys confirmed absent from the source. */
export class KnownAbsentCache {
  private dbs: Array<LRUCache<string, true> | undefined> = [];

  constructor(readonly maxPerDb: number) {}

  private lru(db: number): LRUCache<string, true> {
    let c = this.dbs[db];
    if (!c) {
      // Bounded by count through maxSize (every entry weighs 1), not `max`: with `max` the cache
      // preallocates arrays for every slot, ~150 ms for the default million, spent on the first
      // key confirmed absent in each db while every client and the sweeper wait.
      c = new LRUCache<string, true>({ maxSize: this.maxPerDb, sizeCalculation: () => 1 });
      this.dbs[db] = c;
    }
    return c;
  }

  has(db: number, key: string): boolean {
    const c = this.dbs[db];
    return c !== undefined && c.get(key) === true;
  }

  add(db: number, key: string): void {
    if (this.maxPerDb > 0) this.lru(db).set(key, true);
  }

  clear(): void {
    this.dbs = [];
  }

  get size(): number {
    let n = 0;
    for (const c of this.dbs) n += c?.size ?? 0;
    return n;
  }
}
