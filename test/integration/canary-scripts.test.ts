/**
 * Scripts and functions in a canary migration (docs/DESIGN.md "Scope", "Scripts without keys"):
 * one that declares keys is routed by them; one that declares none runs read-only on the new
 * server (its writes could land out of scope there, or on a frozen key on the old one); script
 * and library changes reach both servers, so EVALSHA and FCALL find their code on either side.
 */
import { describe, expect, it } from 'vitest';
import { fetchStatus, noKeyInBoth, useAdminProxies } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { connect } from '../helpers/invariant.js';
import { runCli } from '../helpers/proxy.js';
import { errorOf, waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const startAdminProxy = useAdminProxies();

const LIB = [
  '#!lua name=canarylib',
  "redis.register_function('setit', function(keys, args) return redis.call('SET', keys[1], args[1]) end)",
  "redis.register_function{function_name='hello', callback=function(keys, args) return 'hello' end, flags={'no-writes'}}",
].join('\n');

describe('scripts and functions in a canary migration', () => {
  it('keyless scripts run read-only on the new server; script and library changes reach both servers', async () => {
    const old = connect(ctx.source);
    const neu = connect(ctx.target);
    await old.mset('in:1', 'i1', 'out:1', 'o1');
    const ap = await startAdminProxy(ctx, ['--phase', 'hold']);
    const r = await runCli(['phase', 'migrate', '--admin', ap.admin, '--scope', 'in:*']);
    expect(r.code, r.stderr).toBe(0);
    await waitFor(async () => (await fetchStatus<any>(ap.admin)).scope?.drained === true, 'scope drained', 30_000, 100);
    const c = ap.proxy.client();

    // Keyless: reads and computes as before (reads see the new server).
    expect(await c.eval('return 1 + 1', 0)).toBe(2);
    expect(await c.eval("return redis.call('GET', 'in:1')", 0)).toBe('i1');
    // ... but writes nowhere: not out of scope on the new server, not a frozen key on the old one.
    for (const k of ['out:w', 'in:w', 'out:1']) {
      const err = await errorOf(c.eval(`return redis.call('SET', '${k}', 'x')`, 0));
      expect(err).toMatch(/^CROSSSCOPE rehome: 'EVAL' declares no keys, so it runs read-only on the new server during a canary migration \(scope in:\*\)/);
    }
    expect(await neu.exists('out:w', 'in:w', 'out:1')).toBe(0);
    expect(await old.exists('out:w', 'in:w')).toBe(0);
    expect(await old.get('out:1')).toBe('o1');

    // SCRIPT LOAD reaches both: EVALSHA finds the script on the side its keys are on.
    const sha = (await c.script('LOAD', "return redis.call('GET', KEYS[1])")) as string;
    expect(await c.evalsha(sha, 1, 'out:1')).toBe('o1');
    expect(await c.evalsha(sha, 1, 'in:1')).toBe('i1');
    expect(await errorOf(c.evalsha(sha, 2, 'in:1', 'out:1'))).toMatch(/^CROSSSCOPE/);
    expect(await c.script('FLUSH')).toBe('OK');
    expect(await old.script('EXISTS', sha)).toEqual([0]);
    expect(await neu.script('EXISTS', sha)).toEqual([0]);

    // FUNCTION LOAD reaches both: FCALL with keys runs on either side.
    expect(await c.call('FUNCTION', 'LOAD', LIB)).toBe('canarylib');
    expect(await c.call('FCALL', 'setit', '1', 'out:f', 'v')).toBe('OK');
    expect(await old.get('out:f')).toBe('v');
    expect(await c.call('FCALL', 'setit', '1', 'in:f', 'v')).toBe('OK');
    expect(await neu.get('in:f')).toBe('v');
    // Keyless: a no-writes function runs, a writing one is refused.
    expect(await c.call('FCALL', 'hello', '0')).toBe('hello');
    expect(await errorOf(c.call('FCALL', 'setit', '0', 'v'))).toMatch(/^CROSSSCOPE rehome: 'FCALL' declares no keys/);
    // The old server refusing a change: its error, and what happened.
    await old.call('FUNCTION', 'DELETE', 'canarylib');
    expect(await errorOf(c.call('FUNCTION', 'DELETE', 'canarylib'))).toMatch(/^ERR Library not found \(rehome: the new server ran it, the old server, which serves the keys outside the canary's scope, refused it\)/);
    expect(await neu.call('FUNCTION', 'LIST')).toEqual([]);

    const stray = (await neu.keys('*')).filter((k) => !k.startsWith('in:') && !k.startsWith('__rehome:'));
    expect(stray).toEqual([]);
    old.disconnect();
    neu.disconnect();
    await noKeyInBoth(ctx, [ap]);
  }, 60_000);
});
