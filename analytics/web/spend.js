/*
 * Spend: totals of the period (and the account's statement when one is
 * chosen), spend per day stacked by model (or provider/app), what accounts
 * paid against what providers cost per day (the margin), and spend by the
 * chosen dimension. CSV exports of the tables behind the charts.
 */
"use strict";

const BY = [["model", "Model"], ["provider", "Provider"], ["app", "App"], ["account", "Account"], ["key", "Key"]];
const byName = (by) => BY.find((b) => b[0] === by)[1].toLowerCase();
const rowLabel = (by, r) => (by === "app" && !r.key ? "(no app)" : r.label || r.key);

function drawTotals(s, v, t, st) {
  const cost = A.num(t.cost), pc = A.num(t.provider_cost), margin = A.num(t.margin);
  const items = [
    { v: A.usd(cost), l: "accounts' cost" },
    { v: A.usd(pc), l: "providers' cost" },
    { v: A.usd(margin), l: `margin (${cost ? A.pct(margin / cost) : "–"})`, cls: margin >= 0 ? "up" : "down" },
    { v: A.compact(t.requests), l: "requests" },
    { v: A.compact(A.num(t.prompt_tokens) + A.num(t.completion_tokens)), l: "tokens" },
  ];
  if (st) {
    items.push({ v: A.usd(st.opening_balance), l: "opening balance" }, { v: A.usd(st.credits), l: "credits added" },
      { v: A.usd(st.usage), l: "usage" }, { v: A.usd(st.closing_balance), l: "closing balance" });
  }
  v.kpis("totals", items);
  A.$("#totals h2").textContent = s.account ? `Account ${s.account}: ${s.from} to ${A.addDays(s.to, -1)}` : `All accounts: ${s.from} to ${A.addDays(s.to, -1)}`;
}

/* Every day of [from, to) (so days without spend show as gaps, not as
 * missing columns). */
function days(from, to) {
  const out = [];
  for (let d = from; d < to; d = A.addDays(d, 1)) out.push(d);
  return out;
}

function drawDaily(s, v, d, stackBy) {
  const all = days(s.from, s.to), at = new Map(d.buckets.map((b, i) => [b, i]));
  const datasets = d.series.map((x) => ({
    label: x.key === "others" ? "Others" : x.label || x.key || "(no app)",
    data: all.map((b) => (at.has(b) ? A.num(x.values[at.get(b)]) : 0)), backgroundColor: A.color(x.key), borderWidth: 0, stack: "s",
  }));
  v.chart("daily", "bar", { labels: all.map((b) => A.dayLabel(b, "day")), datasets }, {
    scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 8 } }, y: A.valueAxis(A.usd, { stacked: true }) },
    plugins: { legend: { position: "right" }, tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${A.usd(c.parsed.y)}` } } },
  });
  A.$("#daily h2").textContent = `Spend per day by ${stackBy}`;
  A.$("#daily .sub").textContent = `What accounts paid, per UTC day; the top ${s.top} ${stackBy}s stacked, the rest as Others.`;
}

/* With an account chosen the stacked split is not available per account:
 * the account's own cost per day. */
function drawDailyAccount(s, v, d) {
  const all = days(s.from, s.to), by = new Map(d.rows.map((r) => [r.key, r]));
  v.chart("daily", "bar", {
    labels: all.map((b) => A.dayLabel(b, "day")),
    datasets: [{ label: `account ${s.account}`, data: all.map((b) => (by.has(b) ? A.num(by.get(b).cost) : 0)), backgroundColor: A.color("account"), borderWidth: 0 }],
  }, { scales: { y: A.valueAxis(A.usd) }, plugins: { legend: { position: "right" } } });
  A.$("#daily h2").textContent = `Spend per day, account ${s.account}`;
  A.$("#daily .sub").textContent = "What the account paid, per UTC day.";
}

function drawMargin(s, v, d) {
  const all = days(s.from, s.to), by = new Map(d.rows.map((r) => [r.key, r]));
  const col = (f) => all.map((b) => (by.has(b) ? A.num(by.get(b)[f]) : null));
  v.chart("margin", "bar", {
    labels: all.map((b) => A.dayLabel(b, "day")),
    datasets: [
      { type: "line", label: "margin (right axis)", data: col("margin"), borderColor: "#2e8b57", backgroundColor: "#2e8b57", pointRadius: 2, borderWidth: 2, order: 0, yAxisID: "margin" },
      { label: "accounts' cost", data: col("cost"), backgroundColor: "#4e79a7", order: 1 },
      { label: "providers' cost", data: col("provider_cost"), backgroundColor: "#f28e2b", order: 1 },
    ],
  }, {
    scales: {
      x: { ticks: { maxRotation: 0, autoSkipPadding: 8 } }, y: A.valueAxis(A.usd),
      // The margin on its own scale: a few percent of the costs would be a flat line on theirs.
      margin: A.valueAxis(A.usd, { position: "right", grid: { drawOnChartArea: false }, ticks: { color: "#2e8b57", callback: (x) => A.usd(x) } }),
    },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label.replace(" (right axis)", "")}: ${A.usd(c.parsed.y)}` } } },
  });
  A.$("#margin .sub").textContent = "Per UTC day: what accounts were charged, what the providers' prices make it cost us, and the difference.";
}

