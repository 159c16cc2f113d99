/**
 * The CLI contract: flags, startup failures (one line on stderr, non-zero exit), the listening
 * line, and a graceful SIGTERM.
 */
import { describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { assertNoKeyInBoth } from '../helpers/invariant.js';
import { runCli, startProxy } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { occupyPort } from '../helpers/tcp.js';
import { sleep, waitFor, withTimeout } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });

function oneLine(stderr: string): void {
  const lines = stderr.split('\n').filter((l) => l.trim() !== '');
  expect(lines.length, `stderr should be one line, got: ${JSON.stringify(stderr)}`).toBe(1);
}

async function deadPort(): Promise<number> {
  return freePort();
}

describe('CLI', () => {
  it('prints the listening line and serves on the announced port', async () => {
    const p = await startProxy({ spawn: true, source: ctx.source, target: ctx.target });
    try {
      expect(p.stdout).toMatch(/listening on 127\.0\.0\.1:\d+/);
      expect(p.port).toBeGreaterThan(0);
      const c = p.client();
      expect(await c.ping()).toBe('PONG');
    } finally {
      const e = await p.stop();
      expect(e.code).toBe(0);
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('an unknown flag: non-zero exit with a one-line message', async () => {
    const r = await runCli(['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep', '--bogus-flag']);
    expect(r.timedOut).toBe(false);
    expect(r.code).not.toBe(0);
    expect(r.code).not.toBeNull();
    oneLine(r.stderr);
    expect(r.stderr).toMatch(/bogus-flag/);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('missing --target, bad URL scheme, bad --absent-cache-size: non-zero exit, one line', async () => {
    const cases: string[][] = [
      ['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--no-sweep'],
      ['--listen', '127.0.0.1:0', '--source', 'http://127.0.0.1:1', '--target', ctx.target.url, '--no-sweep'],
      ['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep', '--absent-cache-size', 'lots'],
      ['--listen', 'not-an-address', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep'],
      ['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep', '--migrate-timeout-ms', '-5'],
    ];
    for (const args of cases) {
      const r = await runCli(args);
      expect(r.timedOut, args.join(' ')).toBe(false);
      expect(r.code, `${args.join(' ')} -> ${r.stderr}`).not.toBe(0);
      expect(r.code).not.toBeNull();
      oneLine(r.stderr);
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('usage errors exit 2 (a db in a URL among them, naming the flag); --help and -h exit 0', async () => {
    const base = ['--listen', '127.0.0.1:0', '--no-sweep'];
    const cases: string[][] = [
      [...base, '--source', `${ctx.source.url}/2`, '--target', ctx.target.url],
      [...base, '--source', ctx.source.url, '--target', `${ctx.target.url}/1`],
      [...base, '--source', ctx.source.url, '--target', ctx.target.url, '--admin', 'nonsense'],
      [...base, '--source', ctx.source.url],
    ];
    for (const args of cases) {
      const r = await runCli(args);
      expect(r.code, `${args.join(' ')} -> ${r.stderr}`).toBe(2);
      oneLine(r.stderr);
      expect(r.stdout).not.toMatch(/listening on/);
    }
    const db = await runCli([...base, '--source', ctx.source.url, '--target', `${ctx.target.url}/1`]);
    expect(db.stderr).toMatch(/--target: the URL names db 1, but rehome migrates every db/);
    for (const sub of [[], ['plan'], ['verify'], ['status'], ['sweeper'], ['phase']]) {
      for (const flag of ['--help', '-h']) {
        const r = await runCli([...sub, flag]);
        expect(r.code, `${sub.join(' ')} ${flag}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(/^usage: rehome/);
      }
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('the listen port in use: non-zero exit, one line', async () => {
    const blocker = await occupyPort();
    const port = blocker.port;
    try {
      const r = await runCli(['--listen', `127.0.0.1:${port}`, '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep']);
      expect(r.timedOut).toBe(false);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      oneLine(r.stderr);
    } finally {
      await blocker.close();
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('unreachable source or target: non-zero exit, one line', async () => {
    const port = await deadPort();
    for (const [src, tgt] of [
      [`redis://127.0.0.1:${port}`, ctx.target.url],
      [ctx.source.url, `redis://127.0.0.1:${port}`],
    ] as const) {
      const r = await runCli(['--listen', '127.0.0.1:0', '--source', src, '--target', tgt, '--no-sweep'], 20_000);
      expect(r.timedOut, `${src} -> ${tgt} should fail, not hang`).toBe(false);
      expect(r.code).not.toBe(0);
      expect(r.code).not.toBeNull();
      oneLine(r.stderr);
    }
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SIGTERM: graceful exit 0, also with connected clients', async () => {
    const p = await startProxy({ spawn: true, source: ctx.source, target: ctx.target, args: ['--absent-cache-size', '1000', '--migrate-timeout-ms', '3000'] });
    const c = p.client();
    await ctx.source.client().set('k', 'v');
    expect(await c.get('k')).toBe('v');
    p.proc.kill('SIGTERM');
    const e = await withTimeout(p.exited, 10_000, 'proxy exit after SIGTERM');
    expect(e.code).toBe(0);
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SIGTERM while a client is blocked (BLPOP) exits 0 within --shutdown-timeout-ms', async () => {
    const p = await startProxy({ spawn: true, source: ctx.source, target: ctx.target, args: ['--shutdown-timeout-ms', '1000'] });
    const c = p.client();
    const pending = c.blpop('never-filled', 30).catch((e: unknown) => e);
    await new Promise((r) => setTimeout(r, 200));
    p.proc.kill('SIGTERM');
    const e = await withTimeout(p.exited, 6_000, 'proxy exit after SIGTERM with a blocked client (--shutdown-timeout-ms 1000)');
    expect(e.code).toBe(0);
    await withTimeout(pending, 5_000, 'blocked client released');
    await assertNoKeyInBoth(ctx.source, ctx.target);
  });

  it('SIGTERM while the sweeper waits on a stopped old server: exit within the shutdown timeout, not the move timeout', async () => {
    const s = ctx.source.client();
    const seed = s.pipeline();
    for (let i = 0; i < 20_000; i++) seed.set(`k:${i}`, 'v');
    await seed.exec();
    const p = await startProxy({
      spawn: true, source: ctx.source, target: ctx.target, sweep: true,
      args: ['--shutdown-timeout-ms', '1000', '--migrate-timeout-ms', '30000', '--sweep-rate', '2000', '--progress', 'off'],
    });
    await waitFor(async () => (await ctx.target.client().dbsize()) > 0, 'the sweep to start', 10_000, 20);
    ctx.source.kill('SIGSTOP');
    try {
      await sleep(300); // a step is on its way to the stopped server
      p.proc.kill('SIGTERM');
      // The step's command would wait out its own timeout (31 s); a stopped process holds claims
      // that lapse, as a killed one does, so the exit need not wait for it.
      const e = await withTimeout(p.exited, 10_000, 'proxy exit after SIGTERM with the old server stopped (--shutdown-timeout-ms 1000)');
      expect(e.code).toBe(0);
      expect(p.stderr).toMatch(/did not stop within the shutdown timeout/);
    } finally {
      ctx.source.kill('SIGCONT');
    }
  });

  it('SIGTERM with subscribed and MONITOR clients: they are closed once their replies are out, not kept until the timeout', async () => {
    const p = await startProxy({ spawn: true, source: ctx.source, target: ctx.target, args: ['--shutdown-timeout-ms', '60000'] });
    const sub = await p.raw();
    expect(await sub.call('SUBSCRIBE', 'news')).toEqual(['subscribe', 'news', 1]);
    const psub = await p.raw();
    expect(await psub.call('PSUBSCRIBE', 'n*')).toEqual(['psubscribe', 'n*', 1]);
    const mon = await p.raw();
    expect(await mon.call('MONITOR')).toBe('OK');
    const c = p.client();
    expect(await c.publish('news', 'before')).toBe(2);
    expect((await sub.readReply(5_000)).toString()).toContain('before');
    p.proc.kill('SIGTERM');
    // Nothing of theirs is in flight: a subscription has no end to wait for.
    const e = await withTimeout(p.exited, 10_000, 'proxy exit after SIGTERM with subscribers (--shutdown-timeout-ms 60000)');
    expect(e.code).toBe(0);
    for (const x of [sub, psub, mon]) expect(await x.waitClosed(2_000)).toBe(true);
  });
});
