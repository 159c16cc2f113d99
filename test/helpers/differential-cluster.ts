/**
 * The differential runner with a cluster as the new server: the same seeded data (db 0 only, a
 * cluster has no other) in the old server behind the proxy and in a plain reference redis; a
 * seeded-random sequence of commands. Each command first goes to an oracle, a one-node Redis
 * Cluster serving every slot, which says whether Redis Cluster refuses it with CROSSSLOT:
 *   - refused by the oracle, and one of the commands rehome splits (MGET, MSET, DEL, EXISTS,
 *     UNLINK, TOUCH): the proxy's reply must equal the plain redis's;
 *   - refused by the oracle otherwise: the proxy must answer exactly Redis Cluster's CROSSSLOT
 *     error, and the command is not sent to the reference (nothing ran);
 *   - not refused: the proxy's reply must equal the plain redis's.
 * The refusals are counted: the proxy's must be exactly the oracle's.
 */
import { expect } from 'vitest';
import type { Redis } from 'ioredis';
import { dumpAll, generator, normalise, seed, type Cmd } from './differential.js';
import type { ProxyHandle } from './proxy.js';
import { flushAll, freePort, type RedisServer, startRedis } from './redis.js';
import { RawClient, encodeCommand } from './resp.js';
import { prng, waitFor } from './util.js';

const SPLIT = new Set(['MGET', 'MSET', 'DEL', 'EXISTS', 'UNLINK', 'TOUCH']);
const CROSSSLOT = "-CROSSSLOT Keys in request don't hash to the same slot\r\n";

/** A one-node cluster serving every slot: answers CROSSSLOT exactly where Redis Cluster does. */
export async function startOracle(): Promise<RedisServer> {
  // Its cluster bus listens 10000 above its port: a node above 55535 refuses to start.
  let port = await freePort();
  while (port > 55535) port = await freePort();
  const s = await startRedis({ port, args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf'] });
  const c = s.client();
  await c.call('CLUSTER', 'ADDSLOTSRANGE', '0', '16383');
  await waitFor(async () => String(await c.call('CLUSTER', 'INFO')).includes('cluster_state:ok'), 'the oracle cluster to be ok', 10_000, 50);
  c.disconnect();
  return s;
}

export interface ClusterDiffReport {
  seed: number;
  commands: number;
  /** Refused with CROSSSLOT by the oracle (and so expected from the proxy). */
  crossslot: number;
  /** Cross-slot commands the proxy split and answered as one server would. */
  split: number;
}

/** Commands a cluster can't take at all (other dbs), left out of the mix. */
function clusterless(cmd: Cmd): boolean {
  const name = String(cmd[0]).toUpperCase();
  return name === 'SELECT' || name === 'SWAPDB' || name === 'MOVE' || (name === 'COPY' && cmd.includes('DB'));
}

export async function runClusterDifferential(
  env: { source: RedisServer; proxy: ProxyHandle; oracle: RedisServer; ref: RedisServer },
  mode: 'sequential' | 'pipelined',
  count = 2000,
): Promise<ClusterDiffReport> {
  const seedNum = process.env.REHOME_DIFF_SEED ? Number(process.env.REHOME_DIFF_SEED) : Math.floor(Math.random() * 2 ** 31);
  const tag = `[cluster differential ${mode}, seed ${seedNum}; re-run with REHOME_DIFF_SEED=${seedNum}]`;
  await flushAll(env.ref);
  const sc = env.source.client();
  const rc: Redis = env.ref.client();
  await seed(sc, [0]);
  await seed(rc, [0]);
  sc.disconnect();
  const rnd = prng(seedNum);
  const gen = generator(rnd, []);
  const next = (): Cmd => {
    for (;;) {
      const c = gen();
      if (!clusterless(c)) return c;
    }
  };
  const p = await env.proxy.raw();
  const r = await RawClient.connect(env.ref.port);
  const o = await RawClient.connect(env.oracle.port);
  const report: ClusterDiffReport = { seed: seedNum, commands: 0, crossslot: 0, split: 0 };
  let refusedByProxy = 0;
  const history: string[] = [];
  try {
    while (report.commands < count) {
      const size = mode === 'sequential' ? 1 : 1 + Math.floor(rnd() * 8);
      const batch = Array.from({ length: size }, next);
      o.write(Buffer.concat(batch.map((c) => encodeCommand(c))));
      const verdicts = (await o.readReplies(batch.length, 10_000)).map((x) => x.toString('latin1') === CROSSSLOT);
      const toRef = batch.filter((c, i) => !verdicts[i] || SPLIT.has(String(c[0]).toUpperCase()));
      p.write(Buffer.concat(batch.map((c) => encodeCommand(c))));
      if (toRef.length > 0) r.write(Buffer.concat(toRef.map((c) => encodeCommand(c))));
      const [pa, ra] = await Promise.all([p.readReplies(batch.length, 10_000), r.readReplies(toRef.length, 10_000)]);
      let j = 0;
      for (let i = 0; i < batch.length; i++) {
        const cmd = batch[i]!;
        history.push(cmd.join(' '));
        const got = pa[i]!.toString('latin1');
        if (got === CROSSSLOT) refusedByProxy++;
        const split = SPLIT.has(String(cmd[0]).toUpperCase());
        if (verdicts[i] && !split) {
          report.crossslot++;
          if (got !== CROSSSLOT) throw new Error(`${tag} command #${report.commands + i + 1} ${JSON.stringify(cmd)}: Redis Cluster refuses it with CROSSSLOT, the proxy answered ${JSON.stringify(got)}`);
          continue;
        }
        if (verdicts[i]) report.split++;
        const a = normalise(cmd, pa[i]!);
        const b = normalise(cmd, ra[j++]!);
        if (a !== b) {
          throw new Error(`${tag} command #${report.commands + i + 1} ${JSON.stringify(cmd)}: proxy ${JSON.stringify(a)} != redis ${JSON.stringify(b)}\nlast commands:\n  ${history.slice(-15).join('\n  ')}`);
        }
      }
      report.commands += batch.length;
    }
  } finally {
    p.close();
    r.close();
    o.close();
  }
  expect(refusedByProxy, `${tag} CROSSSLOT refusals: proxy vs Redis Cluster`).toBe(report.crossslot);
  const viaProxy = await dumpAll(env.proxy.client(), [0]);
  const direct = await dumpAll(rc, [0]);
  rc.disconnect();
  expect(viaProxy, tag).toEqual(direct);
  return report;
}
