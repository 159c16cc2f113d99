/**
 * `rehome status --admin [HOST:]PORT` (a person's view of /status) and
 * `rehome sweeper pause|resume|rate N --admin [HOST:]PORT` and
 * `rehome phase hold|migrate|reverse --admin [HOST:]PORT`, each sending the admin token
 * (--admin-token, or REHOME_ADMIN_TOKEN) as `Authorization: Bearer TOKEN` when there is one.
 * Exit codes: 0 done, 1 the endpoint could not be reached or refused, 2 bad usage.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { ADMIN_TOKEN_ENV, adminToken, DEFAULTS } from '../config.js';
import { ConfigError } from '../errors.js';
import { describeEndpoint, parseHostPort } from '../upstream/endpoint.js';

const COMMON_OPTIONS = `  --admin [host:]port    the admin endpoint of a running rehome process (a port alone: ${DEFAULTS.adminHost})
  --admin-token TOKEN    sent as Authorization: Bearer TOKEN (default: $${ADMIN_TOKEN_ENV}, which keeps it
                         out of the process list); needed for sweeper and phase when the process has a
                         token, and for everything when its endpoint is bound beyond loopback
  -h, --help             this text

Exit code 0: done; 1: the endpoint could not be reached or refused (its answer is printed); 2: bad usage.`;

const USAGE = {
  status: `usage: rehome status --admin [host:]port [--admin-token TOKEN] [--json]

  Prints /status for a person. With phases, the fleet first (keys left read from the server keys
  move out of, rate and ETA from the sweeping process, the sweeper's settings, every process),
  then this process's own figures; any process of the fleet, a standby included, shows the same.

  --json                 print /status as JSON
${COMMON_OPTIONS}`,
  sweeper: `usage: rehome sweeper pause|resume|rate KEYS_PER_SEC --admin [host:]port [--admin-token TOKEN]

  Pauses, resumes or rate-limits (0: no limit) the sweeper. With phases, the setting is the
  fleet's: stored with the phase on the old server, followed by whichever process sweeps, and
  kept across phase switches, lease takeovers and restarts; any process takes it, one that does
  not sweep (hold, --no-sweep) included. Without phases, that one process's sweeper.

${COMMON_OPTIONS}`,
  phase: `usage: rehome phase hold|migrate|reverse --admin [host:]port [--admin-token TOKEN]
                   [--scope PATTERN]... [--scope-db N]...

  Switches the phase of every rehome process of the pair (ask any one of them).
  migrate with --scope/--scope-db migrates only those keys (a canary): glob patterns as SCAN
  MATCH takes them, and/or dbs; both repeatable. The flags give the whole scope: more than the
  scope in force widens it, fewer narrows it (keys that leave it move back to the old server).
  migrate with neither is the full migration.

${COMMON_OPTIONS}`,
} as const;

type Sub = keyof typeof USAGE;

/** Where to send the request, with what token, and the parsed flags; or the exit code (usage, --help). */
type Parsed = { endpoint: { host: string; port: number }; token: string | null; json: boolean; positionals: string[]; scope: string[]; scopeDbs: string[] } | number;

function usageError(sub: Sub, msg: string): number {
  process.stderr.write(`rehome ${sub}: ${msg} (see --help)\n`);
  return 2;
}

function parseAdminArgs(sub: Sub, argv: string[]): Parsed {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      options: {
        admin: { type: 'string' },
        'admin-token': { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        ...(sub === 'status' ? { json: { type: 'boolean' } } : {}),
        ...(sub === 'phase' ? { scope: { type: 'string', multiple: true }, 'scope-db': { type: 'string', multiple: true } } : {}),
      },
      strict: true,
      allowPositionals: sub !== 'status',
    }));
  } catch (e) {
    return usageError(sub, (e as Error).message.split('\n')[0]!);
  }
  if (values.help) {
    process.stdout.write(`${USAGE[sub]}\n`);
    return 0;
  }
  if (!values.admin) return usageError(sub, '--admin [host:]port is required');
  try {
    return {
      endpoint: parseHostPort('--admin', values.admin, DEFAULTS.adminHost),
      token: adminToken(values['admin-token'], process.env),
      json: values.json === true,
      positionals,
      scope: (values.scope as string[] | undefined) ?? [],
      scopeDbs: (values['scope-db'] as string[] | undefined) ?? [],
    };
  } catch (e) {
    if (e instanceof ConfigError) return usageError(sub, e.message);
    throw e;
  }
}

