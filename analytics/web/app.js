/*
 * What every dashboard page shares: the API key (asked once, kept in this
 * tab's sessionStorage, or taken from #key=... in the URL fragment, which
 * never reaches the server), the header and navigation, filters that live
 * in the URL query (history.replaceState on every change), API calls, chart
 * cards with loading / empty / error states, colours and number formats.
 *
 * A page script calls A.page({ filters: [...], load(state, view) { ... } }).
 * load() runs once the key is known and again after every filter change;
 * it fetches what it needs in parallel (view.get) and draws cards
 * (view.chart, view.empty, view.error). Results of a superseded run are
 * dropped.
 */
"use strict";

const A = (() => {
  const KEY = "agora.key";
  const PAGES = [
    ["/", "Market share"], ["/models", "Models"], ["/providers", "Providers"],
    ["/live", "Live"], ["/spend", "Spend"], ["/reconciliation", "Reconciliation"],
  ];
  const PALETTE = ["#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
    "#ff9da7", "#9c755f", "#2f4b7c", "#a05195", "#d45087", "#665191", "#00a6a6", "#8cd17d",
    "#b6992d", "#499894", "#86bcb6", "#e49444", "#d37295"];
  const OTHERS = "#b8bcc4";
  const colors = new Map();

  /* ---------- small DOM helpers ---------- */
  function el(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === "text") e.textContent = v;
      else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
      else e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k);
    return e;
  }
  const $ = (sel, root) => (root || document).querySelector(sel);

  /* ---------- the key ---------- */
  function takeFragmentKey() {
    const m = location.hash.match(/(?:^#|&)key=([^&]+)/);
    if (!m) return;
    sessionStorage.setItem(KEY, decodeURIComponent(m[1]));
    // The key leaves the address bar (and any link copied from it) at once.
    history.replaceState(null, "", location.pathname + location.search);
  }
  const key = () => sessionStorage.getItem(KEY) || "";

  /* ---------- formats ---------- */
  const num = (v) => (v === null || v === undefined || v === "" ? null : typeof v === "string" ? parseFloat(v) : v);
  function compact(v) {
    v = num(v);
    if (v === null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    for (const [d, s] of [[1e12, "T"], [1e9, "B"], [1e6, "M"], [1e3, "K"]])
      if (a >= d) return (v / d).toFixed(a / d >= 100 ? 0 : 1) + s;
    return Number.isInteger(v) ? String(v) : v.toFixed(a >= 10 ? 1 : 2);
  }
  function usd(v) {
    v = num(v);
    if (v === null || !isFinite(v)) return "–";
    const a = Math.abs(v);
    const digits = a === 0 || a >= 100 ? 2 : a >= 1 ? 2 : a >= 0.01 ? 4 : 6;
    return (v < 0 ? "-$" : "$") + a.toLocaleString("en-US", { minimumFractionDigits: digits, maximumFractionDigits: digits });
  }
  const pct = (s, d) => (s === null || s === undefined || !isFinite(s) ? "–" : (s * 100).toFixed(d === undefined ? 1 : d) + "%");
  const ms = (v) => (v === null || v === undefined ? "–" : Math.round(v).toLocaleString("en-US") + " ms");
  function metricFmt(metric) {
    return metric === "spend" ? usd : compact;
  }
  const regionNames = typeof Intl.DisplayNames === "function" ? new Intl.DisplayNames(["en"], { type: "region" }) : null;
  function originLabel(code) {
    if (!code || code === "unknown") return "Unknown origin";
    if (code === "others") return "Others";
    let name = "";
    try { name = regionNames && /^[A-Z]{2}$/.test(code) ? regionNames.of(code) : ""; } catch (e) { name = ""; }
    return name && name !== code ? `${name} (${code})` : code;
  }

  /* ---------- dates (UTC, `to` exclusive like the APIs) ---------- */
  const iso = (d) => d.toISOString().slice(0, 10);
  const addDays = (s, n) => { const d = new Date(s + "T00:00:00Z"); d.setUTCDate(d.getUTCDate() + n); return iso(d); };
  const today = () => iso(new Date());
  const PERIODS = {
    "1d": ["Today", () => [today(), addDays(today(), 1)]],
    "2d": ["Last 2 days", () => [addDays(today(), -1), addDays(today(), 1)]],
    "7d": ["Last 7 days", () => [addDays(today(), -6), addDays(today(), 1)]],
    "30d": ["Last 30 days", () => [addDays(today(), -29), addDays(today(), 1)]],
    "90d": ["Last 90 days", () => [addDays(today(), -89), addDays(today(), 1)]],
    "180d": ["Last 180 days", () => [addDays(today(), -179), addDays(today(), 1)]],
    "365d": ["Last 12 months", () => [addDays(today(), -364), addDays(today(), 1)]],
    "mtd": ["This month", () => [today().slice(0, 8) + "01", addDays(today(), 1)]],
    "lastmonth": ["Last month", () => {
      const first = today().slice(0, 8) + "01";
      return [addDays(first, -1).slice(0, 8) + "01", first];
    }],
  };
  const validDate = (s) => /^\d{4}-\d{2}-\d{2}$/.test(s || "") && !isNaN(Date.parse(s + "T00:00:00Z"));

  /* ---------- state in the URL ---------- */
  function readState(spec) {
    const q = new URLSearchParams(location.search), s = {};
    for (const f of spec) {
      if (f.type === "period") {
        const p = q.get("period"), fr = q.get("from"), to = q.get("to");
        if (validDate(fr) && validDate(to) && fr < to && (!p || p === "custom")) {
          Object.assign(s, { period: "custom", from: fr, to });
        } else {
          s.period = f.options.includes(p) ? p : f.def;
          [s.from, s.to] = PERIODS[s.period][1]();
        }
        continue;
      }
      let v = q.has(f.name) ? q.get(f.name) : f.def;
      if (f.options && !f.free && !f.options.some((o) => optValue(o) === v)) v = f.def;
      s[f.name] = v;
    }
    return s;
  }
  const optValue = (o) => (Array.isArray(o) ? o[0] : o);
  const optLabel = (o) => (Array.isArray(o) ? o[1] : o);

  function writeState(spec, s) {
    const q = new URLSearchParams();
    for (const f of spec) {
      if (f.type === "period") {
        if (s.period === "custom") { q.set("from", s.from); q.set("to", s.to); } else q.set("period", s.period);
      } else if (s[f.name] !== "" && s[f.name] !== undefined) {
        q.set(f.name, s[f.name]);
      }
    }
    const qs = q.toString();
    history.replaceState(null, "", location.pathname + (qs ? "?" + qs : ""));
  }

  /* ---------- API ---------- */
  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }
  async function api(path, params, opts) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) if (v !== "" && v !== undefined && v !== null) q.set(k, v);
    const url = "/api/v1/analytics/" + path + (q.toString() ? "?" + q : "");
    let r;
    try {
      r = await fetch(url, Object.assign({ headers: { Authorization: "Bearer " + key() } }, opts || {}));
    } catch (e) {
      throw new ApiError(0, "cannot reach agora-analytics (" + e.message + ")");
    }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (e) { body = null; }
    if (!r.ok) {
      const msg = (body && body.error && body.error.message) || text.slice(0, 200) || r.statusText;
      if (r.status === 401) gate("The key was refused: " + msg);
      throw new ApiError(r.status, msg);
    }
    if (!body || !("data" in body)) throw new ApiError(r.status, "unexpected answer from " + path);
    return body.data;
  }

  async function downloadCsv(path, params, filename) {
    const q = new URLSearchParams(Object.assign({}, params, { format: "csv" }));
    for (const [k, v] of [...q]) if (v === "") q.delete(k);
    const r = await fetch("/api/v1/analytics/" + path + "?" + q, { headers: { Authorization: "Bearer " + key() } });
    if (!r.ok) throw new ApiError(r.status, "CSV export failed: " + r.status);
    const url = URL.createObjectURL(await r.blob());
    const a = el("a", { href: url, download: filename });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
  }

  /* ---------- colours ---------- */
  /* A stable colour per key within the page ("ns:key" keys keep their own
   * sequence per namespace; origins have theirs). */
  const ORIGIN_PALETTE = ["#d1495b", "#4e79a7", "#76b7b2", "#edc948", "#59a14f", "#b07aa1", "#f28e2b", "#9c755f"];
  const counters = new Map();
  function color(k) {
    if (k === "others" || /:others$/.test(k)) return OTHERS;
    if (k === "origin:unknown" || k === "origin:") return "#9c755f";
    if (!colors.has(k)) {
      const ns = k.includes(":") ? k.slice(0, k.indexOf(":")) : "";
      const n = counters.get(ns) || 0;
      counters.set(ns, n + 1);
      const pal = ns === "origin" ? ORIGIN_PALETTE : PALETTE;
      colors.set(k, pal[n % pal.length]);
    }
    return colors.get(k);
  }
  const alpha = (hex, a) => hex + Math.round(a * 255).toString(16).padStart(2, "0");

  /* ---------- cards and charts ---------- */
  const charts = {};
  window.agoraCharts = charts;

  function cardState(id, state, msg) {
    const card = document.getElementById(id);
    if (!card) return null;
    card.dataset.state = state;
    let box = $(".state", card);
    if (!box) { box = el("div", { class: "state" }); card.append(box); }
    box.textContent = msg || "";
    return card;
  }
  function empty(id, msg) {
    destroy(id);
    cardState(id, "empty", msg || "No data for this period and these filters.");
  }
  function error(id, e) {
    destroy(id);
    const what = e && e.status ? `API error ${e.status}: ${e.message}` : String((e && e.message) || e);
    cardState(id, "error", what);
  }
  function destroy(id) {
    if (charts[id]) { charts[id].destroy(); delete charts[id]; }
  }

  function countPoints(data) {
    let n = 0;
    for (const ds of data.datasets) for (const v of ds.data) if (v !== null && v !== undefined && (typeof v !== "number" || isFinite(v))) n++;
    return n;
  }

  function baseOptions(type) {
    const o = {
      responsive: true, maintainAspectRatio: false, animation: false,
      interaction: { mode: type === "doughnut" ? "nearest" : "index", intersect: type === "doughnut" },
      plugins: { legend: { position: "bottom", labels: { boxWidth: 12, boxHeight: 12 } } },
    };
    if (type === "doughnut") Object.assign(o.plugins.legend.labels, { boxWidth: 10, boxHeight: 10, padding: 6, font: { size: 11 } });
    return o;
  }
  function merge(a, b) {
    for (const [k, v] of Object.entries(b || {})) {
      if (v && typeof v === "object" && !Array.isArray(v) && a[k] && typeof a[k] === "object") merge(a[k], v);
      else a[k] = v;
    }
    return a;
  }

  const anyNonZero = (data) => data.datasets.some((ds) => ds.data.some((v) => v !== null && v !== undefined && v !== 0));

  /* Draws (or redraws in place) the chart of card id; a data set without
   * points, or only zeros (unless options.keepZeros: an uptime of 0% is
   * news), gives the card's empty state instead. */
  function chart(id, type, data, options) {
    const card = document.getElementById(id);
    if (!countPoints(data) || (!(options && options.keepZeros) && !anyNonZero(data))) return empty(id);
    if (options) delete options.keepZeros;
    const opts = merge(baseOptions(type), options);
    const canvas = $("canvas", card);
    const old = charts[id];
    if (old && old.config.type === type) {
      old.data = data;
      old.options = opts;
      old.update("none");
    } else {
      destroy(id);
      charts[id] = new Chart(canvas, { type, data, options: opts });
    }
    cardState(id, "ok");
    card.dataset.points = String(countPoints(data));
    card.dataset.legend = String(type === "doughnut" || type === "pie" ? data.labels.length : data.datasets.length);
    return charts[id];
  }

  /* A row of figures: items [{v, l, cls}]. */
  function kpis(id, items) {
    const card = document.getElementById(id);
    $(".kpis", card).replaceChildren(...items.map((k) => el("div", { class: "kpi" },
      el("div", { class: "v " + (k.cls || ""), text: k.v }), el("div", { class: "l", text: k.l }))));
    cardState(id, "ok");
  }

  /* A table: cols [{h, f(row) -> text or node, l (left-aligned)}]. */
  function table(id, cols, rows) {
    const card = document.getElementById(id);
    if (!rows.length) return empty(id);
    const t = el("table", { class: "data" },
      el("thead", {}, el("tr", {}, cols.map((c) => el("th", { class: c.l ? "l" : null, text: c.h })))),
      el("tbody", {}, rows.map((r) => el("tr", {}, cols.map((c) => {
        const v = c.f(r);
        return el("td", { class: c.l ? "l" : null }, v instanceof Node ? v : String(v));
      })))));
    $(".table-wrap", card).replaceChildren(t);
    cardState(id, "ok");
    card.dataset.points = String(rows.length);
  }

  /* Labels of time buckets (UTC). */
  const MON = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
  function dayLabel(s, interval) {
    const [y, m, d] = s.slice(0, 10).split("-").map(Number);
    return interval === "month" ? `${MON[m - 1]} ${y}` : `${MON[m - 1]} ${d}`;
  }
  function hourLabel(s) {
    const t = new Date(s);
    return `${MON[t.getUTCMonth()]} ${t.getUTCDate()} ${String(t.getUTCHours()).padStart(2, "0")}:00`;
  }
  const minuteLabel = (s) => new Date(s).toISOString().slice(11, 16);

  /* Axis helpers */
  // Ticks of category axes, cut to n characters.
  const shortTicks = (n) => ({ autoSkip: false, callback(v) { const s = String(this.getLabelForValue(v)); return s.length > n ? s.slice(0, n - 1) + "…" : s; } });
  const pctAxis = (max) => ({ stacked: true, min: 0, max, ticks: { callback: (v) => v + "%" } });
  const valueAxis = (fmt, extra) => Object.assign({ beginAtZero: true, ticks: { callback: (v) => fmt(v) } }, extra || {});

  /* ---------- header, key gate, filters ---------- */
  let current = null;	// the page's definition

  function header() {
    const nav = el("nav", {}, PAGES.map(([href, label]) =>
      el("a", { href: href + carryQuery(), class: href === location.pathname ? "active" : null, text: label })));
    const k = key();
    const who = el("span", { class: "who" }, k ? [
      el("span", { text: "key …" + k.slice(-4) }),
      el("button", { type: "button", class: "link", text: "forget", onclick: forget }),
    ] : []);
    const top = $("#top");
    top.replaceChildren(el("a", { href: "/" + carryQuery(), class: "brand", text: "Agora analytics" }), nav, who);
  }
  // The period follows the operator from page to page.
  function carryQuery() {
    const q = new URLSearchParams(location.search), out = new URLSearchParams();
    for (const k of ["period", "from", "to"]) if (q.get(k)) out.set(k, q.get(k));
    return out.toString() ? "?" + out : "";
  }
  function forget() {
    sessionStorage.removeItem(KEY);
    gate();
  }

  function gate(message) {
    sessionStorage.removeItem(KEY);
    header();
    document.body.classList.add("locked");
    const box = $("#gate") || document.body.appendChild(el("div", { id: "gate" }));
    const input = el("input", { type: "password", name: "key", autocomplete: "off", placeholder: "sk-ag-v1-…", required: true, "aria-label": "API key" });
    box.replaceChildren(el("form", {
      class: "gate", onsubmit: (ev) => {
        ev.preventDefault();
        sessionStorage.setItem(KEY, input.value.trim());
        document.body.classList.remove("locked");
        box.remove();
        header();
        run();
      },
    },
    el("h2", { text: "API key" }),
    el("p", { text: "An operator key shows everything; an account's key shows that account. The key stays in this browser tab (sessionStorage) and is sent only in the Authorization header." }),
    message ? el("p", { class: "err", text: message }) : null,
    el("div", { class: "row" }, input, el("button", { type: "submit", text: "Open" }))));
    input.focus();
  }

  function periodControl(f, s) {
    const sel = el("select", { name: "period", "aria-label": "period" },
      f.options.map((p) => el("option", { value: p, text: PERIODS[p][0], selected: s.period === p })),
      el("option", { value: "custom", text: "Custom", selected: s.period === "custom" }));
    const from = el("input", { type: "date", name: "from", value: s.from });
    const thru = el("input", { type: "date", name: "through", value: addDays(s.to, -1) });
    sel.addEventListener("change", () => {
      if (sel.value === "custom") return;
      s.period = sel.value;
      [s.from, s.to] = PERIODS[s.period][1]();
      from.value = s.from;
      thru.value = addDays(s.to, -1);
      changed();
    });
    const dateChanged = () => {
      if (!validDate(from.value) || !validDate(thru.value) || from.value > thru.value) return;
      Object.assign(s, { period: "custom", from: from.value, to: addDays(thru.value, 1) });
      sel.value = "custom";
      changed();
    };
    from.addEventListener("change", dateChanged);
    thru.addEventListener("change", dateChanged);
    return [el("label", {}, el("span", { text: "Period" }), sel),
      el("label", {}, el("span", { text: "From" }), from),
      el("label", {}, el("span", { text: "Through" }), thru)];
  }

  function control(f, s) {
    if (f.type === "period") return periodControl(f, s);
    let input;
    if (f.options && f.input !== "text") {
      if (s[f.name] && !f.options.some((o) => optValue(o) === s[f.name])) f.options = f.options.concat([[s[f.name], s[f.name]]]);
      input = el("select", { name: f.name }, f.options.map((o) =>
        el("option", { value: optValue(o), text: optLabel(o), selected: optValue(o) === s[f.name] })));
    } else {
      input = el("input", { type: "text", name: f.name, value: s[f.name], placeholder: f.placeholder || "", list: f.list || null, size: f.size || 14 });
    }
    input.addEventListener("change", () => { s[f.name] = input.value.trim(); changed(); });
    return el("label", {}, el("span", { text: f.label }), input);
  }

  function filters() {
    const form = $("#filters");
    const s = current.state;
    form.replaceChildren(...current.filters.flatMap((f) => [control(f, s)].flat()));
    form.onsubmit = (ev) => ev.preventDefault();
  }

  /* Changes filters from the page's own code (the URL and the filter bar
   * follow), then reloads. */
  function update(patch) {
    Object.assign(current.state, patch);
    filters();
    changed();
  }

  /* Replaces a select's options (values seen in the data), keeping the choice. */
  function setOptions(name, opts) {
    const sel = $(`#filters select[name="${name}"]`);
    if (!sel) return;
    const v = current.state[name];
    const all = opts.slice();
    if (v && !all.some((o) => optValue(o) === v)) all.push([v, v]);
    sel.replaceChildren(...all.map((o) => el("option", { value: optValue(o), text: optLabel(o), selected: optValue(o) === v })));
    const f = current.filters.find((x) => x.name === name);
    if (f) f.options = all;
  }

  function changed() {
    writeState(current.filters, current.state);
    header();
    run();
  }

  let generation = 0;
  async function run() {
    if (!key()) return gate();
    const gen = ++generation;
    const view = {
      stale: () => gen !== generation,
      // A superseded run's answers never reach its drawing code.
      get: (path, params) => api(path, params).then((d) => {
        if (gen !== generation) throw new ApiError(-1, "superseded");
        return d;
      }),
      chart: (id, type, data, options) => (gen === generation ? chart(id, type, data, options) : null),
      empty: (id, msg) => gen === generation && empty(id, msg),
      error: (id, e) => gen === generation && error(id, e),
      loading: (id) => gen === generation && cardState(id, "loading", "Loading…"),
      kpis: (id, items) => gen === generation && kpis(id, items),
      table: (id, cols, rows) => gen === generation && table(id, cols, rows),
    };
    for (const c of document.querySelectorAll(".card[data-chart], .card[data-kpis], .card[data-table]"))
      if (!c.dataset.state) cardState(c.id, "loading", "Loading…");
    document.body.dataset.loading = "1";
    try {
      await current.load(current.state, view);
    } catch (e) {
      if (!(e instanceof ApiError)) console.error(e);
    } finally {
      if (gen === generation) document.body.dataset.loading = "0";
    }
  }

  /* The page starts: key from the fragment, state from the URL. */
  function page(def) {
    takeFragmentKey();
    current = def;
    current.state = readState(def.filters);
    writeState(def.filters, current.state);
    header();
    filters();
    if (def.init) def.init(current.state);
    run();
  }

  Chart.defaults.font.family = getComputedStyle(document.documentElement).getPropertyValue("--font") || "system-ui, sans-serif";
  Chart.defaults.color = "#3b4250";

  return {
    page, el, $, api, downloadCsv, chart, empty, error, cardState, kpis, table, dayLabel, hourLabel, minuteLabel,
    color, alpha, num, compact, usd, pct, ms,
    metricFmt, originLabel, pctAxis, valueAxis, shortTicks, addDays, iso, setOptions, run, PERIODS, ApiError,
    state: () => current.state, update,
  };
})();
