/**
 * `npm run rehearse`: the README's runbook, performed end to end against throwaway local servers.
 *
 * Starts an old and a new redis-server (both with requirepass, as production has), seeds the old
 * one in three dbs, and runs a checking workload (src/rehearse/workload.ts) whose clients first
 * talk to the old server directly. Then it walks the runbook with two rehome processes, printing
 * each step and command as the runbook words it: plan; deploy in hold; swap the connection
 * strings to rehome; check CLIENT LIST; switch to migrate; watch status and /metrics; roll back
 * (reverse, which ends in hold); migrate again; wait for drained; verify; swap the connection
 * strings to the new server; retire rehome. Finally it checks every value against the workload's
 * model, that no key is in both servers and that the old server is empty.
 *
 * Exit 0 only when every step did what the runbook says, nothing was lost or wrong, and no client
 * saw an error; it prints the error count and kinds either way. 1 otherwise, 2 for bad usage.
 *
 *   --quick             fewer keys and clients, a faster sweeper (for tests)
 *   --keys N            keys to seed, spread over three dbs (default 30000; quick 3000)
 *   --clients N         workload clients, spread over both rehome processes (default 10; quick 4)
 *   --tamper change|delete   test only: before the final check, change (or delete) one key on
 *                       the new server behind the workload's back, so the check must fail
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Redis } from 'ioredis';
import { Children, ensureRedisServer, freePort } from './demo/processes.js';
import { checkServer, seed, Workload, type DbModel, type Endpoint } from './rehearse/workload.js';

const DBS = [0, 1, 2];
const PASSWORD = 'rehearse-secret';
const TOKEN = 'rehearse-admin-token';
/** The runbook's metrics grep (step 6). */
const METRICS_GREP = /^rehome_(phase|drained|keys_remaining|move_rate|move_errors_total|move_failures_total)/;
const CLI = fileURLToPath(new URL('./cli.js', import.meta.url));

const children = new Children();
let workdir = '';
let workload: Workload | null = null;
/** Steps that did not do what the runbook says. */
const failures: string[] = [];

function say(line = ''): void {
  process.stdout.write(`${line}\n`);
}

/** Prints a step's title; the workload's errors from now on are counted under it. */
function step(title: string): void {
  say(`\n${title}`);
  if (workload) workload.stats.during = title.replace(/:.*$/, '');
}

function check(ok: boolean, what: string): boolean {
  say(`  ${ok ? 'ok' : 'FAILED'}: ${what}`);
  if (!ok) failures.push(what);
  return ok;
}

/** Runs `rehome ARGS` as an operator would; prints the command with the runbook's variable names. */
function rehome(shown: string, args: string[]): Promise<{ code: number | null; out: string }> {
  say(`  $ rehome ${shown}`);
  const p = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  return new Promise((resolve) => {
    p.once('close', (code) => {
      for (const l of out.trimEnd().split('\n')) if (l !== '') say(`    ${l}`);
      resolve({ code, out });
    });
  });
}

/**
 * redis-cli, as the runbook runs it (the URL's form matters: see README, Runbook); `grep` filters
 * the lines printed and returned, as the runbook's pipe does.
 */
function redisCli(shown: string, url: string, args: string[], grep?: { shown: string; keep: (line: string) => boolean }): string {
  say(`  $ redis-cli -u ${shown} ${args.join(' ')}${grep ? ` | ${grep.shown}` : ''}`);
  const r = spawnSync('redis-cli', ['--no-auth-warning', '-u', url, ...args], { encoding: 'utf8' });
  const lines = `${r.stdout ?? ''}${r.stderr ?? ''}`.trimEnd().split('\n').filter((l) => l !== '' && (!grep || grep.keep(l)));
  for (const l of lines) say(`    ${l}`);
  return lines.join('\n');
}

function httpGet(port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5_000, headers: { authorization: `Bearer ${TOKEN}` } }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => resolve(body));
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

async function status(admin: number): Promise<Record<string, any>> {
  return JSON.parse(await httpGet(admin, '/status')) as Record<string, any>;
}

/** Waits until every admin endpoint's /status satisfies `pred`; false after timeoutMs. */
async function waitAll(admins: number[], pred: (s: Record<string, any>) => boolean, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const all = await Promise.all(admins.map((a) => status(a).catch(() => null)));
    if (all.every((s) => s !== null && pred(s))) return true;
    await new Promise((r) => setTimeout(r, 200));
  }
  return false;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Changes one key of the new server behind the workload's back (--tamper). */
