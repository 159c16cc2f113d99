/**
 * Property-based tests: random and malformed RESP from hostile or broken clients.
 *
 * For every generated input sent to a running proxy (bad type bytes, negative and absurd lengths,
 * truncated frames, inline lines without an end, binary garbage, and mixtures of these with valid
 * commands):
 *   - the connection gets an error reply or is closed, within a bound (no hang);
 *   - the proxy process does not crash, and a separate healthy client keeps being served;
 *   - the proxy's memory stays bounded over a few hundred cases.
 *
 * Replay a failure with the seed (and path) fast-check prints:
 *   REHOME_FC_SEED=<seed> [REHOME_FC_PATH=<path>] npx vitest run test/property/hostile-input.test.ts
 * REHOME_FC_RUNS overrides the number of runs per property.
 */
import net from 'node:net';
import fc from 'fast-check';
import type { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startProxy, type ProxyHandle } from '../helpers/proxy.js';
import { fetchStatus } from '../helpers/admin.js';
import { freePort, startPair, stopAll, type RedisServer } from '../helpers/redis.js';
import { encodeCommand, scanReply, show } from '../helpers/resp.js';
import { MB, rssBytes } from '../helpers/memory.js';
import { waitFor } from '../helpers/util.js';

const RUNS = Number(process.env.REHOME_FC_RUNS ?? 120);
const FC_PARAMS: fc.Parameters<unknown> = {
  numRuns: RUNS,
  ...(process.env.REHOME_FC_SEED ? { seed: Number(process.env.REHOME_FC_SEED) } : {}),
  ...(process.env.REHOME_FC_PATH ? { path: process.env.REHOME_FC_PATH } : {}),
};
/** Longest one hostile connection may take to be answered and closed. */
const CASE_TIMEOUT_MS = 5_000;
const PROTOCOL_ERROR = /^-ERR Protocol error/;

// ---------------------------------------------------------------- generators
// Inputs are latin1 strings (one char per byte) so a counterexample prints readably.

const latin1 = (b: Buffer): string => b.toString('latin1');
const bytes = (maxLength: number): fc.Arbitrary<string> =>
  fc.uint8Array({ maxLength }).map((a) => latin1(Buffer.from(a)));
const key = fc.integer({ min: 0, max: 7 }).map((i) => `fc:${i}`);
const value = fc.oneof(fc.string({ maxLength: 16 }), bytes(16));

/** A valid command from a small set (none blocks, subscribes or changes connection state). */
const command: fc.Arbitrary<string[]> = fc.oneof(
  fc.constant(['PING']),
  fc.tuple(fc.constant('ECHO'), value),
  fc.tuple(fc.constant('SET'), key, value),
  fc.tuple(fc.constant('GET'), key),
  fc.tuple(fc.constant('INCR'), key),
  fc.tuple(fc.constant('DEL'), key, key),
  fc.tuple(fc.constant('EXISTS'), key),
  fc.tuple(fc.constant('MGET'), key, key, key),
  fc.tuple(fc.constant('APPEND'), key, value),
  fc.tuple(fc.constant('STRLEN'), key),
).map((a) => [...a]);

const multibulk = command.map((args) => latin1(encodeCommand(args.map((a) => Buffer.from(a, 'latin1')))));

/** The same commands typed inline, every argument double-quoted with \xHH escapes. */
const inline = fc.tuple(command, fc.constantFrom('\r\n', '\n')).map(
  ([args, eol]) =>
    args
      .map((a) => `"${[...Buffer.from(a, 'latin1')].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join('')}"`)
      .join(' ') + eol,
);

const digits = (min: bigint, max: bigint) => fc.bigInt({ min, max }).map(String);
const notDollar = fc.integer({ min: 0, max: 255 }).filter((b) => b !== 0x24).map((b) => String.fromCharCode(b));
/** Counts and lengths that are not numbers (or have more digits than any valid one). */
const notANumber = fc.oneof(
  fc.constantFrom('', '-', '+1', '1.5', ' 1', '0x10', 'abc'),
  fc.stringMatching(/^[a-zA-Z+. ]{1,8}$/),
  digits(10n ** 19n, 10n ** 30n),
);

