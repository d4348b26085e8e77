"""A stand-in for agora-analytics while developing the dashboards: serves the
pages from analytics/web the way analytics/pages.c maps them, and the
analytics API contract with synthetic, deterministic data. Not used by the
test suite (which runs against the real stack).

    python3 tests/browser/fixture_server.py [PORT]     # key: any non-empty
"""
import datetime as dt
import json
import math
import os
import random
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
WEB = os.path.join(ROOT, "analytics", "web")
ROUTES = {"/": "share.html", "/models": "models.html", "/providers": "providers.html", "/live": "live.html",
          "/spend": "spend.html", "/reconciliation": "reconciliation.html"}
TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}

CAT = json.load(open(os.path.join(ROOT, "deploy", "catalog.demo.json")))
MODELS = CAT["models"]
PROV = {p["id"]: p["name"] for p in CAT["providers"]}


def day_range(q, default_days=30):
    today = dt.date.today() + dt.timedelta(days=1)
    to = dt.date.fromisoformat(q.get("to", today.isoformat()))
    frm = dt.date.fromisoformat(q.get("from", (to - dt.timedelta(days=default_days)).isoformat()))
    return frm, to


def daily(frm, to):
    """[(day, model, provider, requests, tokens, cost_nusd, provider_cost_nusd)]"""
    out = []
    d = frm
    while d < to:
        rnd = random.Random(d.toordinal())
        t = d.toordinal() % 365
        for i, m in enumerate(MODELS):
            grow = 1 + 0.5 * math.sin(t / 30 + i)
            for e in m["endpoints"]:
                req = int(rnd.randint(50, 400) * grow)
                tok = req * rnd.randint(800, 1500)
                pp = e["price"]["prompt_uusd_per_mtok"] + e["price"]["completion_uusd_per_mtok"]
                cost = tok * pp // 2000
                out.append((d, m, e["provider"], req, tok, cost, cost * 85 // 100))
        d += dt.timedelta(days=1)
    return out


def keyof(by, m, prov):
    if by == "model":
        return m["id"], m["name"]
    if by == "author":
        return m["author"], m["author"]
    if by == "provider":
        return prov, PROV[prov]
    if by == "origin":
        return m.get("origin", ""), m.get("origin", "")
    return "app-%d" % (hash(m["id"]) % 4), "App %d" % (hash(m["id"]) % 4)


def usd(n):
    return "%d.%09d" % (n // 10**9, n % 10**9)


def metric_of(r, metric):
    return {"tokens": r[4], "requests": r[3], "spend": r[5]}[metric]


def open_ok(m, q):
    ow = q.get("open_weights")
    if ow is None or ow == "":
        return True
    return (m.get("open_weights", True) is not False) == (ow == "true")


def share(q):
    frm, to = day_range(q)
    by, metric, top = q.get("by", "model"), q.get("metric", "tokens"), int(q.get("top", 10))
    agg = {}
    for r in daily(frm, to):
        if not open_ok(r[1], q):
            continue
        k, lab = keyof(by, r[1], r[2])
        agg.setdefault(k, [lab, 0])[1] += metric_of(r, metric)
    total = sum(v for _, v in agg.values())
    rows = sorted(agg.items(), key=lambda kv: -kv[1][1])
    fmt = usd if metric == "spend" else (lambda x: x)
    out = [{"key": k, "label": lab, "value": fmt(v), "share": v / total if total else 0} for k, (lab, v) in rows[:top]]
    rest = sum(v for _, (_, v) in rows[top:])
    return {"by": by, "metric": metric, "from": frm.isoformat(), "to": to.isoformat(), "total": fmt(total),
            "rows": out, "others": {"value": fmt(rest), "share": rest / total if total else 0,
                                    "count": max(0, len(rows) - top)}}


def bucket(d, interval):
    if interval == "week":
        return d - dt.timedelta(days=d.weekday())
    if interval == "month":
        return d.replace(day=1)
    return d


def series(q):
    frm, to = day_range(q, 90)
    by, metric, top = q.get("by", "model"), q.get("metric", "tokens"), int(q.get("top", 10))
    interval = q.get("interval", "week")
    buckets = sorted({bucket(frm + dt.timedelta(days=i), interval) for i in range((to - frm).days)})
    idx = {b: i for i, b in enumerate(buckets)}
    per, tot, labels = {}, {}, {}
    for r in daily(frm, to):
        if not open_ok(r[1], q):
            continue
        k, lab = keyof(by, r[1], r[2])
        labels[k] = lab
        per.setdefault(k, [0] * len(buckets))[idx[bucket(r[0], interval)]] += metric_of(r, metric)
        tot[k] = tot.get(k, 0) + metric_of(r, metric)
    if metric == "spend":
        per = {k: [usd(x) for x in v] for k, v in per.items()}
        tot = {k: v for k, v in tot.items()}
    keys = sorted(tot, key=lambda k: -tot[k])
    num = (lambda x: float(x)) if metric == "spend" else (lambda x: x)
    totals = [sum(num(per[k][i]) for k in per) for i in range(len(buckets))]
    sers = []
    for k in keys[:top]:
        sers.append({"key": k, "label": labels[k], "values": per[k],
                     "shares": [num(v) / t if t else 0 for v, t in zip(per[k], totals)]})
    if len(keys) > top:
        vals = [sum(num(per[k][i]) for k in keys[top:]) for i in range(len(buckets))]
        sers.append({"key": "others", "label": "Others", "values": vals,
                     "shares": [v / t if t else 0 for v, t in zip(vals, totals)]})
    return {"by": by, "metric": metric, "interval": interval, "buckets": [b.isoformat() for b in buckets],
            "series": sers, "totals": totals}


def providers(q):
    frm, to = day_range(q, 2)
    rows = []
    h = dt.datetime.combine(frm, dt.time(0), dt.timezone.utc)
    end = dt.datetime.combine(to, dt.time(0), dt.timezone.utc)
    now = dt.datetime.now(dt.timezone.utc)
    while h < end and h < now:
        rnd = random.Random(int(h.timestamp()))
        for m in MODELS[:6]:
            if q.get("model") and q["model"] != m["id"]:
                continue
            for e in m["endpoints"]:
                if q.get("provider") and q["provider"] != e["provider"]:
                    continue
                req = rnd.randint(20, 200)
                fail = rnd.randint(0, 3) if e["provider"] != "novita" or h.hour not in (3, 4) else req // 2
                base = 300 + 80 * len(e["provider"])
                rows.append({"hour": h.isoformat().replace("+00:00", "Z"), "provider": e["provider"],
                             "provider_name": PROV[e["provider"]], "model": m["id"], "endpoint_id": 1,
                             "requests": req, "failures": fail, "uptime": 1 - fail / req,
                             "latency_ms_avg": base * 3, "ttft_ms_avg": base, "tps_avg": 40 + rnd.random() * 30,
                             "latency_ms_p50": base * 2.8, "latency_ms_p90": base * 4,
                             "ttft_ms_p50": base * 0.9, "ttft_ms_p90": base * 1.6})
        h += dt.timedelta(hours=1)
    summ = {}
    for r in rows:
        s = summ.setdefault((r["provider"], r["model"]), dict(r, requests=0, failures=0))
        s["requests"] += r["requests"]
        s["failures"] += r["failures"]
    for s in summ.values():
        s["uptime"] = 1 - s["failures"] / s["requests"]
        s.pop("hour")
    return {"from": frm.isoformat(), "to": to.isoformat(), "percentiles": (to - frm).days <= 7, "rows": rows,
            "summary": list(summ.values()), "truncated": False}


def live(q):
    n = int(q.get("minutes", 30))
    now = dt.datetime.now(dt.timezone.utc).replace(second=0, microsecond=0)
    mins = [(now - dt.timedelta(minutes=n - 1 - i)) for i in range(n)]
    out = []
    for m in MODELS[:5]:
        for e in m["endpoints"][:2]:
            req = [random.Random(hash((m["id"], e["provider"], t))).randint(0, 30) for t in mins]
            out.append({"model": m["id"], "provider": e["provider"], "requests": req,
                        "tokens": [r * 1000 for r in req]})
    return {"minutes": [t.isoformat().replace("+00:00", "Z") for t in mins], "series": out}


def spend(q):
    frm, to = day_range(q)
    by = q.get("by", "model")
    agg = {}
    for r in daily(frm, to):
        if by == "day":
            k, lab = r[0].isoformat(), r[0].isoformat()
        elif by in ("account", "key"):
            k, lab = "1", "demo"
        else:
            k, lab = keyof(by, r[1], r[2])
        a = agg.setdefault(k, {"key": k, "label": lab, "requests": 0, "prompt_tokens": 0, "completion_tokens": 0,
                               "cost_nusd": 0, "provider_cost_nusd": 0})
        a["requests"] += r[3]
        a["prompt_tokens"] += r[4] * 3 // 4
        a["completion_tokens"] += r[4] // 4
        a["cost_nusd"] += r[5]
        a["provider_cost_nusd"] += r[6]
    rows = sorted(agg.values(), key=lambda a: a["key"] if by == "day" else -a["cost_nusd"])
    for a in rows:
        a["margin_nusd"] = a["cost_nusd"] - a["provider_cost_nusd"]
        for f in ("cost", "provider_cost", "margin"):
            a[f] = usd(a[f + "_nusd"])
    tot = {f: sum(a[f] for a in rows) for f in ("requests", "prompt_tokens", "completion_tokens", "cost_nusd",
                                                "provider_cost_nusd", "margin_nusd")}
    for f in ("cost", "provider_cost", "margin"):
        tot[f] = usd(tot[f + "_nusd"])
    return {"rows": rows, "totals": tot}


def statement(q):
    frm, to = day_range(q)
    days = [{"date": r["key"], "credits": "0.000000000", "usage": r["cost"], "requests": r["requests"],
             "tokens": r["prompt_tokens"] + r["completion_tokens"]} for r in spend(dict(q, by="day"))["rows"]]
    return {"account": q.get("account", "demo"), "opening_balance": "100.000000000", "credits": "0.000000000",
            "usage": "12.000000000", "closing_balance": "88.000000000", "days": days}


def recon(q):
    frm, to = day_range(q)
    rows, summ = [], {"matched": 0, "differs": 0, "only_ours": 0, "only_theirs": 0}
    d = frm
    while d < to:
        for i, m in enumerate(MODELS[:4]):
            st = ["matched", "matched", "differs", "only_ours", "matched", "only_theirs"][(d.day + i) % 6]
            ours = {"input_tokens": 1000, "output_tokens": 500, "amount": "1.250000000"}
            th = dict(ours, amount="1.300000000" if st == "differs" else "1.250000000")
            rows.append({"date": d.isoformat(), "provider": q.get("provider") or "deepinfra", "model": m["id"],
                         "status": st, "ours": None if st == "only_theirs" else ours,
                         "theirs": None if st == "only_ours" else th,
                         "diff": {"input_tokens": 0, "output_tokens": 0,
                                  "amount": "0.050000000" if st == "differs" else "0.000000000"}})
            summ[st] += 1
        d += dt.timedelta(days=1)
    summ.update(ours_amount="100.000000000", theirs_amount="101.000000000")
    return {"rows": rows, "summary": summ}


API = {"share": share, "share/series": series, "providers": providers, "live": live, "spend": spend,
       "statement": statement, "reconciliation": recon, "check": lambda q: {"ok": True, "differences": []}}


class H(BaseHTTPRequestHandler):
    def reply(self, status, ctype, body):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def api(self, name, q):
        auth = self.headers.get("Authorization", "")
        if not auth.startswith("Bearer sk-") or "0000000000" in auth:
            return self.reply(401, "application/json",
                              b'{"error":{"code":401,"message":"missing or unknown API key"}}')
        if name not in API:
            return self.reply(404, "application/json", b'{"error":{"code":404,"message":"no such API"}}')
        self.reply(200, "application/json", json.dumps({"data": API[name](q)}).encode())

    def do_GET(self):
        u = urlparse(self.path)
        q = {k: v[-1] for k, v in parse_qs(u.query).items()}
        if u.path.startswith("/api/v1/analytics/"):
            return self.api(u.path[len("/api/v1/analytics/"):], q)
        name = ROUTES.get(u.path) or (u.path[8:] if u.path.startswith("/static/") and ".." not in u.path else None)
        path = os.path.join(WEB, name) if name else None
        if not path or not os.path.isfile(path):
            return self.reply(404, "application/json", b'{"error":{"code":404,"message":"no such page"}}')
        with open(path, "rb") as f:
            self.reply(200, TYPES.get(os.path.splitext(path)[1], "application/octet-stream"), f.read())

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0))
        body = self.rfile.read(n).decode()
        rows = [ln.split(",") for ln in body.splitlines()[1:] if ln.strip()]
        if not rows:
            return self.reply(400, "application/json", b'{"error":{"code":400,"message":"line 2: no data rows"}}')
        q = {k: v[-1] for k, v in parse_qs(urlparse(self.path).query).items()}
        days = sorted(r[0] for r in rows)
        self.reply(200, "application/json", json.dumps({"data": {
            "import_id": 1, "provider": q.get("provider", ""), "rows": len(rows), "first_date": days[0],
            "last_date": days[-1], "amount": "1.000000000", "replaced_rows": 0}}).encode())


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8690
    ThreadingHTTPServer(("127.0.0.1", port), H).serve_forever()
