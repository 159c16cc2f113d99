/**
 * The pre-flight `plan` and the cutover gate `verify`, as library functions and as command lines
 * (runPlanCli/runVerifyCli called in-process, stdout/stderr captured), against real redis-servers.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { plan, runPlanCli, type Finding, type PlanResult } from '../../src/tools/plan.js';
import { runVerifyCli, verify } from '../../src/tools/verify.js';
import { parseRedisUrl, type Endpoint } from '../../src/upstream/endpoint.js';
import { usePair } from '../helpers/fixture.js';
import { freePort, startRedis, stopAll, type RedisServer } from '../helpers/redis.js';

const ctx = usePair({ autoProxy: false });

function ep(s: RedisServer): Endpoint {
  return parseRedisUrl('test', s.url);
}

/** Sets keys (latin1 strings, so binary keys work) in one db of a server. */
async function put(s: RedisServer, db: number, ...keys: string[]): Promise<void> {
  const c = s.client(db);
  try {
    for (const k of keys) await c.set(Buffer.from(k, 'latin1'), `v-${k.length}`);
  } finally {
    c.disconnect();
  }
}

async function exists(s: RedisServer, db: number, key: string): Promise<boolean> {
  const c = s.client(db);
  try {
    return (await c.exists(Buffer.from(key, 'latin1'))) === 1;
  } finally {
    c.disconnect();
  }
}

/** Every key of a db, latin1. */
async function keysOf(s: RedisServer, db = 0): Promise<string[]> {
  const c = s.client(db);
  try {
    return (await c.keysBuffer('*')).map((k) => k.toString('latin1')).sort();
  } finally {
    c.disconnect();
  }
}

async function config(s: RedisServer, name: string, value: string): Promise<void> {
  const c = s.client(0);
  try {
    await c.call('CONFIG', 'SET', name, value);
  } finally {
    c.disconnect();
  }
}

/** Runs a CLI entry point with stdout/stderr captured. */
async function capture(fn: () => Promise<number>): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const o = vi.spyOn(process.stdout, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stdout += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  const e = vi.spyOn(process.stderr, 'write').mockImplementation((chunk: string | Uint8Array) => {
    stderr += typeof chunk === 'string' ? chunk : Buffer.from(chunk).toString();
    return true;
  });
  try {
    const code = await fn();
    return { code, stdout, stderr };
  } finally {
    o.mockRestore();
    e.mockRestore();
  }
}

function oneLine(s: string): void {
  const lines = s.split('\n').filter((l) => l.trim() !== '');
  expect(lines.length, `expected one line, got: ${JSON.stringify(s)}`).toBe(1);
  expect(s).not.toMatch(/\n\s+at /); // no stack trace
}

function findings(r: PlanResult, check: Finding['check']): Finding[] {
  return r.findings.filter((f) => f.check === check);
}

function levelOf(r: PlanResult, check: Finding['check']): Finding['level'] | undefined {
  const fs = findings(r, check);
  if (fs.some((f) => f.level === 'fail')) return 'fail';
  if (fs.some((f) => f.level === 'warn')) return 'warn';
  return fs.length > 0 ? 'ok' : undefined;
}

function describePlan(r: PlanResult): string {
  return r.findings.map((f) => `${f.level} [${f.check}] ${f.message}`).join('\n');
}

/** No probe key left behind on either server (any db 0 key with the probe prefix). */
async function assertNoProbeKeys(): Promise<void> {
  for (const s of [ctx.source, ctx.target]) {
    expect((await keysOf(s, 0)).filter((k) => k.startsWith('__rehome:plan-probe:'))).toEqual([]);
  }
}

const extra: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...extra.splice(0));
  await config(ctx.target, 'maxmemory-policy', 'noeviction');
});

