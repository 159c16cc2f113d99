/**
 * Keys known to be absent from the source, per db. Safe to remember because the source only ever
 * loses keys during a migration (docs/DESIGN.md rule 1): once absent, a key stays absent. Every
 * request with keys asks it while keys move, so its look-up is built for speed (absent-table.ts).
 */
import { AbsentTable } from './absent-table.js';

/** A bounded table, per db, of keys confirmed absent from the source (absent-table.ts). */
export class KnownAbsentCache {
  private dbs: Array<AbsentTable | undefined> = [];

  constructor(readonly maxPerDb: number) {}

  has(db: number, key: string): boolean {
    const t = this.dbs[db];
    return t !== undefined && t.has(key);
  }

  add(db: number, key: string): void {
    if (this.maxPerDb === 0) return;
    let t = this.dbs[db];
    if (t === undefined) {
      t = new AbsentTable(this.maxPerDb);
      this.dbs[db] = t;
    }
    t.add(key);
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
