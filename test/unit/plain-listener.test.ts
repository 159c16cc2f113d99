/**
 * The plain port's sockets (src/proxy/plain-listener.ts): an accepted connection moved to a socket
 * that reads into the reused buffer behaves as an ordinary socket for everything the session
 * relies on: bytes in order, pause and resume, a half-close that still gets its reply.
 */
import net from 'node:net';
import { afterEach, expect, it } from 'vitest';
import { createPlainServer, withReusedBuffer } from '../../src/proxy/plain-listener.js';

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

function listen(accept: (sock: net.Socket) => void): Promise<number> {
  const server = createPlainServer(accept);
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)));
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

it('reads in order, stops reading while paused, and answers a client that half-closed', async () => {
  let got = '';
  let accepted: net.Socket | null = null;
  let ended = false;
  const port = await listen((sock) => {
    accepted = sock;
    sock.on('data', (d: Buffer) => (got += d.toString('latin1')));
    sock.on('end', () => {
      ended = true;
      // Later, as a reply from the server would come.
      setTimeout(() => sock.end(`got ${got.length} bytes`), 50);
    });
  });
  const client = net.connect(port, '127.0.0.1');
  let reply = '';
  client.on('data', (d: Buffer) => (reply += d.toString()));
  const closed = new Promise((r) => client.on('close', r));
  await new Promise((r) => client.once('connect', r));
  const big = 'x'.repeat(200_000);
  client.write('first ');
  client.write(big);
  while (got.length < 6 + big.length) await sleep(5);
  expect(got).toBe(`first ${big}`);

  accepted!.pause();
  client.write(' while paused');
  await sleep(100);
  expect(got.length).toBe(6 + big.length);
  accepted!.resume();
  while (!got.endsWith(' while paused')) await sleep(5);

  client.end();
  await closed;
  expect(ended).toBe(true);
  expect(reply).toBe(`got ${6 + big.length + 13} bytes`);
});

it('uses a socket as it is when it has no handle to move', () => {
  const sock = new net.Socket();
  expect(withReusedBuffer(sock)).toBe(sock);
  sock.destroy();
});
