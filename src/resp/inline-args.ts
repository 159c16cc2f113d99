/**
 * Inline (telnet-style) request lines, split into arguments exactly as Redis splits them, so a
 * human typing into a raw connection gets the same arguments through rehome as on the server.
 */

function isSpace(c: number): boolean {
  return c === 32 || c === 9 || c === 10 || c === 13 || c === 11 || c === 12;
}

function hexVal(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/**
 * Splits an inline request line the way Redis's sdssplitargs does: whitespace separated,
 * "double quotes" with \n \r \t \b \a \\ \" \xHH escapes, 'single quotes' with \' only.
 * Returns null on unbalanced quotes (or a closing quote not followed by a space).
 */
export function splitInlineArgs(line: Buffer): Buffer[] | null {
  const out: Buffer[] = [];
  let i = 0;
  const n = line.length;
  for (;;) {
    while (i < n && isSpace(line[i]!)) i++;
    if (i >= n) return out;
    const cur: number[] = [];
    let inDq = false;
    let inSq = false;
    let done = false;
    while (!done) {
      if (inDq) {
        if (i >= n) return null;
        const c = line[i]!;
        if (c === 0x5c /* \ */ && line[i + 1] === 0x78 /* x */ && i + 3 < n &&
            hexVal(line[i + 2]!) >= 0 && hexVal(line[i + 3]!) >= 0) {
          cur.push(hexVal(line[i + 2]!) * 16 + hexVal(line[i + 3]!));
          i += 3;
        } else if (c === 0x5c && i + 1 < n) {
          i++;
          const e = line[i]!;
          cur.push(e === 0x6e ? 10 : e === 0x72 ? 13 : e === 0x74 ? 9 : e === 0x62 ? 8 : e === 0x61 ? 7 : e);
        } else if (c === 0x22 /* " */) {
          if (i + 1 < n && !isSpace(line[i + 1]!)) return null;
          done = true;
        } else {
          cur.push(c);
        }
      } else if (inSq) {
        if (i >= n) return null;
        const c = line[i]!;
        if (c === 0x5c && line[i + 1] === 0x27 /* ' */) {
          i++;
          cur.push(0x27);
        } else if (c === 0x27) {
          if (i + 1 < n && !isSpace(line[i + 1]!)) return null;
          done = true;
        } else {
          cur.push(c);
        }
      } else {
        if (i >= n) {
          done = true;
          break;
        }
        const c = line[i]!;
        // An unquoted word ends only at space, tab, CR, LF or NUL (as in Redis).
        if (c === 32 || c === 9 || c === 13 || c === 10 || c === 0) done = true;
        else if (c === 0x22) inDq = true;
        else if (c === 0x27) inSq = true;
        else cur.push(c);
      }
      if (i < n) i++;
    }
    out.push(Buffer.from(cur));
  }
}
