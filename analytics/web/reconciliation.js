/*
 * Reconciliation: a provider's imported usage against ours, per day and
 * model (matched, differs, on one side only): amounts per day, rows by
 * status, the rows themselves; the internal check (events = ledger =
 * rollups); and the form that imports a provider's CSV.
 */
"use strict";

const STATUS = ["matched", "differs", "only_ours", "only_theirs"];
const STATUS_NAME = { matched: "matched", differs: "differs", only_ours: "only ours", only_theirs: "only theirs" };
const STATUS_COLOR = { matched: "#2e8b57", differs: "#d9822b", only_ours: "#4e79a7", only_theirs: "#8e5ea2" };
const SHOW = [["", "All rows"], ["issues", "Differences only"]].concat(STATUS.map((x) => [x, STATUS_NAME[x]]));
const MAX_ROWS = 500;

const side = (x, f) => (x ? A.num(x[f]) : null);

function drawOverview(s, v, d, check) {
  const m = d.summary;
  const ours = A.num(m.ours_amount), theirs = A.num(m.theirs_amount);
  const items = STATUS.map((k) => ({ v: String(m[k] || 0), l: STATUS_NAME[k], cls: k === "matched" ? "up" : m[k] ? "down" : "" }));
  items.push({ v: A.usd(ours), l: "our amount" }, { v: A.usd(theirs), l: "their amount" },
    { v: A.usd(theirs - ours), l: "theirs minus ours", cls: Math.abs(theirs - ours) > 0 ? "down" : "up" });
  v.kpis("overview", items);
  const h = A.$("#overview h2");
  const c = check ? (check.ok ? A.el("span", { class: "check ok", text: "internal check: events = ledger = rollups ✓" })
    : A.el("span", { class: "check bad", text: `internal check: ${check.differences.length} differences` })) : null;
  h.replaceChildren(`Report${s.provider ? " for " + s.provider : ", every provider"}, ${s.from} to ${A.addDays(s.to, -1)}  `, c || "");
}

function drawAmounts(s, v, d) {
  const per = new Map();
  for (const r of d.rows) {
    if (!per.has(r.date)) per.set(r.date, { ours: 0, theirs: 0, issues: 0 });
    const a = per.get(r.date);
    a.ours += side(r.ours, "amount") || 0;
    a.theirs += side(r.theirs, "amount") || 0;
    if (r.status !== "matched") a.issues++;
  }
  const dates = [...per.keys()].sort();
  v.chart("amounts", "bar", {
    labels: dates.map((x) => A.dayLabel(x, "day")),
    datasets: [
      { type: "line", label: "theirs minus ours", data: dates.map((x) => per.get(x).theirs - per.get(x).ours), borderColor: "#c0392b", backgroundColor: "#c0392b", pointRadius: 2, borderWidth: 1.5, order: 0 },
      { label: "ours", data: dates.map((x) => per.get(x).ours), backgroundColor: "#4e79a7", order: 1 },
      { label: "theirs", data: dates.map((x) => per.get(x).theirs), backgroundColor: "#8e5ea2", order: 1 },
    ],
  }, {
    scales: { y: A.valueAxis(A.usd), x: { ticks: { maxRotation: 0, autoSkipPadding: 8 } } },
    plugins: { tooltip: { callbacks: { label: (c) => `${c.dataset.label}: ${A.usd(c.parsed.y)}`, footer: (it) => `${per.get(dates[it[0].dataIndex]).issues} rows not matched` } } },
  });
  A.$("#amounts .sub").textContent = "Summed over models, per day; the red line is what the provider bills beyond our metering.";
}

function drawStatus(s, v, d) {
  const m = d.summary, keys = STATUS.filter((k) => m[k]);
  v.chart("status", "doughnut", {
    labels: keys.map((k) => `${STATUS_NAME[k]} ${m[k]}`),
    datasets: [{ data: keys.map((k) => m[k]), backgroundColor: keys.map((k) => STATUS_COLOR[k]), borderWidth: 1 }],
  }, { cutout: "55%" });
  A.$("#status .sub").textContent = "Rows (provider, day, model) by outcome.";
}