/** A frame that must get `-ERR Protocol error ...` and a close, whatever follows it. */
const malformed: fc.Arbitrary<string> = fc.oneof(
  // a type byte other than '$' where a bulk argument must start
  fc.tuple(fc.integer({ min: 1, max: 5 }), notDollar, bytes(8)).map(([n, b, rest]) => `*${n}\r\n${b}${rest}`),
  // negative bulk length
  fc.tuple(fc.integer({ min: 1, max: 5 }), digits(1n, 10n ** 17n)).map(([n, len]) => `*${n}\r\n$-${len}\r\n`),
  // bulk length past proto-max-bulk-len (512 MB), e.g. $99999999999
  digits(512n * 1024n * 1024n + 1n, 10n ** 17n).map((len) => `*2\r\n$3\r\nGET\r\n$${len}\r\n`),
  // multibulk count past the limit, e.g. *2147483648
  digits(1024n * 1024n + 1n, 10n ** 17n).map((n) => `*${n}\r\n`),
  fc.constantFrom('*2147483648\r\n', '*2\r\n$3\r\nGET\r\n$99999999999\r\n', '*1\r\n$-5\r\n'),
  notANumber.map((s) => `*${s}\r\n`),
  notANumber.map((s) => `*1\r\n$${s}\r\n`),
  // CR not followed by LF in a header
  fc.constantFrom('*1\rX', '*1\r\n$4\rXPING\r\n'),
  // bulk not terminated by CRLF
  fc
    .tuple(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 255 }))
    .filter(([a, b]) => !(a === 13 && b === 10))
    .map(([a, b]) => `*1\r\n$4\r\nPING${String.fromCharCode(a, b)}`),
  // inline with unbalanced or glued quotes
  fc.stringMatching(/^[a-z ]{0,12}$/).map((s) => `SET "${s}\r\n`),
  fc.stringMatching(/^[a-z]{0,12}$/).map((s) => `GET '${s}'x\n`),
  // an inline line or a count string longer than 64 KB
  fc.constant(`${'A'.repeat(64 * 1024 + 1)}`),
  fc.constant(`*${'1'.repeat(64 * 1024 + 1)}`),
);

/** Anything: valid, malformed, truncated, unterminated, ignored, or random bytes. */
const segment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: multibulk },
  { weight: 2, arbitrary: inline },
  { weight: 2, arbitrary: malformed },
  // a valid frame cut short
  { weight: 2, arbitrary: fc.tuple(multibulk, fc.nat()).map(([f, n]) => f.slice(0, n % f.length)) },
  // an inline line without its end
  { weight: 1, arbitrary: fc.stringMatching(/^[ -~]{1,40}$/) },
  // requests Redis ignores
  { weight: 1, arbitrary: fc.constantFrom('*0\r\n', '*-1\r\n', '*-5\r\n', '\r\n', '\n') },
  // a huge declared bulk of which only a little arrives
  { weight: 1, arbitrary: fc.tuple(digits(1n, 500_000_000n), bytes(32)).map(([n, b]) => `*3\r\n$3\r\nSET\r\n$4\r\nfc:9\r\n$${n}\r\n${b}`) },
  { weight: 3, arbitrary: bytes(256) },
);

/** Cut points for writing an input in several pieces. */
const cuts = fc.array(fc.nat(), { maxLength: 4 });

function split(s: string, at: number[]): Buffer[] {
  const buf = Buffer.from(s, 'latin1');
  if (buf.length === 0) return [buf];
  const points = [...new Set(at.map((n) => n % buf.length))].filter((p) => p > 0).sort((a, b) => a - b);
  const out: Buffer[] = [];
  let s0 = 0;
  for (const p of points) {
    out.push(buf.subarray(s0, p));
    s0 = p;
  }
  out.push(buf.subarray(s0));
  return out;
}

// ---------------------------------------------------------------- one hostile connection

interface Outcome {
  received: Buffer;
  /** The proxy closed the connection within the bound. */
  closed: boolean;
}

/**
 * Writes `pieces` one by one, half-closes if asked, and collects what comes back until the
 * proxy closes the connection or the bound passes.
 */
function converse(port: number, pieces: Buffer[], halfClose: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    sock.setNoDelay(true);
    const got: Buffer[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ received: Buffer.concat(got), closed });
    };
    const timer = setTimeout(() => finish(false), CASE_TIMEOUT_MS);
    sock.on('data', (d: Buffer) => got.push(d));
    // A write after the proxy has closed may fail with EPIPE/ECONNRESET: the close is what counts.
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', async () => {
      for (const p of pieces) {
        if (done || sock.destroyed) return;
        sock.write(p);
        await new Promise((r) => setImmediate(r));
      }
      if (halfClose && !sock.destroyed) sock.end();
    });
  });
}

/** Splits received bytes into complete replies; fails if bytes are left that are not one. */
function replies(received: Buffer, input: string): Buffer[] {
  const out: Buffer[] = [];
  let off = 0;
  while (off < received.length) {
    let end: number;
    try {
      end = scanReply(received, off);
    } catch (e) {
      throw new Error(`not RESP from the proxy at byte ${off} for input ${JSON.stringify(input.slice(0, 300))}: ${show(received.subarray(off, off + 200))} (${(e as Error).message})`);
    }
    if (end < 0) throw new Error(`incomplete reply from the proxy: ${show(received.subarray(off, off + 200))}`);
    out.push(received.subarray(off, end));
    off = end;
  }
  return out;
}

