"""The analytics APIs of agora-analytics on a known data set: usage events
crafted here, XADDed to the Redis stream and billed by agora-billing, for two
accounts of their own and three models, two providers and four endpoints
that only they use, in two weeks of January 2024 that nothing else touches.
Exact shares, sums, CSV bytes and statements; the internal check; 401 and 403
for every endpoint; an inference key confined to its own account. And
`agoractl simulate` on a past period: billed, and its rising model visible
in share/series.

The data set (every event: 120 prompt + 80 completion tokens):
  week 1 (Mon 2024-01-01)  A: 5 open-cn via cn1 (p1), 5 open-cn via cn2 (p2),
                              10 open-fr via fr1 (p1; the last a cut stream, 502)
                           B: 5 closed-us via us2 (p2), no app
  week 2 (Mon 2024-01-08)  B: 30 open-cn via cn2 (p2), app two, two of them
                              after failing on cn1 (p1); 5 closed-us, no app
  costs per event (nano-USD, ours / provider's): open-cn 300000 / 200000,
  open-fr 500000 / 450000, closed-us 2000000 / 1500000.
"""
import calendar
import csv
import io
import json
import re
import time

import pytest

from conftest import wait_for

FROM, MID, TO = "2024-01-01", "2024-01-08", "2024-01-15"
MODELS = [("ana/open-cn", "Ana Open CN", "ana-lab", "CN", True),
          ("ana/open-fr", "Ana Open FR", "ana-lab", "FR", True),
          ("ana/closed-us", "Ana Closed US", "ana-corp", "US", False)]
ENDPOINTS = {"cn1": ("ana/open-cn", "ana-p1"), "cn2": ("ana/open-cn", "ana-p2"),
             "fr1": ("ana/open-fr", "ana-p1"), "us2": ("ana/closed-us", "ana-p2")}
COST = {"ana/open-cn": (300000, 200000), "ana/open-fr": (500000, 450000), "ana/closed-us": (2000000, 1500000)}
AUTHOR = dict((m, a) for m, _, a, _, _ in MODELS)
MARKET = ["share", "share/series", "providers", "live", "check"]
ACCOUNT = ["spend", "statement"]


def ms(day, hour=0, minute=0):
    return (calendar.timegm(time.strptime(day, "%Y-%m-%d")) + hour * 3600 + minute * 60) * 1000


def api(stack, path, key):
    s, h, raw = stack.request("GET", path, key=key, port=stack.analytics_port)
    return s, h, raw


def get(stack, path, key, status=200):
    s, h, raw = api(stack, path, key)
    assert s == status, (path, s, raw[:500])
    return json.loads(raw)


def make_events(ids, eps):
    out = []

    def ev(account, day, hour, minute, ep, app=None, latency=800, status=200, tried=None):
        model, provider = ENDPOINTS[ep]
        cost, pcost = COST[model]
        e = {"id": "gen-anatest-%04d" % len(out), "ts": ms(day, hour, minute), "account": ids[account],
             "key": ids["key_" + account], "model": model, "author": AUTHOR[model],
             "provider": provider, "endpoint": eps[ep], "pt": 120, "ct": 80, "cached": 0, "reasoning": 10,
             "cost": cost, "pcost": pcost, "latency_ms": latency, "ttft_ms": latency // 10, "tps_milli": 40000,
             "stream": True, "estimated": False, "status": status, "attempts": 1 if not tried else 2,
             "finish": "stop" if status == 200 else None}
        if app:
            e["app_title"] = app
        if tried:
            e["tried"] = tried
        out.append(e)

    for i in range(5):
        ev("A", "2024-01-02", 10, i, "cn1", "ana-app-one")
        ev("A", "2024-01-03", 11, i, "cn2", "ana-app-one")
        ev("B", "2024-01-05", 9, i, "us2")
        ev("B", "2024-01-10", 9, i, "us2")
    for i in range(10):
        ev("A", "2024-01-04", 12, i, "fr1", "ana-app-one", latency=1000 + 100 * i, status=502 if i == 9 else 200)
    for i in range(30):
        tried = None
        if i < 2:
            tried = [{"provider": "ana-p1", "provider_name": "Ana One", "model": "ana/open-cn",
                      "endpoint_id": eps["cn1"], "status": 502, "latency": 40},
                     {"provider": "ana-p2", "provider_name": "Ana Two", "model": "ana/open-cn",
                      "endpoint_id": eps["cn2"], "status": 200, "latency": 800}]
        ev("B", "2024-01-09", 14, i, "cn2", "ana-app-two", tried=tried)
    # recent usage of A for the default ranges (yesterday)
    yday = time.strftime("%Y-%m-%d", time.gmtime(time.time() - 86400))
    for i in range(3):
        ev("A", yday, 8, i, "cn1", "ana-app-one")
    return out