/** How long the admin endpoint may take to accept the connection: past it, it is not reachable. */
const CONNECT_TIMEOUT_MS = 5_000;
/**
 * How long an accepted request may take to be answered. A phase switch answers when the fleet has
 * switched: the gentle drain, the fence, the checks on both servers (each bounded by the servers'
 * command timeout) take seconds, more on a loaded machine. Waiting only the connect timeout, the
 * command said "cannot reach" while the switch went on.
 */
const ANSWER_TIMEOUT_MS = 60_000;

function request(method: string, at: { host: string; port: number }, path: string, token: string | null): Promise<{ code: number; body: string }> {
  return new Promise((resolve, reject) => {
    const headers = token === null ? {} : { authorization: `Bearer ${token}` };
    const req = http.request({ method, host: at.host, port: at.port, path, headers, timeout: CONNECT_TIMEOUT_MS }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
    });
    let connected = false;
    req.on('socket', (sock) => {
      sock.once('connect', () => {
        connected = true;
        sock.setTimeout(ANSWER_TIMEOUT_MS);
      });
    });
    req.on('timeout', () =>
      req.destroy(new Error(connected ? `connected, but no answer within ${ANSWER_TIMEOUT_MS / 1000} s` : 'timed out')));
    req.on('error', reject);
    req.end();
  });
}

/**
 * Sends the request; returns its answer, or null when it was not answered or refused for want of
 * the token (said on stderr).
 */
async function send(sub: Sub, p: Exclude<Parsed, number>, method: string, path: string): Promise<{ code: number; body: string } | null> {
  const where = describeEndpoint(p.endpoint);
  let r;
  try {
    r = await request(method, p.endpoint, path, p.token);
  } catch (e) {
    process.stderr.write(`rehome ${sub}: cannot reach ${where}: ${(e as Error).message}\n`);
    return null;
  }
  if (r.code === 401) {
    const why = p.token === null
      ? `it needs the admin token: pass --admin-token or set ${ADMIN_TOKEN_ENV}`
      : `the admin token was not accepted (--admin-token or ${ADMIN_TOKEN_ENV})`;
    process.stderr.write(`rehome ${sub}: ${where} refused the request (HTTP 401): ${why}\n`);
    return null;
  }
  return r;
}

