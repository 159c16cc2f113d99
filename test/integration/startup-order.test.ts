/**
 * Start-up order: the listen and admin ports are bound before any key moves, and the listening
 * line comes before any line about moves ("migration complete" above all), even when the
 * migration is over at once (an empty source, a small one).
 *
 * The CLI runs as an operator runs it, with stderr into stdout (`2>&1`): the proxy writes both
 * synchronously, so the merged output is in the order the lines were written.
 */
import { spawn } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { usePair } from '../helpers/fixture.js';
import { CLI_PATH } from '../helpers/proxy.js';
import { freePort, trackProcess } from '../helpers/redis.js';
import { type HeldPort, occupyPort } from '../helpers/tcp.js';

const ctx = usePair({ autoProxy: false });

/** Runs the CLI with stderr merged into stdout; resolves with the output and the exit code. */
function runMerged(args: string[], timeoutMs = 20_000): Promise<{ code: number | null; out: string }> {
  const quoted = [process.execPath, CLI_PATH, ...args].map((a) => `'${a.replace(/'/g, "'\\''")}'`).join(' ');
  const proc = spawn('sh', ['-c', `exec ${quoted} 2>&1`], { stdio: ['ignore', 'pipe', 'ignore'] });
  trackProcess(proc);
  let out = '';
  proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  const t = setTimeout(() => proc.kill('SIGKILL'), timeoutMs);
  return new Promise((resolve) => {
    proc.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

async function seed(n: number): Promise<void> {
  const c = ctx.source.client(0);
  const p = c.pipeline();
  for (let i = 0; i < n; i++) p.set(`k:${i}`, String(i));
  await p.exec();
}

async function dbsize(which: 'source' | 'target'): Promise<number> {
  return ctx[which].client(0).dbsize();
}

function lineIndex(out: string, re: RegExp): number {
  return out.split('\n').findIndex((l) => re.test(l));
}

const blockers: HeldPort[] = [];
afterEach(async () => {
  for (const b of blockers.splice(0)) await b.close();
});

/** Holds a loopback port so that rehome cannot bind it. */
async function occupiedPort(): Promise<number> {
  const held = await occupyPort();
  blockers.push(held);
  return held.port;
}

describe('start-up order', () => {
  it('a small dataset: "listening on" comes before "migration complete" and every other line about moves', async () => {
    await seed(200);
    const admin = await freePort();
    const r = await runMerged([
      '--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url,
      '--admin', String(admin), '--progress', 'log', '--exit-when-drained',
    ]);
    expect(r.code, r.out).toBe(0);
    const listening = lineIndex(r.out, /^rehome: listening on 127\.0\.0\.1:\d+$/);
    const adminLine = lineIndex(r.out, /admin endpoint on http:/);
    const complete = lineIndex(r.out, /migration complete/);
    expect(listening, r.out).toBeGreaterThanOrEqual(0);
    expect(complete, r.out).toBeGreaterThan(listening);
    expect(adminLine, r.out).toBeGreaterThan(listening);
    expect(adminLine, r.out).toBeLessThan(complete);
    // Nothing about moves (progress, sweeper, phase) before the listening line.
    const before = r.out.split('\n').slice(0, listening).join('\n');
    expect(before, r.out).not.toMatch(/moved|sweeper|progress|complete|drained/);
    expect(await dbsize('source')).toBe(0);
    expect(await dbsize('target')).toBe(200);
  });

  it('an already-drained migration (phase migrate, empty source): "listening on" comes before "migration complete"', async () => {
    const r = await runMerged([
      '--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url,
      '--phase', 'migrate', '--exit-when-drained',
    ]);
    expect(r.code, r.out).toBe(0);
    const listening = lineIndex(r.out, /^rehome: listening on /);
    expect(listening, r.out).toBeGreaterThanOrEqual(0);
    expect(lineIndex(r.out, /migration complete/), r.out).toBeGreaterThan(listening);
  });

  it('--workers 2: the primary\'s "listening on" comes before worker 1\'s "migration complete"', async () => {
    // Worker 1 listens and may finish the migration while worker 2 starts; the line that says
    // the fleet listens is the primary's, once both listen.
    await seed(200);
    const r = await runMerged([
      '--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url,
      '--workers', '2', '--exit-when-drained',
    ]);
    expect(r.code, r.out).toBe(0);
    const listening = lineIndex(r.out, /^rehome: listening on 127\.0\.0\.1:\d+$/);
    expect(listening, r.out).toBeGreaterThanOrEqual(0);
    expect(lineIndex(r.out, /worker 1: .*migration complete/), r.out).toBeGreaterThan(listening);
    const before = r.out.split('\n').slice(0, listening).join('\n');
    expect(before, r.out).not.toMatch(/moved|sweeper|progress|complete|drained/);
    expect(await dbsize('target')).toBe(200);
  });

  it('--listen in use: start fails before any key moved', async () => {
    await seed(2_000);
    const port = await occupiedPort();
    const r = await runMerged(['--listen', `127.0.0.1:${port}`, '--source', ctx.source.url, '--target', ctx.target.url]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/cannot listen on 127\.0\.0\.1:\d+: address already in use/);
    expect(r.out).not.toMatch(/listening on/);
    expect(await dbsize('source')).toBe(2_000);
    expect(await dbsize('target')).toBe(0);
  });

  it('--admin in use: start fails before any key moved, and the listen port is given back', async () => {
    await seed(2_000);
    const admin = await occupiedPort();
    const listen = await freePort();
    const r = await runMerged(['--listen', `127.0.0.1:${listen}`, '--source', ctx.source.url, '--target', ctx.target.url, '--admin', String(admin)]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/cannot listen on admin 127\.0\.0\.1:\d+/);
    expect(r.out).not.toMatch(/listening on/);
    expect(await dbsize('source')).toBe(2_000);
    expect(await dbsize('target')).toBe(0);
  });
});