@pytest.fixture(scope="module")
def ana(stack):
    for pid, name in (("ana-p1", "Ana One"), ("ana-p2", "Ana Two")):
        stack.sql("INSERT INTO providers (id, name, api, base_url, status) VALUES (%s, %s, 'openai', "
                  "'http://127.0.0.1:9/v1', 'disabled') ON CONFLICT (id) DO NOTHING", pid, name)
    for mid, name, author, origin, ow in MODELS:
        stack.sql("INSERT INTO models (id, name, author, origin, open_weights, context_length, status) "
                  "VALUES (%s, %s, %s, %s, %s, 8192, 'disabled') ON CONFLICT (id) DO NOTHING",
                  mid, name, author, origin, ow)
    eps = {}
    for ep, (model, provider) in ENDPOINTS.items():
        stack.sql("INSERT INTO endpoints (model_id, provider_id, upstream_model, context_length, max_output, "
                  "prompt_uusd_per_mtok, completion_uusd_per_mtok, status) VALUES (%s, %s, 'x', 8192, 1024, "
                  "1000, 1000, 'disabled') ON CONFLICT (model_id, provider_id) DO NOTHING", model, provider)
        eps[ep] = stack.sql("SELECT id FROM endpoints WHERE model_id = %s AND provider_id = %s", model, provider)[0][0]
    ids, keys = {}, {}
    for acct in ("A", "B"):
        name = "ana-" + acct.lower()
        stack.ctl("account", "create", name, "--credits", "10", "--if-missing")
        keys[acct] = stack.ctl("key", "create", name, "--name", "ana-key-" + acct.lower()).stdout.strip()
        ids[acct], ids["key_" + acct] = stack.sql("SELECT a.id, k.id FROM accounts a JOIN api_keys k ON "
                                                  "k.account_id = a.id WHERE a.name = %s", name)[0]
    # A's credits before the period, and one top-up inside it
    for amount, at in ((5000000000, "2023-12-31 12:00+00"), (1000000000, "2024-01-06 08:00+00")):
        stack.sql("INSERT INTO ledger (account_id, kind, amount_nusd, note, created_at) "
                  "VALUES (%s, 'topup', %s, 'analytics test', %s)", ids["A"], amount, at)
        stack.sql("UPDATE accounts SET balance_nusd = balance_nusd + %s WHERE id = %s", amount, ids["A"])
    evs = make_events(ids, eps)
    stack.xadd_usage(evs)
    n = lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id LIKE 'gen-anatest-%%'")[0][0]
    assert wait_for(lambda: n() == len(evs), 30), (n(), len(evs))
    return {"ids": ids, "keys": keys, "eps": eps, "admin": stack.admin_key, "stack": stack}


def q(path, **params):
    return path + "?" + "&".join("%s=%s" % kv for kv in params.items())


# ---- authentication ----

def test_every_endpoint_needs_a_key(ana):
    stack = ana["stack"]
    for name in MARKET + ACCOUNT + ["../activity", "reconciliation"]:
        path = "/api/v1/analytics/" + name if not name.startswith("..") else "/api/v1/activity"
        s, _, raw = api(stack, path, None)
        assert s == 401, (path, s)
        assert json.loads(raw)["error"]["code"] == 401
        s, _, raw = api(stack, path, "sk-ag-v1-" + "0" * 64)
        assert s == 401, (path, s)
        assert json.loads(raw) == {"error": {"code": 401, "message": "invalid API key"}}


