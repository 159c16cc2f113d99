/**
 * Circuit breaker for the path source -> target: a MIGRATE that failed after running into its
 * timeout held the source for that long, and the next one would too. For one timeout's length
 * (2 s at least) after such a failure, touches do not MIGRATE (their keys are probed and the
 * client gets the error at once); then one MIGRATE tries the path again (half-open) while the
 * others still fail fast. A success closes it.
 */
import { classify } from './move-errors.js';

/** Shortest time the breaker stays open after a MIGRATE timed out. */
const PATH_DOWN_MIN_MS = 2_000;

export class PathBreaker {
  private downUntil = 0;
  private downText = '';
  private trying = false;

  constructor(
    /** MIGRATE's own timeout, for calls that don't give one. */
    private readonly defaultTimeoutMs: number,
    /** Called each time the breaker opens (counted as a 'path-down' error). */
    private readonly opened: () => void,
  ) {}

  /** Open now: a retry would hold the source as long again. */
  get open(): boolean {
    return this.downUntil > Date.now();
  }

  /** The breaker's error text while it is open (this caller must not MIGRATE), else null. */
  down(): string | null {
    if (this.downUntil === 0) return null;
    if (Date.now() < this.downUntil || this.trying) return this.downText;
    this.trying = true; // half-open: this caller tries the path
    return null;
  }

  /** Feeds one MIGRATE's outcome to the breaker: a failure that took its whole timeout opens it. */
  result(ms: number, err: unknown, timeoutMs: number | undefined): void {
    const limit = timeoutMs ?? this.defaultTimeoutMs;
    const io = err !== null && classify(err).kind === 'ioerr';
    // A timeout opens it; any I/O error while it is open (the half-open try) keeps it open.
    if (io && (ms >= limit * 0.8 || this.downUntil !== 0)) {
      const window = Math.max(limit, PATH_DOWN_MIN_MS);
      this.downUntil = Date.now() + window;
      this.downText = `IOERR the source's MIGRATE to the target timed out after ${Math.round(ms)} ms; moves are not retried for ${window} ms (${classify(err).text})`;
      this.trying = false;
      this.opened();
      return;
    }
    if (this.downUntil !== 0 && !io) {
      this.downUntil = 0;
      this.trying = false;
    }
  }
}
