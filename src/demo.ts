/**
 * `npm run demo`: rehome's main job on an embedded default.
 *
 * Starts two throwaway redis-servers ("old" and "new") on free loopback ports, fills the old one
 * with a realistic mix of keys in several dbs, starts rehome in front of them (dist/cli.js, as an
 * operator would, sweeper on), runs a live read/write workload through rehome for the whole
 * migration, then runs verify, checks every key on the new server against the workload's model and
 * prints a summary. Every process and the temporary directory are cleaned up however it ends
 * (success, failure, Ctrl-C, SIGTERM). Exit 0 only when verify passes and the workload saw no error
 * and no wrong value.
 *
 * Environment: REHOME_DEMO_KEYS (keys to seed, default 200000), REHOME_DEMO_SWEEP_RATE (sweeper
 * keys/s limit, default none: slows the migration down to watch it).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import cliProgress from 'cli-progress';
import { parseSourceTarget } from './config.js';
import { keysPerDb, seedDb } from './demo/dataset.js';
import { Children, ensureRedisServer, freePort } from './demo/processes.js';
import { checkContent, quantile, Workload, type DbModel } from './demo/workload.js';
import { formatVerifyReport, verify } from './tools/verify.js';

const CLIENTS_PER_DB = 2;
const DRAIN_TIMEOUT_MS = 300_000;
/** How long the workload keeps going once the source is drained (pure pass-through). */
const AFTER_DRAINED_MS = 1_000;

const children = new Children();
let workdir = '';
let workload: Workload | null = null;
let cleaning: Promise<void> | null = null;

function say(line: string): void {
  process.stdout.write(`${line}\n`);
}

const fmt = (n: number): string => n.toLocaleString('en-US');
const ms = (x: number): string => `${x.toFixed(2)} ms`;

function intEnv(name: string, def: number, min: number): number {
  const v = process.env[name];
  if (v === undefined || v === '') return def;
  if (!/^\d+$/.test(v) || Number(v) < min) {
    say(`demo: ${name} must be an integer >= ${min}, got '${v}'`);
    process.exit(2);
  }
  return Number(v);
}

/** Stops the workload and every child, waits until they have exited, removes the temp dir. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    workload?.abort();
    await children.stopAll('SIGKILL');
    if (workdir) rmSync(workdir, { recursive: true, force: true });
  })();
  return cleaning;
}

function getJson(port: number, path: string): Promise<Record<string, any>> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, timeout: 5_000 }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => {
        try {
          resolve(JSON.parse(body) as Record<string, any>);
        } catch (e) {
          reject(e as Error);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

/** A progress bar on a terminal, else a log line per second. Returns update and stop. */
function progressDisplay(total: number): { update: (st: Record<string, any>, w: Workload) => void; stop: () => void } {
  const fields = (st: Record<string, any>, w: Workload) => ({
    rate: fmt(st.rate_keys_per_s ?? 0),
    touch: fmt(st.keys?.moved_on_touch ?? 0),
    sweeper: fmt(st.keys?.moved_by_sweeper ?? 0),
    ops: fmt(w.stats.ops),
    errors: w.stats.errors + w.stats.wrong,
  });
  const moved = (st: Record<string, any>): number => Number(st.keys?.moved_on_touch ?? 0) + Number(st.keys?.moved_by_sweeper ?? 0);
  if (process.stdout.isTTY) {
    const bar = new cliProgress.SingleBar(
      {
        format: 'migrating [{bar}] {percentage}% | {value}/{total} keys | {rate} keys/s | touch {touch}, sweeper {sweeper} | workload {ops} ops, {errors} errors',
        hideCursor: true,
        barsize: 24,
      },
      cliProgress.Presets.shades_classic,
    );
    bar.start(total, 0, { rate: 0, touch: 0, sweeper: 0, ops: 0, errors: 0 });
    return {
      update: (st, w) => bar.update(moved(st), fields(st, w)),
      stop: () => bar.stop(),
    };
  }
  let last = 0;
  return {
    update: (st, w) => {
      if (Date.now() - last < 1_000) return;
      last = Date.now();
      const f = fields(st, w);
      say(`  progress: ${fmt(moved(st))}/${fmt(total)} keys moved (on touch ${f.touch}, by the sweeper ${f.sweeper}), ${f.rate} keys/s; workload ${f.ops} ops, ${f.errors} errors`);
    },
    stop: () => {},
  };
}