def test_market_wide_endpoints_refuse_inference_keys(ana):
    stack = ana["stack"]
    for name in MARKET + ["reconciliation", "reconciliation/import"]:
        s, _, raw = api(stack, "/api/v1/analytics/" + name, ana["keys"]["A"])
        assert s == 403, (name, s, raw)
        assert json.loads(raw)["error"]["code"] == 403
    for name in MARKET:
        s, _, _ = api(stack, q("/api/v1/analytics/" + name, **{"from": FROM, "to": TO}), ana["admin"])
        assert s == 200, name


def test_bad_parameters_are_400_naming_them(ana):
    stack = ana["stack"]
    cases = [("share?by=colour", "by"), ("share?metric=joy", "metric"), ("share?top=0", "top"),
             ("share?top=101", "top"), ("share?from=2024-02-30", "from"), ("share?to=yesterday", "to"),
             ("share?from=2024-01-10&to=2024-01-10", "from"), ("share?open_weights=maybe", "open_weights"),
             ("share/series?interval=year", "interval"), ("share?format=xml", "format"),
             ("live?minutes=121", "minutes"), ("spend?by=planet", "by"), ("spend?account=x", "account"),
             ("statement", "account"), ("providers?table=x", "table"), ("share?from=2020-01-01&to=2024-01-01", "from"),
             ("share?by=%zz", "by")]
    for path, param in cases:
        s, _, raw = api(stack, "/api/v1/analytics/" + path, ana["admin"])
        assert s == 400, (path, s, raw)
        err = json.loads(raw)["error"]
        assert err["code"] == 400 and "'%s'" % param in err["message"], (path, err)
    s, _, raw = api(stack, "/api/v1/activity?date=2024-13-01", ana["admin"])
    assert s == 400 and "'date'" in json.loads(raw)["error"]["message"]
    s, _, _ = stack.request("POST", "/api/v1/analytics/share", key=ana["admin"], port=stack.analytics_port)
    assert s == 405
    assert api(stack, "/api/v1/analytics/nothing", ana["admin"])[0] == 404


# ---- market share ----

def test_share_by_model_tokens(ana):
    d = get(ana["stack"], q("/api/v1/analytics/share", by="model", metric="tokens", **{"from": FROM, "to": TO}),
            ana["admin"])["data"]
    assert (d["by"], d["metric"], d["from"], d["to"], d["total"]) == ("model", "tokens", FROM, TO, 12000)
    assert [(r["key"], r["label"], r["value"]) for r in d["rows"]] == [
        ("ana/open-cn", "Ana Open CN", 8000), ("ana/closed-us", "Ana Closed US", 2000),
        ("ana/open-fr", "Ana Open FR", 2000)]
    assert [r["share"] for r in d["rows"]] == pytest.approx([2 / 3, 1 / 6, 1 / 6])
    assert d["others"] == {"value": 0, "share": 0, "count": 0}


def test_share_top_n_and_others(ana):
    d = get(ana["stack"], q("/api/v1/analytics/share", by="model", metric="requests", top=1,
                            **{"from": FROM, "to": TO}), ana["admin"])["data"]
    assert d["total"] == 60
    assert [(r["key"], r["value"]) for r in d["rows"]] == [("ana/open-cn", 40)]
    assert d["others"] == {"value": 20, "share": pytest.approx(1 / 3), "count": 2}
    assert sum(r["share"] for r in d["rows"]) + d["others"]["share"] == pytest.approx(1)


def test_share_spend_is_exact_usd(ana):
    d = get(ana["stack"], q("/api/v1/analytics/share", by="model", metric="spend", **{"from": FROM, "to": TO}),
            ana["admin"])["data"]
    assert (d["total"], d["total_nusd"]) == ("0.037", 37000000)
    assert [(r["key"], r["value"], r["value_nusd"]) for r in d["rows"]] == [
        ("ana/closed-us", "0.02", 20000000), ("ana/open-cn", "0.012", 12000000), ("ana/open-fr", "0.005", 5000000)]
    assert d["rows"][0]["share"] == pytest.approx(20 / 37)