function drawRows(s, v, d) {
  // Problems first (what finance has to look at), each kind by date.
  const order = { differs: 0, only_theirs: 1, only_ours: 2, matched: 3 };
  let rows = d.rows.slice().sort((a, b) => (order[a.status] - order[b.status]) || (a.date < b.date ? -1 : a.date > b.date ? 1 : 0));
  if (s.status === "issues") rows = rows.filter((r) => r.status !== "matched");
  else if (s.status) rows = rows.filter((r) => r.status === s.status);
  const shown = rows.slice(0, MAX_ROWS);
  const tok = (x, f) => (x ? A.compact(A.num(x[f])) : "–");
  const amt = (x) => (x ? A.usd(x.amount) : "–");
  v.table("rows", [
    { h: "status", f: (r) => A.el("span", { class: "badge " + r.status, text: STATUS_NAME[r.status] || r.status }), l: true },
    { h: "date", f: (r) => r.date, l: true },
    { h: "provider", f: (r) => r.provider, l: true },
    { h: "model", f: (r) => r.model, l: true },
    { h: "our input", f: (r) => tok(r.ours, "input_tokens") },
    { h: "their input", f: (r) => tok(r.theirs, "input_tokens") },
    { h: "our output", f: (r) => tok(r.ours, "output_tokens") },
    { h: "their output", f: (r) => tok(r.theirs, "output_tokens") },
    { h: "our amount", f: (r) => amt(r.ours) },
    { h: "their amount", f: (r) => amt(r.theirs) },
    { h: "difference", f: (r) => (r.diff ? A.usd(r.diff.amount) : "–") },
  ], shown);
  if (!rows.length && d.rows.length) v.empty("rows", "No rows with this status.");
  A.$("#rows .sub").textContent = rows.length > shown.length ? `The first ${shown.length} of ${rows.length} rows.` : `${rows.length} rows.`;
}

async function load(s, v) {
  const range = { from: s.from, to: s.to };
  const pCheck = v.get("check", range).catch(() => null);
  const names = v.get("share", Object.assign({ by: "provider", metric: "requests", top: 100 }, range)).then((p) => {
    const dl = A.$("#providers-list");
    if (!v.stale() && dl) dl.replaceChildren(...p.rows.map((r) => A.el("option", { value: r.key, text: r.label || r.key })));
  }, () => null);
  const report = v.get("reconciliation", Object.assign({ provider: s.provider }, range)).then(async (d) => {
    const check = await pCheck;
    drawOverview(s, v, d, check);
    const m = d.summary;
    if (!d.rows.length || !(m.matched || m.differs || m.only_theirs)) {
      const ours = d.rows.length ? ` (our side: ${d.rows.length} rows, ${A.usd(m.ours_amount)})` : "";
      const msg = `No provider invoice imported for ${s.provider || "any provider"} in this period${ours}: import a CSV above.`;
      for (const id of ["amounts", "status", "rows"]) v.empty(id, msg);
      return;
    }
    drawAmounts(s, v, d);
    drawStatus(s, v, d);
    drawRows(s, v, d);
  }, (e) => { for (const id of ["overview", "amounts", "status", "rows"]) v.error(id, e); });
  await Promise.all([report, names]);
}

/* The import form: a file or pasted text, POSTed as text/csv. */
function importForm(s) {
  const provider = A.el("input", { type: "text", name: "provider", required: true, value: s.provider, list: "providers-list", placeholder: "provider id", size: 14 });
  const file = A.el("input", { type: "file", name: "file", accept: ".csv,text/csv" });
  const text = A.el("textarea", { name: "csv", placeholder: "date,model,input_tokens,output_tokens,amount\n2026-03-01,z-ai/glm-5,1200000,300000,1.23" });
  const result = A.el("div", { class: "result", role: "status" });
  const button = A.el("button", { type: "submit", text: "Import" });
  const form = A.$("#import");
  form.replaceChildren(A.el("datalist", { id: "providers-list" }),
    A.el("label", {}, A.el("span", { text: "Provider" }), provider),
    A.el("label", {}, A.el("span", { text: "CSV file" }), file),
    A.el("label", {}, A.el("span", { text: "or paste it" }), text),
    button, result);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    result.className = "result";
    const body = file.files.length ? await file.files[0].text() : text.value;
    if (!provider.value.trim() || !body.trim()) {
      result.className = "result err";
      result.textContent = "A provider and a CSV (file or text) are needed.";
      return;
    }
    button.disabled = true;
    result.textContent = "Importing…";
    try {
      const d = await A.api("reconciliation/import", { provider: provider.value.trim() },
        { method: "POST", headers: { Authorization: "Bearer " + sessionStorage.getItem("agora.key"), "Content-Type": "text/csv" }, body });
      result.className = "result ok";
      const days = d.first_date && d.last_date ? ` from ${d.first_date} to ${d.last_date}` : "";
      const replaced = d.replaced_rows ? `, replacing ${d.replaced_rows} rows imported before` : "";
      result.textContent = `Imported ${d.rows} rows for ${d.provider}${days} (${A.usd(d.amount)})${replaced}. The report below covers those days.`;
      file.value = "";
      text.value = "";
      const patch = { provider: d.provider || provider.value.trim() };
      if (d.first_date && d.last_date)
        Object.assign(patch, { period: "custom", from: d.first_date, to: A.addDays(d.last_date, 1) });
      A.update(patch);
    } catch (e) {
      result.className = "result err";
      result.textContent = `Nothing imported: ${e.message}`;
    } finally {
      button.disabled = false;
    }
  });
}

A.page({
  filters: [
    { type: "period", options: ["7d", "30d", "90d", "mtd", "lastmonth"], def: "30d" },
    { name: "provider", label: "Provider", input: "text", list: "providers-list", placeholder: "every provider", def: "" },
    { name: "status", label: "Rows", options: SHOW, def: "" },
  ],
  init: importForm,
  load,
});
