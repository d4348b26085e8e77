"""Analytics at scale: month rankings and month spend with rollups equivalent
to 100 million usage events over three months, through agora-analytics'
HTTP API, against a baseline measured in the same run (GET /health on the
same server: an HTTP round trip and a SELECT 1 through the same pool).

    /usr/bin/python3 tests/bench/analytics.py [EVENTS]     (make bench runs it)

The rows are generated with generate_series straight into usage_hourly
(every endpoint, every hour) and usage_daily (accounts x keys x model and
provider pairs x apps, every day), then summed into usage_daily_endpoints,
usage_daily_keys and usage_monthly_keys, as billing would have left them
after that many events; usage_events stays empty (rankings and spend never
read it).
Starts its own stack (deploy/devstack.sh on free ports).
"""
import datetime as dt
import http.client
import json
import os
import shutil
import statistics
import sys
import tempfile
import time

import psycopg2

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import Stack  # noqa: E402  (the test suite's stack, reused)

DAYS = 90
PROVIDERS, MODELS, ACCOUNTS, APPS = 12, 80, 2000, 60
PAIRS_PER_ACCOUNT = 5           # (model, provider) pairs an account uses each day
RUNS = 15

CATALOG = """
INSERT INTO providers (id, name, api, base_url, status)
SELECT 'bp' || p, 'Bench Provider ' || p, 'openai', 'http://127.0.0.1:9/v1', 'disabled'
FROM generate_series(1, %(providers)s) p;
INSERT INTO models (id, name, author, origin, open_weights, context_length, status)
SELECT 'bench-lab' || (m %% 25) || '/model-' || m, 'Bench Model ' || m, 'bench-lab' || (m %% 25),
       (ARRAY['CN', 'US', 'FR', 'DE', 'GB', 'KR'])[1 + m %% 6], m %% 3 <> 0, 131072, 'disabled'
FROM generate_series(1, %(models)s) m;
INSERT INTO endpoints (model_id, provider_id, upstream_model, context_length, max_output, prompt_uusd_per_mtok,
                       completion_uusd_per_mtok, status)
SELECT 'bench-lab' || (m %% 25) || '/model-' || m, 'bp' || (1 + (m * 7 + k * 5) %% %(providers)s), 'up', 131072, 8192,
       100000 + (m * 37 %% 20) * 100000, 400000 + (m * 53 %% 20) * 400000, 'disabled'
FROM generate_series(1, %(models)s) m, generate_series(0, 1 + m %% 2) k
ON CONFLICT (model_id, provider_id) DO NOTHING;
"""

# Per endpoint and hour: requests follow a diurnal curve and a per-endpoint
# weight; tokens ~1,100 a request; cost at the endpoint's price.
HOURLY = """
INSERT INTO usage_hourly (hour, model_id, model_author, provider_id, endpoint_id, requests, failures, streamed,
                          prompt_tokens, completion_tokens, cost_nusd, provider_cost_nusd, latency_ms_sum,
                          ttft_ms_sum, tps_milli_sum)
SELECT h, e.model_id, m.author, e.provider_id, e.id, r, r / 200, r * 2 / 3, r * 800, r * 300,
       (r * 800 * e.prompt_uusd_per_mtok + r * 300 * e.completion_uusd_per_mtok) / 1000,
       (r * 800 * e.prompt_uusd_per_mtok + r * 300 * e.completion_uusd_per_mtok) * 9 / 10000,
       r * 1800, r * 350, r * 60000
FROM endpoints e JOIN models m ON m.id = e.model_id,
     generate_series(%(start)s::timestamptz, %(end)s::timestamptz - interval '1 hour', interval '1 hour') h,
     LATERAL (SELECT greatest(1, round(%(per_row)s * (0.3 + 0.7 * (1 + sin(extract(hour FROM h) / 24.0 * 2 * pi())) / 2)
                                        * (0.5 + (e.id * 7919 %% 100) / 100.0) / 0.65))::bigint AS r) x
WHERE e.provider_id LIKE 'bp%%'
"""

