/**
 * The cutover dashboard (GET / on the admin endpoint) in headless Chromium, against two proxies
 * of one pair (real servers, a workload running): the phase, epoch, keys left per db and process
 * rows it shows against what the old server and /status say, and switches that appear only once
 * the admin token is given and then act on the whole fleet. Skips with one line without Chromium.
 */
import type { Redis } from 'ioredis';
import type { Browser, Page } from 'puppeteer-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type AdminProxy, fetchStatus, seedStrings, useAdminProxies } from '../helpers/admin.js';
import { chromiumPath, launchChromium } from '../helpers/browser.js';
import { usePair } from '../helpers/fixture.js';
import { startProxy } from '../helpers/proxy.js';
import { freePort, type RedisServer } from '../helpers/redis.js';
import { sleep, waitFor } from '../helpers/util.js';

type Json = Record<string, any>;

const chromium = chromiumPath();
const ctx = usePair({ autoProxy: false });
const adminProxy = useAdminProxies();
const TOKEN = 'dashboard-test-token';

/** Keys per db in the old server, rehome's own `__rehome:` keys left out: what is left to move. */
async function keysLeft(server: RedisServer): Promise<Record<number, number>> {
  const c = server.client();
  try {
    const out: Record<number, number> = {};
    const info = await c.info('keyspace');
    for (const m of info.matchAll(/^db(\d+):keys=(\d+)/gm)) {
      const db = Number(m[1]);
      await c.select(db);
      const reserved = (await c.keys('__rehome:*')).length;
      if (Number(m[2]) - reserved > 0) out[db] = Number(m[2]) - reserved;
    }
    return out;
  } finally {
    c.disconnect();
  }
}

/**
 * GETs of keys that exist nowhere, through every proxy until stopped: latency without moves. A
 * client whose connection a phase switch closed is replaced; a failed GET waits a little, so a
 * loop of instant rejections never starves the event loop.
 */
function workload(proxies: AdminProxy[]): () => Promise<void> {
  let running = true;
  const loops = proxies.map(async (p, i) => {
    let c: Redis = p.proxy.client();
    for (let n = 0; running; n++) {
      await c.get(`absent:${i}:${n % 1000}`).catch(async () => {
        await sleep(20);
        if (c.status === 'end') c = p.proxy.client();
      });
    }
    c.disconnect();
  });
  return async () => {
    running = false;
    await Promise.all(loops);
  };
}

const text = (page: Page, sel: string) => page.$eval(sel, (e) => e.textContent ?? '');
const num = (s: string) => Number(s.replace(/,/g, ''));

/** Waits until `sel`'s text is `want` (the page polls every second). */
async function shows(page: Page, sel: string, want: string): Promise<void> {
  await page
    .waitForFunction((s: string, w: string) => document.querySelector(s)?.textContent === w, { timeout: 15_000 }, sel, want)
    .catch(async () => {
      throw new Error(`${sel} shows '${await text(page, sel).catch(() => '(nothing)')}', not '${want}'; banner: ${await text(page, '#banner')}`);
    });
}

/** The keys-left table: db -> number shown. */
function perDbShown(page: Page): Promise<Record<number, number>> {
  return page.$$eval('#per-db tbody tr', (trs) =>
    Object.fromEntries(trs.map((tr) => [Number(tr.getAttribute('data-db')), Number(tr.querySelector('td.remaining')!.textContent!.replace(/,/g, ''))])),
  );
}

/** The labels of the buttons a user can see in the controls. */
function visibleButtons(page: Page): Promise<string[]> {
  return page.$$eval('#controls button', (bs) => bs.filter((b) => (b as HTMLElement).offsetParent !== null).map((b) => b.textContent!.trim()));
}

async function enterToken(page: Page, token: string): Promise<void> {
  await page.type('#token', token);
  await page.click('#unlock button[type=submit]');
}

