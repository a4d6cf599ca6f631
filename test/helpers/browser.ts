/**
 * Real Chromium for the UI tests, driven by playwright-core (no browser download): Debian's
 * `chromium` at /usr/bin/chromium, or CHROMIUM_PATH. Missing, it fails with the install command;
 * a UI test is never skipped.
 */
import { existsSync } from "node:fs";
import { chromium, type Browser } from "playwright-core";

export const CHROMIUM_PATH = process.env.CHROMIUM_PATH ?? "/usr/bin/chromium";

export async function launchChromium(): Promise<Browser> {
  if (!existsSync(CHROMIUM_PATH)) {
    throw new Error(`no Chromium at ${CHROMIUM_PATH}: the web UI tests drive a real browser. Install it with \`sudo apt-get install -y chromium\` (what .ci/run does), or point CHROMIUM_PATH at one.`);
  }
  // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: CHROMIUM_PATH, headless: true, args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"] });
}
