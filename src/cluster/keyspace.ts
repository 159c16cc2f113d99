/**
 * Keyspace-wide commands over every master of a cluster target, answered as one standalone
 * server would (the session then merges the old server's half in as for a standalone target:
 * src/session/keyspace.ts):
 *
 *   SCAN       one cursor over the masters in slot order: cursor = node cursor * 1024 + master
 *              index; a master's cursor 0 goes on to the next master, the last one's ends the scan
 *   KEYS       every master's keys, concatenated
 *   DBSIZE     the sum over the masters
 *   RANDOMKEY  a master picked at random, then the others while they have none
 *   FLUSHALL / FLUSHDB   every master; the first error, else OK
 *   INFO       the first master's, its Keyspace section summed over every master
 *
 * Each runs on the client's own connections to the nodes (its user, docs/DESIGN.md rule 5).
 */
import { ErrorText } from '../errors.js';
import { encodeError } from '../resp/encode.js';
import { argStr, encodeRequest, type Request } from '../resp/request-framer.js';
import { arrayElements } from '../resp/reply-scanner.js';

/** What the keyspace commands need of a front connection. */
export interface AllMasters {
  /** The masters in slot order (their link keys). */
  masters(): string[];
  call(node: string, bytes: Buffer): Promise<Buffer>;
}

export const KEYSPACE_WIDE = new Set(['scan', 'keys', 'dbsize', 'randomkey', 'flushall', 'flushdb']);

const NODE_BITS = 1024n;

/** INFO's sections that include Keyspace (none named: the default set). */
function infoHasKeyspace(req: Request): boolean {
  if (req.argc === 1) return true;
  for (let i = 1; i < req.argc; i++) {
    const s = argStr(req, i).toLowerCase();
    if (s === 'keyspace' || s === 'all' || s === 'everything' || s === 'default') return true;
  }
  return false;
}

export function isInfoWithKeyspace(req: Request): boolean {
  return req.name === 'info' && infoHasKeyspace(req);
}

const KEYSPACE_LINE = /^db(\d+):keys=(\d+),expires=(\d+),avg_ttl=(\d+)/;

/** The first master's INFO with its `# Keyspace` lines replaced by the sums over every master. */
async function info(req: Request, m: AllMasters, nodes: string[]): Promise<Buffer> {
  const first = await m.call(nodes[0]!, req.raw);
  if (first[0] !== 0x24) return first;
  const ks = await Promise.all(nodes.map((n) => m.call(n, KEYSPACE_REQ)));
  const sums = new Map<number, [number, number, number]>();
  for (const r of ks) {
    if (r[0] !== 0x24) return r;
    for (const line of r.toString('latin1').split('\r\n')) {
      const x = KEYSPACE_LINE.exec(line);
      if (x === null) continue;
      const t = sums.get(Number(x[1])) ?? [0, 0, 0];
      t[0] += Number(x[2]);
      t[1] += Number(x[3]);
      t[2] = Math.max(t[2], Number(x[4]));
      sums.set(Number(x[1]), t);
    }
  }
  const text = first.toString('latin1', first.indexOf(10) + 1, first.length - 2);
  const lines = text.split('\r\n').filter((l) => !KEYSPACE_LINE.test(l));
  const at = lines.indexOf('# Keyspace');
  if (at < 0) return first;
  const summed = [...sums].sort((a, b) => a[0] - b[0]).map(([db, t]) => `db${db}:keys=${t[0]},expires=${t[1]},avg_ttl=${t[2]}`);
  lines.splice(at + 1, 0, ...summed);
  const body = Buffer.from(lines.join('\r\n'), 'latin1');
  return Buffer.concat([Buffer.from(`$${body.length}\r\n`), body, Buffer.from('\r\n')]);
}

const KEYSPACE_REQ = encodeRequest(['INFO', 'keyspace']).raw;

export async function allMasters(req: Request, m: AllMasters): Promise<Buffer> {
  const nodes = m.masters();
  switch (req.name) {
    case 'info':
      return info(req, m, nodes);
    case 'scan':
      return scan(req, m, nodes);
    case 'keys': {
      const replies = await Promise.all(nodes.map((n) => m.call(n, req.raw)));
      const bad = replies.find((r) => r[0] !== 0x2a);
      if (bad !== undefined) return bad;
      const els = replies.flatMap((r) => arrayElements(r) ?? []);
      return Buffer.concat([Buffer.from(`*${els.length}\r\n`), ...els]);
    }
    case 'dbsize': {
      const replies = await Promise.all(nodes.map((n) => m.call(n, req.raw)));
      const bad = replies.find((r) => r[0] !== 0x3a);
      if (bad !== undefined) return bad;
      let sum = 0;
      for (const r of replies) sum += Number(r.toString('latin1', 1, r.length - 2));
      return Buffer.from(`:${sum}\r\n`);
    }
    case 'randomkey': {
      const start = Math.floor(Math.random() * nodes.length);
      let last: Buffer = Buffer.from('$-1\r\n');
      for (let i = 0; i < nodes.length; i++) {
        last = await m.call(nodes[(start + i) % nodes.length]!, req.raw);
        if ((last[0] !== 0x24 || last[1] !== 0x2d) && last[0] !== 0x5f) return last; // a key, or an error
      }
      return last;
    }
    default: {
      // FLUSHALL, FLUSHDB
      const replies = await Promise.all(nodes.map((n) => m.call(n, req.raw)));
      return replies.find((r) => r[0] === 0x2d) ?? replies[0] ?? Buffer.from('+OK\r\n');
    }
  }
}

async function scan(req: Request, m: AllMasters, nodes: string[]): Promise<Buffer> {
  if (req.argc < 2) return m.call(nodes[0]!, req.raw); // the server's arity error
  let c: bigint;
  try {
    c = BigInt(argStr(req, 1));
  } catch {
    return encodeError(ErrorText.invalidCursor());
  }
  if (c < 0n) return encodeError(ErrorText.invalidCursor());
  const idx = Number(c % NODE_BITS);
  if (idx >= nodes.length) return encodeError(ErrorText.invalidCursor());
  const args: Buffer[] = [];
  for (let i = 0; i < req.argc; i++) args.push(req.raw.subarray(req.offs[2 * i]!, req.offs[2 * i + 1]!));
  args[1] = Buffer.from(String(c / NODE_BITS));
  const r = await m.call(nodes[idx]!, encodeRequest(args).raw);
  const els = arrayElements(r);
  if (els === null || els.length !== 2) return r;
  const cur = els[0]!;
  const next = BigInt(cur.toString('latin1', cur.indexOf(10) + 1, cur.length - 2));
  let out: bigint;
  if (next !== 0n) out = next * NODE_BITS + BigInt(idx);
  else out = idx + 1 < nodes.length ? BigInt(idx + 1) : 0n;
  const s = out.toString();
  return Buffer.concat([Buffer.from(`*2\r\n$${s.length}\r\n${s}\r\n`), els[1]!]);
}
