/*
 * Models: the top models' volume per bucket (stacked), the ranking over the
 * period (a bar per model; a click opens its providers) and the split by
 * author.
 */
"use strict";

const METRICS = [["tokens", "Tokens"], ["requests", "Requests"], ["spend", "Spend"]];
const metricName = (m) => METRICS.find((x) => x[0] === m)[1].toLowerCase();
const label = (r) => (r.key === "others" ? "Others" : r.label || r.key);

function drawUsage(s, v, d) {
  const fmt = A.metricFmt(s.metric);
  A.$("#usage h2").textContent = `Top models: ${metricName(s.metric)} per ${s.interval}`;
  const datasets = d.series.map((x) => ({
    label: label(x), data: x.values.map(A.num), backgroundColor: A.color(x.key), borderWidth: 0, stack: "v",
  }));
  v.chart("usage", "bar", { labels: d.buckets.map((b) => A.dayLabel(b, s.interval)), datasets }, {
    scales: { x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 8 } }, y: A.valueAxis(fmt, { stacked: true }) },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${fmt(c.parsed.y)}` } } },
  });
  const tot = d.totals.map(A.num).reduce((a, b) => a + b, 0);
  A.$("#usage .sub").textContent = `${fmt(tot)} ${s.metric === "spend" ? "spent" : metricName(s.metric)} in the period; the top ${s.top} models stacked, the rest as Others.`;
}

function drawRank(s, v, p) {
  const fmt = A.metricFmt(s.metric);
  const rows = p.rows.slice();
  A.$("#rank h2").textContent = `Ranking by ${metricName(s.metric)} over the period`;
  const chart = v.chart("rank", "bar", {
    labels: rows.map(label),
    datasets: [{ label: metricName(s.metric), data: rows.map((r) => A.num(r.value)), backgroundColor: rows.map((r) => A.color(r.key)), borderWidth: 0, maxBarThickness: 26 }],
  }, {
    indexAxis: "y",
    scales: { x: A.valueAxis(fmt), y: { ticks: A.shortTicks(30) } },
    plugins: { legend: { display: false }, tooltip: { callbacks: { label: (c) => ` ${fmt(c.parsed.x)} (${A.pct(rows[c.dataIndex].share)} of all)` } } },
    onClick: (ev, els) => {
      if (!els.length) return;
      const q = new URLSearchParams(location.search);
      const out = new URLSearchParams({ model: rows[els[0].index].key });
      for (const k of ["period", "from", "to"]) if (q.get(k)) out.set(k, q.get(k));
      if (!out.get("from") && ["1d", "2d", "7d", "30d"].indexOf(out.get("period")) < 0) out.set("period", "7d");
      location.href = "/providers?" + out;
    },
  });
  if (chart) A.$("#rank").dataset.legend = String(rows.length);
  const others = p.others && p.others.count ? `; ${p.others.count} more models share ${A.pct(p.others.share)}` : "";
  A.$("#rank .sub").textContent = `Top ${rows.length} of ${fmt(p.total)}${others}. Click a bar for the model's providers.`;
}

function drawAuthors(s, v, p) {
  const rows = p.rows.slice();
  if (p.others && p.others.count) rows.push({ key: "others", label: `Others (${p.others.count})`, value: p.others.value, share: p.others.share });
  v.chart("authors", "doughnut", {
    labels: rows.map((r) => `${label(r)} ${A.pct(r.share)}`),
    datasets: [{ data: rows.map((r) => r.share * 100), backgroundColor: rows.map((r) => A.color("author:" + r.key)), borderWidth: 1 }],
  }, {
    cutout: "55%",
    plugins: { tooltip: { callbacks: { label: (c) => ` ${A.metricFmt(s.metric)(rows[c.dataIndex].value)}` } } },
  });
  A.$("#authors .sub").textContent = `Share of ${metricName(s.metric)} by the lab that made the model.`;
}

async function load(s, v) {
  const range = { from: s.from, to: s.to, metric: s.metric, open_weights: s.open_weights };
  const jobs = [
    v.get("share/series", Object.assign({ by: "model", interval: s.interval, top: s.top }, range))
      .then((d) => drawUsage(s, v, d), (e) => v.error("usage", e)),
    v.get("share", Object.assign({ by: "model", top: s.top }, range))
      .then((d) => drawRank(s, v, d), (e) => v.error("rank", e)),
    v.get("share", Object.assign({ by: "author", top: 8 }, range))
      .then((d) => drawAuthors(s, v, d), (e) => v.error("authors", e)),
  ];
  await Promise.all(jobs);
}

A.page({
  filters: [
    { type: "period", options: ["7d", "30d", "90d", "180d", "365d", "mtd", "lastmonth"], def: "30d" },
    { name: "metric", label: "Metric", options: METRICS, def: "tokens" },
    { name: "interval", label: "Interval", options: [["day", "Day"], ["week", "Week"], ["month", "Month"]], def: "day" },
    { name: "top", label: "Top", options: ["5", "10", "15", "20"], def: "10" },
    { name: "open_weights", label: "Weights", options: [["", "All models"], ["true", "Open weights"], ["false", "Closed weights"]], def: "" },
  ],
  load,
});
