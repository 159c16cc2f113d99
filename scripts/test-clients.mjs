#!/usr/bin/env node
/**
 * Runs ioredis's OWN functional test suite twice, once against a plain redis-server and once
 * through rehome, and prints the tests that pass direct but fail through rehome.
 *
 *   npm run test:clients -- [options]        (builds rehome first)
 *   node scripts/test-clients.mjs [options]  (uses dist/ as it is)
 *
 * The suite is not in the ioredis npm package, only in its GitHub repository, which CI cannot
 * reach. So the checkout's path comes from IOREDIS_SRC; without it the script prints one line and
 * exits 0. To get a checkout of the version rehome pins (package.json, ioredis 5.9.2):
 *
 *   git clone --depth 1 --branch v5.9.2 https://github.com/redis/ioredis /tmp/ioredis-src
 *   (or, from a local mirror: git --git-dir=MIRROR archive v5.9.2 lib test bin package.json \
 *      package-lock.json tsconfig.json | tar -x -C /tmp/ioredis-src)
 *   IOREDIS_SRC=/tmp/ioredis-src npm run test:clients -- --out /tmp/clients.json
 *
 * ioredis's test dependencies are installed in the checkout (`npm ci --ignore-scripts`) when its
 * node_modules is missing; nothing is installed into this repository.
 *
 * What runs: mocha over `test/helpers/*.ts` and `test/functional/**\/*.ts` of the checkout, as
 * ioredis's `npm run test:js` does (TS_NODE_TRANSPILE_ONLY, its package.json mocha settings). Those
 * tests connect to localhost:6379, fixed (`new Redis()`), and a global afterEach sends FLUSHALL,
 * SCRIPT FLUSH and CLIENT KILL TYPE normal there after every test. So 6379 must be free: the
 * direct run puts a fresh redis-server on it, the rehome run puts rehome on it, in front of an
 * "old" and a "new" redis-server on free loopback ports. The tests that need other servers
 * (sentinel, cluster, TLS, ElastiCache, blocking timeouts, ...) talk to ioredis's in-process
 * MockServer on other ports, so they run in both modes and do not involve rehome. Not run at all:
 * test/cluster/** (a real 6-node cluster, `npm run test:cluster`), test/scenario/** (Redis
 * Enterprise fault injection), test/unit/** (no server) and the tsd typing tests.
 *
 * The rehome run is a migration in progress: rehome starts in plain migrate mode with keys in the
 * old server, and test/clients/keep-source-seeded.cjs (a mocha root hook) puts keys back into the
 * old server (db 15, which the tests never use) whenever a FLUSHALL has emptied it, so rehome never
 * becomes drained: every key the tests touch goes through the gate (MIGRATE, NOKEY, the
 * known-absent cache), and KEYS/SCAN/DBSIZE/INFO merge both servers. The sweeper is off by default:
 * with it on (--sweep, rate-limited) a sweeper pass sooner or later lands between a FLUSHALL and
 * the re-seeding, finds the old server empty and declares the migration drained, so the rest of
 * the run goes through a drained (pass-through) rehome; the report says when that happened.
 *
 * Options:
 *   --out FILE          write a JSON summary there
 *   --grep REGEX        only the tests whose full title matches (mocha --grep), both runs
 *   --files GLOBS       comma-separated spec globs relative to the checkout
 *                       (default test/functional/**\/*.ts)
 *   --no-confirm        do not re-run the differing tests alone to check they are not flaky
 *   --sweep             run rehome's sweeper (--sweep-rate 5); it usually drains early (see above)
 *   --rehome-arg ARG    one more argument for rehome (repeatable), e.g. --rehome-arg=--shared-connections=0
 *   --run-timeout-s N   kill a mocha run after N seconds (default 900)
 *   --keep              keep the temporary directory (logs, mocha JSON reports)
 *   --fail-on-diff      exit 1 when a test passes direct but fails through rehome
 *
 * Environment: IOREDIS_SRC (the checkout; unset: skip), REHOME_CLI (another build of rehome's
 * dist/cli.js, e.g. of a clean `git archive HEAD`), REDIS_SERVER (default redis-server on PATH).
 *
 * Exit: 0 when both runs completed (differences are the report, not a failure, unless
 * --fail-on-diff), 1 when something could not be set up or a run did not complete, 2 for a bad
 * option.
 */