def test_share_by_author_provider_origin_app(ana):
    def rows(by, metric="tokens"):
        d = get(ana["stack"], q("/api/v1/analytics/share", by=by, metric=metric, **{"from": FROM, "to": TO}),
                ana["admin"])["data"]
        return [(r["key"], r["label"], r["value"], round(r["share"], 6)) for r in d["rows"]]
    assert rows("author") == [("ana-lab", "ana-lab", 10000, 0.833333), ("ana-corp", "ana-corp", 2000, 0.166667)]
    assert rows("provider") == [("ana-p2", "Ana Two", 9000, 0.75), ("ana-p1", "Ana One", 3000, 0.25)]
    assert rows("origin") == [("CN", "CN", 8000, 0.666667), ("FR", "FR", 2000, 0.166667),
                              ("US", "US", 2000, 0.166667)]
    assert rows("app", "requests") == [("ana-app-two", "ana-app-two", 30, 0.5), ("ana-app-one", "ana-app-one", 20, 0.333333),
                                       ("", "(no app)", 10, 0.166667)]


def test_open_weight_share_by_origin_week_by_week(ana):
    """The operators' question: what share of our volume went to open-weight
    models from each origin, week by week."""
    d = get(ana["stack"], q("/api/v1/analytics/share/series", by="origin", metric="tokens", interval="week",
                            open_weights="true", **{"from": FROM, "to": TO}), ana["admin"])["data"]
    assert (d["by"], d["metric"], d["interval"]) == ("origin", "tokens", "week")
    assert d["buckets"] == ["2024-01-01", "2024-01-08"]
    assert d["totals"] == [4000, 6000]
    series = {s["key"]: s for s in d["series"]}
    assert sorted(series) == ["CN", "FR"]
    assert series["CN"]["values"] == [2000, 6000] and series["CN"]["shares"] == [0.5, 1]
    assert series["FR"]["values"] == [2000, 0] and series["FR"]["shares"] == [0.5, 0]
    closed = get(ana["stack"], q("/api/v1/analytics/share", by="origin", open_weights="false",
                                 **{"from": FROM, "to": TO}), ana["admin"])["data"]
    assert [(r["key"], r["value"], r["share"]) for r in closed["rows"]] == [("US", 2000, 1)]


def test_share_series_days_months_top_and_spend(ana):
    stack = ana["stack"]
    d = get(stack, q("/api/v1/analytics/share/series", by="model", metric="requests", interval="day", top=1,
                     **{"from": "2024-01-02", "to": "2024-01-05"}), ana["admin"])["data"]
    assert d["buckets"] == ["2024-01-02", "2024-01-03", "2024-01-04"]
    assert [(s["key"], s["label"], s["values"]) for s in d["series"]] == [
        ("ana/open-cn", "Ana Open CN", [5, 5, 0]), ("others", "Others", [0, 0, 10])]
    assert d["totals"] == [5, 5, 10]
    d = get(stack, q("/api/v1/analytics/share/series", by="model", metric="spend", interval="month",
                     **{"from": "2023-12-20", "to": TO}), ana["admin"])["data"]
    assert d["buckets"] == ["2023-12-01", "2024-01-01"]
    assert d["totals"] == ["0", "0.037"] and d["totals_nusd"] == [0, 37000000]
    us = [s for s in d["series"] if s["key"] == "ana/closed-us"][0]
    assert us["values"] == ["0", "0.02"] and us["values_nusd"] == [0, 20000000]


# ---- provider health ----