# Per day: every account uses PAIRS_PER_ACCOUNT (model, provider) pairs
# through one of its keys (1 or 2 per account) and one app.
DAILY = """
WITH eps AS (SELECT row_number() OVER (ORDER BY id) - 1 AS i, id, model_id, provider_id, prompt_uusd_per_mtok AS pp,
                    completion_uusd_per_mtok AS cp FROM endpoints WHERE provider_id LIKE 'bp%%'),
     n AS (SELECT count(*) AS n FROM eps)
INSERT INTO usage_daily (day, account_id, key_id, model_id, model_author, provider_id, app, requests, prompt_tokens,
                         completion_tokens, cost_nusd, provider_cost_nusd)
SELECT d::date, 100000 + a, 200000 + a * 2 + (j %% 2) * (a %% 2), e.model_id, split_part(e.model_id, '/', 1),
       e.provider_id, 'bench-app-' || (a * 13 + j) %% %(apps)s, r, r * 800, r * 300,
       (r * 800 * e.pp + r * 300 * e.cp) / 1000, (r * 800 * e.pp + r * 300 * e.cp) * 9 / 10000
FROM generate_series(%(start)s::date, %(end)s::date - 1, interval '1 day') d
     CROSS JOIN generate_series(1, %(accounts)s) a CROSS JOIN generate_series(0, %(pairs)s - 1) j CROSS JOIN n
     JOIN eps e ON e.i = (a * 31 + j * 17) %% n.n
     CROSS JOIN LATERAL (SELECT greatest(1, round(%(per_row)s * (0.2 + 1.6 * ((a * 2654435761) %% 1000) / 1000.0)))::bigint AS r) x
ON CONFLICT DO NOTHING
"""

# What billing keeps beside them, in the same transactions (migration 0010).
DERIVED = """
INSERT INTO usage_daily_endpoints (day, model_id, model_author, provider_id, endpoint_id, requests, prompt_tokens,
                                   completion_tokens, cost_nusd, provider_cost_nusd)
SELECT (hour AT TIME ZONE 'UTC')::date, model_id, min(model_author), provider_id, endpoint_id, sum(requests),
       sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd), sum(provider_cost_nusd)
FROM usage_hourly WHERE provider_id LIKE 'bp%%' GROUP BY 1, 2, 4, 5;
INSERT INTO usage_daily_keys (day, account_id, key_id, requests, prompt_tokens, completion_tokens, cost_nusd,
                              provider_cost_nusd)
SELECT day, account_id, key_id, sum(requests), sum(prompt_tokens), sum(completion_tokens), sum(cost_nusd),
       sum(provider_cost_nusd)
FROM usage_daily WHERE account_id >= 100000 GROUP BY 1, 2, 3;
INSERT INTO usage_monthly_keys (month, account_id, key_id, requests, prompt_tokens, completion_tokens, cost_nusd,
                                provider_cost_nusd)
SELECT date_trunc('month', day::timestamp)::date, account_id, key_id, sum(requests), sum(prompt_tokens),
       sum(completion_tokens), sum(cost_nusd), sum(provider_cost_nusd)
FROM usage_daily_keys WHERE account_id >= 100000 GROUP BY 1, 2, 3;
"""


def timed(conn, path, key):
    t0 = time.perf_counter()
    conn.request("GET", path, headers={"Authorization": "Bearer " + key} if key else {})
    r = conn.getresponse()
    body = r.read()
    dt_ms = (time.perf_counter() - t0) * 1000
    assert r.status == 200, (path, r.status, body[:300])
    return dt_ms, body


def median_ms(conn, path, key):
    timed(conn, path, key)                                  # warm-up
    return statistics.median(timed(conn, path, key)[0] for _ in range(RUNS))


