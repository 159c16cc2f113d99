/**
 * Watching a canary (issue 17, item 5): each side of the scope has its commands, error replies and
 * time in /status and /metrics, so the slice on the new server can be compared with the rest on
 * the old one.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { errorOf } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });

interface ScopeSection {
  commands: { in_scope: number; out_of_scope: number };
  errors: { in_scope: number; out_of_scope: number };
  in_scope_avg_ms: number | null;
  out_of_scope_avg_ms: number | null;
}

describe('canary: each side of the scope is measured', () => {
  it('commands, error replies and time per side in /status and /metrics', async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    await ctx.restartProxy(['--phase', 'hold', '--admin', admin, '--no-sweep']);
    const old = ctx.source.client();
    await old.mset('a:1', '1', 'a:str', 'x', 'b:1', '1', 'b:str', 'y');
    const r = await runCli(['phase', 'migrate', '--admin', admin, '--scope', 'a:*']);
    expect(r.code, r.stderr + r.stdout).toBe(0);
    const c = ctx.proxy.client();
    expect(await c.get('a:1')).toBe('1'); // in scope: moved to the new server
    expect(await c.get('b:1')).toBe('1'); // out of scope: the old server
    expect(await c.incr('a:1')).toBe(2);
    expect(await errorOf(c.incr('a:str'))).toMatch(/^ERR value is not an integer/); // one error in scope
    expect(await errorOf(c.incr('b:str'))).toMatch(/^ERR value is not an integer/); // one out of scope
    expect(await errorOf(c.hget('b:str', 'f'))).toMatch(/^WRONGTYPE/); // and another

    const st = (await fetchStatus<{ scope: ScopeSection }>(admin)).scope;
    expect(st.commands.in_scope).toBe(3);
    expect(st.commands.out_of_scope).toBe(3);
    expect(st.errors).toEqual({ in_scope: 1, out_of_scope: 2 });
    expect(st.in_scope_avg_ms).toBeGreaterThan(0);
    expect(st.out_of_scope_avg_ms).toBeGreaterThan(0);

    const metrics = await (await fetch(`http://${admin}/metrics`)).text();
    expect(metrics).toMatch(/^rehome_scope_errors_total\{side="in"\} 1$/m);
    expect(metrics).toMatch(/^rehome_scope_errors_total\{side="out"\} 2$/m);
    expect(metrics).toMatch(/^rehome_scope_seconds_total\{side="in"\} 0\.\d*[1-9]/m);
    expect(metrics).toMatch(/^rehome_scope_seconds_total\{side="out"\} 0\.\d*[1-9]/m);
    const text = await runCli(['status', '--admin', admin]);
    expect(text.stdout).toMatch(/in scope\s+3 commands \(new server, 1 errors, avg [\d.]+ ms\); out of scope 3 \(old server, 2 errors, avg [\d.]+ ms\)/);
    c.disconnect();
    old.disconnect();
  });
});
