/*
 * Providers: health per hour. One line per provider (per model when a
 * provider is chosen): time to first token, total latency (mean, p50 or
 * p90), output speed, uptime, and the requests behind them; the period's
 * summary per endpoint below.
 */
"use strict";

const STATS = [["p50", "p50"], ["p90", "p90"], ["avg", "mean"]];
const MAX_LINES = 10;

/* Every hour of [from, to), up to now (UTC ISO strings). */
function hours(from, to) {
  const out = [], end = Math.min(Date.parse(to + "T00:00:00Z"), Date.now());
  for (let t = Date.parse(from + "T00:00:00Z"); t < end; t += 3600e3) out.push(t);
  return out;
}

/* Rows grouped by provider (or model) and hour: sums, and means weighted by
 * successful requests (percentiles of merged endpoints: their weighted mean). */
function group(rows, byModel, stat) {
  const groups = new Map();
  for (const r of rows) {
    const k = byModel ? r.model : r.provider;
    if (!groups.has(k)) groups.set(k, { key: k, label: byModel ? r.model : r.provider_name || r.provider, hours: new Map(), requests: 0, merged: false });
    const g = groups.get(k), h = Date.parse(r.hour);
    g.requests += r.requests;
    if (!g.hours.has(h)) g.hours.set(h, { n: 0, requests: 0, failures: 0, w: 0, ttft: 0, lat: 0, tps: 0 });
    const a = g.hours.get(h);
    const w = Math.max(0, r.requests - r.failures);
    // Percentiles exist for short ranges only (the API sends null): the mean then.
    const pick = (f) => (stat !== "avg" && r[f + stat] !== null && r[f + stat] !== undefined ? r[f + stat] : r[f + "avg"]);
    const ttft = pick("ttft_ms_"), lat = pick("latency_ms_");
    a.n++;
    if (a.n > 1) g.merged = true;
    a.requests += r.requests;
    a.failures += r.failures;
    if (w > 0 && ttft !== null && lat !== null) {
      a.w += w;
      a.ttft += w * ttft;
      a.lat += w * lat;
      a.tps += w * (r.tps_avg || 0);
    }
  }
  return [...groups.values()].sort((x, y) => y.requests - x.requests);
}

