/**
 * TouchTraffic (src/migration/touch-traffic.ts): the sweeper's wait for a pause in clients'
 * touches. Ordering only: what resolves before what, never how fast.
 */
import { describe, expect, it } from 'vitest';
import { TouchTraffic } from '../../src/migration/touch-traffic.js';

/** Lets timers and promise callbacks run for a few event-loop turns. */
const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((r) => setTimeout(r, 1));
};

describe('TouchTraffic.quiet', () => {
  it('resolves at once when no touch was ever seen', async () => {
    const t = new TouchTraffic();
    let done = false;
    void t.quiet(1_000, 60_000).then(() => (done = true));
    await turns(1);
    expect(done).toBe(true);
  });

  it('waits while a touch is in flight, and for the gap after the last one ends', async () => {
    const t = new TouchTraffic();
    t.start();
    t.start();
    let done = false;
    void t.quiet(50, 60_000).then(() => (done = true));
    await turns(5);
    expect(done).toBe(false);
    t.end();
    await turns(5);
    expect(done, 'one of two touches still in flight').toBe(false);
    const endedAt = performance.now();
    t.end();
    expect(t.inFlight).toBe(0);
    while (!done) await turns(1);
    // Not before the gap: a touch that follows the last one within it would meet a step.
    expect(performance.now() - endedAt).toBeGreaterThanOrEqual(49);
  });

  it('wakes every waiter when the touches end (two sweepers in one process)', async () => {
    const t = new TouchTraffic();
    t.start();
    let done = 0;
    void t.quiet(0, 60_000).then(() => done++);
    void t.quiet(0, 60_000).then(() => done++);
    await turns(3);
    expect(done).toBe(0);
    t.end();
    await turns(3);
    expect(done).toBe(2);
  });

  it('gives up waiting after maxMs although touches keep coming', async () => {
    const t = new TouchTraffic();
    t.start();
    await t.quiet(1, 20);
    expect(t.inFlight).toBe(1);
  });
});