async function main(): Promise<number> {
  const total = intEnv('REHOME_DEMO_KEYS', 200_000, 1_000);
  const sweepRate = intEnv('REHOME_DEMO_SWEEP_RATE', 0, 0);
  if (!ensureRedisServer(say)) return 1;
  const t0 = Date.now();
  workdir = mkdtempSync(join(tmpdir(), 'rehome-demo-'));
  const [oldS, newS] = await Promise.all([children.redis('old', workdir), children.redis('new', workdir)]);
  say(`old redis-server on 127.0.0.1:${oldS.port} (pid ${oldS.pid}), new redis-server on 127.0.0.1:${newS.port} (pid ${newS.pid}); temp dir ${workdir}`);

  // Seed the old server, one connection per db.
  const perDb = keysPerDb(total);
  const tSeed = Date.now();
  let seedS = 0;
  const models: DbModel[] = await Promise.all(
    [...perDb].map(async ([db, n]): Promise<DbModel> => {
      const { names, withTtl } = await seedDb(oldS.port, db, n);
      return { db, seeded: n, seededWithTtl: withTtl, names, changed: new Map(), created: [], uncertain: new Set() };
    }),
  );
  const ttlTotal = models.reduce((a, m) => a + m.seededWithTtl, 0);
  say(
    `seeded the old server in ${(seedS = (Date.now() - tSeed) / 1000).toFixed(1)} s: ${fmt(total)} keys (${models.map((m) => `db${m.db} ${fmt(m.seeded)}`).join(', ')}): ` +
      `strings, hashes, lists, sets, sorted sets, streams; ${fmt(ttlTotal)} with a TTL`,
  );

  // rehome in front of them, as an operator would start it.
  const [listen, admin] = [await freePort(), await freePort()];
  const source = `redis://127.0.0.1:${oldS.port}`;
  const target = `redis://127.0.0.1:${newS.port}`;
  const args = ['--listen', `127.0.0.1:${listen}`, '--source', source, '--target', target, '--admin', `127.0.0.1:${admin}`, '--progress', 'off'];
  if (sweepRate > 0) args.push('--sweep-rate', String(sweepRate));
  const cli = fileURLToPath(new URL('./cli.js', import.meta.url));
  say(`starting: rehome ${args.join(' ')}`);
  const tMig = Date.now();
  const rehome = await children.rehome(cli, args);
  say(`rehome listening on 127.0.0.1:${listen} (pid ${rehome.pid}), admin on 127.0.0.1:${admin}; the sweeper is on`);

  // The live workload, for the whole migration.
  workload = new Workload(listen, models, CLIENTS_PER_DB);
  await workload.start();
  say(`workload: ${workload.size} clients reading (and checking) and writing through rehome`);
  const display = progressDisplay(total);
  let st: Record<string, any> = {};
  let drainedAt = 0;
  while (true) {
    if (rehome.proc.exitCode !== null) throw new Error(`rehome exited with code ${rehome.proc.exitCode}:\n  ${rehome.log.slice(-10).join('\n  ')}`);
    st = await getJson(admin, '/status');
    display.update(st, workload);
    if (!drainedAt && (st.phase === 'drained' || st.drained_at)) {
      drainedAt = Date.now();
      workload.stats.drained = true;
    }
    if (drainedAt && Date.now() - drainedAt >= AFTER_DRAINED_MS) break;
    if (Date.now() - tMig > DRAIN_TIMEOUT_MS) throw new Error(`not drained after ${DRAIN_TIMEOUT_MS / 1000} s`);
    await new Promise((r) => setTimeout(r, 200));
  }
  await workload.stop();
  display.stop();
  const migrationS = (drainedAt - tMig) / 1000;
  st = await getJson(admin, '/status');
  say(`drained: the old server is empty; rehome is a pure pass-through now`);

  // The cutover gate, then every key on the new server against the model.
  const tCheck = Date.now();
  say('running verify (rehome verify --source ... --target ...):');
  const ends = parseSourceTarget({ source, target });
  const v = await verify(ends);
  process.stdout.write(`  ${formatVerifyReport(v, ends.source, ends.target).trimEnd().replace(/\n/g, '\n  ')}\n`);
  const content = await checkContent(newS.port, models);
  const checkS = (Date.now() - tCheck) / 1000;

  // Stop rehome as an operator would (SIGTERM: finish in-flight commands, exit 0).
  await children.stop(rehome.proc, 'SIGTERM', 10_000);
  const rehomeCode = rehome.proc.exitCode;

  const w = workload.stats;
  const k = st.keys ?? {};
  const movedTouch = Number(k.moved_on_touch ?? 0);
  const movedSweep = Number(k.moved_by_sweeper ?? 0);
  const contentOk =
    content.wrong === 0 && content.expectedKeys === content.actualKeys && content.expectedTtl === content.actualTtl;
  const ok = v.ok && w.errors === 0 && w.wrong === 0 && contentOk && rehomeCode === 0;
  say('');
  say('summary');
  say(`  dataset      ${fmt(total)} keys in dbs ${models.map((m) => m.db).join(', ')}, ${fmt(ttlTotal)} with a TTL`);
  say(`  moved        ${fmt(movedTouch)} on first touch + ${fmt(movedSweep)} by the sweeper = ${fmt(movedTouch + movedSweep)} of ${fmt(Number(k.initial_in_source ?? total))}`);
  say(`  duration     migration ${migrationS.toFixed(1)} s (rehome start to drained); whole demo ${((Date.now() - t0) / 1000).toFixed(1)} s (seeding ${seedS.toFixed(1)} s, verify and checks ${checkS.toFixed(1)} s)`);
  say(`  workload     ${workload.size} clients, ${fmt(w.ops)} operations (${fmt(w.reads)} reads checked, ${fmt(w.writes)} writes), ${w.errors} errors, ${w.wrong} wrong values`);
  say(
    `  latency      p50 ${ms(quantile(w.latencies, 0.5))}, p99 ${ms(quantile(w.latencies, 0.99))} while migrating (${fmt(w.latencies.length)} ops); ` +
      `p50 ${ms(quantile(w.latenciesDrained, 0.5))}, p99 ${ms(quantile(w.latenciesDrained, 0.99))} once drained (${fmt(w.latenciesDrained.length)} ops)`,
  );
  say(`  verify       ${v.ok ? 'ok: the old server is empty and no key is in both' : 'FAILED (see above)'}`);
  say(
    `  new server   ${fmt(content.checked)} keys checked (every value against the seed and the workload's writes), ${content.wrong} wrong; ` +
      `${fmt(content.actualKeys)} keys (expected ${fmt(content.expectedKeys)}), ${fmt(content.actualTtl)} with a TTL (expected ${fmt(content.expectedTtl)})`,
  );
  say(`  rehome       exited with code ${rehomeCode} on SIGTERM`);
  for (const s of [...w.samples, ...content.samples]) say(`  ! ${s}`);
  if (rehomeCode !== 0) for (const l of rehome.log.slice(-10)) say(`  rehome: ${l}`);
  say(ok ? 'PASS: every key moved, no error, every value intact' : 'FAIL');
  return ok ? 0 : 1;
}

/** Set by SIGINT/SIGTERM: the signal handler cleans up and exits; main() must not. */
let interrupted = false;

async function onSignal(sig: NodeJS.Signals, code: number): Promise<void> {
  if (interrupted) return;
  interrupted = true;
  process.stdout.write(`\ndemo: ${sig}: stopping every process and removing the temp dir\n`);
  await cleanup();
  process.exit(code);
}
process.on('SIGINT', () => void onSignal('SIGINT', 130));
process.on('SIGTERM', () => void onSignal('SIGTERM', 143));

main().then(
  async (code) => {
    if (interrupted) return;
    await cleanup();
    process.exit(code);
  },
  async (e: Error) => {
    if (interrupted) return;
    say(`demo: ${e.message}`);
    await cleanup();
    process.exit(1);
  },
);
