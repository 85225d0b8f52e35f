// Drive Debian's Chromium headless with WebGPU (SwiftShader) through playwright-core.
// Opens one URL, waits until the page publishes `window.__mlcbuildResult` (or throws), prints
// one JSON line {ok, result, error, console} on stdout. Used by builder/run/browser.py and the tests.
//
//   node web/tools/browse.mjs --url http://127.0.0.1:PORT/page.html [--timeout 60000]
//        [--screenshot out.png] [--screenshot-always] [--profile DIR] [--throttle KBIT_S,LATENCY_MS] [--arg FLAG]...
//        [--widths 1440,390:dark] [--color-scheme light|dark]
// --widths: after the page is done, one full-page screenshot per viewport width (out-1440.png, out-390.png), each in
// the color scheme named after a colon (else as it was), for the docs.
// --profile keeps the browser profile (Cache API storage included) in DIR, so a second visit finds the first one's
// cached artifacts; without it every run starts from a fresh, empty profile that is removed afterwards.
// --throttle emulates a slower network for the page's requests (DevTools' network conditions; Cache API reads are
// not network requests, so they run at full speed). --arg adds a Chromium flag (e.g. one that turns WebGPU off).
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

function parseArgs(argv) {
  const opts = { timeout: 60000, screenshot: null, screenshotAlways: false, url: null, profile: null, throttle: null,
    args: [], widths: [], colorScheme: null };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (a === "--url") opts.url = argv[++i];
    else if (a === "--timeout") opts.timeout = Number(argv[++i]);
    else if (a === "--screenshot") opts.screenshot = argv[++i];
    else if (a === "--screenshot-always") opts.screenshotAlways = true;
    else if (a === "--profile") opts.profile = argv[++i];
    else if (a === "--arg") opts.args.push(argv[++i]);
    else if (a === "--widths") opts.widths = argv[++i].split(",").map((w) => w.split(":"));
    else if (a === "--color-scheme") opts.colorScheme = argv[++i];
    else if (a === "--throttle") {
      const [kbit, latency] = argv[++i].split(",").map(Number);
      if (!(kbit > 0) || !(latency >= 0)) throw new Error("--throttle wants KBIT_S,LATENCY_MS, e.g. 100000,20");
      opts.throttle = { kbit, latency };
    }
    else throw new Error(`unknown argument ${a}`);
  }
  if (!opts.url) throw new Error("--url is required");
  return opts;
}

export function chromiumPath() {
  const candidates = [process.env.MLCBUILD_CHROMIUM, "/usr/lib/chromium/chromium", "/usr/bin/chromium"];
  for (const c of candidates) if (c && existsSync(c)) return c;
  throw new Error("chromium not found (apt-get install chromium, or set MLCBUILD_CHROMIUM)");
}

// Flags from ../shared/notes/toolchain.md: no network chatter, WebGPU on without a GPU.
export const CHROMIUM_ARGS = [
  "--no-sandbox", "--no-first-run", "--disable-background-networking", "--disable-component-update",
  "--disable-sync", "--disable-quic", "--enable-unsafe-webgpu", "--disable-dev-shm-usage",
];

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  const profile = opts.profile ?? mkdtempSync(join(tmpdir(), "mlcbuild-chromium-"));
  const out = { ok: false, result: null, error: null, console: [] };
  let context = null;
  let page = null;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: chromiumPath(), headless: true, args: [...CHROMIUM_ARGS, ...opts.args],
    });
    page = context.pages()[0] ?? (await context.newPage());
    if (opts.colorScheme) await page.emulateMedia({ colorScheme: opts.colorScheme });
    page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
    page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
    if (opts.throttle) {
      const cdp = await context.newCDPSession(page);
      const bytesPerS = (opts.throttle.kbit * 1000) / 8;
      await cdp.send("Network.enable");
      await cdp.send("Network.emulateNetworkConditions", { offline: false, latency: opts.throttle.latency,
        downloadThroughput: bytesPerS, uploadThroughput: bytesPerS });
    }
    await page.goto(opts.url, { timeout: opts.timeout });
    const handle = await page.waitForFunction(
      () => window.__mlcbuildResult !== undefined || window.__mlcbuildError !== undefined,
      null, { timeout: opts.timeout, polling: 100 });
    await handle.dispose();
    const { result, error } = await page.evaluate(() => ({
      result: window.__mlcbuildResult ?? null, error: window.__mlcbuildError ?? null,
    }));
    out.result = result;
    out.error = error;
    out.ok = error === null;
  } catch (e) {
    out.error = String(e && e.message ? e.message : e).split("\n")[0];
  }
  if (page && opts.screenshot && (opts.screenshotAlways || !out.ok)) {
    try { await page.screenshot({ path: opts.screenshot, fullPage: true }); } catch { /* page gone */ }
    for (const [w, scheme] of opts.widths) {
      try {
        if (scheme) await page.emulateMedia({ colorScheme: scheme });
        await page.setViewportSize({ width: Number(w), height: 900 });
        await page.waitForTimeout(300); // let the layout settle
        await page.screenshot({ path: opts.screenshot.replace(/(\.png)?$/, `-${w}.png`), fullPage: true });
      } catch { /* page gone */ }
    }
  }
  if (context) await context.close().catch(() => {});
  if (!opts.profile) rmSync(profile, { recursive: true, force: true });
  process.stdout.write(JSON.stringify(out) + "\n");
}

main().catch((e) => {
  process.stdout.write(JSON.stringify({ ok: false, result: null, error: String(e.message || e), console: [] }) + "\n");
  process.exit(1);
});