def test_providers_hourly_and_summary(ana):
    stack = ana["stack"]
    d = get(stack, q("/api/v1/analytics/providers", provider="ana-p1", **{"from": FROM, "to": MID}),
            ana["admin"])["data"]
    assert d["percentiles"] is True
    summ = {r["endpoint_id"]: r for r in d["summary"]}
    fr = summ[ana["eps"]["fr1"]]
    assert (fr["provider"], fr["provider_name"], fr["model"], fr["hour"]) == ("ana-p1", "Ana One", "ana/open-fr", None)
    assert (fr["requests"], fr["failures"], fr["uptime"]) == (10, 1, 0.9)
    assert fr["latency_ms_avg"] == 1450 and fr["ttft_ms_avg"] == 145 and fr["tps_avg"] == 40
    # percentile_disc over the nine successful generations (1000..1800 ms)
    assert (fr["latency_ms_p50"], fr["latency_ms_p90"], fr["ttft_ms_p50"], fr["ttft_ms_p90"]) == (1400, 1800, 140, 180)
    cn = summ[ana["eps"]["cn1"]]
    assert (cn["requests"], cn["failures"], cn["uptime"]) == (5, 0, 1)
    hours = [(r["hour"], r["endpoint_id"], r["requests"]) for r in d["rows"]]
    assert hours == [("2024-01-02T10:00:00Z", ana["eps"]["cn1"], 5), ("2024-01-04T12:00:00Z", ana["eps"]["fr1"], 10)]
    # week 2: the two attempts that failed on cn1 and moved on to cn2
    d = get(stack, q("/api/v1/analytics/providers", model="ana/open-cn", **{"from": MID, "to": TO}),
            ana["admin"])["data"]
    summ = {r["endpoint_id"]: r for r in d["summary"]}
    assert (summ[ana["eps"]["cn1"]]["requests"], summ[ana["eps"]["cn1"]]["failures"]) == (2, 2)
    assert summ[ana["eps"]["cn1"]]["uptime"] == 0 and summ[ana["eps"]["cn1"]]["latency_ms_avg"] is None
    assert (summ[ana["eps"]["cn2"]]["requests"], summ[ana["eps"]["cn2"]]["failures"]) == (30, 0)
    # more than 7 days: no percentiles
    d = get(stack, q("/api/v1/analytics/providers", provider="ana-p1", **{"from": FROM, "to": TO}),
            ana["admin"])["data"]
    assert d["percentiles"] is False and all(r["latency_ms_p50"] is None for r in d["summary"])


def test_live_minutes_from_redis(ana):
    import redis
    stack = ana["stack"]
    minute = int(time.time()) // 60
    r = redis.Redis(port=stack.redis_port)
    r.hincrby("live:%d" % minute, "r|ana/open-cn|ana-p1", 3)
    r.hincrby("live:%d" % minute, "t|ana/open-cn|ana-p1", 600)
    d = get(stack, "/api/v1/analytics/live?minutes=5", ana["admin"])["data"]
    assert len(d["minutes"]) == 5 and d["minutes"][-1].endswith(":00Z")
    iso = time.strftime("%Y-%m-%dT%H:%M:00Z", time.gmtime(minute * 60))
    i = d["minutes"].index(iso)
    s = [x for x in d["series"] if (x["model"], x["provider"]) == ("ana/open-cn", "ana-p1")][0]
    assert s["requests"][i] == 3 and s["tokens"][i] == 600 and sum(s["requests"]) == 3
    raw = api(stack, "/api/v1/analytics/live?minutes=2&format=csv", ana["admin"])[2].decode()
    assert raw.startswith("minute,model,provider,requests,tokens\r\n")


# ---- finance ----

SPEND_CSV = ("key,label,requests,prompt_tokens,completion_tokens,cost_usd,provider_cost_usd,margin_usd\r\n"
             "{B},ana-b,40,4800,3200,0.029,0.021,0.008\r\n"
             "{A},ana-a,20,2400,1600,0.008,0.0065,0.0015\r\n")


