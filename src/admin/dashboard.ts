/**
 * GET /: the cutover dashboard, one static page (src/admin/dashboard.html, copied next to this
 * file by `npm run build`) that polls /status and /latency from the browser. It holds no data of
 * its own, so it is served without the token; what it reads and switches is guarded as usual.
 */
import { readFileSync } from 'node:fs';
import type http from 'node:http';

let page: Buffer | null = null;

/**
 * Everything the page uses is inline and it talks only to the endpoint that served it; the policy
 * says so, so that nothing injected into it could load or send anything elsewhere, and no other
 * site may frame it to trick a click on a switch button.
 */
const HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'cache-control': 'no-store',
  'content-security-policy':
    "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

export function serveDashboard(res: http.ServerResponse): void {
  // Read once: the file does not change under a running process.
  page ??= readFileSync(new URL('./dashboard.html', import.meta.url));
  res.writeHead(200, HEADERS);
  res.end(page);
}
