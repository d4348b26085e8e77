/*
 * Live: requests and tokens per minute over the last minutes, from the
 * routers' live counters in Redis, grouped by model or provider (top N +
 * others). Refreshes itself every 5 seconds while the tab is visible; the
 * charts are updated in place.
 */
"use strict";

const REFRESH_MS = 5000;

/* The API's (model, provider) series summed by the chosen group. */
function group(d, by, top) {
  const n = d.minutes.length, g = new Map();
  for (const x of d.series) {
    const k = by === "provider" ? x.provider : x.model;
    if (!g.has(k)) g.set(k, { key: k, requests: new Array(n).fill(0), tokens: new Array(n).fill(0), total: 0 });
    const a = g.get(k);
    for (let i = 0; i < n; i++) {
      a.requests[i] += x.requests[i] || 0;
      a.tokens[i] += x.tokens[i] || 0;
      a.total += x.requests[i] || 0;
    }
  }
  const all = [...g.values()].sort((a, b) => b.total - a.total || (a.key < b.key ? -1 : 1));
  const out = all.slice(0, top);
  if (all.length > top) {
    const o = { key: "others", requests: new Array(n).fill(0), tokens: new Array(n).fill(0), total: 0 };
    for (const a of all.slice(top))
      for (let i = 0; i < n; i++) { o.requests[i] += a.requests[i]; o.tokens[i] += a.tokens[i]; o.total += a.requests[i]; }
    out.push(o);
  }
  return { groups: out, count: all.length };
}

function draw(s, v, d) {
  const { groups, count } = group(d, s.group, Number(s.top));
  const labels = d.minutes.map(A.minuteLabel);
  const name = (k) => (k === "others" ? "Others" : k);
  const sum = (f) => groups.reduce((a, g) => a + g[f].reduce((x, y) => x + y, 0), 0);
  const at = (f, i) => groups.reduce((a, g) => a + (g[f][i] || 0), 0);
  const n = labels.length;
  v.kpis("now", [
    { v: A.compact(n > 1 ? at("requests", n - 2) : 0), l: "requests, last full minute" },
    { v: A.compact(n > 1 ? at("tokens", n - 2) : 0), l: "tokens, last full minute" },
    { v: A.compact(n ? at("requests", n - 1) : 0), l: "requests this minute so far" },
    { v: A.compact(sum("requests")), l: `requests, last ${s.minutes} minutes` },
    { v: A.compact(sum("tokens")), l: `tokens, last ${s.minutes} minutes` },
    { v: String(count), l: `${s.group}s active` },
  ]);
  A.$("#now h2").replaceChildren(A.el("span", { class: "pulse" }), `Now (updated ${new Date().toISOString().slice(11, 19)} UTC, every 5 s)`);
  if (!count) {
    v.empty("requests", `No requests in the last ${s.minutes} minutes.`);
    v.empty("tokens", `No tokens in the last ${s.minutes} minutes.`);
    return;
  }
  const opts = (fmt) => ({
    scales: { x: { stacked: true, ticks: { maxTicksLimit: 16, maxRotation: 0 } }, y: A.valueAxis(fmt, { stacked: true }) },
    plugins: { legend: { position: "right" } },
  });
  v.chart("requests", "bar", {
    labels, datasets: groups.map((g) => ({ label: name(g.key), data: g.requests, backgroundColor: A.color(g.key), borderWidth: 0 })),
  }, opts(A.compact));
  v.chart("tokens", "line", {
    labels, datasets: groups.map((g, i) => ({
      label: name(g.key), data: g.tokens, borderColor: A.color(g.key), backgroundColor: A.alpha(A.color(g.key), 0.5),
      fill: i === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1, tension: 0.2,
    })),
  }, opts(A.compact));
  A.$("#requests h2").textContent = `Requests per minute by ${s.group}`;
  A.$("#tokens h2").textContent = `Tokens per minute by ${s.group}`;
  A.$("#requests .sub").textContent = `UTC minutes; the current minute is still counting.`;
  A.$("#tokens .sub").textContent = `Prompt and completion tokens, stacked.`;
}

async function load(s, v) {
  try {
    draw(s, v, await v.get("live", { minutes: s.minutes }));
  } catch (e) {
    for (const id of ["now", "requests", "tokens"]) v.error(id, e);
  }
}

A.page({
  filters: [
    { name: "minutes", label: "Window", options: [["15", "15 minutes"], ["30", "30 minutes"], ["60", "1 hour"], ["120", "2 hours"]], def: "30" },
    { name: "group", label: "Group by", options: [["model", "Model"], ["provider", "Provider"]], def: "model" },
    { name: "top", label: "Top", options: ["5", "8", "12"], def: "8" },
  ],
  load,
});

setInterval(() => {
  if (!document.hidden && document.body.dataset.loading !== "1" && !document.body.classList.contains("locked")) A.run();
}, REFRESH_MS);
