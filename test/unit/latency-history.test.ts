/**
 * The dashboard's latency history (src/admin/latency-history.ts): per-second percentiles from the
 * growth of a prom-client histogram, estimated as histogram_quantile() does, and kept per phase.
 */
import { Histogram, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { LatencyHistory, quantile } from '../../src/admin/latency-history.js';

describe('quantile', () => {
  const bounds = [0.001, 0.01, 0.1, Infinity];
  it('interpolates linearly within the bucket the rank falls in, from 0 in the first', () => {
    // 10 in (0, 1 ms], 10 in (1, 10 ms]: the median is the first bucket's top, p75 half-way up the second.
    expect(quantile(0.5, bounds, [10, 20, 20, 20])).toBeCloseTo(0.001);
    expect(quantile(0.75, bounds, [10, 20, 20, 20])).toBeCloseTo(0.0055);
    expect(quantile(0.25, bounds, [10, 20, 20, 20])).toBeCloseTo(0.0005);
  });
  it('gives the highest finite bound for a rank in the +Inf bucket, and null for no count', () => {
    expect(quantile(0.99, bounds, [0, 0, 1, 100])).toBe(0.1);
    expect(quantile(0.5, bounds, [0, 0, 0, 0])).toBeNull();
  });
});

describe('LatencyHistory', () => {
  it('takes each second from what the histogram grew, and sums each phase since the start', async () => {
    const h = new Histogram({ name: 'lat', help: 'lat', buckets: [0.001, 0.01, 0.1], registers: [new Registry()] });
    let phase = 'hold';
    const history = new LatencyHistory(h, () => phase);
    for (let i = 0; i < 5; i++) h.observe(0.0005);
    await history.tick(1000); // the first reading only sets the baseline
    expect(history.report().points).toEqual([]);

    for (let i = 0; i < 10; i++) h.observe(0.0005);
    await history.tick(2000);
    await history.tick(3000); // a quiet second: no percentiles, not zero
    phase = 'migrate';
    for (let i = 0; i < 10; i++) h.observe(0.05);
    await history.tick(4000);

    const r = history.report();
    expect(r.points).toEqual([
      { t: 2000, phase: 'hold', n: 10, p50_ms: 0.5, p99_ms: 0.99 },
      { t: 3000, phase: 'hold', n: 0, p50_ms: null, p99_ms: null },
      { t: 4000, phase: 'migrate', n: 10, p50_ms: 55, p99_ms: 99.1 },
    ]);
    expect(r.by_phase).toEqual({
      hold: { n: 10, p50_ms: 0.5, p99_ms: 0.99 },
      migrate: { n: 10, p50_ms: 55, p99_ms: 99.1 },
    });
  });
});
