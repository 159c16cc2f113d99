/**
 * The README's first command: `npm run demo` (here its core, dist/demo.js, with fewer keys) must
 * start its own servers, migrate live data through rehome, verify, clean up, and exit 0.
 */
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const DEMO = fileURLToPath(new URL('../../dist/demo.js', import.meta.url));

describe('demo', () => {
  it('migrates live data, verifies and exits 0', async () => {
    const proc = spawn(process.execPath, [DEMO], {
      env: { ...process.env, REHOME_DEMO_KEYS: '3000' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    proc.stdout.setEncoding('utf8').on('data', (d: string) => (out += d));
    proc.stderr.setEncoding('utf8').on('data', (d: string) => (out += d));
    const code = await new Promise<number | null>((resolve) => {
      const t = setTimeout(() => proc.kill('SIGKILL'), 45_000);
      proc.on('exit', (c) => {
        clearTimeout(t);
        resolve(c);
      });
    });
    expect(code, out).toBe(0);
    expect(out).toMatch(/VERIFIED/);
    expect(out).toMatch(/keys left in old 0, keys in both 0, wrong values 0/);
    expect(out).toMatch(/workload: \d+ operations, 0 errors/);
  }, 60_000);
});