describe.skipIf(!chromium)('the dashboard at the admin endpoint', () => {
  let browser: Browser;
  beforeAll(async () => {
    browser = await launchChromium(chromium!);
  });
  afterAll(async () => {
    await browser?.close();
  });

  it('is served without the token, keeps to its endpoint, and changes nothing itself', async () => {
    const ap = await adminProxy(ctx, ['--phase', 'hold', '--admin-token', TOKEN], false);
    const r = await fetch(`http://${ap.admin}/`);
    expect(r.status).toBe(200);
    expect(r.headers.get('content-type')).toMatch(/^text\/html/);
    expect(r.headers.get('content-security-policy')).toMatch(/default-src 'none'.*connect-src 'self'.*frame-ancestors 'none'/);
    // Nothing from elsewhere: the page must work with no internet.
    expect(await r.text()).not.toMatch(/(src|href)=["']?(https?:)?\/\//);
    expect((await fetch(`http://${ap.admin}/`, { method: 'POST' })).status).toBe(401);
    const lat = (await (await fetch(`http://${ap.admin}/latency`)).json()) as Json;
    expect(lat).toMatchObject({ step_s: 1, points: expect.any(Array), by_phase: expect.any(Object) });
  });

  it('beyond loopback, where /status needs the token, asks for it before it shows anything', async () => {
    const port = await freePort();
    const proxy = await startProxy({
      source: ctx.source,
      target: ctx.target,
      args: ['--phase', 'hold', '--admin', `0.0.0.0:${port}`, '--admin-token', TOKEN, '--progress', 'off'],
    });
    const page = await browser.newPage();
    try {
      await page.goto(`http://127.0.0.1:${port}/`);
      await page.waitForFunction(() => !document.getElementById('banner')!.hidden, { timeout: 15_000 });
      expect(await text(page, '#banner')).toMatch(/only with the admin token/);
      expect(await text(page, '#phase')).toBe('…');
      expect(await visibleButtons(page)).toEqual([]);
      await enterToken(page, TOKEN);
      await shows(page, '#phase', 'hold');
      await page.waitForFunction(() => document.getElementById('banner')!.hidden, { timeout: 15_000 });
    } finally {
      await page.close();
      await proxy.stop('SIGTERM', 3_000);
    }
  });

  it('shows a running migration as the servers see it; switches appear only with the token and act on the fleet', async () => {
    const s = ctx.source.client();
    await seedStrings(s, 0, 3000);
    await seedStrings(s, 2, 500);
    s.disconnect();
    // The first process sweeps, slowly until the page lifts the limit; the second never sweeps.
    const a = await adminProxy(ctx, ['--phase', 'hold', '--admin-token', TOKEN, '--sweep-rate', '100']);
    const b = await adminProxy(ctx, ['--phase', 'hold', '--admin-token', TOKEN], false);
    const stopWorkload = workload([a, b]);
    const page = await browser.newPage();
    const dialogs: string[] = [];
    page.on('dialog', (d) => {
      dialogs.push(d.message());
      void d.accept();
    });
    try {
      await page.setViewport({ width: 1400, height: 1100 });
      await page.goto(`http://${a.admin}/`);

      // Hold: the keys waiting for migrate are the old server's, per db.
      await shows(page, '#phase', 'hold');
      await shows(page, '#epoch', '1');
      expect(await keysLeft(ctx.source)).toEqual({ 0: 3000, 2: 500 });
      expect(await perDbShown(page)).toEqual({ 0: 3000, 2: 500 });
      expect(num(await text(page, '#remaining-total'))).toBe(3500);

      // Every process of the fleet, each agreeing with the fleet's phase.
      await page.waitForFunction(() => document.querySelectorAll('#processes tbody tr').length === 2, { timeout: 15_000 });
      const st = await fetchStatus<Json>(a.admin);
      const ids = st.phases.processes.map((p: Json) => p.id).sort();
      expect(ids).toHaveLength(2);
      await page.waitForFunction(() => [...document.querySelectorAll('#processes td.agrees')].every((td) => td.textContent === 'yes'), { timeout: 15_000 });
      expect((await page.$$eval('#processes tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-id')))).sort()).toEqual(ids);
      expect(await text(page, '#agree')).toBe('All 2 processes agree on hold (epoch 1).');

      // Latency before the move: the hold row has samples.
      await page.waitForFunction(
        () => Number(document.querySelector('#latency-phases tr[data-phase="hold"] td:last-child')?.textContent?.replace(/,/g, '') ?? 0) > 0,
        { timeout: 15_000 },
      );

      // Read-only: no switch can be seen or clicked.
      expect(await visibleButtons(page)).toEqual([]);

      // A wrong token shows the switches, but the switch is refused and they disappear again.
      await enterToken(page, 'not-the-token');
      expect(await visibleButtons(page)).toEqual(['hold', 'migrate', 'reverse', 'pause', 'resume', 'set rate', 'Forget the token']);
      await page.click('button.phase[data-to="migrate"]');
      await page.waitForFunction(() => document.getElementById('controls')!.hidden, { timeout: 15_000 });
      expect(await text(page, '#result')).toMatch(/^switch to migrate: the token was refused/);
      expect((await fetchStatus<Json>(b.admin)).phase).toBe('hold');

      // The token: a click (confirmed) switches every process of the fleet.
      await enterToken(page, TOKEN);
      await page.click('button.phase[data-to="migrate"]');
      expect(dialogs.at(-1)).toBe('Switch every process of the fleet to migrate?');
      await shows(page, '#phase', 'migrate');
      await shows(page, '#epoch', '2');
      await waitFor(async () => (await fetchStatus<Json>(b.admin)).phase === 'migrate' || null, 'the other process in migrate', 10_000, 100);

      // Paused (from the page), nothing moves: the keys left shown are the old server's.
      await page.click('button[data-sweeper="pause"]');
      await shows(page, '#sweeper-state', 'paused');
      const left = await keysLeft(ctx.source);
      await waitFor(async () => JSON.stringify(await perDbShown(page)) === JSON.stringify(left) || null, 'the page showing the old server keys', 15_000, 200)
        .catch(async (e: Error) => {
          throw new Error(`${e.message}: page ${JSON.stringify(await perDbShown(page))}, server ${JSON.stringify(left)}`);
        });
      const total = Object.values(left).reduce((x, y) => x + y, 0);
      expect(num(await text(page, '#remaining-total'))).toBe(total);

      // The rate limit lifted and the sweeper resumed from the page: the page follows to drained.
      await page.type('#rate-limit', '0');
      await page.click('button[data-sweeper="rate"]');
      await waitFor(async () => (await fetchStatus<Json>(a.admin)).sweeper.rate_limit === null || null, 'the rate limit lifted', 10_000, 100);
      await page.click('button[data-sweeper="resume"]');
      await shows(page, '#phase', 'drained');
      await shows(page, '#remaining-total', '0');
      expect(await keysLeft(ctx.source)).toEqual({});
      expect(await page.$$eval('#latency-phases tbody tr', (trs) => trs.map((tr) => tr.getAttribute('data-phase')))).toEqual(
        expect.arrayContaining(['hold', 'migrate']),
      );
      expect(await page.$$eval('#chart polyline', (ls) => ls.length)).toBeGreaterThan(0);
      expect(await text(page, '#banner')).toBe('');
    } finally {
      await page.close();
      await stopWorkload();
    }
  }, 90_000);
});
