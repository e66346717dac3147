// Drives the system's Chromium (headless, SwiftShader WebGL) for the tests and benchmarks of the web
// viewer and the glTF export: opens a URL, waits until document.title is "rendered" or "bench done" (or
// starts with "error:"), optionally screenshots the page's first canvas and reads a global, and prints
// one JSON object. Usage: node browser.mjs '<json job>'
//   job: {url, width, height, screenshot?: path, read?: "window.expression", timeout_ms?, chromium?,
//         wait_ms?: instead of waiting for the title, wait this long (an interactive page)}
// playwright-core downloads no browser: it runs the given Chromium (default /usr/bin/chromium).
import { chromium } from "playwright-core";

const job = JSON.parse(process.argv[2]);
const executablePath = job.chromium || process.env.NEX_CHROMIUM || "/usr/bin/chromium";
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: ["--no-sandbox", "--use-angle=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-quic",
         "--disable-gpu-vsync", "--disable-frame-rate-limit", "--force-color-profile=srgb"],
});
const out = { console: [] };
try {
  const page = await browser.newPage({ viewport: { width: job.width, height: job.height }, deviceScaleFactor: 1 });
  page.on("console", (m) => out.console.push(`${m.type()}: ${m.text()}`));
  page.on("pageerror", (e) => out.console.push(`pageerror: ${e.message}`));
  await page.goto(job.url, { waitUntil: "load", timeout: job.timeout_ms || 60000 });
  if (job.wait_ms) await page.waitForTimeout(job.wait_ms);  // an interactive page: look at it after a while
  else await page.waitForFunction(
    () => ["rendered", "bench done"].includes(document.title) || document.title.startsWith("error:"),
    null, { timeout: job.timeout_ms || 60000, polling: 100 });
  out.title = await page.title();
  if (job.read) out.value = await page.evaluate(job.read);
  if (job.screenshot && !out.title.startsWith("error:")) {
    await page.locator("canvas").first().screenshot({ path: job.screenshot, animations: "disabled" });
  }
} catch (e) {
  out.error = String(e && e.message ? e.message : e);
} finally {
  await browser.close();
}
process.stdout.write(JSON.stringify(out) + "\n");
