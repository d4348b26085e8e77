/*
 * Market share: the open-weight share of all volume by origin, bucket by
 * bucket (the operators' question); the share of the chosen dimension per
 * bucket as top N + others; and the split over the whole period.
 */
"use strict";

const BY = [["model", "Model"], ["author", "Author"], ["provider", "Provider"], ["origin", "Origin"], ["app", "App"]];
const METRICS = [["tokens", "Tokens"], ["requests", "Requests"], ["spend", "Spend"]];
const INTERVALS = [["day", "Day"], ["week", "Week"], ["month", "Month"]];
const WEIGHTS = [["", "All models"], ["true", "Open weights"], ["false", "Closed weights"]];

const byName = (by) => BY.find((b) => b[0] === by)[1].toLowerCase();
const metricName = (m) => METRICS.find((x) => x[0] === m)[1].toLowerCase();

// Origins keep the colours of the open-weight chart.
const colorOf = (by, key) => A.color(by === "origin" && key !== "others" ? "origin:" + key : key);

function keyLabel(by, key, label) {
  if (key === "others") return "Others";
  if (by === "origin") return A.originLabel(key);
  if (by === "app" && !key) return "(no app)";
  return label || key || "(none)";
}

/* The open-weight share of ALL volume per bucket, one band per origin,
 * closed weights as the grey band on top (the bands add up to 100%). */
function drawOpen(s, v, open, all) {
  const interval = s.interval;
  A.$("#open h2").textContent = `Open-weight share by origin, ${interval} by ${interval}`;
  const totals = all.totals.map(A.num);
  const at = new Map(open.buckets.map((b, i) => [b, i]));
  const share = (vals) => all.buckets.map((b, i) => {
    const j = at.get(b);
    return totals[i] > 0 ? (j === undefined ? 0 : (A.num(vals[j]) / totals[i]) * 100) : null;
  });
  const bands = open.series.map((x) => ({ key: x.key, label: x.key === "others" ? "Other origins" : A.originLabel(x.key), data: share(x.values) }));
  const openSum = all.buckets.map((b, i) => (totals[i] > 0 ? bands.reduce((a, x) => a + (x.data[i] || 0), 0) : null));
  const datasets = bands.map((x, i) => ({
    label: x.label, data: x.data, borderColor: A.color("origin:" + x.key), backgroundColor: A.alpha(A.color("origin:" + x.key), 0.55),
    fill: i === 0 ? "origin" : "-1", pointRadius: 0, borderWidth: 1.5, tension: 0.25,
  }));
  datasets.push({
    label: "Closed weights", data: openSum.map((x) => (x === null ? null : Math.max(0, 100 - x))),
    borderColor: "#9aa0aa", backgroundColor: A.alpha("#b8bcc4", 0.35), fill: datasets.length ? "-1" : "origin",
    pointRadius: 0, borderWidth: 1, tension: 0.25,
  });
  if (!bands.length) return v.empty("open", "No open-weight traffic in this period.");
  v.chart("open", "line", { labels: all.buckets.map((b) => A.dayLabel(b, interval)), datasets }, {
    scales: { y: A.pctAxis(100), x: { stacked: true } },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.y === null ? "–" : c.parsed.y.toFixed(1) + "%"}`, footer: (items) => {
      const i = items[0].dataIndex;
      return openSum[i] === null ? "" : `Open weights: ${openSum[i].toFixed(1)}%`;
    } } } },
  });
  const known = openSum.map((x, i) => [x, i]).filter(([x]) => x !== null);
  if (known.length) {
    const [first, last] = [known[0], known[known.length - 1]];
    const d = last[0] - first[0];
    A.$("#open .sub").textContent = `Open-weight models carried ${last[0].toFixed(1)}% of all ${metricName(s.metric)} in the ${interval} of ` +
      `${A.dayLabel(all.buckets[last[1]], interval)}, ${d >= 0 ? "up" : "down"} ${Math.abs(d).toFixed(1)} points from ` +
      `${first[0].toFixed(1)}% in the ${interval} of ${A.dayLabel(all.buckets[first[1]], interval)}.`;
  }
  return { first: known.length ? known[0][0] : null, last: known.length ? known[known.length - 1][0] : null };
}

/* Share of the chosen dimension per bucket: 100% stacked bars. */
function drawSeries(s, v, d) {
  const fmt = A.metricFmt(s.metric);
  A.$("#series h2").textContent = `Share of ${metricName(s.metric)} by ${byName(s.by)}, per ${s.interval}`;
  const datasets = d.series.map((x) => ({
    label: keyLabel(s.by, x.key, x.label), data: x.shares.map((y) => (y === null ? null : y * 100)), raw: x.values,
    backgroundColor: colorOf(s.by, x.key), borderWidth: 0, stack: "share",
  }));
  v.chart("series", "bar", { labels: d.buckets.map((b) => A.dayLabel(b, s.interval)), datasets }, {
    scales: { y: A.pctAxis(100), x: { stacked: true, ticks: { maxRotation: 0, autoSkipPadding: 8 } } },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${c.parsed.y.toFixed(1)}% (${fmt(c.dataset.raw[c.dataIndex])})` } } },
  });
  A.$("#series .sub").textContent = `Top ${s.top} ${byName(s.by)}s of the period, the rest as Others; bars add up to 100% of each ${s.interval}.`;
}