function fmtDuration(s: number | null): string {
  if (s === null) return 'unknown';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

const perDb = (per: Record<string, number> | undefined): string => Object.entries(per ?? {}).map(([db, n]) => `db${db}=${n}`).join(' ');
const ago = (ms: number | null | undefined): string => (ms === null || ms === undefined ? '?' : `${(ms / 1000).toFixed(1)} s ago`);
const limit = (n: number | null | undefined): string => (n ? `limit ${n} keys/s` : 'no rate limit');

/** The fleet's lines of `rehome status`: what every process of the pair shows alike. */
function fleetLines(f: Record<string, any>): string[] {
  const lines: string[] = [];
  const rem = f.remaining;
  if (f.phase === 'hold' && rem) {
    const w = perDb(rem.per_db);
    lines.push(`remaining    nothing moves in hold; the old server holds ${rem.total} keys${w ? ` (${w})` : ''}: what rehome phase migrate would move`);
  } else if (rem) {
    const w = perDb(rem.per_db);
    lines.push(`remaining    ${rem.total} in the ${rem.server} server${w ? `  (${w})` : ''}${rem.error ? `  READ FAILED (${rem.error}); last read ${ago(rem.age_ms)}` : ''}`);
  } else {
    lines.push('remaining    not read yet');
  }
  const r = f.rate_reported;
  const sw = f.sweeper ?? {};
  if (f.phase === 'drained') lines.push('rate         0 keys/s, ETA 0s (drained)');
  else if (f.phase === 'hold') lines.push('rate         none (hold: nothing moves)');
  else if (f.phase === 'fencing') lines.push('rate         none (a phase switch is under way)');
  else if (sw.paused) lines.push('rate         none (the sweeper is paused; keys still move on first touch)');
  else if (r && r.stale) lines.push(`rate         ${f.rate_keys_per_s} keys/s as of ${ago(r.age_ms)} (stale: ${r.by} stopped reporting), ETA unknown`);
  else if (r) lines.push(`rate         ${f.rate_keys_per_s} keys/s, ETA ${fmtDuration(f.eta_s ?? null)} (reported by ${r.by} ${ago(r.age_ms)})`);
  else lines.push('rate         unknown (no process reports sweeping yet)');
  lines.push(`sweeper      ${sw.state}${sw.on ? ` on ${sw.on}` : ''}${sw.paused ? ` (${sw.pause_reason})` : ''}; ${limit(sw.rate_limit)} (fleet setting${sw.set_by ? `, set by ${sw.set_by}` : ''})`);
  return lines;
}

/** Renders /status for a person. */
export function renderStatus(st: Record<string, any>): string {
  const k = st.keys ?? {};
  const lines: string[] = [];
  lines.push(`phase        ${st.phase}${st.epoch !== null && st.epoch !== undefined ? ` (epoch ${st.epoch})` : ''}${st.drained_at ? ` (drained since ${st.drained_at})` : ''}${st.direction === 'new -> old' ? '  [keys move new -> old]' : ''}`);
  const fleet = st.fleet;
  if (st.scope) lines.push(...scopeLines(st.scope));
  if (fleet) lines.push(...fleetLines(fleet));
  const ph = st.phases;
  if (ph) {
    if (ph.shared && (ph.shared.phase !== st.phase || ph.shared.epoch !== st.epoch)) {
      lines.push(`shared phase ${ph.shared.phase}${ph.shared.next ? ` -> ${ph.shared.next}` : ''} (epoch ${ph.shared.epoch}, set by ${ph.shared.by})`);
    }
    const procs: any[] = ph.processes ?? [];
    const agree = procs.filter((p) => p.phase === ph.shared?.phase && p.epoch === ph.shared?.epoch).length;
    lines.push(`processes    ${procs.length} seen, ${agree} on ${ph.shared?.phase} (epoch ${ph.shared?.epoch}), ${procs.reduce((n, p) => n + (p.clients ?? 0), 0)} clients in all`);
    for (const p of procs) {
      lines.push(`  ${p.id}  ${p.phase} (epoch ${p.epoch})  ${p.clients} clients${p.sweeper ? `  sweeper ${p.sweeper}` : ''}  listen ${p.listen}${p.admin ? `  admin ${p.admin}` : ''}`);
    }
  }
  if (fleet) lines.push(`this process ${st.process_id ?? '?'}: the lines below are its own`);
  lines.push(`source       ${st.source} (redis ${st.versions?.source})${st.source_reachable === false ? '  UNREACHABLE' : ''}`);
  lines.push(`target       ${st.target} (redis ${st.versions?.target})`);
  lines.push(`moved        ${k.moved_on_touch ?? 0} on touch, ${k.moved_by_sweeper ?? 0} by the sweeper (${k.in_both_resolved ?? 0} found in both, target kept)`);
  if (!fleet) {
    // Without phases each process is on its own: its own count of what is left, and its rate.
    const per = perDb(k.remaining_per_db);
    lines.push(`remaining    ${k.remaining_total ?? 0} of ${k.initial_in_source ?? 0}${per ? `  (${per})` : ''}`);
    lines.push(`rate         ${st.rate_keys_per_s ?? 0} keys/s, ETA ${fmtDuration(st.eta_s ?? null)}`);
  }
  const sw = st.sweeper ?? {};
  lines.push(`${fleet ? 'own sweeper ' : 'sweeper     '} ${sw.state}${sw.pause_reason ? ` (${sw.pause_reason})` : ''}${sw.idle_reason ? ` (${sw.idle_reason})` : ''}${sw.batch_size ? `, batch ${sw.batch_size}, budget ${sw.budget_ms} ms` : ''}${sw.rate_limit ? `, limit ${sw.rate_limit} keys/s` : ''}`);
  const errs = Object.entries(st.errors_by_kind ?? {}).map(([kk, n]) => `${kk}=${n}`).join(' ');
  lines.push(`errors       ${errs || 'none'}; ${st.move_failures ?? 0} moves failed (clients got an error)`);
  if (st.big_keys?.total) {
    lines.push(`big keys     ${st.big_keys.total}`);
    for (const b of st.big_keys.listed.slice(0, 10)) {
      lines.push(`  db${b.db} ${b.key} ${(b.bytes / 1048576).toFixed(1)} MB in ${Math.round(b.ms)} ms${b.ok ? '' : ' FAILED'}`);
    }
  }
  if (st.source_restarted) lines.push(`WARNING      source restarted at ${st.source_restarted.at}: sweeper paused until resumed`);
  lines.push(`clients      ${st.clients}`);
  const sh = st.shared_connections;
  if (sh) {
    lines.push(`shared       ${sh.connections} connection(s) to the target, ${sh.commands} commands on them, ${sh.failures} lost with commands in flight${sh.last_failure ? ` (last: ${sh.last_failure})` : ''}`);
  }
  return lines.join('\n');
}

export async function runStatusCli(argv: string[]): Promise<number> {
  const p = parseAdminArgs('status', argv);
  if (typeof p === 'number') return p;
  const r = await send('status', p, 'GET', '/status');
  if (r === null) return 1;
  if (r.code !== 200) {
    process.stderr.write(`rehome status: ${describeEndpoint(p.endpoint)} answered HTTP ${r.code}: ${r.body.trim()}\n`);
    return 1;
  }
  try {
    process.stdout.write(p.json ? r.body : `${renderStatus(JSON.parse(r.body))}\n`);
  } catch (e) {
    process.stderr.write(`rehome status: ${describeEndpoint(p.endpoint)} did not answer with a status: ${(e as Error).message}\n`);
    return 1;
  }
  return 0;
}

export async function runSweeperCli(argv: string[]): Promise<number> {
  const p = parseAdminArgs('sweeper', argv);
  if (typeof p === 'number') return p;
  const [action, arg] = p.positionals;
  if (!action || !['pause', 'resume', 'rate'].includes(action) || (action === 'rate' ? p.positionals.length !== 2 : p.positionals.length !== 1)) {
    return usageError('sweeper', 'expected pause, resume or rate KEYS_PER_SEC');
  }
  const path = action === 'rate' ? `/sweeper/rate?keys_per_sec=${encodeURIComponent(arg!)}` : `/sweeper/${action}`;
  const r = await send('sweeper', p, 'POST', path);
  if (r === null) return 1;
  process.stdout.write(r.body);
  return r.code === 200 ? 0 : 1;
}

export async function runPhaseCli(argv: string[]): Promise<number> {
  const p = parseAdminArgs('phase', argv);
  if (typeof p === 'number') return p;
  const [to] = p.positionals;
  if (!to || !['hold', 'migrate', 'reverse'].includes(to) || p.positionals.length !== 1) {
    return usageError('phase', 'expected hold, migrate or reverse');
  }
  if (to !== 'migrate' && (p.scope.length > 0 || p.scopeDbs.length > 0)) return usageError('phase', '--scope and --scope-db are for migrate only');
  const q = [`to=${to}`, ...p.scope.map((s) => `scope=${encodeURIComponent(s)}`), ...p.scopeDbs.map((d) => `scope_db=${encodeURIComponent(d)}`)];
  const r = await send('phase', p, 'POST', `/phase?${q.join('&')}`);
  if (r === null) return 1;
  process.stdout.write(r.body);
  return r.code === 200 ? 0 : 1;
}

/** A canary's lines: its scope's state, and each side's commands (src/proxy/scope-status.ts). */
function scopeLines(sc: Record<string, any>): string[] {
  const c = sc.commands ?? {};
  return [
    `scope        ${sc.summary}`,
    `  in scope   ${c.in_scope ?? 0} commands (new server, ${sc.errors?.in_scope ?? 0} errors, avg ${sc.in_scope_avg_ms ?? '-'} ms); out of scope ${c.out_of_scope ?? 0} (old server, ${sc.errors?.out_of_scope ?? 0} errors, avg ${sc.out_of_scope_avg_ms ?? '-'} ms); ${c.cross_scope_refused ?? 0} refused (CROSSSCOPE)`,
  ];
}
