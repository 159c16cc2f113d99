/**
 * `rehome status --admin HOST:PORT` (a person's view of /status) and
 * `rehome sweeper pause|resume|rate N --admin HOST:PORT` and
 * `rehome phase hold|migrate|reverse --admin HOST:PORT`.
 */
import http from 'node:http';
import { parseArgs } from 'node:util';
import { parseHostPort } from '../upstream/endpoint.js';

function request(method: string, host: string, port: number, path: string): Promise<{ code: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request({ method, host, port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve({ code: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

function fmtDuration(s: number | null): string {
  if (s === null) return 'unknown';
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** Renders /status for a person. */
export function renderStatus(st: Record<string, any>): string {
  const k = st.keys ?? {};
  const lines: string[] = [];
  lines.push(`phase        ${st.phase}${st.epoch !== null && st.epoch !== undefined ? ` (epoch ${st.epoch})` : ''}${st.drained_at ? ` (drained since ${st.drained_at})` : ''}${st.direction === 'new -> old' ? '  [keys move new -> old]' : ''}`);
  const ph = st.phases;
  if (ph) {
    if (ph.shared && (ph.shared.phase !== st.phase || ph.shared.epoch !== st.epoch)) {
      lines.push(`shared phase ${ph.shared.phase}${ph.shared.next ? ` -> ${ph.shared.next}` : ''} (epoch ${ph.shared.epoch}, set by ${ph.shared.by})`);
    }
    const procs: any[] = ph.processes ?? [];
    const agree = procs.filter((p) => p.phase === ph.shared?.phase && p.epoch === ph.shared?.epoch).length;
    lines.push(`processes    ${procs.length} seen, ${agree} on ${ph.shared?.phase} (epoch ${ph.shared?.epoch}), ${procs.reduce((n, p) => n + (p.clients ?? 0), 0)} clients in all`);
    for (const p of procs) {
      lines.push(`  ${p.id}  ${p.phase} (epoch ${p.epoch})  ${p.clients} clients  listen ${p.listen}${p.admin ? `  admin ${p.admin}` : ''}`);
    }
  }
  lines.push(`source       ${st.source} (redis ${st.versions?.source})${st.source_reachable === false ? '  UNREACHABLE' : ''}`);
  lines.push(`target       ${st.target} (redis ${st.versions?.target})`);
  lines.push(`moved        ${k.moved_on_touch ?? 0} on touch, ${k.moved_by_sweeper ?? 0} by the sweeper (${k.in_both_resolved ?? 0} found in both, target kept)`);
  const per = Object.entries(k.remaining_per_db ?? {}).map(([db, n]) => `db${db}=${n}`).join(' ');
  lines.push(`remaining    ${k.remaining_total ?? 0} of ${k.initial_in_source ?? 0}${per ? `  (${per})` : ''}`);
  lines.push(`rate         ${st.rate_keys_per_s ?? 0} keys/s, ETA ${fmtDuration(st.eta_s ?? null)}`);
  const sw = st.sweeper ?? {};
  lines.push(`sweeper      ${sw.state}${sw.pause_reason ? ` (${sw.pause_reason})` : ''}${sw.batch_size ? `, batch ${sw.batch_size}, budget ${sw.budget_ms} ms` : ''}${sw.rate_limit ? `, limit ${sw.rate_limit} keys/s` : ''}`);
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
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options: { admin: { type: 'string' }, json: { type: 'boolean' } }, strict: true }));
  } catch (e) {
    process.stderr.write(`rehome status: ${(e as Error).message}\n`);
    return 2;
  }
  if (!values.admin) {
    process.stderr.write('rehome status: --admin HOST:PORT is required\n');
    return 2;
  }
  const a = parseHostPort('--admin', values.admin);
  try {
    const r = await request('GET', a.host, a.port, '/status');
    if (r.code !== 200) throw new Error(`HTTP ${r.code}`);
    process.stdout.write(values.json ? r.body : `${renderStatus(JSON.parse(r.body))}\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`rehome status: cannot reach ${values.admin}: ${(e as Error).message}\n`);
    return 1;
  }
}

export async function runSweeperCli(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { admin: { type: 'string' } }, strict: true, allowPositionals: true }));
  } catch (e) {
    process.stderr.write(`rehome sweeper: ${(e as Error).message}\n`);
    return 2;
  }
  const [action, arg] = positionals;
  if (!values.admin || !action || !['pause', 'resume', 'rate'].includes(action) || (action === 'rate' && !arg)) {
    process.stderr.write('usage: rehome sweeper pause|resume|rate KEYS_PER_SEC --admin HOST:PORT\n');
    return 2;
  }
  const a = parseHostPort('--admin', values.admin);
  const path = action === 'rate' ? `/sweeper/rate?keys_per_sec=${encodeURIComponent(arg!)}` : `/sweeper/${action}`;
  try {
    const r = await request('POST', a.host, a.port, path);
    process.stdout.write(r.body);
    return r.code === 200 ? 0 : 1;
  } catch (e) {
    process.stderr.write(`rehome sweeper: cannot reach ${values.admin}: ${(e as Error).message}\n`);
    return 1;
  }
}

export async function runPhaseCli(argv: string[]): Promise<number> {
  let values;
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({ args: argv, options: { admin: { type: 'string' } }, strict: true, allowPositionals: true }));
  } catch (e) {
    process.stderr.write(`rehome phase: ${(e as Error).message}\n`);
    return 2;
  }
  const [to] = positionals;
  if (!values.admin || !to || !['hold', 'migrate', 'reverse'].includes(to) || positionals.length !== 1) {
    process.stderr.write('usage: rehome phase hold|migrate|reverse --admin HOST:PORT\n');
    return 2;
  }
  const a = parseHostPort('--admin', values.admin);
  try {
    const r = await request('POST', a.host, a.port, `/phase?to=${to}`);
    process.stdout.write(r.body);
    return r.code === 200 ? 0 : 1;
  } catch (e) {
    process.stderr.write(`rehome phase: cannot reach ${values.admin}: ${(e as Error).message}\n`);
    return 1;
  }
}
