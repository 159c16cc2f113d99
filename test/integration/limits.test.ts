/**
 * Per-client limits: --maxclients, --proto-max-bulk-len, --client-query-buffer-limit,
 * --client-output-buffer-limit and --timeout (README "Limits").
 */
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { usePair, useReferenceRedis } from '../helpers/fixture.js';
import { MB, peakRssBytes, rssBytes } from '../helpers/memory.js';
import { runCli, type ProxyHandle } from '../helpers/proxy.js';
import { encodeCommand, RawClient, show } from '../helpers/resp.js';
import { freePort } from '../helpers/redis.js';
import { sleep, waitFor } from '../helpers/util.js';

const ctx = usePair({ autoProxy: false });
const ref = useReferenceRedis();

function proxyWith(...args: string[]): Promise<ProxyHandle> {
  return ctx.restartProxy(['--progress', 'off', ...args]);
}

/** A proxy in its own process: the tests that measure its memory (RSS) read it by pid. */
function processWith(...args: string[]): Promise<ProxyHandle> {
  return ctx.restartProxy(['--progress', 'off', ...args], true);
}

/**
 * Opens a client that sends nothing and waits until --timeout closes it. Every client whose last
 * command came before this one connected has then been idle past the timeout as well, and was
 * looked at by the same or an earlier check.
 */
async function idleWitnessClosed(proxy: ProxyHandle): Promise<void> {
  const witness = await proxy.raw();
  expect(await witness.waitClosed(15_000), 'a client that sends nothing, closed by --timeout').toBe(true);
  witness.close();
}

/** A connection that sends what it is given and reads nothing until told to. */
class NonReader {
  private received = 0;
  private ended = false;

  private constructor(private readonly sock: net.Socket) {
    sock.on('error', () => {});
    sock.on('close', () => (this.ended = true));
  }

  static connect(port: number): Promise<NonReader> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host: '127.0.0.1' });
      s.once('connect', () => resolve(new NonReader(s)));
      s.once('error', reject);
    });
  }

  write(b: Buffer): void {
    this.sock.write(b);
  }

  /** Starts reading (and dropping) everything; resolves with the byte count once the peer closes. */
  drainUntilClosed(timeoutMs: number): Promise<{ bytes: number; closed: boolean }> {
    return new Promise((resolve) => {
      const done = () => resolve({ bytes: this.received, closed: this.ended });
      const t = setTimeout(done, timeoutMs);
      this.sock.on('data', (d: Buffer) => (this.received += d.length));
      if (this.ended) {
        clearTimeout(t);
        done();
        return;
      }
      this.sock.once('close', () => {
        clearTimeout(t);
        done();
      });
    });
  }

  /** Starts reading; resolves once `n` bytes have arrived (or the timeout passes). */
  async readBytes(n: number, timeoutMs: number): Promise<number> {
    this.sock.on('data', (d: Buffer) => (this.received += d.length));
    await waitFor(() => this.received >= n || this.ended, `${n} bytes`, timeoutMs, 20).catch(() => undefined);
    return this.received;
  }

  get closed(): boolean {
    return this.ended;
  }

  close(): void {
    this.sock.destroy();
  }
}