function line(id, v, labels, groups, f, axis, fmtTip, keepZeros) {
  const datasets = groups.map((g) => ({
    label: g.label, data: f(g), borderColor: A.color(g.key), backgroundColor: A.color(g.key),
    pointRadius: 1.5, borderWidth: 1.5, spanGaps: false, tension: 0.2,
  }));
  return v.chart(id, "line", { labels, datasets }, {
    keepZeros,
    scales: { y: axis, x: { ticks: { maxTicksLimit: 6, maxRotation: 0 } } },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmtTip(c.parsed.y)}` } } },
  });
}

function draw(s, v, d) {
  const byModel = !!s.provider && !s.model;
  const hs = hours(s.from, s.to);
  const labels = hs.map((t) => A.hourLabel(new Date(t).toISOString()));
  const all = group(d.rows, byModel, s.stat);
  const groups = all.slice(0, MAX_LINES);
  const at = (g, fn) => hs.map((t) => { const a = g.hours.get(t); return a ? fn(a) : null; });
  const noPct = s.stat !== "avg" && d.percentiles === false;
  const statName = noPct ? "mean: percentiles cover 7 days at most" : STATS.find((x) => x[0] === s.stat)[1];
  const what = byModel ? "model" : "provider";
  const more = all.length > groups.length ? `; the ${groups.length} busiest of ${all.length} ${what}s` : "";
  const merged = s.stat !== "avg" && !noPct && groups.some((g) => g.merged) ? " (endpoints merged: mean of their percentiles)" : "";
  for (const id of ["ttft", "latency", "tps", "uptime", "requests"])
    if (!d.rows.length) v.empty(id, "No requests in this period" + (s.provider || s.model ? " for these filters." : "."));
  if (!d.rows.length) return;
  const msAxis = A.valueAxis((x) => A.compact(x) + " ms");
  line("ttft", v, labels, groups, (g) => at(g, (a) => (a.w ? a.ttft / a.w : null)), msAxis, A.ms);
  A.$("#ttft h2").textContent = `Time to first token (${statName})`;
  A.$("#ttft .sub").textContent = `Per hour and ${what}${more}${merged}.`;
  line("latency", v, labels, groups, (g) => at(g, (a) => (a.w ? a.lat / a.w : null)), msAxis, A.ms);
  A.$("#latency h2").textContent = `Total latency (${statName})`;
  A.$("#latency .sub").textContent = `Request sent to last token, per hour${merged}.`;
  line("tps", v, labels, groups, (g) => at(g, (a) => (a.w ? a.tps / a.w : null)),
    A.valueAxis((x) => A.compact(x) + " tok/s"), (y) => y.toFixed(1) + " tokens/s");
  A.$("#tps .sub").textContent = "Output tokens per second (mean of the hour).";
  const up = (g) => at(g, (a) => (a.requests ? (1 - a.failures / a.requests) * 100 : null));
  const low = Math.min(100, ...groups.flatMap((g) => up(g).filter((x) => x !== null)));
  line("uptime", v, labels, groups, up,
    { min: Math.max(0, Math.floor((low - 1) / 5) * 5), max: 100, ticks: { callback: (x) => x + "%" } }, (y) => y.toFixed(2) + "%", true);
  A.$("#uptime .sub").textContent = "Share of attempts that succeeded, per hour.";
  v.chart("requests", "bar", {
    labels, datasets: groups.map((g) => ({ label: g.label, data: at(g, (a) => a.requests), backgroundColor: A.color(g.key), stack: "r" })),
  }, { scales: { x: { stacked: true, ticks: { maxTicksLimit: 16, maxRotation: 0 } }, y: A.valueAxis(A.compact, { stacked: true }) } });
  const failed = all.reduce((n, g) => n + [...g.hours.values()].reduce((m, a) => m + a.failures, 0), 0);
  const total = all.reduce((n, g) => n + g.requests, 0);
  A.$("#requests .sub").textContent = `${A.compact(total)} attempts, ${A.compact(failed)} failed (${A.pct(total ? failed / total : 0, 2)}).`;
}

function drawSummary(s, v, d) {
  const rows = d.summary.slice().sort((a, b) => b.requests - a.requests);
  v.table("summary", [
    { h: "provider", f: (r) => r.provider_name || r.provider, l: true },
    { h: "model", f: (r) => r.model, l: true },
    { h: "requests", f: (r) => A.compact(r.requests) },
    { h: "failures", f: (r) => A.compact(r.failures) },
    { h: "uptime", f: (r) => A.pct(r.uptime, 2) },
    { h: "TTFT p50", f: (r) => A.ms(r.ttft_ms_p50) },
    { h: "TTFT p90", f: (r) => A.ms(r.ttft_ms_p90) },
    { h: "latency p50", f: (r) => A.ms(r.latency_ms_p50) },
    { h: "latency p90", f: (r) => A.ms(r.latency_ms_p90) },
    { h: "tokens/s", f: (r) => (r.tps_avg === null || r.tps_avg === undefined ? "–" : r.tps_avg.toFixed(1)) },
  ], rows);
  A.$("#summary .sub").textContent = `${rows.length} endpoints with traffic, ${s.from} to ${A.addDays(s.to, -1)}` +
    (d.truncated ? " (the answer was cut at the API's row limit: choose a shorter period)." : ".");
}

async function load(s, v) {
  const range = { from: s.from, to: s.to };
  // The choices of the two selects: every provider and model with traffic.
  const opts = Promise.all([
    v.get("share", Object.assign({ by: "provider", metric: "requests", top: 100 }, range)),
    v.get("share", Object.assign({ by: "model", metric: "requests", top: 100 }, range)),
  ]).then(([p, m]) => {
    if (v.stale()) return;
    A.setOptions("provider", [["", "All providers"]].concat(p.rows.map((r) => [r.key, r.label || r.key])));
    A.setOptions("model", [["", "All models"]].concat(m.rows.map((r) => [r.key, r.label || r.key])));
  }, () => null);
  const data = v.get("providers", Object.assign({ provider: s.provider, model: s.model }, range)).then((d) => {
    draw(s, v, d);
    drawSummary(s, v, d);
  }, (e) => { for (const id of ["ttft", "latency", "tps", "uptime", "requests", "summary"]) v.error(id, e); });
  await Promise.all([opts, data]);
}

A.page({
  filters: [
    { type: "period", options: ["1d", "2d", "7d", "30d"], def: "2d" },
    { name: "provider", label: "Provider", options: [["", "All providers"]], free: true, def: "" },
    { name: "model", label: "Model", options: [["", "All models"]], free: true, def: "" },
    { name: "stat", label: "Latency statistic", options: STATS, def: "p50" },
  ],
  load,
});
