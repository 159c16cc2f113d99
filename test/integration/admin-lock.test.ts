/**
 * The locked admin endpoint: a token (`--admin-token` or REHOME_ADMIN_TOKEN, sent as
 * `Authorization: Bearer TOKEN`) for every request that changes something when one is configured,
 * and for every request but the probes when bound beyond loopback; a bind beyond loopback without
 * a token refused at start; `rehome status|phase|sweeper` sending the token; /healthz and
 * /readyz; `--log-format json`.
 */
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { fetchStatus, seedStrings } from '../helpers/admin.js';
import { usePair } from '../helpers/fixture.js';
import { runCli, startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { freePort } from '../helpers/redis.js';
import { waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });

const TOKEN = 'test-token-4f1c9a';

type Json = Record<string, any>;

const running: ProxyHandle[] = [];
afterEach(async () => {
  await Promise.all(running.splice(0).map((p) => p.stop('SIGTERM', 3_000)));
});

/**
 * A proxy whose admin endpoint is `bind` with a free port (`--admin BIND:PORT`, or the port
 * alone when bind is ''); returns the proxy and the address to reach the endpoint at.
 */
async function adminProxy(bind: string, args: string[] = [], env: Record<string, string> = {}): Promise<{ proxy: ProxyHandle; admin: string }> {
  let lastErr: unknown;
  for (let attempt = 0; attempt < 3; attempt++) {
    const port = await freePort();
    try {
      const proxy = await startProxy({
        source: ctx.source,
        target: ctx.target,
        sweep: true,
        args: ['--admin', bind === '' ? String(port) : `${bind}:${port}`, '--progress', 'off', ...args],
        env,
      });
      running.push(proxy);
      return { proxy, admin: `127.0.0.1:${port}` };
    } catch (e) {
      lastErr = e; // the free port may have been taken in between: try another
    }
  }
  throw lastErr;
}

async function call(admin: string, method: string, path: string, token?: string): Promise<{ code: number; body: Json; headers: Headers }> {
  const r = await fetch(`http://${admin}${path}`, {
    method,
    headers: token === undefined ? {} : { authorization: `Bearer ${token}` },
  });
  const text = await r.text();
  let body: Json;
  try {
    body = JSON.parse(text) as Json;
  } catch {
    body = { text };
  }
  return { code: r.status, body, headers: r.headers };
}

function expectUnauthorized(r: { code: number; body: Json; headers: Headers }): void {
  expect(r.code).toBe(401);
  expect(r.headers.get('www-authenticate')).toMatch(/^Bearer\b/);
  expect(r.headers.get('content-type')).toMatch(/application\/json/);
  expect(typeof r.body.error).toBe('string');
}

