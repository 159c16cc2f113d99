/**
 * A mocha root hook for ioredis's own test suite, loaded by scripts/test-clients.mjs in the run
 * through rehome (CommonJS, as the ioredis checkout is; not a vitest file).
 *
 * ioredis's global afterEach sends FLUSHALL through rehome after every test, which empties the old
 * server too. This hook puts keys back into the OLD server (directly, in db REHOME_CLIENTS_SEED_DB,
 * a db the ioredis tests never use) before every test whose db is found empty, so rehome stays in
 * its migrate phase with keys still in the old server for the whole run: every command still goes
 * through the gate, KEYS/SCAN/DBSIZE/INFO merge both servers, and the sweeper (if on) never finds
 * the source empty. Key names are new each time (a generation counter), so none of them can be one
 * rehome has already moved or remembered as absent: to rehome they are keys that were there from
 * the start and have not been reached yet.
 *
 * It speaks raw RESP over its own socket, so it shares nothing with the client under test.
 */
'use strict';
const net = require('node:net');

const port = Number(process.env.REHOME_CLIENTS_SOURCE_PORT);
const db = String(process.env.REHOME_CLIENTS_SEED_DB || '15');
const keysPerSeed = Number(process.env.REHOME_CLIENTS_SEED_KEYS || '100');
let generation = 0;
let reseeds = 0;

function encode(args) {
  let s = `*${args.length}\r\n`;
  for (const a of args) {
    const b = Buffer.from(String(a));
    s += `$${b.length}\r\n${b.toString('latin1')}\r\n`;
  }
  return Buffer.from(s, 'latin1');
}

/** Sends the commands pipelined and resolves with the raw reply text once `count` replies came. */
function send(commands) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ host: '127.0.0.1', port });
    let buf = '';
    const timer = setTimeout(() => {
      sock.destroy();
      reject(new Error('seed: the old server did not answer within 5 s'));
    }, 5000);
    sock.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    sock.on('data', (d) => {
      buf += d.toString('latin1');
      // Every reply here is one line (+OK, :n, -ERR); count complete lines.
      const lines = buf.split('\r\n');
      if (lines.length - 1 >= commands.length) {
        clearTimeout(timer);
        sock.end();
        const errs = lines.filter((l) => l.startsWith('-'));
        if (errs.length > 0) reject(new Error(`seed: ${errs[0]}`));
        else resolve(lines.slice(0, commands.length));
      }
    });
    sock.write(Buffer.concat(commands.map(encode)));
  });
}

async function seed() {
  const [, size] = await send([['SELECT', db], ['DBSIZE']]);
  if (size !== ':0') return;
  generation++;
  reseeds++;
  const p = `rehome-clients:seed:${process.pid}:${generation}`;
  const cmds = [['SELECT', db]];
  const mset = ['MSET'];
  for (let i = 0; i < keysPerSeed; i++) mset.push(`${p}:s:${i}`, `value-${i}`);
  cmds.push(mset);
  cmds.push(['EXPIRE', `${p}:s:0`, '3600']);
  cmds.push(['HSET', `${p}:h`, 'a', '1', 'b', '2']);
  cmds.push(['RPUSH', `${p}:l`, 'x', 'y', 'z']);
  cmds.push(['ZADD', `${p}:z`, '1', 'one', '2', 'two']);
  cmds.push(['SADD', `${p}:set`, 'm1', 'm2']);
  await send(cmds);
}

if (!Number.isInteger(port) || port <= 0) {
  throw new Error('keep-source-seeded.cjs: REHOME_CLIENTS_SOURCE_PORT is not set');
}

beforeEach(async function () {
  await seed();
});

after(function () {
  if (process.env.REHOME_CLIENTS_SEED_REPORT) {
    // one line per mocha process (a run may take several, see runSuite in the script)
    require('node:fs').appendFileSync(process.env.REHOME_CLIENTS_SEED_REPORT, `${reseeds}\n`);
  }
});