import { spawn, execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, openSync, closeSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { freePort } from '../dist/util/free-port.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REHOME_CLI = process.env.REHOME_CLI ? path.resolve(process.env.REHOME_CLI) : path.join(ROOT, 'dist', 'cli.js');
const SEED_HOOK = path.join(ROOT, 'test', 'clients', 'keep-source-seeded.cjs');
const TEST_PORT = 6379; // hard-coded by ioredis's tests: new Redis() is localhost:6379
const SEED_DB = 15;
const DEFAULT_FILES = ['test/functional/**/*.ts'];

// ---------------------------------------------------------------------------------------------
// options

function usage(msg) {
  if (msg) process.stderr.write(`test-clients: ${msg}\n`);
  process.stderr.write(
    'usage: node scripts/test-clients.mjs [--out FILE] [--grep REGEX] [--files GLOBS] [--no-confirm] [--sweep]\n' +
      '                                     [--rehome-arg ARG]... [--run-timeout-s N] [--keep] [--fail-on-diff]\n' +
      '       IOREDIS_SRC must point at a checkout of ioredis (tag v5.9.2); see the top of this file.\n',
  );
  process.exit(msg ? 2 : 0);
}

function parseArgs(argv) {
  const o = { out: null, grep: null, files: DEFAULT_FILES, confirm: true, sweep: false, rehomeArgs: [], runTimeoutS: 900, keep: false, failOnDiff: false };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v = null;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) {
      v = a.slice(eq + 1);
      a = a.slice(0, eq);
    }
    const val = () => {
      if (v !== null) return v;
      if (i + 1 >= argv.length) usage(`${a} needs a value`);
      return argv[++i];
    };
    switch (a) {
      case '--out': o.out = path.resolve(val()); break;
      case '--grep': o.grep = val(); break;
      case '--files': o.files = val().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--no-confirm': o.confirm = false; break;
      case '--sweep': o.sweep = true; break;
      case '--rehome-arg': o.rehomeArgs.push(val()); break;
      case '--run-timeout-s': o.runTimeoutS = Number(val()); if (!(o.runTimeoutS > 0)) usage('--run-timeout-s must be > 0'); break;
      case '--keep': o.keep = true; break;
      case '--fail-on-diff': o.failOnDiff = true; break;
      case '-h': case '--help': usage(); break;
      default: usage(`unknown option ${argv[i]}`);
    }
  }
  return o;
}

// ---------------------------------------------------------------------------------------------
// processes: everything started here is killed when the script exits

const children = new Set();
let tmp = null;
let keepTmp = false;

function killAll() {
  for (const c of children) {
    try {
      // mocha runs in its own process group (detached), so its children go too
      if (c.detachedGroup) process.kill(-c.pid, 'SIGKILL');
      else c.kill('SIGKILL');
    } catch {
      /* already gone */
    }
  }
  children.clear();
  if (tmp && !keepTmp) rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', killAll);
for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(sig, () => {
    process.stderr.write(`\ntest-clients: ${sig}, stopping everything\n`);
    killAll();
    process.exit(130);
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** True when something accepts connections on host:port. */
function answers(host, port) {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (v) => {
      s.destroy();
      resolve(v);
    };
    s.setTimeout(1000, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

/** True when we could bind host:port ourselves (nothing else holds it). */
function canBind(host, port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, host, () => s.close(() => resolve(true)));
  });
}

async function assertTestPortFree() {
  for (const host of ['127.0.0.1', '::1']) {
    if (await answers(host, TEST_PORT)) {
      throw new Error(`something already listens on ${host}:${TEST_PORT}; ioredis's tests use that port, stop it first`);
    }
  }
  if (!(await canBind('127.0.0.1', TEST_PORT))) throw new Error(`cannot bind 127.0.0.1:${TEST_PORT}`);
}

/** One RESP command on a fresh connection; resolves with the first reply line. */
function rawCommand(port, args, timeoutMs = 1000) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    s.setTimeout(timeoutMs, () => {
      s.destroy();
      reject(new Error('timeout'));
    });
    s.once('error', reject);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      const nl = buf.indexOf('\r\n');
      if (nl >= 0) {
        s.end();
        resolve(buf.slice(0, nl));
      }
    });
    s.write(args.reduce((acc, a) => acc + `$${Buffer.byteLength(a)}\r\n${a}\r\n`, `*${args.length}\r\n`));
  });
}

