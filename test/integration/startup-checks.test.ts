/**
 * The proxy runs the pre-flight checks of `rehome plan` at start: it refuses keys found in both
 * servers unless --on-conflict says which copy to keep, and refuses an unusable MIGRATE address
 * unless --force is given.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';
import { runCli, startProxy } from '../helpers/proxy.js';
import { freePort, startRedis, stopAll, type RedisServer } from '../helpers/redis.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const extra: RedisServer[] = [];
afterEach(async () => {
  await stopAll(...extra.splice(0));
});

describe('pre-flight checks at start', () => {
  it('refuses to start on keys in both servers, with one line naming the cause', async () => {
    await ctx.source.client().set('dup', 'from-source');
    await ctx.target.client().set('dup', 'from-target');
    const r = await runCli(['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/pre-flight check failed: .*1 key.* both/);
    expect(r.stderr).toMatch(/--on-conflict/);
    // Nothing was touched.
    expect(await ctx.source.client().get('dup')).toBe('from-source');
    expect(await ctx.target.client().get('dup')).toBe('from-target');
  });

  it('--on-conflict target keeps the target copy; --on-conflict source keeps the source copy', async () => {
    await ctx.source.client().mset('a', 'src-a', 'b', 'src-b');
    await ctx.target.client().set('a', 'tgt-a');
    let p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--on-conflict', 'target'] });
    expect(await p.client().get('a')).toBe('tgt-a');
    expect(await p.client().get('b')).toBe('src-b');
    await p.stop();
    await assertNoKeyInBoth(ctx.source, ctx.target);

    await ctx.source.client().set('c', 'src-c');
    await ctx.target.client().set('c', 'tgt-c');
    p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--on-conflict', 'source'] });
    expect(await p.client().get('c')).toBe('src-c');
    await p.stop();
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('finds a conflict when the target holds many more keys than the source (scans the smaller side)', async () => {
    const t = ctx.target.client();
    const p = t.pipeline();
    for (let i = 0; i < 3000; i++) p.set(`moved:${i}`, 'x');
    await p.exec();
    await ctx.source.client().mset('left:1', 'a', 'left:2', 'b', 'moved:1234', 'stale');
    const r = await runCli(['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/1 key.* both/);
    const ok = await startProxy({ source: ctx.source, target: ctx.target, args: ['--on-conflict', 'target'] });
    expect(await ok.client().get('moved:1234')).toBe('x');
    expect(await ok.client().get('left:2')).toBe('b');
    await ok.stop();
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it("a server it cannot use: start-up names the cause in plan's words, for either server", async () => {
    const locked = await startRedis({ args: ['--requirepass', 's3cret'] });
    extra.push(locked);
    const dead = await freePort();
    const wrongPass = `redis://:wrong@127.0.0.1:${locked.port}`;
    const cases: Array<[string, string, RegExp]> = [
      [wrongPass, ctx.target.url, /source 127\.0\.0\.1:\d+: authentication failed: WRONGPASS/],
      [ctx.source.url, wrongPass, /target 127\.0\.0\.1:\d+: authentication failed: WRONGPASS/],
      [ctx.source.url, locked.bareUrl, /target 127\.0\.0\.1:\d+: authentication required \(NOAUTH/],
      [`redis://127.0.0.1:${dead}`, ctx.target.url, /source 127\.0\.0\.1:\d+ unreachable: connect ECONNREFUSED/],
      [ctx.source.url, 'redis://no-such-host.invalid:6379', /target no-such-host\.invalid:6379 unreachable: getaddrinfo (ENOTFOUND|EAI_AGAIN)/],
    ];
    for (const [source, target, cause] of cases) {
      const pl = await runCli(['plan', '--source', source, '--target', target], 20_000);
      expect(pl.code, pl.stdout).toBe(1);
      const failLine = pl.stdout.split('\n').find((l) => l.startsWith('FAIL'));
      expect(failLine, pl.stdout).toMatch(cause);
      const planWords = failLine!.replace(/^FAIL\s+/, '').replace(/ \(remaining checks skipped\)$/, '');
      const r = await runCli(['--listen', '127.0.0.1:0', '--source', source, '--target', target, '--no-sweep'], 20_000);
      expect(r.code, r.stderr).toBe(1);
      const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, r.stderr).toHaveLength(1);
      expect(r.stderr).toContain(planWords);
      expect(r.stderr).not.toMatch(/Connection is closed/);
    }
    // Both unusable: one line naming both.
    const both = await runCli(['--listen', '127.0.0.1:0', '--source', `redis://127.0.0.1:${dead}`, '--target', wrongPass, '--no-sweep'], 20_000);
    expect(both.code).toBe(1);
    expect(both.stderr.split('\n').filter((l) => l.trim() !== '')).toHaveLength(1);
    expect(both.stderr).toMatch(/source 127\.0\.0\.1:\d+ unreachable: connect ECONNREFUSED.*; target 127\.0\.0\.1:\d+: authentication failed: WRONGPASS/);
  }, 60_000);

  it('with --move-method migrate, refuses a MIGRATE address the source cannot reach, unless --force; auto moves by DUMP/RESTORE instead', async () => {
    const dead = await freePort();
    const args = ['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep', '--target-from-source', `127.0.0.1:${dead}`];
    const r = await runCli([...args, '--move-method', 'migrate']);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/cannot MIGRATE/);
    const p = await startProxy({ source: ctx.source, target: ctx.target, args: ['--force', '--move-method', 'migrate', '--target-from-source', `127.0.0.1:${dead}`] });
    expect(await p.client().ping()).toBe('PONG');
    expect(p.stderr).toMatch(/--force/);
    await p.stop();
    const auto = await startProxy({ source: ctx.source, target: ctx.target, args: ['--target-from-source', `127.0.0.1:${dead}`] });
    await waitFor(() => /moves old -> new by/.test(auto.stdout + auto.stderr), 'the move method log line');
    expect(auto.stdout + auto.stderr).toMatch(/moves old -> new by dump: MIGRATE refused: IOERR/);
    await ctx.source.client().set('k', 'v');
    expect(await auto.client().get('k')).toBe('v');
    await auto.stop();
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });
});
