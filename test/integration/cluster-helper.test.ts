import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startCluster, type TestCluster } from '../helpers/cluster.js';

describe('test cluster', () => {
  let cl: TestCluster;
  beforeAll(async () => {
    cl = await startCluster();
  }, 60_000);
  afterAll(async () => cl?.stop());

  it('serves every slot on 3 masters', async () => {
    const c = cl.client();
    for (let i = 0; i < 50; i++) await c.set(`k${i}`, String(i));
    expect(await cl.dbsize()).toBe(50);
    expect((await cl.currentMasters()).length).toBe(3);
  });
});
