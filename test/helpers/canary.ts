/** Canary migration helpers: phase switches through the CLI, waiting on every process's /status, keys per server. */
import { expect } from 'vitest';
import { fetchStatus, type AdminProxy } from './admin.js';
import { keysByDb } from './invariant.js';
import { runCli } from './proxy.js';
import { waitFor } from './util.js';

export type Json = Record<string, any>;

/** `rehome phase TO --admin ... FLAGS`, asserting exit 0; its JSON answer. */
export async function phaseCli(ap: AdminProxy, to: string, ...flags: string[]): Promise<Json> {
  const r = await runCli(['phase', to, '--admin', ap.admin, ...flags]);
  expect(r.code, r.stderr + r.stdout).toBe(0);
  return JSON.parse(r.stdout) as Json;
}

/** Waits until `f` holds for every process's /status; the last status and stderr on timeout. */
export async function waitAll(aps: AdminProxy[], what: string, f: (st: Json) => boolean, timeoutMs = 40_000): Promise<Json[]> {
  try {
    return await waitFor(async () => {
      const all = await Promise.all(aps.map((a) => fetchStatus<Json>(a.admin)));
      return all.every(f) ? all : null;
    }, what, timeoutMs, 150);
  } catch (e) {
    const st = await fetchStatus<Json>(aps[0]!.admin).catch(() => null);
    throw new Error(`${(e as Error).message}\nlast status: ${JSON.stringify(st?.scope ?? st)}\n${aps.map((a) => a.proxy.stderr.slice(-2500)).join('\n---\n')}`);
  }
}

/** The data keys of a server (db 0), rehome's own left out. */
export async function dataKeys(port: number): Promise<string[]> {
  const m = await keysByDb(port, [0]);
  return (m.get(0) ?? []).filter((k) => !k.startsWith('__rehome:'));
}

/** Asserts every key on the new server has one of the prefixes. */
export async function newHoldsOnly(port: number, prefixes: string[]): Promise<void> {
  const stray = (await dataKeys(port)).filter((k) => !prefixes.some((p) => k.startsWith(p)));
  expect(stray.slice(0, 10), `keys on the new server outside ${prefixes.join(', ')}`).toEqual([]);
}