function drawBy(s, v, d) {
  const rows = d.rows.slice().sort((a, b) => A.num(b.cost) - A.num(a.cost)).slice(0, 15);
  A.$("#by h2").textContent = `Spend by ${byName(s.by)}`;
  v.chart("by", "bar", {
    labels: rows.map((r) => rowLabel(s.by, r)),
    datasets: [
      { label: "accounts' cost", data: rows.map((r) => A.num(r.cost)), backgroundColor: "#4e79a7", maxBarThickness: 16 },
      { label: "providers' cost", data: rows.map((r) => A.num(r.provider_cost)), backgroundColor: "#f28e2b", maxBarThickness: 16 },
    ],
  }, {
    indexAxis: "y",
    scales: { x: A.valueAxis(A.usd), y: { ticks: A.shortTicks(26) } },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${A.usd(c.parsed.x)}`, footer: (it) => `margin ${A.usd(A.num(rows[it[0].dataIndex].margin))}` } } },
  });
  A.$("#by .sub").textContent = d.rows.length > rows.length ? `The 15 largest of ${d.rows.length}.` : `${d.rows.length} ${byName(s.by)}s.`;
}

async function load(s, v) {
  const range = { from: s.from, to: s.to };
  const acct = { account: s.account };
  const stackBy = ["model", "provider", "app"].includes(s.by) ? s.by : "model";
  const pDay = v.get("spend", Object.assign({ by: "day" }, range, acct));
  const pStmt = s.account ? v.get("statement", Object.assign({}, range, acct)) : Promise.resolve(null);
  const jobs = [
    Promise.all([pDay, pStmt]).then(([d, st]) => { drawTotals(s, v, d.totals, st); drawMargin(s, v, d); },
      (e) => { v.error("totals", e); v.error("margin", e); }),
    v.get("spend", Object.assign({ by: s.by }, range, acct)).then((d) => drawBy(s, v, d), (e) => v.error("by", e)),
    s.account
      ? pDay.then((d) => drawDailyAccount(s, v, d), (e) => v.error("daily", e))
      : v.get("share/series", Object.assign({ by: stackBy, metric: "spend", interval: "day", top: s.top }, range))
        .then((d) => drawDaily(s, v, d, stackBy), (e) => v.error("daily", e)),
  ];
  await Promise.all(jobs);
}

function csv(which) {
  const s = A.state();
  const by = which === "day" ? "day" : s.by;
  A.downloadCsv("spend", { by, from: s.from, to: s.to, account: s.account }, `spend-by-${by}-${s.from}-${s.to}.csv`)
    .catch((e) => A.error(which === "day" ? "daily" : "by", e));
}

A.page({
  filters: [
    { type: "period", options: ["7d", "30d", "90d", "180d", "365d", "mtd", "lastmonth"], def: "30d" },
    { name: "account", label: "Account", input: "text", placeholder: "all accounts", def: "" },
    { name: "by", label: "Breakdown", options: BY, def: "model" },
    { name: "top", label: "Top", options: ["5", "8", "12"], def: "8" },
  ],
  init: () => {
    for (const b of document.querySelectorAll("button[data-csv]")) b.addEventListener("click", () => csv(b.dataset.csv));
  },
  load,
});