function track(name, child, logPath) {
  const proc = { name, child, logPath, exited: null, stopping: false };
  children.add(child);
  child.on('exit', (code, signal) => {
    children.delete(child);
    proc.exited = { code, signal };
  });
  return proc;
}

function logTail(p, n = 15) {
  try {
    return readFileSync(p, 'utf8').trimEnd().split('\n').slice(-n).map((l) => `    ${l}`).join('\n');
  } catch {
    return '    (no log)';
  }
}

async function startRedis(name, port) {
  const logPath = path.join(tmp, `${name}.log`);
  const child = spawn(REDIS_SERVER, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', tmp, '--logfile', logPath, '--daemonize', 'no'], { stdio: 'ignore' });
  const proc = track(`redis-server ${name}`, child, logPath);
  for (let i = 0; i < 200; i++) {
    if (proc.exited) break;
    try {
      if ((await rawCommand(port, ['PING'])) === '+PONG') return { ...proc, port };
    } catch {
      /* not yet */
    }
    await sleep(25);
  }
  throw new Error(`redis-server ${name} on port ${port} did not start:\n${logTail(logPath)}`);
}

async function stop(proc, signal = 'SIGTERM', graceMs = 15000) {
  if (!proc || proc.exited) return proc?.exited ?? null;
  proc.stopping = true;
  const exited = new Promise((r) => proc.child.once('exit', (code, sig) => r({ code, signal: sig })));
  proc.child.kill(signal);
  const res = await Promise.race([exited, sleep(graceMs).then(() => null)]);
  if (res) return res;
  proc.child.kill('SIGKILL');
  await exited;
  return { code: null, signal: 'SIGKILL', timedOut: true };
}

async function startRehome(oldPort, newPort, adminPort, opts) {
  const logPath = path.join(tmp, 'rehome.log');
  const args = [
    REHOME_CLI,
    '--source', `redis://127.0.0.1:${oldPort}`,
    '--target', `redis://127.0.0.1:${newPort}`,
    '--listen', `127.0.0.1:${TEST_PORT}`,
    '--admin', `127.0.0.1:${adminPort}`,
    '--progress', 'log',
    ...(opts.sweep ? ['--sweep-rate', '5'] : ['--no-sweep']),
    ...opts.rehomeArgs,
  ];
  const fd = openSync(logPath, 'a');
  const child = spawn(process.execPath, args, { stdio: ['ignore', fd, fd] });
  closeSync(fd);
  const proc = track('rehome', child, logPath);
  proc.args = args.slice(1);
  for (let i = 0; i < 400; i++) {
    if (proc.exited) break;
    if (/listening on/.test(readFileSync(logPath, 'utf8'))) return proc;
    await sleep(25);
  }
  throw new Error(`rehome did not start (${proc.exited ? `exit ${proc.exited.code}` : 'no "listening on" in 10 s'}):\n${logTail(logPath)}`);
}

function getJson(port, p) {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: p, timeout: 3000 }, (res) => {
        let body = '';
        res.on('data', (d) => (body += d));
        res.on('end', () => {
          try {
            resolve(JSON.parse(body));
          } catch (e) {
            reject(e);
          }
        });
      })
      .on('error', reject);
  });
}

