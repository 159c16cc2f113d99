/**
 * Runs before each test file (vitest.config.ts setupFiles): proxies a file started in this process
 * and left running are stopped when it ends, so that they don't keep working (and dialling the
 * file's stopped servers) while the worker runs the next file.
 */
import { afterAll } from 'vitest';
import { stopInProcessProxies } from './proxy.js';

afterAll(stopInProcessProxies);