def test_spend_by_account_json_and_csv(ana):
    stack, ids = ana["stack"], ana["ids"]
    d = get(stack, q("/api/v1/analytics/spend", by="account", **{"from": FROM, "to": TO}), ana["admin"])["data"]
    rows = {r["key"]: r for r in d["rows"]}
    a, b = rows[str(ids["A"])], rows[str(ids["B"])]
    assert (a["label"], a["requests"], a["prompt_tokens"], a["completion_tokens"]) == ("ana-a", 20, 2400, 1600)
    assert (a["cost"], a["cost_nusd"], a["provider_cost"], a["provider_cost_nusd"], a["margin"], a["margin_nusd"]) == \
        ("0.008", 8000000, "0.0065", 6500000, "0.0015", 1500000)
    assert (b["cost"], b["provider_cost"], b["margin"], b["requests"]) == ("0.029", "0.021", "0.008", 40)
    t = d["totals"]
    assert (t["requests"], t["cost"], t["provider_cost"], t["margin"], t["margin_nusd"]) == \
        (60, "0.037", "0.0275", "0.0095", 9500000)
    s, h, raw = api(stack, q("/api/v1/analytics/spend", by="account", format="csv", **{"from": FROM, "to": TO}),
                    ana["admin"])
    assert s == 200 and h["content-type"].startswith("text/csv")
    assert "attachment" in h["content-disposition"]
    assert raw.decode() == SPEND_CSV.format(A=ids["A"], B=ids["B"])
    assert list(csv.reader(io.StringIO(raw.decode())))[1][5] == "0.029"


def test_spend_by_every_key(ana):
    stack, ids = ana["stack"], ana["ids"]

    def spend(by, **kw):
        d = get(stack, q("/api/v1/analytics/spend", by=by, **dict({"from": FROM, "to": TO}, **kw)), ana["admin"])
        return [(r["key"], r["label"], r["requests"], r["cost"]) for r in d["data"]["rows"]]
    assert spend("model") == [("ana/closed-us", "Ana Closed US", 10, "0.02"), ("ana/open-cn", "Ana Open CN", 40, "0.012"),
                              ("ana/open-fr", "Ana Open FR", 10, "0.005")]
    assert spend("provider") == [("ana-p2", "Ana Two", 45, "0.0305"), ("ana-p1", "Ana One", 15, "0.0065")]
    assert spend("app") == [("", "(no app)", 10, "0.02"), ("ana-app-two", "ana-app-two", 30, "0.009"),
                            ("ana-app-one", "ana-app-one", 20, "0.008")]
    assert spend("key") == [(str(ids["key_B"]), "ana-key-b", 40, "0.029"), (str(ids["key_A"]), "ana-key-a", 20, "0.008")]
    days = spend("day")
    assert days[0] == ("2024-01-02", "2024-01-02", 5, "0.0015") and len(days) == 6
    assert spend("day", account=ids["A"]) == [("2024-01-02", "2024-01-02", 5, "0.0015"),
                                              ("2024-01-03", "2024-01-03", 5, "0.0015"),
                                              ("2024-01-04", "2024-01-04", 10, "0.005")]


def test_inference_key_sees_only_its_account(ana):
    stack, ids, key = ana["stack"], ana["ids"], ana["keys"]["A"]
    d = get(stack, q("/api/v1/analytics/spend", by="account", **{"from": FROM, "to": TO}), key)["data"]
    assert [(r["key"], r["cost"]) for r in d["rows"]] == [(str(ids["A"]), "0.008")]
    assert d["totals"]["cost"] == "0.008"
    d = get(stack, q("/api/v1/analytics/spend", by="model", **{"from": FROM, "to": TO}), key)["data"]
    assert [(r["key"], r["requests"]) for r in d["rows"]] == [("ana/open-fr", 10), ("ana/open-cn", 10)]
    s, _, raw = api(stack, q("/api/v1/analytics/spend", account=ids["B"], **{"from": FROM, "to": TO}), key)
    assert s == 403 and "own account" in json.loads(raw)["error"]["message"]
    assert api(stack, q("/api/v1/analytics/statement", account=ids["B"]), key)[0] == 403
    d = get(stack, q("/api/v1/analytics/statement", **{"from": FROM, "to": TO}), key)["data"]
    assert d["account"] == ids["A"]
    # activity: only A's rows, whatever the day
    assert get(stack, "/api/v1/activity?date=2024-01-09", key)["data"] == []
    assert len(get(stack, "/api/v1/activity?date=2024-01-09", ana["keys"]["B"])["data"]) == 1