describe('verify', () => {
  it('ok when the source is empty and the data is only in the target', async () => {
    await put(ctx.target, 0, 'a', 'b');
    await put(ctx.target, 3, 'c');
    const r = await verify({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.ok).toBe(true);
    expect(r.remainingPerDb).toEqual({});
    expect(r.inBoth).toEqual([]);
    expect(r.inBothTotal).toBe(0);

    const cli = await capture(() => runVerifyCli(['--source', ctx.source.url, '--target', ctx.target.url]));
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/source .* empty in every db; no key in both: safe to cut over/);
    expect(cli.stderr).toBe('');
  });

  it('not ok with keys remaining in the source: per-db counts, db 3 included', async () => {
    await put(ctx.source, 0, 'a', 'b', 'c');
    await put(ctx.source, 3, 'd', 'e');
    await put(ctx.target, 0, 'x');
    const r = await verify({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.ok).toBe(false);
    expect(r.remainingPerDb).toEqual({ 0: 3, 3: 2 });
    expect(r.inBothTotal).toBe(0);

    const cli = await capture(() => runVerifyCli(['--source', ctx.source.url, '--target', ctx.target.url]));
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/still holds 5 keys: db0 3, db3 2/);
    expect(cli.stdout).toMatch(/not safe to cut over/);
  });

  it('not ok and lists keys in both, binary keys escaped, per db', async () => {
    const bin = 'k\xff\x00\n';
    await put(ctx.source, 0, 'dup', 'only-src');
    await put(ctx.target, 0, 'dup', 'only-tgt');
    await put(ctx.source, 2, bin);
    await put(ctx.target, 2, bin);
    const r = await verify({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.ok).toBe(false);
    expect(r.remainingPerDb).toEqual({ 0: 2, 2: 1 });
    expect(r.inBothTotal).toBe(2);
    expect(r.inBoth).toEqual(
      expect.arrayContaining([
        { db: 0, key: 'dup' },
        { db: 2, key: bin },
      ]),
    );
    expect(r.inBoth).toHaveLength(2);

    const cli = await capture(() => runVerifyCli(['--source', ctx.source.url, '--target', ctx.target.url]));
    expect(cli.code).toBe(1);
    expect(cli.stdout).toMatch(/2 keys exist in both/);
    expect(cli.stdout).toContain("db0 'dup'");
    expect(cli.stdout).toContain("db2 'k\\xff\\x00\\x0a'");
  });

  it('lists at most maxListed keys in both, and counts them all', async () => {
    const keys = Array.from({ length: 7 }, (_, i) => `both:${i}`);
    await put(ctx.source, 0, ...keys);
    await put(ctx.target, 0, ...keys);
    const r = await verify({ source: ep(ctx.source), target: ep(ctx.target), maxListed: 3 });
    expect(r.ok).toBe(false);
    expect(r.inBoth).toHaveLength(3);
    expect(r.inBothTotal).toBe(7);
  });

  it('refuses to compare a server with itself', async () => {
    await expect(verify({ source: ep(ctx.source), target: ep(ctx.source) })).rejects.toThrow(/same server/);
  });

  it('CLI: usage errors exit 2, an unreachable server exits 1, each with one line on stderr', async () => {
    const usage: string[][] = [
      ['--source', ctx.source.url],
      ['--target', ctx.target.url],
      ['--source', ctx.source.url, '--target', ctx.target.url, '--bogus'],
      ['--source', 'http://127.0.0.1:1', '--target', ctx.target.url],
      ['--source', ctx.source.url, '--target', ctx.target.url, 'positional'],
      ['--source', `${ctx.source.url}/2`, '--target', ctx.target.url],
      ['--source', ctx.source.url, '--target', `${ctx.target.url}/0`],
    ];
    for (const argv of usage) {
      const r = await capture(() => runVerifyCli(argv));
      expect(r.code, argv.join(' ')).toBe(2);
      oneLine(r.stderr);
      expect(r.stdout).toBe('');
    }
    const dead = await freePort();
    const r = await capture(() => runVerifyCli(['--source', `redis://127.0.0.1:${dead}`, '--target', ctx.target.url]));
    expect(r.code).toBe(1);
    oneLine(r.stderr);
    expect(r.stderr).toMatch(new RegExp(`source 127\\.0\\.0\\.1:${dead} unreachable`));
    expect(r.stdout).toBe('');

    for (const flag of ['--help', '-h']) {
      const help = await capture(() => runVerifyCli([flag]));
      expect(help.code, flag).toBe(0);
      expect(help.stdout).toMatch(/^usage: rehome verify/);
    }
  });
});

describe('plan', () => {
  it('ok on a normal pair; probe keys are cleaned up; source key counts per db', async () => {
    await put(ctx.source, 0, 'a', 'b');
    await put(ctx.source, 3, 'c');
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    expect(r.findings.every((f) => f.level === 'ok'), describePlan(r)).toBe(true);
    for (const check of ['connect', 'version', 'keyspace', 'memory', 'eviction', 'migrate', 'restore', 'users', 'conflicts'] as const) {
      expect(levelOf(r, check), check).toBe('ok');
    }
    expect(r.sourceKeysPerDb).toEqual({ 0: 2, 3: 1 });
    expect(r.conflicts).toEqual({ total: 0, listed: [], resolved: 0 });
    await assertNoProbeKeys();
    expect(await keysOf(ctx.source, 0)).toEqual(['a', 'b']);
    expect(await keysOf(ctx.target, 0)).toEqual([]);
  });

  it('a target that already holds keys is a WARN with the count and a hint, not ok', async () => {
    await put(ctx.source, 0, 'a');
    await put(ctx.target, 0, 'x', 'y');
    await put(ctx.target, 2, 'z');
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    const w = findings(r, 'keyspace').filter((f) => f.level === 'warn');
    expect(w, describePlan(r)).toHaveLength(1);
    expect(w[0]!.message).toMatch(/^target 127\.0\.0\.1:\d+ already holds 3 keys \(db0 2, db2 1\)/);
    expect(w[0]!.message).toMatch(/check that --target is the new instance/);
    const cli = await capture(() => runPlanCli(['--source', ctx.source.url, '--target', ctx.target.url]));
    expect(cli.code).toBe(0);
    expect(cli.stdout).toMatch(/^WARN {2}target 127\.0\.0\.1:\d+ already holds 3 keys/m);
    expect(cli.stdout.trimEnd().split('\n').at(-1)).toBe('plan: ready to migrate, with 1 warning (see above)');
    expect(await keysOf(ctx.target, 0)).toEqual(['x', 'y']);
  });

  it('a source that cannot MIGRATE to the target address (closed port) is a warning: keys move by DUMP/RESTORE', async () => {
    const closed = await freePort();
    const r = await plan({
      source: ep(ctx.source),
      target: ep(ctx.target),
      targetFromSource: { host: '127.0.0.1', port: closed },
    });
    expect(r.hardFailure).toBe(false);
    const m = findings(r, 'migrate');
    expect(m.map((f) => f.level)).toEqual(['warn']);
    expect(m[0]!.message).toContain(`127.0.0.1:${closed}`);
    expect(m[0]!.message).toMatch(/IOERR.*keys move by dump instead/);
    expect(r.methods.forward?.method).toBe('dump');
    expect(r.methods.reverse?.method).toBe('migrate');
    expect(findings(r, 'method').map((f) => f.message)).toEqual([
      expect.stringMatching(/^keys move old -> new by dump: MIGRATE refused: IOERR.*the target RESTOREs the source's DUMP payload$/),
      expect.stringMatching(/^keys move new -> old \(reverse, a rollback\) by migrate: MIGRATE to 127\.0\.0\.1:\d+ works$/),
    ]);
    await assertNoProbeKeys();
  });

  it('fails when the MIGRATE address is another server than the target', async () => {
    const other = await startRedis();
    extra.push(other);
    const r = await plan({
      source: ep(ctx.source),
      target: ep(ctx.target),
      targetFromSource: { host: '127.0.0.1', port: other.port },
    });
    expect(r.hardFailure).toBe(true);
    expect(levelOf(r, 'migrate')).toBe('fail');
    expect(findings(r, 'migrate')[0]!.message).toMatch(/did not arrive/);
  });

  it('fails on keys in both without onConflict, listing them', async () => {
    await put(ctx.source, 0, 'dup', 'src-only');
    await put(ctx.target, 0, 'dup', 'tgt-only');
    await put(ctx.source, 1, 'dup1');
    await put(ctx.target, 1, 'dup1');
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.hardFailure).toBe(true);
    expect(levelOf(r, 'conflicts')).toBe('fail');
    expect(findings(r, 'conflicts')[0]!.message).toMatch(/2 keys exist in both; the target copy would win; pass --on-conflict source\|target/);
    expect(r.conflicts.total).toBe(2);
    expect(r.conflicts.listed).toEqual(expect.arrayContaining([{ db: 0, key: 'dup' }, { db: 1, key: 'dup1' }]));
    // Nothing was deleted.
    expect(await exists(ctx.source, 0, 'dup')).toBe(true);
    expect(await exists(ctx.target, 0, 'dup')).toBe(true);
  });

  it("onConflict 'source' without apply only reports; with apply the target copy is deleted", async () => {
    await put(ctx.source, 0, 'dup');
    await put(ctx.target, 0, 'dup', 'tgt-only');
    const dry = await plan({ source: ep(ctx.source), target: ep(ctx.target), onConflict: 'source' });
    expect(dry.hardFailure, describePlan(dry)).toBe(false);
    expect(levelOf(dry, 'conflicts')).toBe('warn');
    expect(dry.conflicts.resolved).toBe(0);
    expect(await exists(ctx.target, 0, 'dup')).toBe(true);

    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target), onConflict: 'source', apply: true });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    expect(levelOf(r, 'conflicts')).toBe('ok');
    expect(r.conflicts).toMatchObject({ total: 1, resolved: 1, listed: [{ db: 0, key: 'dup' }] });
    expect(await exists(ctx.target, 0, 'dup')).toBe(false);
    expect(await exists(ctx.source, 0, 'dup')).toBe(true);
    expect(await exists(ctx.target, 0, 'tgt-only')).toBe(true);

    const again = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(again.conflicts.total).toBe(0);
  });

  it("onConflict 'target' with apply deletes the source copy", async () => {
    const bin = 'b\xfe\x01';
    await put(ctx.source, 2, 'dup', bin, 'src-only');
    await put(ctx.target, 2, 'dup', bin);
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target), onConflict: 'target', apply: true });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    expect(r.conflicts.total).toBe(2);
    expect(r.conflicts.resolved).toBe(2);
    expect(await keysOf(ctx.source, 2)).toEqual(['src-only']);
    expect(await keysOf(ctx.target, 2)).toEqual([bin, 'dup'].sort());
  });

  it('apply does nothing when another check failed', async () => {
    await put(ctx.source, 0, 'dup');
    await put(ctx.target, 0, 'dup');
    const other = await startRedis();
    extra.push(other);
    const r = await plan({
      source: ep(ctx.source),
      target: ep(ctx.target),
      targetFromSource: { host: '127.0.0.1', port: other.port },
      onConflict: 'source',
      apply: true,
    });
    expect(r.hardFailure).toBe(true);
    expect(r.conflicts).toMatchObject({ total: 1, resolved: 0 });
    expect(findings(r, 'conflicts')[0]!.message).toMatch(/not applied because of the failures above/);
    expect(await exists(ctx.target, 0, 'dup')).toBe(true);
    expect(await exists(ctx.source, 0, 'dup')).toBe(true);
  });

  it('warns when the target evicts (maxmemory-policy allkeys-lru)', async () => {
    await config(ctx.target, 'maxmemory-policy', 'allkeys-lru');
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    expect(levelOf(r, 'eviction')).toBe('warn');
    expect(findings(r, 'eviction')[0]!.message).toMatch(/allkeys-lru.*eviction could drop migrated keys/);
  });

  it('fails when the source uses db 5 and the target has only 4 databases', async () => {
    const small = await startRedis({ args: ['--databases', '4'] });
    extra.push(small);
    await put(ctx.source, 5, 'k');
    await put(ctx.source, 1, 'j');
    const r = await plan({ source: ep(ctx.source), target: ep(small) });
    expect(r.hardFailure).toBe(true);
    expect(levelOf(r, 'keyspace')).toBe('fail');
    expect(findings(r, 'keyspace')[0]!.message).toMatch(/source uses db 5 but the target has only 4 databases/);
    expect(r.sourceKeysPerDb).toEqual({ 1: 1, 5: 1 });
  });

  it("fails when the target's maxmemory is too small for the source's data", async () => {
    const c = ctx.source.client(0);
    try {
      const p = c.pipeline();
      const value = 'x'.repeat(4096);
      for (let i = 0; i < 1500; i++) p.set(`big:${i}`, value);
      await p.exec();
    } finally {
      c.disconnect();
    }
    const t = ctx.target.client(0);
    let used: number;
    try {
      used = Number(/used_memory:(\d+)/.exec(await t.info('memory'))![1]);
    } finally {
      t.disconnect();
    }
    await config(ctx.target, 'maxmemory', String(used + 512 * 1024));
    const r = await plan({ source: ep(ctx.source), target: ep(ctx.target) });
    expect(r.hardFailure).toBe(true);
    expect(levelOf(r, 'memory')).toBe('fail');
    expect(findings(r, 'memory')[0]!.message).toMatch(/raise maxmemory on the target/);
  });

  it('uses the target credentials for PING and for MIGRATE (AUTH); a wrong password fails', async () => {
    const locked = await startRedis({ args: ['--requirepass', 's3cret'] });
    extra.push(locked);
    await put(ctx.source, 0, 'a');
    const good = await plan({ source: ep(ctx.source), target: ep(locked) });
    expect(good.hardFailure, describePlan(good)).toBe(false);
    expect(levelOf(good, 'migrate')).toBe('ok');

    const bad = await plan({ source: ep(ctx.source), target: parseRedisUrl('t', `redis://:wrong@127.0.0.1:${locked.port}`) });
    expect(bad.hardFailure).toBe(true);
    expect(findings(bad, 'connect').some((f) => f.level === 'fail' && /authentication failed/.test(f.message))).toBe(true);

    const none = await plan({ source: ep(ctx.source), target: parseRedisUrl('t', locked.bareUrl) });
    expect(none.hardFailure).toBe(true);
    expect(findings(none, 'connect').some((f) => f.level === 'fail' && /authentication required/.test(f.message))).toBe(true);
  });

  it('an ACL user on the target: MIGRATE uses AUTH2 user pass', async () => {
    const acl = await startRedis({
      args: ['--user', 'default', 'off', '--user', 'mover', 'on', '>pw2', '~*', '&*', '+@all'],
      username: 'mover',
      password: 'pw2',
    });
    extra.push(acl);
    const r = await plan({ source: ep(ctx.source), target: ep(acl) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    expect(levelOf(r, 'migrate')).toBe('ok');
    expect(levelOf(r, 'restore')).toBe('ok');
    expect(await keysOf(acl, 0)).toEqual([]);
  });

  it('users: names the ACL users of the old server missing on the new one; FAIL while clients are logged in as one', async () => {
    const app = ['on', '>apw', '~app:*', '&*', '+@all'];
    const old = await startRedis({ args: ['--user', 'app', ...app, '--user', 'report', 'on', '>rpw', '~*', '+@read', '+@connection'] });
    const neu = await startRedis({ args: ['--user', 'app', ...app] });
    extra.push(old, neu);
    const r = await plan({ source: ep(old), target: ep(neu) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    const w = findings(r, 'users');
    expect(w, describePlan(r)).toHaveLength(1);
    expect(w[0]!.level).toBe('warn');
    expect(w[0]!.message).toMatch(/^1 user of the old server is missing on the new one: report; create them there/);

    // A client logged in as the missing user right now: its AUTH would be refused after the switch.
    const c = old.client(0, { username: 'report', password: 'rpw' });
    try {
      await c.ping();
      const live = await plan({ source: ep(old), target: ep(neu) });
      expect(live.hardFailure).toBe(true);
      expect(levelOf(live, 'users')).toBe('fail');
      expect(findings(live, 'users')[0]!.message).toMatch(/missing on the new one: report; clients are logged in as report right now/);
      const cli = await capture(() => runPlanCli(['--source', old.url, '--target', neu.url]));
      expect(cli.code).toBe(1);
      expect(cli.stdout).toMatch(/^FAIL {2}1 user of the old server is missing on the new one: report/m);
    } finally {
      c.disconnect();
    }
  });

  it('users: a user whose rules or password differ on the new server is a WARN naming what differs', async () => {
    const old = await startRedis({ args: ['--user', 'app', 'on', '>apw', '~app:*', '&*', '+@all'] });
    const neu = await startRedis({ args: ['--user', 'app', 'on', '>other', '~*', '&*', '+@all'] });
    extra.push(old, neu);
    const r = await plan({ source: ep(old), target: ep(neu) });
    expect(r.hardFailure, describePlan(r)).toBe(false);
    const w = findings(r, 'users');
    expect(w, describePlan(r)).toHaveLength(1);
    expect(w[0]!.level).toBe('warn');
    expect(w[0]!.message).toMatch(/^1 user has other rules on the new server/);
    expect(w[0]!.details).toHaveLength(1);
    expect(w[0]!.details![0]).toMatch(/^app: old server only: password [0-9a-f]{8}\.\.\. ~app:\*; new server only: password [0-9a-f]{8}\.\.\. ~\*$/);

    // The same users and rules on both (and plan's own login on the old one left out): ok.
    const same = await startRedis({ args: ['--user', 'app', 'on', '>apw', '~app:*', '&*', '+@all'] });
    extra.push(same);
    const ok = await plan({ source: ep(old), target: ep(same) });
    expect(levelOf(ok, 'users'), describePlan(ok)).toBe('ok');
    expect(findings(ok, 'users')[0]!.message).toMatch(/^every user of the old server exists on the new one with the same rules \(app, default\)/);
  });

  it('users: with requirepass the new server must require a password too, and the same one', async () => {
    const old = await startRedis({ args: ['--requirepass', 'sp'] });
    extra.push(old);
    // requirepass is the default user's password: compared through ACL LIST.
    const open = await plan({ source: ep(old), target: ep(ctx.target) });
    expect(levelOf(open, 'users'), describePlan(open)).toBe('warn');
    expect(findings(open, 'users')[0]!.details![0]).toMatch(/^default: old server only: password [0-9a-f]{8}\.\.\.; new server only: nopass$/);

    // plan's user may not run ACL commands on the new server: the user check is skipped, saying
    // why, and only the password requirement is compared.
    const noAcl = ['--user', 'default', 'on', '>tp', '~*', '&*', '+@all', '-@admin'];
    const locked = await startRedis({ args: noAcl, password: 'tp' });
    extra.push(locked);
    const other = await plan({ source: ep(old), target: ep(locked) });
    expect(other.hardFailure, describePlan(other)).toBe(false);
    const f = findings(other, 'users');
    expect(f.map((x) => x.level), describePlan(other)).toEqual(['warn', 'warn']);
    expect(f[0]!.message).toMatch(/^users not compared \(new server: plan's user default may not run ACL LIST \(NOPERM/);
    expect(f[1]!.message).toMatch(/^both servers require a password, but the URLs' passwords differ/);

    const samePw = await startRedis({ args: ['--user', 'default', 'on', '>sp', '~*', '&*', '+@all', '-@admin'], password: 'sp' });
    extra.push(samePw);
    const same = await plan({ source: ep(old), target: ep(samePw) });
    expect(findings(same, 'users').map((x) => `${x.level} ${x.message}`), describePlan(same)).toEqual([
      expect.stringMatching(/^warn users not compared/),
      'ok both servers require a password',
    ]);

    const openNoAcl = await startRedis({ args: ['--user', 'default', 'on', 'nopass', '~*', '&*', '+@all', '-@admin'] });
    extra.push(openNoAcl);
    const none = await plan({ source: ep(old), target: ep(openNoAcl) });
    expect(findings(none, 'users')[1]!.message).toMatch(/^the old server requires a password and the new one 127\.0\.0\.1:\d+ does not/);
  });

  it('fails, without throwing, when a server is unreachable or both are the same server', async () => {
    const dead = await freePort();
    const r = await plan({ source: parseRedisUrl('s', `redis://127.0.0.1:${dead}`), target: ep(ctx.target) });
    expect(r.hardFailure).toBe(true);
    expect(findings(r, 'connect').some((f) => f.level === 'fail' && f.message.includes(`source 127.0.0.1:${dead} unreachable`))).toBe(true);

    await put(ctx.source, 0, 'k');
    const same = await plan({ source: ep(ctx.source), target: ep(ctx.source), onConflict: 'source', apply: true });
    expect(same.hardFailure).toBe(true);
    expect(levelOf(same, 'server')).toBe('fail');
    expect(await exists(ctx.source, 0, 'k')).toBe(true);
  });

  it('CLI: exit codes, markers, summary; --on-conflict with --apply resolves', async () => {
    const base = ['--source', ctx.source.url, '--target', ctx.target.url];
    const ok = await capture(() => runPlanCli(base));
    expect(ok.code, ok.stdout).toBe(0);
    expect(ok.stdout).toMatch(/^ok {4}source can MIGRATE to the target/m);
    expect(ok.stdout.trimEnd().split('\n').at(-1)).toMatch(/^plan: ready to migrate/);

    await put(ctx.source, 0, 'dup');
    await put(ctx.target, 0, 'dup');
    const conflict = await capture(() => runPlanCli(base));
    expect(conflict.code).toBe(1);
    expect(conflict.stdout).toMatch(/^FAIL {2}1 key exists in both/m);
    expect(conflict.stdout).toMatch(/^ +db0 'dup'$/m);
    expect(conflict.stdout.trimEnd().split('\n').at(-1)).toMatch(/^plan: NOT ready: 1 failure/);

    const dry = await capture(() => runPlanCli([...base, '--on-conflict', 'source']));
    expect(dry.code).toBe(0);
    expect(dry.stdout).toMatch(/^WARN {2}.*not applied without --apply/m);
    expect(await exists(ctx.target, 0, 'dup')).toBe(true);

    const applied = await capture(() => runPlanCli([...base, '--on-conflict', 'source', '--apply']));
    expect(applied.code).toBe(0);
    expect(await exists(ctx.target, 0, 'dup')).toBe(false);
    expect(await exists(ctx.source, 0, 'dup')).toBe(true);

    const closed = await freePort();
    const unreachableTarget = await capture(() => runPlanCli([...base, '--target-from-source', `127.0.0.1:${closed}`]));
    expect(unreachableTarget.code).toBe(0);
    expect(unreachableTarget.stdout).toMatch(/^WARN {2}source cannot MIGRATE.*keys move by dump instead/m);
    expect(unreachableTarget.stdout).toMatch(/^ok {4}keys move old -> new by dump: /m);

    const usage: string[][] = [
      ['--source', ctx.source.url],
      [...base, '--on-conflict', 'both'],
      [...base, '--apply'],
      [...base, '--target-from-source', 'nowhere'],
      [...base, '--bogus'],
      ['--source', 'http://x:1', '--target', ctx.target.url],
      ['--source', `${ctx.source.url}/2`, '--target', ctx.target.url],
      ['--source', ctx.source.url, '--target', `${ctx.target.url}?db=3`],
    ];
    for (const argv of usage) {
      const r = await capture(() => runPlanCli(argv));
      expect(r.code, argv.join(' ')).toBe(2);
      oneLine(r.stderr);
      expect(r.stdout).toBe('');
    }
    for (const flag of ['--help', '-h']) {
      const help = await capture(() => runPlanCli([flag]));
      expect(help.code, flag).toBe(0);
      expect(help.stdout).toMatch(/^usage: rehome plan/);
      expect(help.stderr).toBe('');
    }
  });

  it('a db in a URL is refused, naming the flag: rehome migrates every db', async () => {
    const r = await capture(() => runPlanCli(['--source', ctx.source.url, '--target', `${ctx.target.url}/2`]));
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^rehome plan: --target: the URL names db 2, but rehome migrates every db/);
    const v = await capture(() => runVerifyCli(['--source', `${ctx.source.url}/5`, '--target', ctx.target.url]));
    expect(v.code).toBe(2);
    expect(v.stderr).toMatch(/^rehome verify: --source: the URL names db 5/);
    // The server's own address stays accepted with or without a trailing slash.
    expect(parseRedisUrl('--source', 'redis://h:1/')).toEqual({ host: 'h', port: 1 });
  });
});