async function tamper(how: 'change' | 'delete', ep: Endpoint, models: DbModel[]): Promise<void> {
  const m = models[0]!;
  const c = new Redis({ host: ep.host, port: ep.port, password: PASSWORD, db: m.db, maxRetriesPerRequest: 0 });
  try {
    if (how === 'change') {
      const k = [...m.counters.keys()][0]!;
      await c.incrby(k, 1000);
      say(`  (--tamper change: INCRBY ${k} 1000 on the new server, behind the workload's back)`);
    } else {
      const k = [...m.sets.keys()][0]!;
      await c.del(k);
      say(`  (--tamper delete: DEL ${k} on the new server, behind the workload's back)`);
    }
  } finally {
    c.disconnect();
  }
}

interface Options {
  keys: number;
  clients: number;
  sweepRate: number;
  tamper: 'change' | 'delete' | null;
}

function parseOptions(argv: string[]): Options | string {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      options: { quick: { type: 'boolean' }, keys: { type: 'string' }, clients: { type: 'string' }, tamper: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return (e as Error).message.split('\n')[0]!;
  }
  if (values.help) return 'usage: npm run rehearse -- [--quick] [--keys N] [--clients N] [--tamper change|delete]';
  const int = (v: string | undefined, def: number, min: number, name: string): number | string => {
    if (v === undefined) return def;
    return /^\d+$/.test(v) && Number(v) >= min ? Number(v) : `--${name} must be an integer >= ${min}`;
  };
  const keys = int(values.keys, values.quick ? 3_000 : 30_000, 6, 'keys');
  const clients = int(values.clients, values.quick ? 4 : 10, 2, 'clients');
  if (typeof keys === 'string') return keys;
  if (typeof clients === 'string') return clients;
  const t = values.tamper;
  if (t !== undefined && t !== 'change' && t !== 'delete') return '--tamper must be change or delete';
  // Slow enough that the rollback comes while keys are still moving.
  return { keys, clients, sweepRate: Math.max(1_000, Math.round(keys / 4)), tamper: t ?? null };
}