describe('--maxclients', () => {
  it('the client past the limit gets exactly Redis\'s error and is closed; a slot frees when a client leaves', async () => {
    const proxy = await proxyWith('--maxclients', '3');
    const first = await Promise.all([proxy.raw(), proxy.raw(), proxy.raw()]);
    for (const c of first) expect((await c.command('PING')).toString()).toBe('+PONG\r\n');

    const extra = await proxy.raw();
    const refused = await extra.readReply(5_000);
    expect(await extra.waitClosed(5_000), 'refused client closed').toBe(true);

    // The same bytes a redis-server sends past its own maxclients.
    const admin = ref.server.client();
    await admin.config('SET', 'maxclients', '1');
    try {
      const direct = await RawClient.connect(ref.server.port);
      const redisReply = await direct.readReply(5_000);
      direct.close();
      expect(show(refused)).toBe(show(redisReply));
    } finally {
      await admin.config('SET', 'maxclients', '10000');
      admin.disconnect();
    }
    expect(refused.toString()).toBe('-ERR max number of clients reached\r\n');

    // The three admitted clients are unaffected.
    for (const [i, c] of first.entries()) expect(await c.call('SET', `mc:${i}`, 'v')).toBe('OK');

    // One leaves: its slot is given to the next client.
    first[2]!.close();
    const next = await waitFor(async () => {
      const c = await proxy.raw();
      const r = (await c.command('PING')).toString();
      if (r === '+PONG\r\n') return c;
      expect(r).toBe('-ERR max number of clients reached\r\n');
      c.close();
      return null;
    }, 'a slot freed by a leaving client', 5_000, 50);
    expect(await next.call('GET', 'mc:0')).toBe('v');
    const again = await proxy.raw();
    expect((await again.readReply(5_000)).toString()).toBe('-ERR max number of clients reached\r\n');
    for (const c of [...first, next, again]) c.close();
  });

  it('a client closed after a protocol error gives its slot back, even when it sent more after the error', async () => {
    const proxy = await proxyWith('--maxclients', '1');
    const bad = await proxy.raw();
    bad.write("GET 'x'y\n");
    expect((await bad.readReply(5_000)).toString()).toMatch(/^-ERR Protocol error: unbalanced quotes/);
    bad.write('*1\r\n$4\r\nPING\r\n'); // ignored: the proxy is closing this connection
    expect(await bad.waitClosed(5_000)).toBe(true);
    bad.close();
    const next = await waitFor(async () => {
      const c = await proxy.raw();
      if ((await c.command('PING')).toString() === '+PONG\r\n') return c;
      c.close();
      return null;
    }, 'the slot of the closed client is free again', 5_000, 50);
    next.close();
  });
});