// ---------------------------------------------------------------- the suite

let source: RedisServer;
let target: RedisServer;
let proxy: ProxyHandle;
let admin: string;
let healthy: Redis;
let rssBefore = 0;
let healthChecks = 0;

beforeAll(async () => {
  ({ source, target } = await startPair());
  admin = `127.0.0.1:${await freePort()}`;
  // A process: its memory (RSS) is measured.
  proxy = await startProxy({ source, target, args: ['--progress', 'off', '--admin', admin], spawn: true });
  healthy = proxy.client();
  await healthy.ping();
});

afterAll(async () => {
  await proxy?.stop('SIGTERM', 3_000);
  await stopAll(source, target);
});

/** The proxy is alive and serves a separate, well-behaved client. */
async function assertHealthy(): Promise<void> {
  expect(proxy.proc.exitCode, `proxy exited; stderr:\n${proxy.stderr.slice(-3000)}`).toBeNull();
  const n = String(++healthChecks);
  expect(await healthy.ping()).toBe('PONG');
  expect(await healthy.set('health', n)).toBe('OK');
  expect(await healthy.get('health')).toBe(n);
  // Every hostile connection has ended inside the proxy too: only the healthy client is left.
  let clients = -1;
  await waitFor(async () => (clients = (await fetchStatus<{ clients: number }>(admin)).clients) === 1, 'only the healthy client left', 3_000, 10).catch(() => {
    throw new Error(`the proxy still holds ${clients - 1} closed connection(s)`);
  });
}

describe('hostile and broken clients', () => {
  it('warms up, then records the proxy\'s memory', async () => {
    // A few connections of each kind first, so lazily built state is not counted as growth.
    for (let i = 0; i < 20; i++) {
      await converse(proxy.port, [Buffer.from(`*1\r\n$4\r\nPING\r\n*abc\r\n`)], false);
      await converse(proxy.port, [encodeCommand(['SET', `fc:${i % 8}`, 'x'])], true);
    }
    await assertHealthy();
    rssBefore = rssBytes(proxy.proc.pid!);
  });

  it('a malformed frame after valid commands: their replies, then a protocol error, then a close', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(multibulk, { maxLength: 4 }),
        malformed,
        bytes(64),
        cuts,
        async (before, bad, after, at) => {
          const input = before.join('') + bad + after;
          const out = await converse(proxy.port, split(input, at), false);
          const what = `input ${JSON.stringify(input.slice(0, 300))}, received ${show(out.received.subarray(0, 300))}`;
          expect(out.closed, `proxy did not close the connection within ${CASE_TIMEOUT_MS} ms: ${what}`).toBe(true);
          const rs = replies(out.received, input);
          expect(rs.length, what).toBe(before.length + 1);
          for (const r of rs.slice(0, -1)) expect(latin1(r), what).not.toMatch(PROTOCOL_ERROR);
          expect(latin1(rs[rs.length - 1]!), what).toMatch(PROTOCOL_ERROR);
          await assertHealthy();
        },
      ),
      FC_PARAMS,
    );
  }, 120_000);

  it('any mixture of valid commands, garbage and cut-off frames: well-formed replies, then a close', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.tuple(fc.array(segment, { minLength: 1, maxLength: 6 }), cuts), { minLength: 1, maxLength: 3 }),
        async (conns) => {
          // Several hostile connections at once; each half-closes after sending.
          const outs = await Promise.all(
            conns.map(async ([segs, at]) => {
              const input = segs.join('');
              return { input, out: await converse(proxy.port, split(input, at), true) };
            }),
          );
          for (const { input, out } of outs) {
            const what = `input ${JSON.stringify(input.slice(0, 300))}, received ${show(out.received.subarray(0, 300))}`;
            expect(out.closed, `proxy did not close a half-closed connection within ${CASE_TIMEOUT_MS} ms: ${what}`).toBe(true);
            const rs = replies(out.received, input);
            // A protocol error ends the conversation: nothing may follow it.
            const firstErr = rs.findIndex((r) => PROTOCOL_ERROR.test(latin1(r)));
            if (firstErr >= 0) expect(firstErr, what).toBe(rs.length - 1);
          }
          await assertHealthy();
        },
      ),
      FC_PARAMS,
    );
  }, 120_000);

  it('memory stays bounded and the proxy still serves after all of it', async () => {
    await assertHealthy();
    const after = rssBytes(proxy.proc.pid!);
    const growth = after - rssBefore;
    expect(growth, `proxy RSS grew from ${(rssBefore / MB).toFixed(1)} MB to ${(after / MB).toFixed(1)} MB`).toBeLessThan(64 * MB);
  });
});