/** Seeds the old server's db SEED_DB directly (the hook does the same after each FLUSHALL). */
async function seedOld(port) {
  const cmds = [['SELECT', String(SEED_DB)]];
  const mset = ['MSET'];
  for (let i = 0; i < 100; i++) mset.push(`rehome-clients:seed:initial:s:${i}`, `value-${i}`);
  cmds.push(mset, ['HSET', 'rehome-clients:seed:initial:h', 'a', '1'], ['RPUSH', 'rehome-clients:seed:initial:l', 'x', 'y']);
  const s = net.connect({ host: '127.0.0.1', port });
  await new Promise((resolve, reject) => {
    let buf = '';
    s.once('error', reject);
    s.on('data', (d) => {
      buf += d.toString('latin1');
      if (buf.split('\r\n').length - 1 >= cmds.length) {
        s.end();
        if (buf.includes('-ERR')) reject(new Error(`seeding the old server: ${buf}`));
        else resolve();
      }
    });
    s.write(cmds.map((c) => c.reduce((acc, a) => acc + `$${Buffer.byteLength(a)}\r\n${a}\r\n`, `*${c.length}\r\n`)).join(''));
  });
}

// ---------------------------------------------------------------------------------------------
// mocha

/**
 * Runs mocha in the checkout with the JSON reporter; resolves with the parsed report (or a
 * report of why there is none).
 */
async function runMocha(label, { files, grep, extraFiles = [], env = {}, timeoutS, dryRun = false }) {
  const jsonPath = path.join(tmp, `${label}.json`);
  const logPath = path.join(tmp, `${label}.mocha.log`);
  const mochaBin = path.join(SRC, 'node_modules', 'mocha', 'bin', 'mocha');
  const args = [mochaBin, 'test/helpers/*.ts', ...extraFiles, ...files, '--reporter', 'json', '--reporter-option', `output=${jsonPath}`];
  if (grep) args.push('--grep', grep);
  if (dryRun) args.push('--dry-run');
  const fd = openSync(logPath, 'a');
  const t0 = Date.now();
  const child = spawn(process.execPath, args, {
    cwd: SRC,
    env: { ...process.env, TS_NODE_TRANSPILE_ONLY: 'true', NODE_ENV: 'test', ...env },
    stdio: ['ignore', fd, fd],
    detached: true,
  });
  child.detachedGroup = true;
  closeSync(fd);
  const proc = track(`mocha ${label}`, child, logPath);
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      /* gone */
    }
  }, timeoutS * 1000);
  const exit = await new Promise((r) => {
    if (proc.exited) r(proc.exited);
    else child.once('exit', (code, signal) => r({ code, signal }));
  });
  clearTimeout(timer);
  // mocha's children (if any) are in its group
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {
    /* gone */
  }
  const wallMs = Date.now() - t0;
  if (!existsSync(jsonPath)) {
    return { ok: false, wallMs, exit, timedOut, logPath, error: `mocha wrote no report (${timedOut ? `killed after ${timeoutS} s` : `exit ${exit.code ?? exit.signal}`}):\n${logTail(logPath)}` };
  }
  const report = JSON.parse(readFileSync(jsonPath, 'utf8'));
  return { ok: true, wallMs, exit, timedOut, logPath, jsonPath, report };
}

function firstLine(err) {
  const m = err && (err.message ?? err.stack ?? '');
  return String(m || '').split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
}

const relFile = (f) => (f ? path.relative(SRC, f) : '?');
const keyOf = (t) => `${relFile(t.file)} :: ${t.fullTitle}`;
const HOOK_RE = /^"(before|after)( each| all)?" hook(?: for "(.*)")?/;

/**
 * Per test: `file :: full title` -> {status, error}, in the order mocha ran them. A failing
 * hook is also charged to the test it names (a root afterEach that fails after test X, e.g. on an
 * assertion X's own listener threw late, makes X fail); mocha runs nothing after a failing root
 * hook, which runSuite works around.
 */
