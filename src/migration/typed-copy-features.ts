/**
 * What a server can hold or accept, for the type-aware copy: hash-field TTLs, and the stream
 * metadata options of XSETID and XGROUP CREATE. Read from COMMAND INFO where the server has it
 * (the commands themselves are the evidence), else from the version INFO reports.
 */
import type { Redis } from 'ioredis';

/** What the type-aware copy needs to know about a server (source or target). */
export interface ServerFeatures {
  /** Hash fields can carry their own TTL: HPEXPIREAT, HPEXPIRETIME (Redis 7.4+). */
  hashFieldTtl: boolean;
  /** XSETID takes ENTRIESADDED and MAXDELETEDID (Redis 7.0+, Valkey). */
  xsetidEntriesAdded: boolean;
  /** XGROUP CREATE takes ENTRIESREAD (Redis 7.0+, Valkey). */
  xgroupEntriesRead: boolean;
}

/**
 * Asks `server` what it supports. Use it on the target to fill readChunks' options (copyOptions)
 * and to let `plan` tell which keys the target can't hold.
 */
export async function serverFeatures(server: Redis): Promise<ServerFeatures> {
  let infos: unknown;
  try {
    infos = await server.call('COMMAND', 'INFO', 'hpexpireat', 'xsetid', 'xgroup|create');
  } catch {
    return fromVersion(String(await server.call('INFO', 'server')));
  }
  const [hpexpireat, xsetid, xgroupCreate] = infos as Array<unknown[] | null>;
  return {
    hashFieldTtl: Array.isArray(hpexpireat),
    // XSETID took exactly `key id` (arity 3) until its options came (arity -3).
    xsetidEntriesAdded: Array.isArray(xsetid) && Number(xsetid[1]) < 0,
    // Subcommands got their own COMMAND INFO entries in 7.0, the release that added ENTRIESREAD.
    xgroupEntriesRead: Array.isArray(xgroupCreate),
  };
}

/** The same answer from INFO server, for a server that refuses COMMAND. */
function fromVersion(info: string): ServerFeatures {
  const field = (name: string) => new RegExp(`^${name}:(\\d+)\\.(\\d+)`, 'm').exec(info);
  const atLeast = (m: RegExpExecArray | null, major: number, minor: number) =>
    m !== null && (Number(m[1]) > major || (Number(m[1]) === major && Number(m[2]) >= minor));
  const valkey = field('valkey_version');
  const redis = field('redis_version');
  const streams = valkey !== null || atLeast(redis, 7, 0);
  return {
    hashFieldTtl: valkey ? atLeast(valkey, 9, 0) : atLeast(redis, 7, 4),
    xsetidEntriesAdded: streams,
    xgroupEntriesRead: streams,
  };
}

const known = new WeakMap<Redis, Promise<ServerFeatures>>();

/** serverFeatures, asked once per client (the reader asks it of the source for every key). */
export function cachedFeatures(server: Redis): Promise<ServerFeatures> {
  let p = known.get(server);
  if (!p) {
    p = serverFeatures(server);
    known.set(server, p);
    // A failed look-up (the server was down) is asked again next time.
    p.catch(() => known.delete(server));
  }
  return p;
}
