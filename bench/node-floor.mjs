#!/usr/bin/env node
/**
 * The floor of a Node.js proxy of rehome's design, for comparison in benchmarks: every client's
 * requests go over one shared connection to the server (rehome's shared lane), framed with
 * rehome's own request framer and reply scanner, written once per event-loop turn, with rehome's
 * sockets (the plain port and server connections reading into one reused buffer), and nothing
 * else: no gate, no command table, no ordering barrier, no limits. What rehome costs per request
 * beyond this is rehome's own work; what this costs beyond nutcracker is Node's.
 *
 *   node bench/node-floor.mjs LISTEN_PORT SERVER_PORT     (after npm run build)
 *
 * Then, e.g.: redis-benchmark -p LISTEN_PORT -c 50 -r 100000 -d 100 -t get -P 1, and read the
 * process's CPU from /proc/PID/stat around it.
 */
import { createPlainServer } from '../dist/proxy/plain-listener.js';
import { RequestFramer } from '../dist/resp/request-framer.js';
import { ReplyScanner } from '../dist/resp/reply-scanner.js';
import { connectSocket } from '../dist/upstream/connect.js';

const [listenPort, serverPort] = process.argv.slice(2).map(Number);
if (!listenPort || !serverPort) {
  process.stderr.write('usage: node bench/node-floor.mjs LISTEN_PORT SERVER_PORT\n');
  process.exit(2);
}

const server = connectSocket({ host: '127.0.0.1', port: serverPort });
server.setNoDelay(true);
const scanner = new ReplyScanner();
/** Whose each outstanding reply is. */
const waiting = [];
let head = 0;
let parts = [];
let scheduled = false;

function flush() {
  scheduled = false;
  const p = parts;
  parts = [];
  server.write(p.length === 1 ? p[0] : Buffer.concat(p));
}

let partial = null;
server.on('data', (chunk) => {
  const ends = [];
  scanner.scan(chunk, ends);
  let start = 0;
  for (const end of ends) {
    let reply = chunk.subarray(start, end);
    if (partial !== null) {
      partial.push(reply);
      reply = Buffer.concat(partial);
      partial = null;
    }
    waiting[head++].write(reply);
    start = end;
  }
  if (start < chunk.length) (partial ??= []).push(chunk.subarray(start));
  if (head > 4096 && head * 2 > waiting.length) {
    waiting.splice(0, head);
    head = 0;
  }
});
server.on('error', (e) => {
  process.stderr.write(`server connection: ${e.message}\n`);
  process.exit(1);
});

createPlainServer((client) => {
  client.setNoDelay(true);
  const framer = new RequestFramer();
  client.on('data', (chunk) => {
    framer.push(chunk);
    let req;
    while ((req = framer.next()) !== null) {
      waiting.push(client);
      parts.push(req.raw);
      if (!scheduled) {
        scheduled = true;
        setImmediate(flush);
      }
    }
  });
  client.on('error', () => client.destroy());
}).listen(listenPort, '127.0.0.1', () => process.stdout.write(`node-floor: listening on 127.0.0.1:${listenPort}\n`));
