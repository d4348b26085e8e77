"""Billing throughput: usage events per second from the Redis stream into
PostgreSQL (events, ledger, key usage, daily and hourly rollups, one
transaction per batch), against a baseline in the same run: the same rows
inserted by a plain multi-row INSERT into a table with only a primary key.

    /usr/bin/python3 tests/bench/billing.py [N]     (make bench runs it)

Starts its own stack (deploy/devstack.sh on free ports, PostgreSQL with
fsync off as in the tests), so the figure is the pipeline's, not the disk's.
"""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import psycopg2
import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import Stack  # noqa: E402  (the test suite's stack, reused)


def event(i, account, key):
    ts = int(time.time() * 1000) - 3600_000 + i % 3600_000
    return {"id": "gen-bench-%09d" % i, "ts": ts, "account": account, "key": key, "app_title": "bench-%d" % (i % 7),
            "model": "test/three", "author": "test", "provider": ["alpha", "beta", "gamma"][i % 3],
            "endpoint": 1 + i % 3, "pt": 100 + i % 50, "ct": 200 + i % 90, "cached": 0, "reasoning": 0,
            "cost": 1000 + i % 977, "pcost": 800 + i % 500, "latency_ms": 900, "ttft_ms": 200, "tps_milli": 55000,
            "stream": i % 2 == 0, "estimated": False, "status": 200, "attempts": 1, "finish": "stop"}


def event_of(i, account, key):
    """One event in 20 had a fail-over, and carries its attempts (as the router sends them)."""
    e = event(i, account, key)
    if i % 20 == 0:
        e["attempts"] = 2
        e["tried"] = [{"provider": "beta", "provider_name": "Beta AI", "model": "test/three", "endpoint_id": 2,
                       "status": 502, "latency": 31},
                      {"provider": e["provider"], "provider_name": "x", "model": "test/three",
                       "endpoint_id": e["endpoint"], "status": 200, "latency": 900}]
    return e


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    tmp = tempfile.mkdtemp(prefix="agora-bench-")
    st = Stack(tmp)
    st.env["AGORA_BILLING_BATCH"] = os.environ.get("AGORA_BILLING_BATCH", "2000")   # the default
    try:
        st.start()
        pg = psycopg2.connect(host="127.0.0.1", port=st.pg_port, dbname="agora", user="agora")
        pg.autocommit = True
        cur = pg.cursor()
        cur.execute("SELECT k.account_id, k.id FROM api_keys k WHERE k.kind = 'inference' LIMIT 1")
        account, key = cur.fetchone()
        events = [json.dumps(event_of(i, account, key), separators=(",", ":")) for i in range(n)]

        # baseline: the same rows, plain INSERTs of 10,000 into a table with a primary key only
        cur.execute("CREATE TABLE bench_floor (LIKE usage_events INCLUDING DEFAULTS)")
        cur.execute("ALTER TABLE bench_floor ADD PRIMARY KEY (generation_id, created_at)")
        t0 = time.time()
        for i in range(0, n, 10000):
            cur.execute("INSERT INTO bench_floor SELECT x.id, timestamptz 'epoch' + x.ts * interval '1 ms', x.account,"
                        " x.key, NULL, x.app_title, x.model, x.author, x.provider, x.endpoint, x.pt, x.ct, 0, 0,"
                        " x.cost, x.pcost, x.latency_ms, x.ttft_ms, x.tps_milli, x.stream, false, x.status,"
                        " x.attempts, x.finish, NULL FROM json_to_recordset(%s::json) AS x(id text, ts bigint,"
                        " account bigint, key bigint, app_title text, model text, author text, provider text,"
                        " endpoint bigint, pt bigint, ct bigint, cost bigint, pcost bigint, latency_ms int,"
                        " ttft_ms int, tps_milli bigint, stream bool, status int, attempts int, finish text)",
                        ("[" + ",".join(events[i:i + 10000]) + "]",))
        floor = n / (time.time() - t0)

        # agora-billing: stop it, fill the stream, start it, time until every event is billed
        subprocess.run(["kill", open(os.path.join(tmp, "run", "billing.pid")).read().strip()], check=True)
        time.sleep(0.5)
        r = redis.Redis(port=st.redis_port)
        for i in range(0, n, 5000):
            p = r.pipeline(transaction=False)
            for e in events[i:i + 5000]:
                p.xadd("usage", {"e": e})
            p.execute()
        cur.execute("SELECT count(*) FROM usage_events")
        before = cur.fetchone()[0]
        t0 = time.time()
        st.stack("start")                                   # restarts only what is not running
        while True:
            cur.execute("SELECT count(*) FROM usage_events")
            done = cur.fetchone()[0] - before
            if done >= n or time.time() - t0 > 600:
                break
            time.sleep(0.05)
        secs = time.time() - t0
        rate = done / secs
        cur.execute("SELECT (SELECT sum(cost_nusd) FROM usage_events), (SELECT -sum(amount_nusd) FROM ledger"
                    " WHERE kind = 'usage'), (SELECT sum(cost_nusd) FROM usage_daily),"
                    " (SELECT sum(cost_nusd) FROM usage_hourly)")
        sums = cur.fetchone()
        print("%-52s %10.0f events/s" % ("baseline: plain INSERT, primary key only", floor))
        print("%-52s %10.0f events/s   (%.2fx the baseline; %d events in %.1f s, batch %s)"
              % ("agora-billing: stream -> events+ledger+rollups", rate, rate / floor, done, secs,
                 st.env["AGORA_BILLING_BATCH"]))
        print("%-52s %s" % ("sums (events = ledger = daily = hourly)", "agree" if len(set(sums)) == 1 else sums))
        return 0 if done >= n and len(set(sums)) == 1 else 1
    finally:
        st.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