def test_statement_matches_agoractl(ana):
    stack, ids = ana["stack"], ana["ids"]
    d = get(stack, q("/api/v1/analytics/statement", account=ids["A"], **{"from": FROM, "to": TO}), ana["admin"])["data"]
    assert (d["account"], d["account_name"], d["from"], d["to"]) == (ids["A"], "ana-a", FROM, TO)
    assert (d["opening_balance"], d["credits"], d["usage"], d["closing_balance"]) == ("5", "1", "0.008", "5.992")
    assert (d["opening_balance_nusd"], d["closing_balance_nusd"]) == (5000000000, 5992000000)
    assert len(d["days"]) == 14 and d["days"][0]["date"] == FROM and d["days"][-1]["date"] == "2024-01-14"
    day = {x["date"]: x for x in d["days"]}
    assert (day["2024-01-02"]["usage"], day["2024-01-02"]["requests"], day["2024-01-02"]["tokens"]) == ("0.0015", 5, 1000)
    assert (day["2024-01-06"]["credits"], day["2024-01-06"]["usage"]) == ("1", "0")
    out = stack.ctl("statement", "ana-a", "--from", FROM, "--to", TO).stdout
    assert re.search(r"opening balance: (\S+) USD", out).group(1) == d["opening_balance"]
    assert re.search(r"closing balance: (\S+) USD", out).group(1) == d["closing_balance"]
    raw = api(stack, q("/api/v1/analytics/statement", account=ids["A"], format="csv", **{"from": FROM, "to": TO}),
              ana["admin"])[2].decode()
    lines = raw.split("\r\n")
    assert lines[0] == "date,credits_usd,usage_usd,requests,tokens"
    assert lines[1] == "2024-01-01,0,0,0,0" and lines[2] == "2024-01-02,0,0.0015,5,1000"
    assert lines[6] == "2024-01-06,1,0,0,0" and len(lines) == 16 and lines[-1] == ""
    assert api(stack, q("/api/v1/analytics/statement", account=999999), ana["admin"])[0] == 404


def test_activity_in_openrouter_shape(ana):
    stack, eps = ana["stack"], ana["eps"]
    d = get(stack, "/api/v1/activity?date=2024-01-02", ana["keys"]["A"])
    assert d == {"data": [{"date": "2024-01-02", "model": "ana/open-cn", "model_permaslug": "ana/open-cn",
                           "endpoint_id": str(eps["cn1"]), "provider_name": "Ana One", "usage": 0.0015,
                           "byok_usage_inference": 0, "requests": 5, "prompt_tokens": 600,
                           "completion_tokens": 400, "reasoning_tokens": 50}]}
    recent = get(stack, "/api/v1/activity", ana["keys"]["A"])["data"]     # the last 30 days: yesterday's 3
    assert [(r["model"], r["requests"]) for r in recent] == [("ana/open-cn", 3)]
    raw = api(stack, "/api/v1/activity?date=2024-01-04&format=csv", ana["keys"]["A"])[2].decode()
    assert raw == ("date,model,model_permaslug,endpoint_id,provider_name,usage_usd,byok_usage_inference,requests,"
                   "prompt_tokens,completion_tokens,reasoning_tokens\r\n"
                   "2024-01-04,ana/open-fr,ana/open-fr,%d,Ana One,0.005,0,10,1200,800,100\r\n" % eps["fr1"])


