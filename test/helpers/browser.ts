/**
 * Headless Chromium for the dashboard test, driven through puppeteer-core (which never downloads a
 * browser): Debian's `chromium` package, or the binary named by REHOME_CHROMIUM. Without one the
 * test skips with a one-line notice; .ci/run installs the package.
 */
import { existsSync } from 'node:fs';
import puppeteer, { type Browser } from 'puppeteer-core';

const CANDIDATES = ['/usr/bin/chromium', '/usr/bin/chromium-browser'];

let noticed = false;

/** The Chromium binary, or null after printing once why the browser tests skip. */
export function chromiumPath(): string | null {
  const named = process.env.REHOME_CHROMIUM;
  const found = named ? (existsSync(named) ? named : null) : (CANDIDATES.find((p) => existsSync(p)) ?? null);
  if (found === null && !noticed) {
    noticed = true;
    console.log(`skipping browser tests: no Chromium at ${named ?? CANDIDATES.join(' or ')} (apt-get install chromium, or set REHOME_CHROMIUM)`);
  }
  return found;
}

/** A headless browser; close it in afterAll. */
export function launchChromium(executablePath: string): Promise<Browser> {
  return puppeteer.launch({
    executablePath,
    headless: true,
    // As root in a container there is no user namespace for Chromium's sandbox.
    args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
  });
}
