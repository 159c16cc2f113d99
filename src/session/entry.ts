/** One request's place in a client's reply order (session/reply-order.ts). */
import { ShareKind } from '../commands/table.js';
import type { Request } from '../resp/request-framer.js';
import type { SideMark } from './scope-routing.js';

export const enum St {
  Waiting,
  Forwarded,
  Done,
}

/** Transforms the target's reply to an entry before it goes to the client. */
export type ReplyHook = (reply: Buffer, e: Entry) => Buffer;

/** One request's place in the reply order. */
export class Entry {
  state = St.Waiting;
  reply: Buffer | null = null;
  /** Pending pre-forward step (moves, source reads); the entry waits in `waiting` until it ends. */
  pre: Promise<void> | null = null;
  hook: ReplyHook | null = null;
  /** Bytes to send instead of req.raw (rewritten requests). */
  bytes: Buffer | null = null;
  /** Reply already known: nothing is sent to the target. */
  local = false;
  /** The pre step failed with this error reply; nothing is sent (a MULTI is poisoned). */
  failed: Buffer | null = null;
  /** The target's reply is dropped (rehome's own requests). */
  swallow = false;
  /** Runs as the client's own, but its reply is not written (a request replayed: carry.ts). */
  silent = false;
  /** Queued inside MULTI. */
  inMulti = false;
  /** Some of the reply already went to the client (streamed while at the front). */
  streaming = false;
  /** RESP3 (un)subscribe: its reply is the first acknowledgement push (reply-order.ts). */
  pushReply = false;
  /** Pub/sub or MONITOR stream: every reply on the own connection while it lasts belongs to it. */
  stream = false;
  streamEnded = false;
  /** Replies of a stream waiting for the entry to reach the front. */
  pending: Buffer[] | null = null;
  /** When the request was framed, for sampled latency (0: not sampled). */
  t0 = 0;
  /** A canary migration: the command's side of the scope, for each side's errors and time. */
  side: SideMark | null = null;
  /**
   * Runs on the target's reply (after `hook`) before it goes to the client, for a reply that
   * needs reads of the source first (INFO inside an EXEC: keyspace.ts).
   */
  post: ((reply: Buffer) => Promise<Buffer>) | null = null;
  /** For the proxy's own requests (swallow): sees the reply. */
  onReply: ((reply: Buffer) => void) | null = null;
  /** May travel on the shared lane (the table's answer, from dispatch's one lookup). */
  share: ShareKind = ShareKind.No;
  /** Sent on the client's shared lane, not its own connection. */
  shared = false;
  /** A SELECT sent on a shared lane: the db it selects, whose lane it takes (-1: the client's db). */
  laneDb = -1;
  /**
   * The proxy's own ordering barrier (send-queue.ts): nothing after it is sent until every
   * command of this client on that connection (the shared lane or its own) has its reply.
   */
  barrier: 'shared' | 'own' | null = null;

  constructor(readonly req: Request | null) {}
}
