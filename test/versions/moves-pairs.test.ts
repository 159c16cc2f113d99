/**
 * Moves between pairs of versions and engines (issue 15): for each pair, the method --move-method
 * auto picks, and a whole migration under the counter workload with the fault suite's final checks
 * (see test/helpers/moves.ts). Pairs whose binaries are missing skip with a one-line notice. The
 * Redis 7.0 cases (MIGRATE unusable, --move-method dump) are in test/integration/moves-pairs.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { useServers } from '../helpers/fixture.js';
import { moveEverything } from '../helpers/moves.js';
import { serverBinaries, serverBinary, type ServerName } from '../helpers/servers.js';

const server = useServers();

// Pairs whose target refuses the source's DUMP payloads: auto must pick the type-aware copy.
const copyPairs: Array<[ServerName, ServerName, string, string]> = [
  ['redis-7.4.1', 'valkey-8.0.1', 'Redis 7.4.1 -> Valkey 8.0.1: Valkey refuses the RDB 12 payload', 'auto picks the type-aware copy; every type, and a migration under load loses nothing'],
  ['redis-7.4.1', 'redis-7.0', 'Redis 7.4.1 -> Redis 7.0 (older target, newer payload)', 'auto picks the type-aware copy'],
  ['valkey-8.0.1', 'redis-7.0', 'Valkey 8.0.1 -> Redis 7.0 (the rollback direction of a Redis 7.0 -> Valkey 8 migration)', 'auto picks the type-aware copy (Redis 7.0 refuses Valkey 8 payloads)'],
];
for (const [from, to, title, name] of copyPairs) {
  const bins = serverBinaries(from, to);
  describe.skipIf(!bins)(title, () => {
    it(name, async () => {
      const source = await server(bins![from]);
      const target = await server(bins![to]);
      const run = await moveEverything(source, target);
      expect(run.method).toBe('copy');
    }, 120_000);
  });
}

describe('MIGRATE pairs', () => {
  const v62To70 = serverBinaries('redis-6.2.16', 'redis-7.0');
  it.skipIf(!v62To70)('Redis 6.2 -> Redis 7.0: auto picks MIGRATE; every type', async () => {
    const source = await server(v62To70!['redis-6.2.16']);
    const target = await server(serverBinary('redis-7.0'));
    // MIGRATE sends TTLs relative: the deadline moves by the transfer time.
    const run = await moveEverything(source, target, { ttlToleranceMs: 1_000 });
    expect(run.method).toBe('migrate');
  }, 120_000);

  const to = serverBinaries('redis-7.0', 'valkey-8.0.1');
  it.skipIf(!to)('Redis 7.0 -> Valkey 8.0.1: auto picks MIGRATE; every type', async () => {
    const source = await server(serverBinary('redis-7.0'));
    const target = await server(to!['valkey-8.0.1']);
    // MIGRATE sends TTLs relative: the deadline moves by the transfer time.
    const run = await moveEverything(source, target, { ttlToleranceMs: 1_000 });
    expect(run.method).toBe('migrate');
  }, 120_000);
});
