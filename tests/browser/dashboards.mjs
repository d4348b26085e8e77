// The dashboards in headless Chromium (Debian's, no browser download), driven
// by playwright-core. For each page: load it with #key=..., wait for its
// cards, record what each card shows (state, data points, legend entries,
// painted pixels of its canvas), keep a screenshot, change one filter and
// record what changed (URL and charts); every console error, page error,
// failed request and HTTP error is collected. Prints one JSON report on
// stdout; tests/e2e/test_dashboards.py asserts on it.
//
// usage: node dashboards.mjs BASE_URL KEY OUT_DIR [CSV_FILE PROVIDER]
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { chromium } from "playwright-core";

const [base, key, outDir, csvFile, csvProvider] = process.argv.slice(2);
fs.mkdirSync(outDir, { recursive: true });
const profile = fs.mkdtempSync(path.join(os.tmpdir(), "agora-chromium-"));

// One filter change per page: [select name, value] and the cards that must change.
const PAGES = [
  { name: "share", path: "/", change: ["by", "provider"], changes: ["series", "period"] },
  { name: "models", path: "/models", change: ["metric", "requests"], changes: ["usage", "rank"] },
  { name: "providers", path: "/providers", change: ["stat", "p90"], changes: ["ttft", "latency"] },
  { name: "live", path: "/live", change: ["group", "provider"], changes: ["requests", "tokens"] },
  { name: "spend", path: "/spend", change: ["by", "provider"], changes: ["by"] },
  { name: "reconciliation", path: "/reconciliation", change: ["status", "issues"], changes: ["rows"] },
];

// A fresh profile directory (--user-data-dir, which playwright passes for a
// persistent context); every page is a new tab, so sessionStorage starts empty.
const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  viewport: { width: 1280, height: 800 },
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
});