describe('the admin token', () => {
  it('with a token configured, POST /phase and /sweeper need it; reads stay open on loopback', async () => {
    // Keys to move, slowly: the phase stays migrate (with its sweeper) after the switch.
    await seedStrings(ctx.source.client(), 0, 1000);
    const { admin } = await adminProxy('127.0.0.1', ['--phase', 'hold', '--admin-token', TOKEN, '--sweep-rate', '50']);

    expectUnauthorized(await call(admin, 'POST', '/phase?to=migrate'));
    expectUnauthorized(await call(admin, 'POST', '/phase?to=migrate', 'wrong-token'));
    expectUnauthorized(await call(admin, 'POST', '/phase?to=migrate', `${TOKEN}x`));
    expectUnauthorized(await call(admin, 'POST', '/sweeper/pause'));
    expectUnauthorized(await call(admin, 'POST', '/sweeper/rate?keys_per_sec=10', 'nope'));
    // Nothing was switched by the refused requests.
    expect((await fetchStatus<Json>(admin)).phase).toBe('hold');

    // Reads on loopback need no token.
    expect((await call(admin, 'GET', '/status')).code).toBe(200);
    expect((await fetch(`http://${admin}/metrics`)).status).toBe(200);

    const sw = await call(admin, 'POST', '/phase?to=migrate', TOKEN);
    expect(sw.code, JSON.stringify(sw.body)).toBe(200);
    expect(sw.body.to).toBe('migrate');
    await waitFor(async () => (await fetchStatus<Json>(admin)).phase === 'migrate', 'phase migrate in effect');
    const p = await call(admin, 'POST', '/sweeper/pause', TOKEN);
    expect(p.code, JSON.stringify(p.body)).toBe(200);
  });

  it('--admin PORT and --admin :PORT bind loopback', async () => {
    for (const form of ['', ':']) {
      const port = await freePort();
      const proxy = await startProxy({
        source: ctx.source,
        target: ctx.target,
        args: ['--admin', `${form}${port}`, '--progress', 'off'],
      });
      running.push(proxy);
      await waitFor(() => /admin endpoint on http:\/\/127\.0\.0\.1:\d+/.test(proxy.stderr), 'the admin log line');
      expect(proxy.stderr).toContain(`admin endpoint on http://127.0.0.1:${port}`);
      expect((await call(`127.0.0.1:${port}`, 'GET', '/status')).code).toBe(200);
    }
  });

  it('a bind beyond loopback without a token is refused at start (exit 2, one line)', async () => {
    const port = await freePort();
    const base = ['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--no-sweep'];
    for (const bind of [`0.0.0.0:${port}`, `[::]:${port}`]) {
      const r = await runCli([...base, '--admin', bind]);
      expect(r.timedOut).toBe(false);
      expect(r.code, r.stderr).toBe(2);
      const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
      expect(lines, r.stderr).toHaveLength(1);
      expect(r.stderr).toMatch(/loopback/);
      expect(r.stderr).toMatch(/--admin-token/);
      expect(r.stderr).toMatch(/REHOME_ADMIN_TOKEN/);
      expect(r.stdout).not.toMatch(/listening on/);
    }
    // An empty --admin-token is no token.
    const r = await runCli([...base, '--admin', `0.0.0.0:${port}`, '--admin-token', '']);
    expect(r.code, r.stderr).toBe(2);
  });

  it('bound beyond loopback with a token, reads need it too; the probes stay open', async () => {
    const { admin } = await adminProxy('0.0.0.0', ['--admin-token', TOKEN]);
    expectUnauthorized(await call(admin, 'GET', '/status'));
    expectUnauthorized(await call(admin, 'GET', '/status', 'wrong'));
    expectUnauthorized(await call(admin, 'GET', '/metrics'));
    expectUnauthorized(await call(admin, 'POST', '/sweeper/pause'));
    expectUnauthorized(await call(admin, 'GET', '/nowhere'));
    expect((await call(admin, 'GET', '/status', TOKEN)).code).toBe(200);
    const m = await fetch(`http://${admin}/metrics`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(m.status).toBe(200);
    expect(await m.text()).toMatch(/^rehome_clients /m);
    expect((await call(admin, 'GET', '/healthz')).code).toBe(200);
    expect((await call(admin, 'GET', '/readyz')).code).toBe(200);
  });

  it('the token from REHOME_ADMIN_TOKEN locks the endpoint like --admin-token', async () => {
    const { admin } = await adminProxy('0.0.0.0', [], { REHOME_ADMIN_TOKEN: TOKEN });
    expectUnauthorized(await call(admin, 'GET', '/status'));
    expect((await call(admin, 'GET', '/status', TOKEN)).code).toBe(200);
  });
});

describe('rehome status|phase|sweeper send the token', () => {
  it('from --admin-token or REHOME_ADMIN_TOKEN; refused without it (exit 1, says why)', async () => {
    const { admin } = await adminProxy('0.0.0.0', ['--phase', 'hold', '--admin-token', TOKEN]);

    const noToken = await runCli(['status', '--admin', admin]);
    expect(noToken.code, noToken.stderr).toBe(1);
    expect(noToken.stderr).toMatch(/401/);
    expect(noToken.stderr).toMatch(/--admin-token|REHOME_ADMIN_TOKEN/);

    const wrong = await runCli(['status', '--admin', admin, '--admin-token', 'wrong']);
    expect(wrong.code, wrong.stderr).toBe(1);

    const st = await runCli(['status', '--admin', admin, '--admin-token', TOKEN, '--json']);
    expect(st.code, st.stderr).toBe(0);
    expect(JSON.parse(st.stdout).phase).toBe('hold');
    const stEnv = await runCli(['status', '--admin', admin], 15_000, { REHOME_ADMIN_TOKEN: TOKEN });
    expect(stEnv.code, stEnv.stderr).toBe(0);
    expect(stEnv.stdout).toMatch(/^phase\s+hold/m);

    const refused = await runCli(['phase', 'migrate', '--admin', admin]);
    expect(refused.code, refused.stderr).toBe(1);
    expect((await call(admin, 'GET', '/status', TOKEN)).body.phase).toBe('hold');

    const ph = await runCli(['phase', 'migrate', '--admin', admin], 15_000, { REHOME_ADMIN_TOKEN: TOKEN });
    expect(ph.code, ph.stderr).toBe(0);
    expect(JSON.parse(ph.stdout).to).toBe('migrate');

    const swNo = await runCli(['sweeper', 'pause', '--admin', admin]);
    expect(swNo.code, swNo.stderr).toBe(1);
    const sw = await runCli(['sweeper', 'rate', '500', '--admin', admin, '--admin-token', TOKEN]);
    expect(sw.code, sw.stderr + sw.stdout).toBe(0);
    const swEnv = await runCli(['sweeper', 'resume', '--admin', admin], 15_000, { REHOME_ADMIN_TOKEN: TOKEN });
    expect(swEnv.code, swEnv.stderr + swEnv.stdout).toBe(0);
  });

  it('--help and usage errors: exit 0 with the usage, exit 2 for a bad --admin', async () => {
    for (const sub of ['status', 'phase', 'sweeper']) {
      for (const h of ['--help', '-h']) {
        const r = await runCli([sub, h]);
        expect(r.code, `${sub} ${h}: ${r.stderr}`).toBe(0);
        expect(r.stdout).toMatch(new RegExp(`usage: rehome ${sub}`));
        expect(r.stdout).toMatch(/--admin-token/);
        expect(r.stdout).toMatch(/REHOME_ADMIN_TOKEN/);
      }
    }
    for (const args of [
      ['status', '--admin', 'nonsense'],
      ['phase', 'migrate', '--admin', 'nonsense'],
      ['sweeper', 'pause', '--admin', 'nonsense'],
      ['status', '--admin', '127.0.0.1:99999'],
      ['phase', 'sideways', '--admin', '127.0.0.1:1'],
      ['status', '--bogus'],
    ]) {
      const r = await runCli(args);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr.split('\n').filter((l) => l.trim() !== '')).toHaveLength(1);
    }
  });
});