function outcomes(run) {
  const tests = new Map();
  const hooks = [];
  if (!run.ok) return { tests, hooks };
  const failed = new Map();
  for (const f of run.report.failures) {
    const h = HOOK_RE.exec(f.title);
    if (h) hooks.push({ hook: `"${h[1]}${h[2] ?? ''}" hook`, forTitle: h[3] ?? null, fullTitle: f.fullTitle, error: firstLine(f.err) });
    else failed.set(keyOf(f), f);
  }
  const pending = new Set(run.report.pending.map(keyOf));
  for (const t of run.report.tests) {
    let k = keyOf(t);
    for (let n = 2; tests.has(k); n++) k = `${keyOf(t)} #${n}`;
    const f = failed.get(keyOf(t));
    const status = pending.has(keyOf(t)) ? 'pending' : f ? 'fail' : 'pass';
    tests.set(k, { file: relFile(t.file), title: t.fullTitle, status, error: f ? firstLine(f.err) : null });
  }
  const ran = [...tests.values()];
  for (const h of hooks) {
    if (h.forTitle === null) continue;
    const t = ran.findLast((x) => x.title === h.forTitle || x.title.endsWith(` ${h.forTitle}`));
    if (!t) continue;
    h.test = `${t.file} :: ${t.title}`;
    if (h.hook.startsWith('"after') && t.status === 'pass') {
      t.status = 'fail';
      t.error = `${h.hook}: ${h.error}`;
    }
  }
  return { tests, hooks };
}

/** Every test the specs and --grep select, in run order (mocha --dry-run runs nothing). */
async function listTests(files, grep, timeoutS) {
  const run = await runMocha(`list-${Date.now()}`, { files, grep, timeoutS, dryRun: true });
  if (!run.ok) throw new Error(`listing the tests failed: ${run.error}`);
  const all = new Map();
  for (const t of run.report.tests) {
    let k = keyOf(t);
    for (let n = 2; all.has(k); n++) k = `${keyOf(t)} #${n}`;
    all.set(k, { file: relFile(t.file), title: t.fullTitle });
  }
  return all;
}

/**
 * Runs the expected tests, and when a run stops early (mocha skips everything after a failing
 * root hook, and ioredis's global afterEach is one), runs the tests that did not run yet again,
 * in a new mocha process against the same servers, until every test has an outcome.
 */
async function runSuite(label, expected, { files, grep, timeoutS }, extra = {}) {
  const merged = { tests: new Map(), hooks: [], wallMs: 0, runs: 0, error: null, ok: true };
  let curFiles = files;
  let curGrep = grep;
  for (let i = 1; i <= 40; i++) {
    const run = await runMocha(`${label}-${i}`, { files: curFiles, grep: curGrep, timeoutS, ...extra });
    merged.runs++;
    merged.wallMs += run.wallMs;
    if (!run.ok) {
      merged.ok = false;
      merged.error = run.error;
      break;
    }
    const oc = outcomes(run);
    let progress = 0;
    for (const [k, v] of oc.tests) {
      if (expected.has(k) && !merged.tests.has(k)) {
        merged.tests.set(k, v);
        progress++;
      }
    }
    merged.hooks.push(...oc.hooks.map((h) => ({ ...h, run: i })));
    let missing = [...expected.keys()].filter((k) => !merged.tests.has(k));
    if (missing.length === 0) break;
    if (progress === 0) {
      // a failing before-hook stops the run before the first missing test: charge it that test
      const k = missing[0];
      const h = oc.hooks[0];
      merged.tests.set(k, { ...expected.get(k), status: 'fail', error: h ? `${h.hook} failed: ${h.error}` : 'not run (the run stopped before it)' });
      missing = missing.slice(1);
      if (missing.length === 0) break;
    }
    const ms = missing.map((k) => expected.get(k));
    curFiles = [...new Set(ms.map((t) => t.file))];
    curGrep = `^(${[...new Set(ms.map((t) => escapeRe(t.title)))].join('|')})$`;
  }
  return merged;
}

function counts(suite, expected) {
  const c = { passed: 0, failed: 0, pending: 0, notRun: 0, hookFailures: suite.hooks.length, mochaRuns: suite.runs, wallS: +(suite.wallMs / 1000).toFixed(1), completed: suite.ok };
  for (const t of suite.tests.values()) {
    if (t.status === 'pass') c.passed++;
    else if (t.status === 'fail') c.failed++;
    else c.pending++;
  }
  for (const k of expected.keys()) if (!suite.tests.has(k)) c.notRun++;
  return c;
}

