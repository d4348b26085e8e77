// One page's screenshot, for looking at a view by hand:
//   node shot.mjs URL OUT.png   (URL with #key=...)
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [url, out] = process.argv.slice(2);
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "agora-chromium-"));
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium", headless: true, viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`console ${m.type()}: ${m.text()}`));
  const t0 = Date.now();
  await page.goto(url);
  await page.waitForFunction(() => document.body.dataset.loading === "0", null, { timeout: 30000 });
  console.error(`loaded in ${Date.now() - t0} ms: ${page.url()}`);
  await page.screenshot({ path: out, fullPage: true });
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