/** A request with the headers a browser would send (node:http: fetch may not set Host). */
function rawRequest(admin: string, method: string, path: string, headers: Record<string, string>): Promise<{ status: number; body: string }> {
  const [host, port] = admin.split(':');
  return new Promise((resolve, reject) => {
    const req = http.request({ host, port: Number(port), method, path, headers }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d.toString()));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('requests a web page makes the browser send', () => {
  it('on loopback without a token: a cross-site POST and a foreign Host are refused (403); the CLI and the dashboard work', async () => {
    const { proxy, admin } = await adminProxy('127.0.0.1', ['--phase', 'hold']);
    const evil = await rawRequest(admin, 'POST', '/phase?to=migrate', { host: admin, origin: 'http://evil.example' });
    expect(evil.status).toBe(403);
    expect(JSON.parse(evil.body).error).toMatch(/^refused: a request from the web page http:\/\/evil\.example/);
    const rebound = await rawRequest(admin, 'GET', '/status', { host: `evil.example:${admin.split(':')[1]}` });
    expect(rebound.status).toBe(403);
    expect(JSON.parse(rebound.body).error).toMatch(/names host 'evil\.example/);
    expect((await fetchStatus<Json>(admin)).phase).toBe('hold');
    // The dashboard's own POST (same origin) and the CLI (no Origin) are served.
    const own = await rawRequest(admin, 'POST', '/sweeper/pause', { host: admin, origin: `http://${admin}` });
    expect(own.status).toBe(200);
    const r = await runCli(['phase', 'migrate', '--admin', admin]);
    expect(r.code, r.stderr).toBe(0);
    void proxy;
  });
});

describe('/healthz and /readyz', () => {
  it('ready in migrate; not ready once the phase cannot be read from the old server; alive throughout', async () => {
    await seedStrings(ctx.source.client(), 0, 1000);
    const { admin } = await adminProxy('127.0.0.1', ['--phase', 'migrate', '--sweep-rate', '50']);
    const h = await call(admin, 'GET', '/healthz');
    expect(h.code).toBe(200);
    const r = await call(admin, 'GET', '/readyz');
    expect(r.code, JSON.stringify(r.body)).toBe(200);
    expect(r.body.ready).toBe(true);
    expect(r.body.phase).toBe('migrate');

    await ctx.source.stop();
    const nr = await waitFor(
      async () => {
        const x = await call(admin, 'GET', '/readyz');
        return x.code === 503 ? x : null;
      },
      '/readyz 503 with the old server stopped',
      15_000,
      100,
    );
    expect(nr.body.ready).toBe(false);
    expect(nr.headers.get('content-type')).toMatch(/application\/json/);
    expect(nr.body.reason).toMatch(/old server/);
    expect((await call(admin, 'GET', '/healthz')).code).toBe(200);
  });

  it('ready without phases too, and the probes need no token even with one configured', async () => {
    const { admin } = await adminProxy('127.0.0.1', ['--admin-token', TOKEN]);
    const r = await call(admin, 'GET', '/readyz');
    expect(r.code, JSON.stringify(r.body)).toBe(200);
    expect(r.body.ready).toBe(true);
    expect((await call(admin, 'GET', '/healthz')).code).toBe(200);
  });
});

describe('--log-format', () => {
  it('json: one JSON object per line with level, time, msg; the listening line on stdout as JSON', async () => {
    const { proxy, admin } = await adminProxy('127.0.0.1', ['--phase', 'hold', '--log-format', 'json']);
    await waitFor(() => proxy.stderr.includes('admin endpoint on'), 'the admin log line');
    const out = proxy.stdout.split('\n').filter((l) => l !== '');
    expect(out).toHaveLength(1);
    const listening = JSON.parse(out[0]!) as Json;
    expect(listening.msg).toMatch(/listening on 127\.0\.0\.1:\d+/);
    expect(listening.level).toBe('info');
    expect(listening.listen).toBe(`127.0.0.1:${proxy.port}`);

    // A request that changes something is logged.
    expect((await call(admin, 'POST', '/sweeper/pause')).code).toBeLessThan(500);
    await waitFor(() => proxy.stderr.includes('/sweeper/pause'), 'the admin request log line');
    const e = await proxy.stop('SIGTERM', 5_000);
    expect(e.code).toBe(0);
    const lines = proxy.stderr.split('\n').filter((l) => l !== '');
    expect(lines.length).toBeGreaterThan(2);
    for (const l of lines) {
      const j = JSON.parse(l) as Json;
      expect(typeof j.level, l).toBe('string');
      expect(typeof j.msg, l).toBe('string');
      expect(new Date(j.time as string).getTime(), l).toBeGreaterThan(0);
    }
    expect(lines.some((l) => /phase hold \(epoch \d+\)/.test(l))).toBe(true);
    expect(lines.some((l) => /SIGTERM/.test(l))).toBe(true);
  });

  it('text (the default): the listening line and the log lines as before', async () => {
    const { proxy } = await adminProxy('127.0.0.1', []);
    await waitFor(() => proxy.stderr.includes('admin endpoint on'), 'the admin log line');
    expect(proxy.stdout).toBe(`rehome: listening on 127.0.0.1:${proxy.port}\n`);
    for (const l of proxy.stderr.split('\n').filter((x) => x !== '')) {
      expect(l).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z rehome: /);
    }
  });

  it('a bad --log-format: exit 2, one line', async () => {
    const r = await runCli(['--listen', '127.0.0.1:0', '--source', ctx.source.url, '--target', ctx.target.url, '--log-format', 'xml']);
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/--log-format/);
  });
});
