/**
 * TLS on every side: clients to rehome over --tls-port (client certificates as --tls-auth-clients
 * says; SIGHUP reloads the certificate), rehome to rediss:// servers (Debian's redis-server is
 * built with TLS: each server here listens on a plain port, used only by the test to seed and
 * check, and a TLS port, the only one rehome is given), and the start-up failures.
 *
 * Certificates are made here with openssl: a CA, a server certificate for 127.0.0.1, a client
 * certificate, a second server certificate (for the reload) and an unrelated CA.
 */
import { copyFileSync } from 'node:fs';
import tls from 'node:tls';
import { Redis, type RedisOptions } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { freePort, type RedisServer, startRedis } from '../helpers/redis.js';
import { runCli, type ProxyHandle, startProxy } from '../helpers/proxy.js';
import { certDir } from '../helpers/tls.js';
import { errorOf, waitFor } from '../helpers/util.js';

const certs = certDir();
const f = certs.file;
const pem = certs.pem;

beforeAll(() => {
  certs.ca('ca');
  certs.ca('other-ca');
  certs.cert('server', 'ca');
  certs.cert('server-2', 'ca');
  certs.cert('client', 'ca');
  certs.cert('stranger', 'other-ca');
});

/** redis-server with a TLS port beside its plain one; `extra` after the TLS args. */
async function startTlsRedis(extra: string[] = []): Promise<{ server: RedisServer; tlsPort: number }> {
  const tlsPort = await freePort();
  const server = await startRedis({
    args: ['--tls-port', String(tlsPort), '--tls-cert-file', f('server.crt'), '--tls-key-file', f('server.key'), '--tls-ca-cert-file', f('ca.crt'), ...extra],
  });
  return { server, tlsPort };
}

const servers: RedisServer[] = [];
const proxies: ProxyHandle[] = [];
const clients: Redis[] = [];

afterEach(async () => {
  for (const c of clients.splice(0)) c.disconnect();
  await Promise.all(proxies.splice(0).map((p) => p.stop()));
});

afterAll(async () => {
  await Promise.all(servers.splice(0).map((s) => s.stop()));
});

async function plainPair(): Promise<{ source: RedisServer; target: RedisServer }> {
  const [source, target] = await Promise.all([startRedis(), startRedis()]);
  servers.push(source, target);
  return { source, target };
}

/** An ioredis client to rehome's TLS port. */
function tlsClient(port: number, opts: tls.ConnectionOptions, extra: RedisOptions = {}): Redis {
  const c = new Redis({
    host: '127.0.0.1',
    port,
    tls: { ca: pem('ca.crt'), ...opts },
    enableReadyCheck: false,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
    commandTimeout: 10_000,
    ...extra,
  });
  c.on('error', () => {});
  clients.push(c);
  return c;
}

/** The CN of the certificate a fresh TLS connection to `port` is shown. */
function peerName(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tls.connect({ host: '127.0.0.1', port, ca: pem('ca.crt'), cert: pem('client.crt'), key: pem('client.key') }, () => {
      const cn = s.getPeerCertificate().subject.CN;
      s.destroy();
      resolve(Array.isArray(cn) ? cn.join(',') : String(cn));
    });
    s.on('error', reject);
  });
}

function clientTlsArgs(tlsPort: number, authClients?: string): string[] {
  return [
    '--tls-port', String(tlsPort),
    '--tls-cert-file', f('server.crt'),
    '--tls-key-file', f('server.key'),
    '--tls-ca-cert-file', f('ca.crt'),
    ...(authClients !== undefined ? ['--tls-auth-clients', authClients] : []),
  ];
}

