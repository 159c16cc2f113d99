import { ReplicaNotConfirmed } from '../errors.js';

/**
 * What went wrong with a move, by kind: the mover counts each kind (status, /metrics) and picks
 * the client's error from it.
 */

/** Every kind of move error the mover counts (errorsByKind's keys; /metrics shows each from 0). */
export const MOVE_ERROR_KINDS = ['oom', 'busykey', 'ioerr', 'timeout', 'source-unavailable', 'target-unavailable', 'path-down', 'replica', 'error'] as const;

export type MoveErrorKind = (typeof MOVE_ERROR_KINDS)[number];

export function classify(err: unknown): { kind: MoveErrorKind; text: string } {
  const text = err instanceof Error ? err.message : String(err);
  // A cluster master's replica did not confirm moved keys (before any text match: the message
  // may name a connection error of the master, not of the source).
  if (err instanceof ReplicaNotConfirmed) return { kind: 'replica', text };
  if (/OOM/.test(text)) return { kind: 'oom', text };
  if (/BUSYKEY/.test(text)) return { kind: 'busykey', text };
  if (/IOERR/.test(text)) return { kind: 'ioerr', text };
  if (/timed out/i.test(text)) return { kind: 'timeout', text };
  if (/ECONNREFUSED|ECONNRESET|EHOSTUNREACH|ETIMEDOUT|Connection is closed|Stream isn't writeable|max retries|MaxRetriesPerRequest|ENOTFOUND|EPIPE/i.test(text)) {
    return { kind: 'source-unavailable', text };
  }
  return { kind: 'error', text };
}

/** A batch's failures (key -> error): rethrows the first. */
export function throwFirst(fails: Map<string, Error>): void {
  for (const e of fails.values()) throw e;
}

/** A batch's failures: rethrows the one for `key`, if any. */
export function throwFor(fails: Map<string, Error>, key: string): void {
  const e = fails.get(key);
  if (e) throw e;
}