async function main(opts: Options): Promise<number> {
  if (!ensureRedisServer(say)) return 1;
  workdir = mkdtempSync(join(tmpdir(), 'rehome-rehearse-'));
  const pw = ['--requirepass', PASSWORD];
  const [oldS, newS] = await Promise.all([children.redis('old', workdir, pw), children.redis('new', workdir, pw)]);
  // redis-cli 7.0 needs the user name in the URL (default:pass@; :pass@ gets NOAUTH).
  const OLD = `redis://default:${PASSWORD}@127.0.0.1:${oldS.port}`;
  const NEW = `redis://default:${PASSWORD}@127.0.0.1:${newS.port}`;
  const oldEp: Endpoint = { host: '127.0.0.1', port: oldS.port, password: PASSWORD };
  const newEp: Endpoint = { host: '127.0.0.1', port: newS.port, password: PASSWORD };
  process.env.REHOME_ADMIN_TOKEN = TOKEN;
  say(`OLD=${OLD}   # old redis-server (pid ${oldS.pid})`);
  say(`NEW=${NEW}   # new redis-server (pid ${newS.pid})`);
  say(`export REHOME_ADMIN_TOKEN=${TOKEN}`);

  const perDb = Math.ceil(opts.keys / DBS.length);
  const models = await seed(oldEp, DBS, perDb);
  say(`seeded the old server: ${perDb * DBS.length} keys in db ${DBS.join(', ')} (counters and sets)`);
  workload = new Workload(models, opts.clients, [oldEp]);
  say(`workload: ${workload.size} clients on the old server directly, counting every error they see`);
  await sleep(500);

  step('step 1. Run rehome plan');
  const plan = await rehome('plan --source "$OLD" --target "$NEW"', ['plan', '--source', OLD, '--target', NEW]);
  if (!check(plan.code === 0 && /plan: ready to migrate/.test(plan.out), 'exit 0 and "plan: ready to migrate"')) return finish(models, newEp, oldEp, opts);

  step('step 2. Deploy rehome in hold');
  check(/^(\(integer\) )?0$/.test(redisCli('"$OLD"', OLD, ['EXISTS', '__rehome:phase'])), 'no phase left over from an earlier rehearsal');
  const procs: Array<{ listen: number; admin: number; pid: number; proc: import('node:child_process').ChildProcess }> = [];
  for (let i = 0; i < 2; i++) {
    const [listen, admin] = [await freePort(), await freePort()];
    const args = ['--phase', 'hold', '--source', OLD, '--target', NEW, '--listen', `127.0.0.1:${listen}`, '--admin', `127.0.0.1:${admin}`, '--progress', 'log', '--sweep-rate', String(opts.sweepRate)];
    say(`  $ rehome --phase hold --source "$OLD" --target "$NEW" --listen 127.0.0.1:${listen} --admin 127.0.0.1:${admin} --progress log --sweep-rate ${opts.sweepRate}`);
    const r = await children.rehome(CLI, args);
    say(`    rehome: listening on 127.0.0.1:${listen} (pid ${r.pid})`);
    procs.push({ listen, admin, pid: r.pid, proc: r.proc });
  }
  const admins = procs.map((p) => p.admin);
  const ADMIN = `127.0.0.1:${admins[0]}`;
  const ADMIN2 = `127.0.0.1:${admins[1]}`;
  const st = await rehome(`status --admin ${ADMIN}`, ['status', '--admin', ADMIN]);
  check(st.code === 0 && /hold/.test(st.out), 'rehome status: phase hold');
  check(await waitAll(admins, (s) => s.phases?.processes?.length === 2, 15_000), 'both processes seen in the fleet');

  step("step 3. Swap every service's connection string to rehome");
  const viaRehome: Endpoint[] = procs.map((p) => ({ host: '127.0.0.1', port: p.listen, password: PASSWORD }));
  workload.swap(viaRehome);
  await workload.swapped();
  say(`  the ${workload.size} clients reconnected through the two rehome processes`);
  await sleep(1_000);

  step('step 4. Check in rehome status that all clients come through rehome');
  // An unnamed connection that ran RESTORE (or nothing after its AUTH: cmd=NULL) is the new
  // server's own MIGRATE connection to the old one (plan's probe of the rollback direction; the
  // server keeps it for 10 s), not a client.
  const keep = (l: string) => l !== '' && !/ name=rehome-/.test(l) && !/ name= .* cmd=(restore|restore-asking|NULL) /.test(l);
  // A client that reconnected after a timeout may still hold its old connection for a moment on a
  // loaded machine: as an operator would, look again for a few seconds before calling it a failure.
  const countClients = async () => (await Promise.all(admins.map(status))).reduce((n, s) => n + Number(s.clients ?? 0), 0);
  const settleUntil = Date.now() + 15_000;
  for (;;) {
    const quiet = spawnSync('redis-cli', ['--no-auth-warning', '-u', OLD, 'CLIENT', 'LIST'], { encoding: 'utf8' });
    const others = (quiet.stdout ?? '').split('\n').filter(keep);
    if ((others.length === 1 && (await countClients()) === workload.size) || Date.now() > settleUntil) break;
    await sleep(500);
  }
  const direct = redisCli('"$OLD"', OLD, ['CLIENT', 'LIST'], {
    shown: "grep -v ' name=rehome-' | grep -Ev ' cmd=(restore|restore-asking|NULL) '",
    keep,
  }).split('\n');
  check(direct.length === 1 && /cmd=client\|list/.test(direct[0]!), 'on the old server, no connection but rehome\'s and this redis-cli\'s');
  const clients = await countClients();
  check(clients === workload.size, `rehome status: ${clients} clients on the two processes (the workload has ${workload.size})`);

  step('step 5. Switch to migrate');
  const m1 = await rehome(`phase migrate --admin ${ADMIN}`, ['phase', 'migrate', '--admin', ADMIN]);
  check(m1.code === 0, 'rehome phase migrate: exit 0');
  check(await waitAll(admins, (s) => s.phase === 'migrate', 15_000), 'every process on migrate');

  step('step 6. Watch rehome status or /metrics');
  await sleep(1_000);
  await rehome(`status --admin ${ADMIN}`, ['status', '--admin', ADMIN]);
  say(`  $ curl -s -H "Authorization: Bearer $REHOME_ADMIN_TOKEN" "http://${ADMIN}/metrics" | grep -E '${METRICS_GREP.source}'`);
  const metrics = (await httpGet(admins[0]!, '/metrics')).split('\n').filter((l) => METRICS_GREP.test(l));
  for (const l of metrics) say(`    ${l}`);
  check(metrics.some((l) => l.startsWith('rehome_move_errors_total')), 'the metrics grep shows the error counters (at 0 when there are none)');

  step('rollback (step 5): rehome phase reverse, then back to migrate');
  const rv = await rehome(`phase reverse --admin ${ADMIN2}`, ['phase', 'reverse', '--admin', ADMIN2]);
  check(rv.code === 0, 'rehome phase reverse: exit 0');
  check(await waitAll(admins, (s) => s.phase === 'hold', 120_000), 'rollback complete: every process back in hold');
  check(redisCli('"$NEW"', NEW, ['INFO', 'keyspace']).split('\n').every((l) => !/^db\d+:/.test(l)), 'the new server is empty again');
  await sleep(1_000);
  step('step 5 again. Switch to migrate');
  const m2 = await rehome(`phase migrate --admin ${ADMIN}`, ['phase', 'migrate', '--admin', ADMIN]);
  check(m2.code === 0, 'rehome phase migrate (again): exit 0');

  step('step 7. Wait for drained');
  check(await waitAll(admins, (s) => s.phase === 'drained', 300_000), 'every process drained');
  const drained = (await httpGet(admins[0]!, '/metrics')).split('\n').filter((l) => /^rehome_drained/.test(l));
  for (const l of drained) say(`    ${l}`);
  check(drained.includes('rehome_drained 1'), 'rehome_drained 1');

  step('step 8. Run rehome verify');
  const v = await rehome('verify --source "$OLD" --target "$NEW"', ['verify', '--source', OLD, '--target', NEW]);
  check(v.code === 0, 'rehome verify: exit 0');

  step('step 9. Swap the connection strings to the new server');
  workload.swap([newEp]);
  await workload.swapped();
  check(await waitAll(admins, (s) => Number(s.clients) === 0, 15_000), 'rehome status: clients 0 on every process');
  const left = redisCli('"$NEW"', NEW, ['CLIENT', 'LIST'], { shown: "grep ' name=rehome-e[0-9]*-client'", keep: (l) => / name=rehome-e\d+-client/.test(l) });
  check(left === '', 'no client connection of rehome left on the new server');
  await sleep(1_000);

  step('step 10. Retire rehome');
  for (const p of procs) {
    say(`  $ kill -TERM ${p.pid}`);
    await children.stop(p.proc, 'SIGTERM', 10_000);
    check(p.proc.exitCode === 0, `rehome (pid ${p.pid}) exited 0`);
  }
  redisCli('"$OLD"', OLD, ['DEL', '__rehome:phase']);
  return finish(models, newEp, oldEp, opts);
}

