/**
 * Who may use the admin endpoint. The endpoint can switch the whole fleet's phase, so:
 *
 *   request                          loopback, no token   loopback, token   beyond loopback (token)
 *   GET /healthz, GET /readyz        open                 open              open
 *   GET / (the dashboard page)       open                 open              open
 *   GET /status, /metrics, /latency  open                 open              token
 *   anything else (POST ...)         open                 token             token
 *
 * Beyond loopback without a token the endpoint does not start (src/config.ts refuses the flags,
 * startAdmin refuses a hand-built config). The probes stay open everywhere: load balancers and
 * orchestrators often cannot send a header, and they change nothing. The dashboard page is open
 * because a browser cannot send a header when it opens a page, and the page holds no figures: it
 * asks for the token itself before it reads /status where that needs one.
 */
import { createHash, timingSafeEqual } from 'node:crypto';

/** What a request needs: open, or the token. */
export function needsToken(method: string, path: string, opts: { token: boolean; loopback: boolean }): boolean {
  if (!opts.token) return false;
  const read = method === 'GET';
  if (read && (path === '/healthz' || path === '/readyz' || path === '/')) return false;
  return !read || !opts.loopback;
}

/** Why a request was refused: no Authorization header, or one that does not carry the token. */
export type TokenRefusal = 'missing' | 'invalid';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

/**
 * The admin token, checked in constant time: both sides are hashed first, so timingSafeEqual
 * compares two 32-byte digests and the time taken says nothing about the token's length or bytes.
 */
export class BearerToken {
  private readonly digest: Buffer;

  constructor(token: string) {
    this.digest = digest(token);
  }

  /** null when `authorization` is `Bearer <the token>`; else why not. */
  check(authorization: string | undefined): TokenRefusal | null {
    if (authorization === undefined || authorization === '') return 'missing';
    const m = /^Bearer +(\S+) *$/i.exec(authorization);
    if (!m) return 'invalid';
    return timingSafeEqual(digest(m[1]!), this.digest) ? null : 'invalid';
  }
}

const LOOPBACK_HOST = /^(localhost|127(?:\.\d{1,3}){3}|\[::1\])(?::\d+)?$/i;

/**
 * Why a request that a web page made the operator's browser send is refused, or null. Without a
 * token, loopback is the only lock, and a page on any site can make the browser send a POST to
 * 127.0.0.1 (cross-site request forgery), or read from it once its own name resolves to 127.0.0.1
 * (DNS rebinding). So, on a loopback endpoint, the Host header must name loopback; and anything
 * but a read must not come from another origin (browsers send Origin with every POST; the CLI,
 * curl and scripts send none).
 */
export function browserAttack(method: string, headers: { host?: string | undefined; origin?: string | undefined }, loopback: boolean): string | null {
  const host = headers.host ?? '';
  if (loopback && !LOOPBACK_HOST.test(host)) {
    return `refused: the admin endpoint listens on loopback, but this request names host '${host}' (a web page's DNS rebinding?)`;
  }
  const origin = headers.origin;
  if (method !== 'GET' && origin !== undefined && origin !== `http://${host}`) {
    return `refused: a request from the web page ${origin} (only the dashboard at http://${host}/ may change anything)`;
  }
  return null;
}
