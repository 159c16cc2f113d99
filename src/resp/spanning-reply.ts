/**
 * A reply that spans the chunks a connection reads (framed by the reply scanner): the pieces that
 * came before the chunk that ends it. Each connection that hands on whole replies keeps one.
 */
export class SpanningReply {
  private pieces: Buffer[] | null = null;

  /** No piece held: the next reply starts with the next chunk's framing. */
  get empty(): boolean {
    return this.pieces === null;
  }

  /** Bytes held. */
  get bytes(): number {
    let n = 0;
    if (this.pieces !== null) for (const p of this.pieces) n += p.length;
    return n;
  }

  /** The reply that ends at `end` of `chunk` (its part from `s`), whole: joined to the pieces before it. */
  take(chunk: Buffer, s: number, end: number): Buffer {
    const piece = chunk.subarray(s, end);
    const pieces = this.pieces;
    if (pieces === null) return piece;
    this.pieces = null;
    pieces.push(piece);
    return Buffer.concat(pieces);
  }

  /** A piece of a reply that continues in the next chunk. */
  hold(piece: Buffer): void {
    (this.pieces ??= []).push(piece);
  }

  drop(): void {
    this.pieces = null;
  }
}