/** Stops the workload, checks every value, prints the summary; the exit code. */
async function finish(models: DbModel[], newEp: Endpoint, oldEp: Endpoint, opts: Options): Promise<number> {
  await workload?.stop();
  const w = workload!.stats;
  step('checks');
  if (opts.tamper) await tamper(opts.tamper, newEp, models);
  const content = await checkServer(newEp, models);
  for (const l of content.lines) say(`  ! ${l}`);
  const oldLeft = await checkServer(oldEp, models.map((m) => ({ db: m.db, counters: new Map(), sets: new Map() })));
  const v = await rehome('verify --source "$OLD" --target "$NEW"', ['verify', '--source', `redis://default:${PASSWORD}@127.0.0.1:${oldEp.port}`, '--target', `redis://default:${PASSWORD}@127.0.0.1:${newEp.port}`]);
  const errors = workload!.errors;
  const kinds = [...w.errorsByKind].map(([k, n]) => `${n} ${k}`).join(', ') || 'none';
  say('\nsummary');
  say(`  workload     ${workload!.size} clients, ${w.ops} operations, ${w.wrong} wrong replies`);
  say(`  errors       ${errors} client-visible errors: ${kinds}`);
  for (const [k, msg] of w.firstMessage) say(`    ${k}, first: ${msg}`);
  say(`  errors during ${[...w.errorsDuring].map(([d, n]) => `${d}: ${n}`).join('; ') || '-'}`);
  for (const s of w.samples) say(`    ${s}`);
  say(`  new server   ${content.checked} keys checked against the workload's model: ${content.wrong} wrong or missing`);
  say(`  old server   ${oldLeft.wrong === 0 ? 'empty' : 'NOT empty'}; verify ${v.code === 0 ? 'ok (no key in both)' : 'FAILED'}`);
  say(`  steps        ${failures.length === 0 ? 'every step as the runbook says' : `${failures.length} not as the runbook says: ${failures.join('; ')}`}`);
  const ok = failures.length === 0 && errors === 0 && w.wrong === 0 && content.wrong === 0 && oldLeft.wrong === 0 && v.code === 0;
  say(ok ? 'PASS: nothing lost, every value right, no client saw an error' : 'FAIL');
  return ok ? 0 : 1;
}

let cleaning: Promise<void> | null = null;
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    await workload?.stop().catch(() => undefined);
    await children.stopAll('SIGKILL');
    if (workdir) rmSync(workdir, { recursive: true, force: true });
  })();
  return cleaning;
}

const parsed = parseOptions(process.argv.slice(2));
if (typeof parsed === 'string') {
  say(`rehearse: ${parsed}`);
  process.exit(parsed.startsWith('usage') ? 0 : 2);
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.on(sig, () => {
    say(`\nrehearse: ${sig}: stopping every process`);
    void cleanup().then(() => process.exit(1));
  });
}
main(parsed).then(
  async (code) => {
    await cleanup();
    process.exit(code);
  },
  async (e: Error) => {
    say(`rehearse: ${e.message}`);
    await cleanup();
    process.exit(1);
  },
);