def generate(cur, events, start, end):
    hours = DAYS * 24
    cur.execute(CATALOG, {"providers": PROVIDERS, "models": MODELS})
    cur.execute("SELECT count(*) FROM endpoints WHERE provider_id LIKE 'bp%'")
    neps = cur.fetchone()[0]
    t0 = time.time()
    cur.execute(HOURLY, {"start": start.isoformat() + " 00:00+00", "end": end.isoformat() + " 00:00+00",
                         "per_row": events / (hours * neps)})
    cur.execute(DAILY, {"start": start.isoformat(), "end": end.isoformat(), "accounts": ACCOUNTS,
                        "pairs": PAIRS_PER_ACCOUNT, "apps": APPS,
                        "per_row": events / (DAYS * ACCOUNTS * PAIRS_PER_ACCOUNT)})
    cur.execute(DERIVED)
    for t in ("usage_hourly", "usage_daily", "usage_daily_endpoints", "usage_daily_keys", "usage_monthly_keys"):
        cur.execute("VACUUM ANALYZE " + t)
    cur.execute("SELECT count(*), sum(requests) FROM usage_hourly")
    hrows, hreq = cur.fetchone()
    cur.execute("SELECT count(*), sum(requests), count(DISTINCT account_id), count(DISTINCT key_id) FROM usage_daily")
    drows, dreq, naccts, nkeys = cur.fetchone()
    print("data: rollups equivalent to %s events over %d days (%s to %s), generated with generate_series straight"
          " into the rollups (usage_events is empty), in %.0f s:" % (format(events, ","), DAYS, start, end,
                                                                    time.time() - t0))
    print("      usage_hourly %s rows (%d endpoints x %d hours, %s requests);" % (format(hrows, ","), neps, hours,
                                                                              format(int(hreq), ",")))
    print("      usage_daily  %s rows (%d accounts, %d keys, %d apps, %d model/provider pairs per account and day,"
          " %s requests)" % (format(drows, ","), naccts, nkeys, APPS, PAIRS_PER_ACCOUNT, format(int(dreq), ",")))
    cur.execute("SELECT (SELECT count(*) FROM usage_daily_endpoints), (SELECT count(*) FROM usage_daily_keys),"
                " (SELECT count(*) FROM usage_monthly_keys)")
    print("      and summed from them: usage_daily_endpoints %s rows, usage_daily_keys %s rows,"
          " usage_monthly_keys %s rows" % tuple(format(n, ",") for n in cur.fetchone()))


def main():
    events = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000_000
    today = dt.datetime.now(dt.timezone.utc).date()
    end = today.replace(day=1)                               # 90 days ending at this month's first
    start = end - dt.timedelta(days=DAYS)
    month_from = (end - dt.timedelta(days=1)).replace(day=1)  # the last whole month
    tmp = tempfile.mkdtemp(prefix="agora-bench-analytics-")
    st = Stack(tmp)
    try:
        st.start()
        pg = psycopg2.connect(host="127.0.0.1", port=st.pg_port, dbname="agora", user="agora")
        pg.autocommit = True
        generate(pg.cursor(), events, start, end)
        conn = http.client.HTTPConnection("127.0.0.1", st.analytics_port, timeout=60)
        rng = "from=%s&to=%s" % (month_from, end)
        base = median_ms(conn, "/health", None)
        mid = month_from.replace(day=16)                      # 30 days from mid-month: the worst case
        odd = "from=%s&to=%s" % (mid - dt.timedelta(days=30), mid)
        cases = [("share by model, month (tokens)", "/api/v1/analytics/share?by=model&" + rng, 1),
                 ("share by provider, month (spend)", "/api/v1/analytics/share?by=provider&metric=spend&" + rng, 1),
                 ("share by origin, open weights, month", "/api/v1/analytics/share?by=origin&open_weights=true&" + rng,
                  1),
                 ("share by model, month, day by day", "/api/v1/analytics/share/series?by=model&interval=day&" + rng,
                  1),
                 ("spend by account, month", "/api/v1/analytics/spend?by=account&" + rng, 1),
                 ("spend by key, month", "/api/v1/analytics/spend?by=key&" + rng, 1),
                 ("spend by model, month", "/api/v1/analytics/spend?by=model&" + rng, 1),
                 ("spend by day, month, one account", "/api/v1/analytics/spend?by=day&account=100007&" + rng, 1),
                 ("spend by account, 30 days from mid-month", "/api/v1/analytics/spend?by=account&" + odd, 0)]
        print("%-44s %8.2f ms   (baseline: HTTP round trip + SELECT 1; median of %d)" % ("GET /health", base, RUNS))
        worst = 0
        for name, path, month in cases:
            m = median_ms(conn, path, st.admin_key)
            worst = max(worst, m) if month else worst
            print("%-44s %8.2f ms   (%.1fx the baseline; median of %d)" % (name, m, m / base, RUNS))
        body = json.loads(timed(conn, "/api/v1/analytics/spend?by=account&" + rng, st.admin_key)[1])["data"]
        print("month %s: %s requests, %s USD billed, %d accounts; slowest month answer %.1f ms (target: under 50 ms)"
              % (month_from.strftime("%Y-%m"), format(body["totals"]["requests"], ","), body["totals"]["cost"],
                 len(body["rows"]), worst))
        return 0
    finally:
        st.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