describe('TLS to clients (--tls-port)', () => {
  it('requires a client certificate by default (--tls-auth-clients yes); the plain port keeps serving', async () => {
    const pair = await plainPair();
    const tlsPort = await freePort();
    const p = await startProxy({ ...pair, args: clientTlsArgs(tlsPort) });
    proxies.push(p);
    // Logged with the runtime's lines, just after the listening line the start waited for.
    await waitFor(() => p.stderr.includes('TLS clients on'), 'the TLS log line');
    expect(p.stderr).toContain(`TLS clients on 127.0.0.1:${tlsPort} (client certificates: yes)`);

    const withCert = tlsClient(tlsPort, { cert: pem('client.crt'), key: pem('client.key') });
    expect(await withCert.set('k', 'over tls')).toBe('OK');
    expect(await withCert.get('k')).toBe('over tls');
    expect(await pair.target.client().get('k')).toBe('over tls');

    const without = tlsClient(tlsPort, {});
    expect(await errorOf(without.ping())).toMatch(/certificate|closed|ECONNRESET|socket/i);

    const stranger = tlsClient(tlsPort, { cert: pem('stranger.crt'), key: pem('stranger.key') });
    expect(await errorOf(stranger.ping())).toMatch(/certificate|closed|ECONNRESET|socket|alert/i);

    expect(await p.client().get('k')).toBe('over tls');
  });

  it('--tls-auth-clients no asks for none, and --listen none serves TLS only', async () => {
    const pair = await plainPair();
    const p = await startProxy({ ...pair, args: ['--listen', 'none', ...clientTlsArgs(0, 'no')] });
    proxies.push(p);
    // The listening line names the TLS port when there is no plain one.
    const c = tlsClient(p.port, {});
    expect(await c.set('a', '1')).toBe('OK');
    expect(await c.incr('a')).toBe(2);
    // A plain client on that port gets no reply, only a closed connection.
    expect(await errorOf(p.client({ connectTimeout: 2_000 }).ping())).toBeTruthy();
  });

  it('--tls-auth-clients optional: no certificate is fine, one from another CA is refused', async () => {
    const pair = await plainPair();
    const tlsPort = await freePort();
    const p = await startProxy({ ...pair, args: clientTlsArgs(tlsPort, 'optional') });
    proxies.push(p);
    expect(await tlsClient(tlsPort, {}).ping()).toBe('PONG');
    expect(await tlsClient(tlsPort, { cert: pem('client.crt'), key: pem('client.key') }).ping()).toBe('PONG');
    expect(await errorOf(tlsClient(tlsPort, { cert: pem('stranger.crt'), key: pem('stranger.key') }).ping())).toBeTruthy();
  });

  it('SIGHUP serves the certificate as it is on disk now; a bad file keeps the previous one', async () => {
    const pair = await plainPair();
    copyFileSync(f('server.crt'), f('live.crt'));
    copyFileSync(f('server.key'), f('live.key'));
    const tlsPort = await freePort();
    const p = await startProxy({
      ...pair,
      args: ['--tls-port', String(tlsPort), '--tls-cert-file', f('live.crt'), '--tls-key-file', f('live.key'), '--tls-ca-cert-file', f('ca.crt')],
      spawn: true, // SIGHUP
    });
    proxies.push(p);
    expect(await peerName(tlsPort)).toBe('server');
    const before = tlsClient(tlsPort, { cert: pem('client.crt'), key: pem('client.key') });
    expect(await before.set('x', '1')).toBe('OK');

    copyFileSync(f('server-2.crt'), f('live.crt'));
    copyFileSync(f('server-2.key'), f('live.key'));
    p.proc.kill('SIGHUP');
    await waitFor(() => p.stderr.includes('SIGHUP: TLS certificate reloaded'), 'the reload log line');
    expect(await peerName(tlsPort)).toBe('server-2');
    // A connected client keeps its session.
    expect(await before.get('x')).toBe('1');

    // A key that does not match the certificate: the old context stays.
    copyFileSync(f('server.key'), f('live.key'));
    p.proc.kill('SIGHUP');
    await waitFor(() => p.stderr.includes('SIGHUP: TLS certificate not reloaded'), 'the failed-reload log line');
    expect(p.stderr).toMatch(/not reloaded, the previous one stays in use: .*key values mismatch/);
    expect(await peerName(tlsPort)).toBe('server-2');
    expect(await before.get('x')).toBe('1');
  });

  it('start-up: a missing or mismatched certificate is one line and exit 1; flags out of place are usage errors', async () => {
    const pair = await plainPair();
    const base = ['--listen', '127.0.0.1:0', '--source', pair.source.url, '--target', pair.target.url, '--no-sweep'];
    const tlsPort = String(await freePort());
    const missing = await runCli([...base, '--tls-port', tlsPort, '--tls-cert-file', f('nope.crt'), '--tls-key-file', f('server.key'), '--tls-auth-clients', 'no']);
    expect(missing.code).toBe(1);
    expect(missing.stderr.trim().split('\n')).toHaveLength(1);
    expect(missing.stderr).toContain(`--tls-cert-file ${f('nope.crt')}: cannot read it: ENOENT`);

    const mismatch = await runCli([...base, '--tls-port', tlsPort, '--tls-cert-file', f('server.crt'), '--tls-key-file', f('client.key'), '--tls-auth-clients', 'no']);
    expect(mismatch.code).toBe(1);
    expect(mismatch.stderr.trim().split('\n')).toHaveLength(1);
    expect(mismatch.stderr).toMatch(/--tls-cert-file\/--tls-key-file: .*key values mismatch/);

    const noCa = await runCli([...base, '--tls-port', tlsPort, '--tls-cert-file', f('server.crt'), '--tls-key-file', f('server.key')]);
    expect(noCa.code).toBe(2);
    expect(noCa.stderr).toContain('needs --tls-ca-cert-file');

    const noPort = await runCli([...base, '--tls-cert-file', f('server.crt')]);
    expect(noPort.code).toBe(2);
    expect(noPort.stderr).toContain('--tls-cert-file needs --tls-port');

    const noPlain = await runCli([...base, '--listen', 'none']);
    expect(noPlain.code).toBe(2);
    expect(noPlain.stderr).toContain('--listen none needs --tls-port');
  });

  it('--workers 2: every worker serves the TLS port, and SIGHUP to the primary reloads the certificate in each', async () => {
    const pair = await plainPair();
    copyFileSync(f('server.crt'), f('fleet.crt'));
    copyFileSync(f('server.key'), f('fleet.key'));
    const p = await startProxy({
      ...pair,
      args: ['--listen', 'none', '--workers', '2', '--tls-port', '0', '--tls-cert-file', f('fleet.crt'), '--tls-key-file', f('fleet.key'), '--tls-ca-cert-file', f('ca.crt')],
    });
    proxies.push(p);
    expect(p.stdout.split('\n').filter((l) => l.includes('listening on'))).toHaveLength(1);
    // The primary hands connections out round-robin: four in a row reach both workers.
    const names = async () => Promise.all([0, 1, 2, 3].map(() => peerName(p.port)));
    expect(await names()).toEqual(['server', 'server', 'server', 'server']);
    const before = tlsClient(p.port, { cert: pem('client.crt'), key: pem('client.key') });
    expect(await before.set('w', '1')).toBe('OK');

    copyFileSync(f('server-2.crt'), f('fleet.crt'));
    copyFileSync(f('server-2.key'), f('fleet.key'));
    p.proc.kill('SIGHUP');
    await waitFor(
      () => p.stderr.includes('worker 1: SIGHUP: TLS certificate reloaded') && p.stderr.includes('worker 2: SIGHUP: TLS certificate reloaded'),
      'both workers to log the reload',
    );
    expect(await names()).toEqual(['server-2', 'server-2', 'server-2', 'server-2']);
    expect(await before.get('w')).toBe('1');
    expect(p.running).toBe(true);
  });
});

