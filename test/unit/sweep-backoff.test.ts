/** The sweeper's pause after a step that could not move its keys (sweeper.ts nextBackoffMs). */
import { expect, it } from 'vitest';
import { nextBackoffMs } from '../../src/migration/sweeper.js';

it('0.5 s, doubling, at most 5 s: a sweep resumes within 5 s of the new server taking keys again', () => {
  const seen: number[] = [];
  let ms = 0;
  for (let i = 0; i < 8; i++) seen.push((ms = nextBackoffMs(ms)));
  expect(seen).toEqual([500, 1_000, 2_000, 4_000, 5_000, 5_000, 5_000, 5_000]);
});
