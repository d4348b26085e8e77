"""The dashboards in a real browser: Debian's headless Chromium driven by
playwright-core (tests/browser/dashboards.mjs) against the stack, with six
weeks of usage billed through Redis and billing (crafted events for an account
of its own, before today), an hour-by-hour day with an outage, traffic through
the router today (live counters) and a provider CSV imported through the
page's form. Each page must load, draw its charts with data, follow a filter
change (view and URL), log no console error and fail no request; a screenshot
of each page is kept in BUILD/test-output/screenshots/. Also: the static files
agora-analytics serves (types, cache headers, no way out of the web
directory)."""
import calendar
import datetime as dt
import json
import os
import random
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import BUILD, ROOT, wait_for

BROWSER = os.path.join(ROOT, "tests", "browser")
SHOTS = os.path.join(BUILD, "test-output", "screenshots")
APPS = ["chat-ui", "ide-plugin", "batch-jobs", ""]


@pytest.fixture(scope="module")
def node_modules():
    if not os.path.isdir(os.path.join(BROWSER, "node_modules", "playwright-core")):
        r = subprocess.run(["npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts"], cwd=BROWSER,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr
    return BROWSER


def day_ms(d, hour=0, minute=0):
    return (calendar.timegm(d.timetuple()) + hour * 3600 + minute * 60) * 1000


def events(account, key, eps, today):
    """Six weeks before today: every endpoint every day, test/claude growing;
    yesterday hour by hour with latencies per provider and gamma failing
    for three hours. alpha has no usage three days ago."""
    rnd = random.Random(20260301)
    out = []

    def ev(ts, model, provider, pt, ct, status=200, ttft=300, latency=1200):
        ok = status == 200
        pcost = (pt + 2 * ct) * 150 if ok else 0
        out.append({"id": "gen-dash-" + uuid.uuid4().hex, "ts": ts, "account": account, "key": key,
                    "app_title": rnd.choice(APPS), "model": model, "author": model.split("/")[0],
                    "provider": provider, "endpoint": eps[(model, provider)], "pt": pt if ok else 0,
                    "ct": ct if ok else 0, "cached": 0, "reasoning": 0, "cost": pcost * 5 // 4, "pcost": pcost,
                    "latency_ms": latency, "ttft_ms": ttft, "tps_milli": rnd.randint(30000, 90000), "stream": False,
                    "estimated": False, "status": status, "attempts": 1, "finish": "stop" if ok else "error"})

    for back in range(2, 43):
        d = today - dt.timedelta(days=back)
        for (model, provider) in sorted(eps):
            if provider == "alpha" and back == 3:
                continue
            grow = 1 + (42 - back) / 10 if model == "test/claude" else 1
            for _ in range(max(1, int(rnd.randint(1, 3) * grow))):
                ev(day_ms(d, rnd.randint(0, 23), rnd.randint(0, 59)), model, provider,
                   rnd.randint(200, 4000), rnd.randint(100, 1500))
    d = today - dt.timedelta(days=1)
    base = {"alpha": 200, "beta": 350, "gamma": 500, "solo": 280, "anthro": 420, "anthro2": 600}
    for hour in range(24):
        for (model, provider) in sorted(eps):
            t = base[provider] * (1 + 0.3 * ((hour + len(provider)) % 5) / 4)
            fail = provider == "gamma" and 9 <= hour < 12
            for i in range(3 if fail else 2):
                ev(day_ms(d, hour, 10 + 20 * i), model, provider, rnd.randint(300, 3000), rnd.randint(100, 900),
                   status=502 if fail and i else 200, ttft=int(t), latency=int(t * 3))
    return out


@pytest.fixture(scope="module")
def seeded(stack):
    """Usage billed through Redis and billing, and traffic through the router."""
    stack.ctl("account", "create", "dash-test", "--credits", "1000", "--if-missing")
    stack.ctl("key", "create", "dash-test", "--name", "dash")
    account, key = stack.sql("SELECT a.id, k.id FROM accounts a JOIN api_keys k ON k.account_id = a.id "
                             "WHERE a.name = 'dash-test' ORDER BY k.id LIMIT 1")[0]
    eps = dict(((m, p), i) for i, m, p in stack.sql("SELECT id, model_id, provider_id FROM endpoints "
                                                   "WHERE status = 'active'"))
    today = dt.datetime.now(dt.timezone.utc).date()
    evs = events(account, key, eps, today)
    stack.xadd_usage(evs)
    count = lambda: stack.sql("SELECT count(*) FROM usage_events WHERE account_id = %s", account)[0][0]
    assert wait_for(lambda: count() == len(evs), 60), (count(), len(evs))
    # today: traffic through the router (live counters, today's rollups)
    for i in range(24):
        model = ["test/three", "test/solo", "test/claude"][i % 3]
        s, _, raw = stack.chat({"model": model, "messages": [{"role": "user", "content": "hi %d" % i}]},
                               headers={"X-Title": APPS[i % 3]})
        assert s == 200, raw
    return {"account": account, "today": today}


def recon_csv(stack, tmp_path, today):
    """alpha's invoice for the 7 days before yesterday: what we billed, one
    day 10% dearer (differs), one day missing (only ours), and a day where
    we have nothing (three days ago: only theirs)."""
    lo, hi = today - dt.timedelta(days=8), today - dt.timedelta(days=1)
    rows = stack.sql("SELECT day::text, sum(prompt_tokens), sum(completion_tokens), sum(provider_cost_nusd) "
                     "FROM usage_daily WHERE provider_id = 'alpha' AND model_id = 'test/three' "
                     "AND day >= %s AND day < %s GROUP BY 1 ORDER BY 1", lo, hi)
    assert len(rows) == 6, rows
    lines = ["date,model,input_tokens,output_tokens,amount"]
    for i, (day, pt, ct, nusd) in enumerate(rows):
        if i == 1:
            continue
        if i == 2:
            nusd = nusd * 11 // 10
        lines.append("%s,up-alpha-three,%d,%d,%d.%09d" % (day, pt, ct, nusd // 10**9, nusd % 10**9))
    lines.append("%s,test/three,1000,500,0.001" % (today - dt.timedelta(days=3)).isoformat())
    path = tmp_path / "alpha-invoice.csv"
    path.write_text("\n".join(lines) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def report(stack, seeded, node_modules, tmp_path_factory):
    csv = recon_csv(stack, tmp_path_factory.mktemp("recon"), seeded["today"])
    out = os.path.join(stack.dir, "screenshots")
    r = subprocess.run(["node", "dashboards.mjs", "http://127.0.0.1:%d" % stack.analytics_port, stack.admin_key,
                        out, csv, "alpha"], cwd=BROWSER, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-4000:]
    rep = json.loads(r.stdout)
    shutil.rmtree(SHOTS, ignore_errors=True)
    shutil.copytree(out, SHOTS)
    print("dashboards: screenshots in %s" % SHOTS)
    return rep


def pages(report):
    out = {p["name"]: p for p in report["pages"]}
    for name, p in out.items():
        assert "failed" not in p, "%s: %s" % (name, p["failed"])
    return out


CHARTS = {"share": ["open", "series", "period"], "models": ["usage", "rank", "authors"],
          "providers": ["ttft", "latency", "tps", "uptime", "requests"], "live": ["requests", "tokens"],
          "spend": ["daily", "margin", "by"], "reconciliation": ["amounts", "status"]}


def test_every_page_draws_its_charts_with_data(report):
    ps = pages(report)
    assert sorted(ps) == sorted(CHARTS)
    for name, ids in CHARTS.items():
        cards = ps[name]["cards"]
        for cid, c in cards.items():
            assert c["state"] == "ok", "%s/%s: %s %s" % (name, cid, c["state"], c["message"])
        for cid in ids:
            c = cards[cid]
            assert c["canvas"] and c["points"] > 0 and c["legend"] > 0, (name, cid, c)
            assert c["painted"] > 200, (name, cid, c["painted"])   # pixels drawn on the canvas
        assert ps[name]["nav"] == ["Market share", "Models", "Providers", "Live", "Spend", "Reconciliation"]


def test_what_the_charts_show(report):
    ps = pages(report)
    share = ps["share"]["cards"]
    assert "Open-weight share by origin" in share["open"]["title"]
    assert "China (CN)" in share["open"]["signature"] and "Closed weights" in share["open"]["signature"]
    assert share["period"]["legend"] >= 3                       # other tests may add models
    assert all(m in share["period"]["signature"] for m in ("Test: Three", "Test: Solo", "Test: Claude"))
    prov = ps["providers"]["cards"]
    assert prov["uptime"]["legend"] >= 6 and prov["summary"]["rows"] >= 6
    uptime = dict(json.loads(prov["uptime"]["signature"])[2])
    gamma = [x for x in uptime["Gamma AI"] if x is not None]
    assert min(gamma) < 50 and max(gamma) == 100, gamma     # yesterday's three hours of outage
    assert ps["spend"]["cards"]["margin"]["legend"] == 3             # cost, provider cost, margin
    live = ps["live"]["cards"]
    assert live["requests"]["points"] > 0 and any("requests" in k for k in live["now"]["kpis"])


def test_filters_change_the_view_and_the_url(report):
    for name, p in pages(report).items():
        assert "?" in p["url"] and "#" not in p["url"], (name, p["url"])
        assert p["url"] != p["url_after"], name
        assert sorted(p["changed"]) == sorted(p["must_change"]), (name, p["changed"])
        # the changed URL, reloaded, shows the same filter
        assert p["reloaded_value"] and "=" + p["reloaded_value"] in p["url_after"], (name, p["reloaded_value"])
    assert "by=provider" in pages(report)["share"]["url_after"]
    assert "stat=p90" in pages(report)["providers"]["url_after"]


def test_no_console_errors_and_no_failed_requests(report):
    for name, p in pages(report).items():
        assert p["problems"] == [], (name, p["problems"])
    assert report["import"]["problems"] == []


def test_pages_load_fast_with_few_requests(report):
    for name, p in pages(report).items():
        assert p["api_calls"] <= 6, (name, p["api_calls"])      # aggregates, never a request per row
        assert p["load_ms"] < 15000, (name, p["load_ms"])        # shared 2-core machine: generous


def test_live_refreshes_itself(report):
    assert pages(report)["live"]["refreshed"] is True


def test_key_from_the_fragment_kept_in_the_tab_only(stack, report):
    for name, p in pages(report).items():
        assert p["key_stored"] == stack.admin_key, name
        assert "key=" not in p["url"]
    assert stack.admin_key not in stack.log("analytics")


def test_key_form_asks_and_refuses_a_wrong_key(report):
    k = report["key_form"]
    assert "failed" not in k, k.get("failed")
    assert k["asked"] and "refused" in k["refused"]
    assert all(c["state"] == "ok" for c in k["after"].values()), k["after"]
    # the only problems: the wrong key's 401s
    assert k["problems"] and all("401" in x for x in k["problems"]), k["problems"]


def test_import_form_posts_the_csv_and_the_report_shows_it(report):
    imp = report["import"]
    assert "failed" not in imp, imp.get("failed")
    assert imp["result"].startswith("Imported"), imp["result"]
    assert "provider=alpha" in imp["url"]
    cards = imp["cards"]
    # matched, differs, only ours (the day left out, and every day the invoice does not
    # cover), only theirs: all four in the doughnut, every row in the table
    assert cards["status"]["legend"] == 4, cards["status"]["signature"]
    assert cards["rows"]["rows"] >= 7 and cards["amounts"]["points"] > 0
    assert all(c["state"] == "ok" for c in cards.values()), cards


def test_empty_periods_and_api_errors_are_shown(report):
    st = report["states"]
    assert "failed" not in st, st.get("failed")
    empty = st["empty"]["cards"]                     # a month of 2001: nothing billed then
    assert all(empty[c]["state"] == "empty" and "No data" in empty[c]["message"] for c in ("daily", "margin", "by"))
    assert st["empty"]["problems"] == []
    for cid, c in st["error"]["cards"].items():      # 25 years: the APIs refuse the range
        assert c["state"] == "error" and "API error 400" in c["message"] and "731 days" in c["message"], (cid, c)


def test_screenshots_are_kept(report):
    for p in report["pages"]:
        path = os.path.join(SHOTS, p["name"] + ".png")
        assert os.path.getsize(path) > 20000, path
    assert os.path.exists(os.path.join(SHOTS, "reconciliation-imported.png"))


# ---- the static files, without a browser ----

def get(stack, path, headers=None):
    return stack.request("GET", path, port=stack.analytics_port, headers=headers)


def test_pages_and_assets_are_served_with_types_and_cache_headers(stack):
    for path in ("/", "/models", "/providers", "/live", "/spend", "/reconciliation"):
        s, h, raw = get(stack, path)
        assert s == 200 and h["content-type"] == "text/html; charset=utf-8", path
        assert "default-src 'self'" in h["content-security-policy"] and h["cache-control"] == "no-cache"
        assert h["x-content-type-options"] == "nosniff" and h["etag"]
        assert b"/static/vendor/chart.umd.min.js" in raw and b"/static/app.js" in raw
    s, h, raw = get(stack, "/static/vendor/chart.umd.min.js")
    assert s == 200 and h["content-type"].startswith("text/javascript") and len(raw) > 100000
    assert "max-age" in h["cache-control"] and b"sourceMappingURL" not in raw
    s, h, raw = get(stack, "/static/app.css")
    assert s == 200 and h["content-type"].startswith("text/css")
    s, h, _ = get(stack, "/static/favicon.svg")
    assert s == 200 and h["content-type"] == "image/svg+xml"
    s, h, raw = get(stack, "/static/app.js")
    assert s == 200 and h["cache-control"] == "no-cache"
    s, h2, raw2 = get(stack, "/static/app.js", {"If-None-Match": h["etag"]})
    assert s == 304 and raw2 == b""


@pytest.mark.parametrize("path", [
    "/static/../Makefile", "/static/../../etc/passwd", "/static/%2e%2e/Makefile", "/static/..%2fMakefile",
    "/static/vendor/../app.js", "/static/vendor/../../Makefile", "/static//etc/passwd", "/static/.%2e/Makefile",
    "/static/package.json", "/static/package-lock.json", "/static/node_modules/chart.js/package.json",
    "/static/node_modules/chart.js/dist/chart.umd.js", "/static/share.html", "/static/.hidden.js",
    "/static/nope.js", "/static/", "/static/vendor/", "/nope", "/models/", "/static/app.js%00.css",
    "/../Makefile", "/static/app.js/", "/static/a/b.js", "/static/app.js\\..\\x.js",
])
def test_no_way_out_of_the_web_directory(stack, path):
    s, h, raw = get(stack, path)
    assert s == 404 and h["content-type"] == "application/json", (path, s, raw[:200])
    assert json.loads(raw)["error"]["code"] == 404