function watch(page, problems) {
  page.on("console", (m) => { if (m.type() === "error" || m.type() === "warning") problems.push(`console ${m.type()}: ${m.text()}`); });
  page.on("pageerror", (e) => problems.push(`page error: ${e.message}`));
  page.on("requestfailed", (r) => problems.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`));
  page.on("response", (r) => { if (r.status() >= 400) problems.push(`HTTP ${r.status()}: ${r.url()}`); });
}

// Every card has left "loading" and no run is in flight.
async function settled(page) {
  await page.waitForFunction(() => document.body.dataset.loading === "0" &&
    [...document.querySelectorAll(".card[data-chart], .card[data-kpis], .card[data-table]")]
      .every((c) => c.dataset.state && c.dataset.state !== "loading"), null, { timeout: 20000 });
}

// What each card shows, from the DOM and the Chart.js instances.
function cards(page) {
  return page.evaluate(() => {
    const out = {};
    for (const c of document.querySelectorAll(".card[data-chart], .card[data-kpis], .card[data-table]")) {
      const ch = window.agoraCharts[c.id];
      const canvas = c.querySelector("canvas");
      let painted = 0;
      if (canvas && canvas.width && canvas.height) {
        // Read a copy: reading the chart's own canvas makes Chromium warn.
        const copy = document.createElement("canvas");
        [copy.width, copy.height] = [canvas.width, canvas.height];
        const cx = copy.getContext("2d", { willReadFrequently: true });
        cx.drawImage(canvas, 0, 0);
        const px = cx.getImageData(0, 0, canvas.width, canvas.height).data;
        for (let i = 3; i < px.length; i += 4 * 7) if (px[i] > 0) painted++;
      }
      out[c.id] = {
        state: c.dataset.state, message: (c.querySelector(".state") || {}).textContent || "",
        points: Number(c.dataset.points || 0), legend: Number(c.dataset.legend || 0),
        title: (c.querySelector("h2") || {}).textContent || "", sub: (c.querySelector(".sub") || {}).textContent || "",
        canvas: !!canvas, painted, kpis: [...c.querySelectorAll(".kpi")].map((k) => k.textContent),
        rows: c.querySelectorAll("tbody tr").length,
        signature: ch ? JSON.stringify([ch.config.type, ch.data.labels, ch.data.datasets.map((d) => [d.label, d.data])]) :
          c.querySelector("tbody") ? c.querySelector("tbody").textContent : "",
      };
    }
    return out;
  });
}

async function visit(p) {
  const problems = [];
  const page = await browser.newPage();
  watch(page, problems);
  const api = [];
  page.on("request", (q) => { if (q.url().includes("/api/")) api.push(q.url()); });
  const t0 = Date.now();
  await page.goto(base + p.path + "#key=" + encodeURIComponent(key));
  await settled(page);
  const r = { name: p.name, load_ms: Date.now() - t0, url: page.url(), problems, api_calls: api.length };
  r.key_stored = await page.evaluate(() => sessionStorage.getItem("agora.key"));
  r.nav = await page.$$eval("#top nav a", (as) => as.map((a) => a.textContent));
  r.cards = await cards(page);
  r.screenshot = path.join(outDir, p.name + ".png");
  await page.screenshot({ path: r.screenshot, fullPage: true });
  const [name, value] = p.change;
  await page.selectOption(`#filters select[name="${name}"]`, value);
  await settled(page);
  r.url_after = page.url();
  r.cards_after = await cards(page);
  r.changed = p.changes.filter((id) => r.cards[id] && r.cards_after[id] && r.cards[id].signature !== r.cards_after[id].signature);
  r.must_change = p.changes;
  await page.screenshot({ path: path.join(outDir, p.name + "-changed.png"), fullPage: true });
  // Reloading the changed URL (a shared link) shows the same view.
  await page.reload();
  await settled(page);
  r.reloaded_value = await page.$eval(`#filters select[name="${name}"]`, (s) => s.value);
  if (p.name === "live") {
    // The page refreshes itself: another API call within ~6 s.
    const seen = page.waitForRequest((q) => q.url().includes("/api/v1/analytics/live"), { timeout: 8000 }).then(() => true, () => false);
    r.refreshed = await seen;
  }
  await page.close();
  return r;
}

// Without a key: the form asks for one; a wrong one is refused with a message.
async function keyForm() {
  const problems = [];
  const page = await browser.newPage();
  watch(page, problems);
  await page.goto(base + "/models?period=30d");
  await page.waitForSelector("form.gate input[name=key]");
  const asked = true;
  await page.fill("form.gate input[name=key]", "sk-ag-v1-" + "0".repeat(40));
  await page.click("form.gate button[type=submit]");
  await page.waitForSelector("form.gate p.err", { timeout: 10000 });
  const refused = await page.textContent("form.gate p.err");
  await page.screenshot({ path: path.join(outDir, "key-form.png") });
  await page.fill("form.gate input[name=key]", key);
  await page.click("form.gate button[type=submit]");
  await settled(page);
  const after = await cards(page);
  await page.close();
  return { asked, refused, after, problems };
}

// The import form posts a CSV; the report then shows that provider's rows.
async function importCsv() {
  const problems = [];
  const page = await browser.newPage();
  watch(page, problems);
  await page.goto(base + "/reconciliation?period=30d#key=" + encodeURIComponent(key));
  await settled(page);
  await page.fill("#import input[name=provider]", csvProvider);
  await page.setInputFiles("#import input[type=file]", csvFile);
  await page.click("#import button[type=submit]");
  await page.waitForSelector("#import .result.ok, #import .result.err", { timeout: 15000 });
  const result = await page.textContent("#import .result");
  await settled(page);
  const out = { result, url: page.url(), cards: await cards(page), problems };
  out.screenshot = path.join(outDir, "reconciliation-imported.png");
  await page.screenshot({ path: out.screenshot, fullPage: true });
  await page.close();
  return out;
}

// A period with no data shows empty states; one the APIs refuse (too long)
// shows their error in every card.
async function states() {
  const out = {};
  for (const [name, query] of [["empty", "from=2001-01-01&to=2001-02-01"], ["error", "from=2001-01-01&to=2026-01-01"]]) {
    const problems = [];
    const page = await browser.newPage();
    watch(page, problems);
    await page.goto(base + "/spend?" + query + "#key=" + encodeURIComponent(key));
    await settled(page);
    out[name] = { cards: await cards(page), problems };
    await page.screenshot({ path: path.join(outDir, `spend-${name}.png`), fullPage: true });
    await page.close();
  }
  return out;
}

// A step that throws (a time-out waiting for a card) is reported, not fatal.
const attempt = (fn) => fn().catch((e) => ({ failed: String(e.message || e).slice(0, 2000) }));
const report = { pages: [] };
try {
  if (csvFile) report.import = await attempt(importCsv);
  for (const p of PAGES) report.pages.push(Object.assign({ name: p.name }, await attempt(() => visit(p))));
  report.key_form = await attempt(keyForm);
  report.states = await attempt(states);
} finally {
  await browser.close();
  fs.rmSync(profile, { recursive: true, force: true });
}
console.log(JSON.stringify(report));
