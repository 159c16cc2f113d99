/**
 * A Valkey 8.0.1 cluster as the new server (Redis 7.0 the old one): a live migration under the
 * counter workload with the fault suite's final checks (test/helpers/cluster-migration.ts), as
 * test/faults/cluster.test.ts runs it into a Redis cluster. Skips with a one-line notice without
 * the Valkey binary.
 */
import { describe, it } from 'vitest';
import { useClusterMigration } from '../helpers/cluster-migration.js';
import { serverBinaries } from '../helpers/servers.js';
import { sleep } from '../helpers/util.js';

const run = useClusterMigration();

const valkey = serverBinaries('valkey-8.0.1')?.['valkey-8.0.1'];
describe.skipIf(!valkey)('migration into a cluster of another engine', () => {
  it('Valkey 8.0.1 cluster as the new server (Redis 7.0 old server)', async () => {
    await run.start({ binary: valkey! });
    const { results, payloads } = await run.migrate(1904, async () => sleep(800));
    await run.check(results, payloads);
  }, 120_000);
});