def test_share_csv(ana):
    raw = api(ana["stack"], q("/api/v1/analytics/share", by="provider", metric="spend", format="csv",
                              **{"from": FROM, "to": TO}), ana["admin"])[2].decode()
    assert raw == "key,label,value,share\r\nana-p2,Ana Two,0.0305,%r\r\nana-p1,Ana One,0.0065,%r\r\n" % (
        30500000 / 37000000, 6500000 / 37000000)
    raw = api(ana["stack"], q("/api/v1/analytics/share/series", by="origin", interval="week", open_weights="true",
                              format="csv", **{"from": FROM, "to": TO}), ana["admin"])[2].decode()
    assert raw.split("\r\n")[:3] == ["bucket,key,label,value,share", "2024-01-01,CN,CN,2000,0.5", "2024-01-08,CN,CN,6000,1"]


def test_check_finds_everything_adds_up(ana):
    stack = ana["stack"]
    d = get(stack, q("/api/v1/analytics/check", **{"from": FROM, "to": TO}), ana["admin"])["data"]
    assert d["ok"] is True and d["differences"] == []
    assert d["checked"]["events"] == 60 and d["checked"]["cost"] == "0.037" and d["checked"]["account_days"] == 6
    assert get(stack, "/api/v1/analytics/check", ana["admin"])["data"]["ok"] is True     # the last 30 days
    # a rollup that disagrees is reported, per account and day and per day
    stack.sql("UPDATE usage_daily SET cost_nusd = cost_nusd + 1 WHERE day = '2024-01-03' AND account_id = %s",
              ana["ids"]["A"])
    try:
        d = get(stack, q("/api/v1/analytics/check", **{"from": FROM, "to": TO}), ana["admin"])["data"]
        assert d["ok"] is False
        assert [(x["scope"], x["date"], x["account"], x["events_cost_nusd"], x["daily_cost_nusd"])
                for x in d["differences"]] == [("account_day", "2024-01-03", ana["ids"]["A"], 1500000, 1500001),
                                               ("day", "2024-01-03", None, None, 1500001)]
        assert d["differences"][1]["hourly_cost_nusd"] == 1500000
    finally:
        stack.sql("UPDATE usage_daily SET cost_nusd = cost_nusd - 1 WHERE day = '2024-01-03' AND account_id = %s",
                  ana["ids"]["A"])


# ---- agoractl simulate ----

def test_simulate_is_billed_and_shows_shifting_shares(stack):
    end = "2024-06-01"                        # a past period nothing else uses: [May 29, Jun 1)
    r = stack.ctl("simulate", "--days", "3", "--seed", "1", "--end", end, "--wait", "50")
    out = r.stdout
    n = int(re.search(r"(\d+) events queued", out).group(1))
    rising = re.search(r"rising: (\S+);", out).group(1)
    assert n > 5000 and "billing recorded the %d events" % n in out, out
    billed = stack.sql("SELECT count(*), coalesce(sum(e.cost_nusd), 0) FROM usage_events e JOIN accounts a "
                       "ON a.id = e.account_id WHERE a.name LIKE 'sim-%%'")[0]
    assert billed[0] == n
    # simulated accounts were topped up through the ledger and never went negative
    low = stack.sql("SELECT min(bal) FROM (SELECT sum(l.amount_nusd) OVER (PARTITION BY l.account_id ORDER BY l.created_at, l.id)"
                    " AS bal FROM ledger l JOIN accounts a ON a.id = l.account_id WHERE a.name LIKE 'sim-%%') x")[0][0]
    assert low >= 0
    d = get(stack, q("/api/v1/analytics/share/series", by="model", metric="requests", interval="day",
                     **{"from": "2024-05-29", "to": end}), stack.admin_key)["data"]
    assert d["buckets"] == ["2024-05-29", "2024-05-30", "2024-05-31"]
    assert sum(d["totals"]) == n
    s = [x for x in d["series"] if x["key"] == rising][0]["shares"]
    assert s[0] < s[1] < s[2] and s[2] - s[0] > 0.15, s
    assert get(stack, q("/api/v1/analytics/check", **{"from": "2024-05-29", "to": end}), stack.admin_key)["data"]["ok"]
    # deterministic, and only once unless forced
    again = stack.ctl("simulate", "--days", "3", "--seed", "1", "--end", end).stdout
    assert "nothing done" in again