describe('largest request (--proto-max-bulk-len)', () => {
  it('a bulk argument up to the limit passes; one byte more is a protocol error and a close', async () => {
    const proxy = await proxyWith('--proto-max-bulk-len', '1kb');
    const c = await proxy.raw();
    expect(await c.call('SET', 'fits', 'x'.repeat(1024))).toBe('OK');
    expect(await c.call('STRLEN', 'fits')).toBe(1024);
    const big = await proxy.raw();
    big.write(encodeCommand(['SET', 'too-big', 'x'.repeat(1025)]));
    expect((await big.readReply(5_000)).toString()).toBe('-ERR Protocol error: invalid bulk length\r\n');
    expect(await big.waitClosed(5_000)).toBe(true);
    expect(await c.call('EXISTS', 'too-big')).toBe(0);
    expect(await c.call('PING')).toBe('PONG');
    c.close();
  });

  it('by default, a declared bulk past 512 MB is refused at its header', async () => {
    const proxy = await proxyWith();
    const c = await proxy.raw();
    c.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${512 * MB + 1}\r\n`);
    expect((await c.readReply(5_000)).toString()).toBe('-ERR Protocol error: invalid bulk length\r\n');
    expect(await c.waitClosed(5_000)).toBe(true);
    const ok = await proxy.raw();
    ok.write(`*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$${512 * MB}\r\nabc`);
    // Accepted so far: the proxy waits for the rest of the value.
    await sleep(200);
    expect(ok.closed).toBe(false);
    expect(ok.pending().length).toBe(0);
    ok.close();
  });
});

describe('--client-query-buffer-limit', () => {
  it('a client whose unfinished request passes the limit gets an error and is closed; memory stays bounded', async () => {
    const proxy = await processWith('--client-query-buffer-limit', '1mb');
    const pid = proxy.proc.pid!;
    const other = proxy.client();
    // A request that fits is served.
    expect(await other.set('fits', 'y'.repeat(900 * 1024))).toBe('OK');

    const before = rssBytes(pid);
    const c = await proxy.raw();
    // A value declared at 400 MB (allowed by proto-max-bulk-len) that keeps arriving.
    c.write(encodeCommand(['PING']));
    c.write(`*3\r\n$3\r\nSET\r\n$4\r\nhuge\r\n$${400 * MB}\r\n`);
    const chunk = Buffer.alloc(64 * 1024, 0x7a);
    for (let i = 0; i < 64 && !c.closed; i++) {
      c.write(chunk);
      await new Promise((r) => setImmediate(r));
    }
    expect((await c.readReply(5_000)).toString()).toBe('+PONG\r\n');
    const err = (await c.readReply(5_000)).toString();
    expect(err).toMatch(/^-ERR rehome: client query buffer limit reached \(more than 1048576 bytes/);
    expect(await c.waitClosed(5_000)).toBe(true);
    expect(proxy.stderr).toMatch(/query buffer limit \(1048576 bytes\) reached/);
    expect(peakRssBytes(pid) - before, 'proxy memory while the client sent').toBeLessThan(64 * MB);

    expect(await other.exists('huge')).toBe(0);
    expect((await other.get('fits'))?.length).toBe(900 * 1024);
  });
});

describe('--client-output-buffer-limit', () => {
  const VALUE = 1024 * 1024;
  // 100 MB of replies: far past the limit plus what the sockets' kernel buffers take (a few MB),
  // and past the RSS bound below, so a proxy that held every reply fails. (1 GB made the target
  // itself spend over 20 s building its output buffer on a loaded machine, before the proxy could
  // see a byte of it.)
  const GETS = 100;

  async function seedBig(): Promise<void> {
    const t = ctx.target.client();
    await t.set('big', 'v'.repeat(VALUE));
    t.disconnect();
  }

  it('a client that pipelines without reading is disconnected past the limit; the proxy\'s memory stays bounded', async () => {
    await seedBig();
    const proxy = await processWith('--client-output-buffer-limit', '4mb');
    const pid = proxy.proc.pid!;
    const other = proxy.client();
    expect(await other.strlen('big')).toBe(VALUE);
    const before = rssBytes(pid);

    const greedy = await NonReader.connect(proxy.port);
    const gets = Buffer.concat(Array.from({ length: GETS }, () => encodeCommand(['GET', 'big'])));
    greedy.write(gets);
    await waitFor(() => /output buffer limit \(4194304 bytes\) reached/.test(proxy.stderr), 'the proxy closes the client', 20_000);
    const peak = peakRssBytes(pid) - before;
    expect(peak, `proxy RSS peak grew by ${(peak / MB).toFixed(1)} MB`).toBeLessThan(64 * MB);

    // Reading now: only what was in flight arrives (socket buffers, at most the limit), then the close.
    const { bytes, closed } = await greedy.drainUntilClosed(10_000);
    expect(closed, 'connection closed by the proxy').toBe(true);
    expect(bytes).toBeLessThan(64 * MB);
    greedy.close();

    // Everyone else is served.
    expect(await other.strlen('big')).toBe(VALUE);
    expect(await other.set('after', '1')).toBe('OK');
  });

  it('a slow reader under the limit gets every reply', async () => {
    await seedBig();
    const proxy = await proxyWith('--client-output-buffer-limit', '64mb');
    const slow = await NonReader.connect(proxy.port);
    const n = 20;
    slow.write(Buffer.concat(Array.from({ length: n }, () => encodeCommand(['GET', 'big']))));
    await sleep(300);
    const expected = n * (`$${VALUE}\r\n`.length + VALUE + 2);
    expect(await slow.readBytes(expected, 20_000)).toBe(expected);
    expect(slow.closed).toBe(false);
    slow.close();
  });

  it('with 0 (no limit) the proxy stops reading the target instead: the replies wait there, none lost', async () => {
    await seedBig();
    const proxy = await processWith('--client-output-buffer-limit', '0');
    const pid = proxy.proc.pid!;
    const before = rssBytes(pid);
    const n = 100; // 100 MB of replies: past the proxy's RSS bound below, were it to hold them
    const reader = await NonReader.connect(proxy.port);
    reader.write(Buffer.concat(Array.from({ length: n }, () => encodeCommand(['GET', 'big']))));
    // The replies pile up in the target, in the output buffer of this client's connection.
    const admin = ctx.target.client();
    await waitFor(async () => {
      const list = (await admin.client('LIST')) as string;
      return list.split('\n').some((l) => Number(/ omem=(\d+)/.exec(l)?.[1] ?? 0) > 32 * MB);
    }, 'replies waiting in the target', 20_000, 50);
    admin.disconnect();
    const peak = peakRssBytes(pid) - before;
    expect(peak, `proxy RSS peak grew by ${(peak / MB).toFixed(1)} MB`).toBeLessThan(64 * MB);
    expect(reader.closed).toBe(false);
    const expected = n * (`$${VALUE}\r\n`.length + VALUE + 2);
    expect(await reader.readBytes(expected, 30_000)).toBe(expected);
    reader.close();
  });

  it('with 0, a client flooding requests the proxy answers itself stops being read while it does not read', async () => {
    const admin = `127.0.0.1:${await freePort()}`;
    const proxy = await processWith('--client-output-buffer-limit', '0', '--admin', admin);
    const handled = async () =>
      Number(/^rehome_commands_total (\d+)$/m.exec(await (await fetch(`http://${admin}/metrics`)).text())?.[1]);
    const pid = proxy.proc.pid!;
    const probe = await proxy.raw();
    const refusedReply = await probe.command('SYNC');
    probe.close();
    expect(refusedReply.toString()).toMatch(/^-ERR rehome: 'SYNC' is not supported/);
    const before = rssBytes(pid);
    const n = 300_000; // 2.7 MB of requests, each answered by the proxy itself with an error
    const flood = await NonReader.connect(proxy.port);
    flood.write(Buffer.from('SYNC\r\n'.repeat(n)));
    // Wait until the proxy stops taking requests: the count holds still for half a second.
    let last = -1;
    const stalled = await waitFor(async () => {
      const c = await handled();
      const still = c === last;
      last = c;
      return still ? c : null;
    }, 'the proxy stops reading the flood', 30_000, 500);
    expect(stalled, 'requests handled while the client reads nothing').toBeLessThan(n / 2);
    const peak = peakRssBytes(pid) - before;
    expect(peak, `proxy RSS peak grew by ${(peak / MB).toFixed(1)} MB`).toBeLessThan(32 * MB);
    // Reading now: every reply arrives.
    const expected = n * refusedReply.length;
    expect(await flood.readBytes(expected, 60_000)).toBe(expected);
    flood.close();
  }, 90_000);
});

