/**
 * vitest globalSetup of a run that includes test/versions (vitest.config.ts): says once, in the
 * run's own output, which server binaries the version matrix found, so a run where they are
 * missing shows why its tests skipped.
 */
import { serversSummary } from './servers.js';

export default function setup(): void {
  console.log(serversSummary());
}