describe('TLS to the servers (rediss://)', () => {
  /** Source asks no client certificate, target requires one: both flag sets are exercised. */
  async function tlsPair(sourceExtra: string[] = []) {
    const [s, t] = await Promise.all([startTlsRedis(['--tls-auth-clients', 'no', ...sourceExtra]), startTlsRedis()]);
    servers.push(s.server, t.server);
    return {
      source: s.server,
      target: t.server,
      sourceUrl: `rediss://127.0.0.1:${s.tlsPort}`,
      targetUrl: `rediss://127.0.0.1:${t.tlsPort}`,
      tlsArgs: [
        '--source-tls-ca-cert-file', f('ca.crt'),
        '--target-tls-ca-cert-file', f('ca.crt'),
        '--target-tls-cert-file', f('client.crt'),
        '--target-tls-key-file', f('client.key'),
      ],
    };
  }

  it('moves keys on first touch and by the sweeper, every connection over TLS', async () => {
    const pair = await tlsPair();
    const seed = pair.source.client();
    const p0 = seed.pipeline();
    for (let i = 0; i < 200; i++) p0.set(`k${i}`, `v${i}`);
    await p0.exec();
    await seed.hset('h', 'f', 'v');
    await pair.source.client(3).set('in-db3', 'x');

    // MIGRATE runs in plain TCP (the source has no tls-cluster): the target's plain port for it.
    const p = await startProxy({
      source: pair.sourceUrl,
      target: pair.targetUrl,
      sweep: true,
      args: [...pair.tlsArgs, '--target-from-source', `127.0.0.1:${pair.target.port}`, '--sweep-rate', '200'],
    });
    proxies.push(p);
    const c = p.client();
    // A shared-lane command and own-connection commands (SELECT pins the client to its own).
    expect(await c.get('k0')).toBe('v0');
    expect(await c.hget('h', 'f')).toBe('v');
    const own = p.client({ db: 3 });
    expect(await own.get('in-db3')).toBe('x');
    expect(await pair.target.client(3).get('in-db3')).toBe('x');
    expect(await pair.target.client().get('k0')).toBe('v0');

    await waitFor(async () => (await pair.source.client().dbsize()) === 0, 'the sweeper drains the source over TLS', 20_000);
    expect(await pair.target.client().dbsize()).toBe(201);
    expect(await c.get('k199')).toBe('v199');

    const verify = await runCli(['verify', '--source', pair.sourceUrl, '--target', pair.targetUrl, ...pair.tlsArgs]);
    expect(verify.code).toBe(0);
  });

  it('where MIGRATE would have to use TLS, plan says why and keys move through the proxy (DUMP/RESTORE over TLS)', async () => {
    const pair = await tlsPair();
    const plan = await runCli(['plan', '--source', pair.sourceUrl, '--target', pair.targetUrl, ...pair.tlsArgs], 30_000);
    expect(plan.stdout).toMatch(/WARN\s+source cannot MIGRATE to the target at 127\.0\.0\.1:\d+: .*MIGRATE does not use TLS unless the source runs with tls-cluster yes.*keys move by dump instead/);
    expect(plan.code).toBe(0);

    // Forced to MIGRATE, the pre-flight check fails and the proxy does not start.
    const forced = await runCli(['--listen', '127.0.0.1:0', '--source', pair.sourceUrl, '--target', pair.targetUrl, '--no-sweep', '--move-method', 'migrate', ...pair.tlsArgs], 30_000);
    expect(forced.code).toBe(1);
    expect(forced.stderr).toContain('pre-flight check failed: source cannot MIGRATE');

    const seed = pair.source.client();
    const p0 = seed.pipeline();
    for (let i = 0; i < 50; i++) p0.set(`d${i}`, `v${i}`);
    await p0.exec();
    const p = await startProxy({ source: pair.sourceUrl, target: pair.targetUrl, sweep: true, args: [...pair.tlsArgs, '--sweep-rate', '50'] });
    proxies.push(p);
    expect(await p.client().get('d0')).toBe('v0');
    expect(await pair.target.client().get('d0')).toBe('v0');
    // A key in the middle of its move is in the source under its claim name (__rehome:c...), not
    // d*: drained means no d* and no claim left.
    const src = pair.source.client();
    await waitFor(
      async () => (await src.keys('d*')).length === 0 && (await src.keys('__rehome:c[{:]*')).length === 0,
      'the sweeper drains the source by DUMP/RESTORE over TLS',
      20_000,
    );
    // rehome's own keys (__rehome:*) aside.
    expect((await pair.target.client().keys('*')).filter((k) => !k.startsWith('__rehome:')).length).toBe(50);
  });

  it('with tls-cluster yes on the source, MIGRATE goes over TLS and plan proves it', async () => {
    const pair = await tlsPair(['--tls-cluster', 'yes']);
    const plan = await runCli(['plan', '--source', pair.sourceUrl, '--target', pair.targetUrl, ...pair.tlsArgs], 30_000);
    expect(plan.stdout).toMatch(/ok\s+source can MIGRATE to the target at 127\.0\.0\.1:\d+/);
    expect(plan.code).toBe(0);

    await pair.source.client().set('moved', 'over tls');
    const p = await startProxy({ source: pair.sourceUrl, target: pair.targetUrl, args: pair.tlsArgs });
    proxies.push(p);
    expect(await p.client().get('moved')).toBe('over tls');
    expect(await pair.source.client().exists('moved')).toBe(0);
    expect(await pair.target.client().get('moved')).toBe('over tls');
  });

  it('a server certificate from another CA is one line naming the server, and exit 1', async () => {
    const pair = await tlsPair();
    const r = await runCli([
      '--listen', '127.0.0.1:0', '--source', pair.sourceUrl, '--target', pair.targetUrl, '--no-sweep',
      '--source-tls-ca-cert-file', f('other-ca.crt'),
      '--target-tls-ca-cert-file', f('ca.crt'), '--target-tls-cert-file', f('client.crt'), '--target-tls-key-file', f('client.key'),
    ]);
    expect(r.code).toBe(1);
    const lines = r.stderr.trim().split('\n');
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatch(new RegExp(`source 127\\.0\\.0\\.1:${pair.sourceUrl.split(':').pop()} unreachable: .*certificate`));
    expect(lines[0]).toContain("(TLS: the source's certificate does not verify against --source-tls-ca-cert-file");
  });

  it('a target that requires a client certificate refuses rehome without one', async () => {
    const pair = await tlsPair();
    const r = await runCli([
      '--listen', '127.0.0.1:0', '--source', pair.sourceUrl, '--target', pair.targetUrl, '--no-sweep',
      '--source-tls-ca-cert-file', f('ca.crt'), '--target-tls-ca-cert-file', f('ca.crt'),
    ]);
    expect(r.code).toBe(1);
    expect(r.stderr.trim().split('\n')).toHaveLength(1);
    expect(r.stderr).toMatch(/target 127\.0\.0\.1:\d+ unreachable/);
  });

  it('TLS flags for a redis:// server are a usage error', async () => {
    const pair = await plainPair();
    const r = await runCli(['--listen', '127.0.0.1:0', '--source', pair.source.url, '--target', pair.target.url, '--source-tls-ca-cert-file', f('ca.crt')]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('--source-tls-ca-cert-file needs a rediss:// --source (TLS)');
  });
});