const escapeRe = (s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

// ---------------------------------------------------------------------------------------------
// the two setups

async function withDirect(fn) {
  await assertTestPortFree();
  const server = await startRedis('direct', TEST_PORT);
  try {
    return await fn();
  } finally {
    await stop(server, 'SIGKILL');
  }
}

async function withRehome(opts, fn) {
  await assertTestPortFree();
  const [oldPort, newPort, adminPort] = [await freePort(), await freePort(), await freePort()];
  const oldSrv = await startRedis('old', oldPort);
  const newSrv = await startRedis('new', newPort);
  let rehome = null;
  const info = { oldPort, newPort, adminPort, args: null, statusAfter: null, drainedDuringRun: null, exit: null, reseeds: null };
  try {
    await seedOld(oldPort);
    rehome = await startRehome(oldPort, newPort, adminPort, opts);
    info.args = rehome.args;
    const seedReport = path.join(tmp, `reseeds-${Date.now()}.txt`);
    const result = await fn({
      extraFiles: [SEED_HOOK],
      env: { REHOME_CLIENTS_SOURCE_PORT: String(oldPort), REHOME_CLIENTS_SEED_DB: String(SEED_DB), REHOME_CLIENTS_SEED_REPORT: seedReport },
    });
    try {
      info.statusAfter = await getJson(adminPort, '/status');
    } catch (e) {
      info.statusAfter = { error: e.message };
    }
    try {
      info.reseeds = readFileSync(seedReport, 'utf8').split('\n').filter(Boolean).reduce((a, n) => a + Number(n), 0);
    } catch {
      /* the run did not finish */
    }
    info.drainedDuringRun = /migration complete/.test(readFileSync(rehome.logPath, 'utf8'));
    return { result, info };
  } finally {
    if (rehome) {
      info.exit = await stop(rehome, 'SIGTERM');
      info.logTail = readFileSync(rehome.logPath, 'utf8').trimEnd().split('\n').slice(-10);
    }
    await stop(newSrv, 'SIGKILL');
    await stop(oldSrv, 'SIGKILL');
  }
}

// ---------------------------------------------------------------------------------------------

let SRC = '';
let REDIS_SERVER = 'redis-server';

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (!process.env.IOREDIS_SRC) {
    console.log('test-clients: skipped: IOREDIS_SRC is not set (a checkout of github.com/redis/ioredis at v5.9.2; see scripts/test-clients.mjs)');
    return 0;
  }
  SRC = path.resolve(process.env.IOREDIS_SRC);
  const pinned = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')).dependencies.ioredis;
  let srcPkg;
  try {
    srcPkg = JSON.parse(readFileSync(path.join(SRC, 'package.json'), 'utf8'));
  } catch {
    throw new Error(`IOREDIS_SRC=${SRC}: no package.json there`);
  }
  if (srcPkg.name !== 'ioredis' || !existsSync(path.join(SRC, 'test', 'functional'))) {
    throw new Error(`IOREDIS_SRC=${SRC} is not an ioredis source checkout (no test/functional)`);
  }
  if (srcPkg.version !== pinned) {
    console.log(`test-clients: WARNING: the checkout is ioredis ${srcPkg.version}, rehome pins ${pinned}`);
  }
  if (!existsSync(REHOME_CLI)) throw new Error(`${REHOME_CLI} is missing: run npm run build (npm run test:clients does)`);
  REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';
  let redisVersion;
  try {
    redisVersion = /v=(\S+)/.exec(execFileSync(REDIS_SERVER, ['--version']).toString())?.[1] ?? '?';
  } catch {
    throw new Error(`${REDIS_SERVER} not found (sudo apt-get install -y redis-server), or set REDIS_SERVER`);
  }
  if (!existsSync(path.join(SRC, 'node_modules', 'mocha', 'bin', 'mocha'))) {
    console.log(`test-clients: installing ioredis's test dependencies in ${SRC} (npm ci --ignore-scripts)`);
    execFileSync('npm', ['ci', '--ignore-scripts', '--no-audit', '--no-fund'], { cwd: SRC, stdio: 'inherit' });
  }
  tmp = mkdtempSync(path.join(os.tmpdir(), 'rehome-clients-'));
  keepTmp = opts.keep;
  const t0 = Date.now();
  console.log(`test-clients: ioredis ${srcPkg.version} functional tests from ${SRC}, redis-server ${redisVersion}, rehome ${REHOME_CLI}`);
  console.log(`test-clients: specs ${opts.files.join(', ')}${opts.grep ? `, --grep ${JSON.stringify(opts.grep)}` : ''}; logs in ${tmp}${opts.keep ? '' : ' (removed at the end; --keep keeps them)'}`);

  await assertTestPortFree();
  const mochaOpts = { files: opts.files, grep: opts.grep, timeoutS: opts.runTimeoutS };
  const expected = await listTests(opts.files, opts.grep, opts.runTimeoutS);
  if (expected.size === 0) throw new Error('no test matches the specs and --grep');
  console.log(`test-clients: ${expected.size} tests selected`);

  console.log('test-clients: run 1/2: direct, redis-server on 127.0.0.1:6379 ...');
  const direct = await withDirect(() => runSuite('direct', expected, mochaOpts));
  if (!direct.ok) throw new Error(`the direct run failed: ${direct.error}`);
  const dCounts = counts(direct, expected);
  console.log(`test-clients:   ${dCounts.passed} passed, ${dCounts.failed} failed${dCounts.notRun ? `, ${dCounts.notRun} not run` : ''} in ${dCounts.wallS} s (${direct.runs} mocha run(s))`);

  console.log(`test-clients: run 2/2: through rehome on 127.0.0.1:6379 (migrate mode, keys in the old server${opts.sweep ? ', sweeper on' : ', sweeper off'}) ...`);
  const { result: via, info: rehomeInfo } = await withRehome(opts, (extra) => runSuite('rehome', expected, mochaOpts, extra));
  const rCounts = counts(via, expected);
  console.log(`test-clients:   ${rCounts.passed} passed, ${rCounts.failed} failed${rCounts.notRun ? `, ${rCounts.notRun} not run` : ''} in ${rCounts.wallS} s (${via.runs} mocha run(s))`);

  // differences
  const differences = [];
  const fixedByRehome = [];
  const bothFail = [];
  for (const [k, d] of direct.tests) {
    const r = via.tests.get(k);
    if (d.status === 'pass' && (!r || r.status === 'fail')) {
      differences.push({ key: k, file: d.file, title: d.title, through: r ? 'fail' : 'not run', error: r ? r.error : `not run${via.ok ? '' : ' (the run through rehome did not complete)'}`, confirmed: null });
    } else if (d.status === 'fail' && r?.status === 'pass') fixedByRehome.push({ key: k, file: d.file, title: d.title, directError: d.error });
    else if (d.status === 'fail' && r?.status === 'fail') bothFail.push({ key: k, file: d.file, title: d.title, directError: d.error, rehomeError: r.error });
  }

  // re-run the differing tests alone, on both sides, to tell a real difference from a flaky test
  if (opts.confirm && differences.length > 0) {
    console.log(`test-clients: re-running the ${differences.length} differing test(s) alone (one mocha run each side), direct and through rehome ...`);
    const sub = new Map(differences.map((x) => [x.key, expected.get(x.key)]));
    const cOpts = { files: [...new Set(differences.map((x) => x.file))], grep: `^(${[...new Set(differences.map((x) => escapeRe(x.title)))].join('|')})$`, timeoutS: opts.runTimeoutS };
    const cd = await withDirect(() => runSuite('confirm-direct', sub, cOpts));
    const cr = (await withRehome(opts, (extra) => runSuite('confirm-rehome', sub, cOpts, extra))).result;
    for (const x of differences) {
      const a = cd.tests.get(x.key)?.status ?? 'not run';
      const b = cr.tests.get(x.key)?.status ?? 'not run';
      x.alone = { direct: a, rehome: b, rehomeError: cr.tests.get(x.key)?.error ?? null };
      x.confirmed = a === 'pass' && b === 'fail';
    }
  }

  // report
  const pad = (s, n) => String(s).padEnd(n);
  const padl = (s, n) => String(s).padStart(n);
  console.log('');
  console.log(`${pad('run', 16)}${padl('passed', 8)}${padl('failed', 8)}${padl('pending', 9)}${padl('not run', 9)}${padl('hook fails', 12)}${padl('time', 9)}`);
  for (const [name, c] of [['direct', dCounts], ['through rehome', rCounts]]) {
    console.log(`${pad(name, 16)}${padl(c.passed, 8)}${padl(c.failed, 8)}${padl(c.pending, 9)}${padl(c.notRun, 9)}${padl(c.hookFailures, 12)}${padl(`${c.wallS} s`, 9)}`);
  }
  const st = rehomeInfo.statusAfter ?? {};
  console.log(
    `rehome: ${rehomeInfo.drainedDuringRun ? 'became DRAINED during the run (pass-through from then on)' : 'stayed in migrate mode with keys in the old server for the whole run'}` +
      (rehomeInfo.reseeds !== null ? `; old server re-seeded ${rehomeInfo.reseeds} times after FLUSHALL` : '') +
      (st.keys ? `; keys confirmed absent ${st.keys.confirmed_absent}, moved on touch ${st.keys.moved_on_touch}` : '') +
      `; exit on SIGTERM: ${rehomeInfo.exit ? (rehomeInfo.exit.code ?? rehomeInfo.exit.signal) : '?'}`,
  );
  for (const h of via.hooks) console.log(`rehome run ${h.run}: ${h.hook} failed after ${h.test ?? h.fullTitle}: ${h.error}`);
  console.log('');
  console.log(`pass direct, fail through rehome: ${differences.length}`);
  for (const x of differences) {
    const tag = x.confirmed === true ? ' [same when run alone]' : x.confirmed === false ? ` [alone: direct ${x.alone.direct}, rehome ${x.alone.rehome}]` : '';
    console.log(`  ${x.file} :: ${x.title}${tag}`);
    console.log(`      ${x.error}`);
  }
  if (fixedByRehome.length) {
    console.log(`fail direct, pass through rehome: ${fixedByRehome.length}`);
    for (const x of fixedByRehome) console.log(`  ${x.file} :: ${x.title}\n      direct: ${x.directError}`);
  }
  console.log(`fail in both (server version, environment): ${bothFail.length}`);
  for (const x of bothFail) console.log(`  ${x.file} :: ${x.title}\n      ${x.directError}`);
  const totalS = ((Date.now() - t0) / 1000).toFixed(1);
  console.log(`\ntest-clients: done in ${totalS} s`);

  if (opts.out) {
    const summary = {
      ioredis: { version: srcPkg.version, pinned, src: SRC },
      redisServer: redisVersion,
      specs: opts.files,
      grep: opts.grep,
      rehome: { cli: REHOME_CLI, args: rehomeInfo.args, sweep: opts.sweep, drainedDuringRun: rehomeInfo.drainedDuringRun, reseeds: rehomeInfo.reseeds, exit: rehomeInfo.exit, statusAfter: rehomeInfo.statusAfter, logTail: rehomeInfo.logTail },
      runs: { direct: dCounts, rehome: rCounts },
      hookFailures: { direct: direct.hooks, rehome: via.hooks },
      differences: differences.map(({ key, ...x }) => x),
      failDirectPassRehome: fixedByRehome.map(({ key, ...x }) => x),
      failBoth: bothFail.map(({ key, ...x }) => x),
      totalSeconds: Number(totalS),
    };
    writeFileSync(opts.out, `${JSON.stringify(summary, null, 2)}\n`);
    console.log(`test-clients: summary written to ${opts.out}`);
  }
  if (!via.ok) {
    console.log(`test-clients: the run through rehome did not complete: ${via.error}`);
    return 1;
  }
  if (opts.failOnDiff && differences.length > 0) return 1;
  return 0;
}

main().then(
  (code) => {
    killAll();
    process.exit(code);
  },
  (e) => {
    process.stderr.write(`test-clients: ${e.message}\n`);
    killAll();
    process.exit(1);
  },
);