/* The whole period: doughnut of top N + others. */
function drawPeriod(s, v, p) {
  const fmt = A.metricFmt(s.metric);
  const rows = p.rows.map((r) => ({ key: r.key, label: keyLabel(s.by, r.key, r.label), value: r.value, share: r.share }));
  if (p.others && p.others.count > 0)
    rows.push({ key: "others", label: `Others (${p.others.count})`, value: p.others.value, share: p.others.share });
  A.$("#period h2").textContent = `Share of ${metricName(s.metric)} over the period`;
  v.chart("period", "doughnut", {
    labels: rows.map((r) => `${r.label} ${A.pct(r.share)}`),
    datasets: [{ data: rows.map((r) => r.share * 100), backgroundColor: rows.map((r) => colorOf(s.by, r.key)), raw: rows, borderWidth: 1 }],
  }, {
    cutout: "55%",
    plugins: { legend: { position: "bottom" }, tooltip: { callbacks: { label: (c) => ` ${fmt(rows[c.dataIndex].value)} (${A.pct(rows[c.dataIndex].share)})` } } },
  });
  A.$("#period .sub").textContent = `Total: ${fmt(p.total)} ${s.metric === "spend" ? "" : metricName(s.metric)}`;
  return rows;
}

function drawSummary(s, v, p, trend) {
  const fmt = A.metricFmt(s.metric);
  const n = p.rows.length + ((p.others && p.others.count) || 0);
  const top = p.rows[0];
  const items = [
    { v: fmt(p.total), l: `${metricName(s.metric)}, ${s.from} to ${A.addDays(s.to, -1)}` },
    { v: String(n), l: `${byName(s.by)}s with traffic` },
    { v: top ? keyLabel(s.by, top.key, top.label) : "–", l: top ? `leads with ${A.pct(top.share)}` : "no leader" },
  ];
  if (trend && trend.last !== null) {
    const d = trend.last - trend.first;
    items.push({ v: trend.last.toFixed(1) + "%", l: `open-weight share, latest ${s.interval}` });
    items.push({ v: (d >= 0 ? "▲ " : "▼ ") + Math.abs(d).toFixed(1) + " pts", l: "since the first " + s.interval, cls: d >= 0 ? "up" : "down" });
  }
  v.kpis("summary", items);
}

async function load(s, v) {
  const range = { from: s.from, to: s.to };
  const per = Object.assign({ metric: s.metric, interval: s.interval }, range);
  const pSeries = v.get("share/series", Object.assign({ by: s.by, top: s.top, open_weights: s.open_weights }, per));
  const pPeriod = v.get("share", Object.assign({ by: s.by, metric: s.metric, top: s.top, open_weights: s.open_weights }, range));
  const pOpen = v.get("share/series", Object.assign({ by: "origin", top: 12, open_weights: "true" }, per));
  const pAll = v.get("share/series", Object.assign({ by: "origin", top: 1 }, per));

  const series = pSeries.then((d) => drawSeries(s, v, d), (e) => v.error("series", e));
  const period = pPeriod.then((d) => (drawPeriod(s, v, d), d), (e) => { v.error("period", e); v.error("summary", e); return null; });
  const open = Promise.all([pOpen, pAll]).then(([o, a]) => drawOpen(s, v, o, a), (e) => { v.error("open", e); return null; });
  const [p, trend] = await Promise.all([period, open, series]);
  if (p) drawSummary(s, v, p, trend);
}

A.page({
  filters: [
    { type: "period", options: ["30d", "90d", "180d", "365d", "mtd", "lastmonth"], def: "90d" },
    { name: "by", label: "Share by", options: BY, def: "model" },
    { name: "metric", label: "Metric", options: METRICS, def: "tokens" },
    { name: "interval", label: "Interval", options: INTERVALS, def: "week" },
    { name: "top", label: "Top", options: ["5", "8", "10", "15", "20"], def: "8" },
    { name: "open_weights", label: "Weights", options: WEIGHTS, def: "" },
  ],
  load,
});