describe('--timeout', () => {
  it('closes an idle client silently; busy, blocked and subscribed clients stay', async () => {
    const proxy = await proxyWith('--timeout', '1');
    const idle = await proxy.raw();
    const chatty = await proxy.raw();
    const blocked = await proxy.raw();
    const subscriber = await proxy.raw();
    expect(await idle.call('PING')).toBe('PONG');
    expect(await chatty.call('PING')).toBe('PONG');
    expect(await subscriber.call('SUBSCRIBE', 'news')).toEqual(['subscribe', 'news', 1]);
    blocked.write(encodeCommand(['BLPOP', 'queue', '0']));
    const start = Date.now();

    // The chatty client sends a PING every 300 ms, past twice the timeout.
    const chatting = (async () => {
      while (Date.now() - start < 2_500) {
        expect(await chatty.call('PING')).toBe('PONG');
        await sleep(300);
      }
    })();
    expect(await idle.waitClosed(5_000), 'idle client closed').toBe(true);
    expect(idle.pending().length, 'closed without a reply').toBe(0);
    await chatting;
    expect(chatty.closed).toBe(false);
    expect(blocked.closed).toBe(false);
    expect(subscriber.closed).toBe(false);

    const other = proxy.client();
    await other.lpush('queue', 'job');
    expect(await blocked.readReply(5_000).then((b) => b.toString())).toBe('*2\r\n$5\r\nqueue\r\n$3\r\njob\r\n');
    await other.publish('news', 'hello');
    expect(await subscriber.readReply(5_000).then((b) => b.toString())).toBe('*3\r\n$7\r\nmessage\r\n$4\r\nnews\r\n$5\r\nhello\r\n');
    // Once its BLPOP is answered, the blocked client is an ordinary idle one.
    expect(await blocked.waitClosed(5_000)).toBe(true);
    for (const c of [chatty, subscriber]) c.close();
  });

  it('a RESP3 subscriber stays while subscribed and is an idle client again once it unsubscribed from everything', async () => {
    const proxy = await proxyWith('--timeout', '1');
    const sub = await proxy.raw();
    const shard = await proxy.raw();
    expect((await sub.command('HELLO', '3')).toString('latin1')).toMatch(/^%7\r\n/);
    expect((await shard.command('HELLO', '3')).toString('latin1')).toMatch(/^%7\r\n/);
    expect((await sub.command('SUBSCRIBE', 'a', 'b')).toString()).toBe('>3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n');
    expect((await sub.readReply(5_000)).toString()).toBe('>3\r\n$9\r\nsubscribe\r\n$1\r\nb\r\n:2\r\n');
    expect((await shard.command('SSUBSCRIBE', 's')).toString()).toBe('>3\r\n$10\r\nssubscribe\r\n$1\r\ns\r\n:1\r\n');
    // Both stay past the timeout; their next commands below fail if either was closed.
    await idleWitnessClosed(proxy);
    expect(sub.closed, 'subscribed: not idle').toBe(false);
    expect(shard.closed, 'shard-subscribed: not idle').toBe(false);
    // One channel left: still subscribed.
    expect((await sub.command('UNSUBSCRIBE', 'a')).toString()).toBe('>3\r\n$11\r\nunsubscribe\r\n$1\r\na\r\n:1\r\n');
    await idleWitnessClosed(proxy);
    expect(sub.closed, 'one channel left: not idle').toBe(false);
    expect((await sub.command('UNSUBSCRIBE', 'b')).toString()).toBe('>3\r\n$11\r\nunsubscribe\r\n$1\r\nb\r\n:0\r\n');
    expect((await shard.command('SUNSUBSCRIBE')).toString()).toBe('>3\r\n$12\r\nsunsubscribe\r\n$1\r\ns\r\n:0\r\n');
    expect(await sub.waitClosed(5_000), 'unsubscribed from everything: idle again').toBe(true);
    expect(await shard.waitClosed(5_000), 'shard-unsubscribed from everything: idle again').toBe(true);
  });

  it('is off by default: an idle client stays connected', async () => {
    const proxy = await proxyWith();
    const c = await proxy.raw();
    expect(await c.call('PING')).toBe('PONG');
    await sleep(2_500);
    expect(c.closed).toBe(false);
    expect(await c.call('PING')).toBe('PONG');
    c.close();
  });
});

describe('flags', () => {
  it('bad values exit 2 with one line naming the flag', async () => {
    for (const [flag, v] of [
      ['--maxclients', '0'],
      ['--proto-max-bulk-len', '12xb'],
      ['--client-query-buffer-limit', '-1'],
      ['--client-output-buffer-limit', '1.5gb'],
      ['--timeout', 'soon'],
    ] as const) {
      const r = await runCli(['--source', ctx.source.url, '--target', ctx.target.url, flag, v]);
      expect(r.code, `${flag} ${v}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toContain(flag);
    }
  });
});
