/** Splitting test inputs into chunks, for framing tests at every boundary. */

/** Cuts a buffer at the given offsets (ascending) into consecutive pieces. */
export function splitAt(buf: Buffer, ...points: number[]): Buffer[] {
  const out: Buffer[] = [];
  let s = 0;
  for (const p of points) {
    out.push(buf.subarray(s, p));
    s = p;
  }
  out.push(buf.subarray(s));
  return out;
}
