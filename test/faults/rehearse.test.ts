/**
 * The runbook rehearsal (`npm run rehearse`, dist/rehearse.js) in its short mode: it walks every
 * step with two rehome processes and a checking workload, and its final checks catch what went
 * wrong behind the workload's back (--tamper, test only). Long (two proxies, four switches): it
 * lives with the fault suite.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { trackProcess } from '../helpers/redis.js';

const REHEARSE = fileURLToPath(new URL('../../dist/rehearse.js', import.meta.url));

function rehearse(args: string[], timeoutMs: number): Promise<{ code: number | null; out: string }> {
  const p = spawn(process.execPath, [REHEARSE, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  trackProcess(p);
  let out = '';
  p.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
  p.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
  const t = setTimeout(() => p.kill('SIGINT'), timeoutMs);
  return new Promise((resolve) => {
    p.once('close', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

describe('npm run rehearse', () => {
  it('walks every runbook step, counts client errors by kind, and fails on a key deleted behind its back', async () => {
    const r = await rehearse(['--quick', '--tamper', 'delete'], 240_000);
    // Every step, in the runbook's order.
    const steps = [...r.out.matchAll(/^step (\d+)\./gm)].map((m) => Number(m[1]));
    expect(steps, r.out).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]);
    expect(r.out).toMatch(/^rollback \(step 5\): rehome phase reverse, then back to migrate$/m);
    expect(r.out, r.out).toMatch(/^ {2}steps {8}every step as the runbook says$/m);
    // The deleted set is found missing, and that alone fails the run.
    expect(r.out).toMatch(/^ {2}! db0 rh:set:0:1: 0 members, expected \d+$/m);
    expect(r.out).toMatch(/^ {2}new server {3}\d+ keys checked against the workload's model: 2 wrong or missing$/m);
    expect(r.out).toMatch(/^FAIL$/m);
    expect(r.code).toBe(1);
    // The error count is the sum of its kinds.
    const m = /^ {2}errors {7}(\d+) client-visible errors: (.*)$/m.exec(r.out);
    expect(m, r.out).not.toBeNull();
    const kinds = m![2] === 'none' ? [] : m![2]!.split(', ').map((k) => Number(/^(\d+) /.exec(k)![1]));
    expect(kinds.reduce((a, b) => a + b, 0)).toBe(Number(m![1]));
    expect(r.out).toMatch(/^ {2}workload {5}4 clients, \d+ operations, 0 wrong replies$/m);
  }, 300_000);

  it('bad usage exits 2 with one line', async () => {
    const r = await rehearse(['--tamper', 'nonsense'], 20_000);
    expect(r.code).toBe(2);
    expect(r.out.trim()).toBe('rehearse: --tamper must be change or delete');
  });
});
