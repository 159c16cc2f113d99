/** Tiny RESP2 encoder for the replies the proxy makes itself. */

const CRLF = '\r\n';

export function encodeError(text: string): Buffer {
  // Error lines cannot contain CR or LF.
  return Buffer.from(`-${text.replace(/[\r\n]+/g, ' ')}${CRLF}`);
}

export function encodeBulk(b: Buffer | string | null): Buffer {
  if (b === null) return Buffer.from(`$-1${CRLF}`);
  const buf = typeof b === 'string' ? Buffer.from(b) : b;
  return Buffer.concat([Buffer.from(`$${buf.length}${CRLF}`), buf, Buffer.from(CRLF)]);
}

/** An array of bulk strings. */
export function encodeBulkArray(items: Array<Buffer | string>): Buffer {
  const parts: Buffer[] = [Buffer.from(`*${items.length}${CRLF}`)];
  for (const it of items) parts.push(encodeBulk(it));
  return Buffer.concat(parts);
}
