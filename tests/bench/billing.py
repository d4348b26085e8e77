"""Billing throughput: usage events per second from the Redis stream into
PostgreSQL (events, ledger, key usage, daily and hourly rollups, one
transaction per batch), against a baseline in the same run: the same rows
inserted by a plain multi-row INSERT into a table with only a primary key.

    /usr/bin/python3 tests/bench/billing.py [N]     (make bench runs it)
    /usr/bin/python3 tests/bench/billing.py --rate R [SECONDS]

--rate: a steady flow instead, as a router would send it: R events a second
XADDed (raw RESP, pipelined every 10 ms) for SECONDS (20), then CPU per
event of Redis, agora-billing and PostgreSQL (its backends, WAL writer,
checkpointer...: utime + stime from /proc over the run, billing's catching
up included). BENCH_REPS (1) runs repeat it on the same stack; BENCH_SQL
is run first (a variant to compare: an index dropped, a setting), and the
Redis command BENCH_REDIS.

Starts its own stack (deploy/devstack.sh on free ports, PostgreSQL with
fsync off as in the tests), so the figure is the pipeline's, not the disk's.
"""
import json
import os
import random
import shutil
import socket
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


def proc_cpu(pid):
    """utime + stime of one process, in seconds (0 when gone)."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            st = f.read()
        fields = st[st.rindex(")") + 2:].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError):
        return 0.0


def pg_kind(pid):
    """A PostgreSQL process's role from its title: backend, walwriter, checkpointer..."""
    try:
        with open("/proc/%d/cmdline" % pid) as f:
            title = f.read().replace("\0", " ").strip()
    except OSError:
        return "gone"
    if not title.startswith("postgres:"):
        return "postmaster"
    t = title[len("postgres:"):].strip()
    if t.startswith("agora "):
        return "backend"
    return t.split()[0] if t else "other"


def cpu_snapshot(tmp):
    """{process class: cpu seconds} for Redis, billing and PostgreSQL's processes."""
    def pidfile(name):
        with open(os.path.join(tmp, "run", name)) as f:
            return int(f.read().strip())
    with open(os.path.join(tmp, "pg", "postmaster.pid")) as f:
        pg = int(f.readline())
    out = {"redis": proc_cpu(pidfile("redis.pid")), "billing": proc_cpu(pidfile("billing.pid"))}
    pids = [pg]
    try:
        with open("/proc/%d/task/%d/children" % (pg, pg)) as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for p in pids:
        k = "pg " + pg_kind(p)
        out[k] = out.get(k, 0.0) + proc_cpu(p)
    return out


def resp(*args):
    b = [b"*%d\r\n" % len(args)]
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        b.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(b)


def billed(cur):
    cur.execute("SELECT coalesce(sum(requests), 0) FROM usage_daily")
    return cur.fetchone()[0]


def steady_run(st, cur, account, key, rate, secs, base):
    """XADDs rate events/s for secs, waits until billed; returns (events, cpu delta by class, wall)."""
    sock = socket.create_connection(("127.0.0.1", st.redis_port))
    sock.setblocking(False)
    before = billed(cur)
    c0, t0 = cpu_snapshot(st.dir), time.time()
    sent, tick = 0, 0.01
    while True:
        now = time.time() - t0
        if now >= secs:
            break
        due = min(int(now * rate) + 1, int(secs * rate))
        if due > sent:
            buf = b"".join(resp("XADD", "usage", "*", "e", json.dumps(event_now(base + i, account, key),
                                                                       separators=(",", ":")))
                           for i in range(sent, due))
            sock.setblocking(True)
            sock.sendall(buf)
            sock.setblocking(False)
            sent = due
        try:
            while sock.recv(1 << 20):
                pass
        except BlockingIOError:
            pass
        time.sleep(tick)
    sock.close()
    while billed(cur) - before < sent and time.time() - t0 < secs + 120:
        time.sleep(0.05)
    c1, wall = cpu_snapshot(st.dir), time.time() - t0
    return sent, {k: c1.get(k, 0) - c0.get(k, 0) for k in c1}, wall


ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"


def event_now(i, account, key):
    """An event of now, as the router sends it (one in 20 with its attempts)."""
    e = event_of(i, account, key)
    e["ts"] = int(time.time() * 1000)
    e["id"] = "gen-%d-%s" % (e["ts"] // 1000, "".join(random.choice(ALNUM) for _ in range(20)))
    return e


def bench_stack():
    """A fresh stack with billing's default batch: (stack, its directory)."""
    tmp = tempfile.mkdtemp(prefix="agora-bench-")
    st = Stack(tmp)
    st.env["AGORA_BILLING_BATCH"] = os.environ.get("AGORA_BILLING_BATCH", "2000")   # the default
    return st, tmp


def stack_stop(st, tmp):
    """Stops st; its directory goes unless BENCH_KEEP is set."""
    st.stop()
    if os.environ.get("BENCH_KEEP"):
        print("kept " + tmp)
    else:
        shutil.rmtree(tmp, ignore_errors=True)


def stack_cursor(st):
    """Starts st: an autocommit cursor on its database, and the demo key's (account, key)."""
    st.start()
    pg = psycopg2.connect(host="127.0.0.1", port=st.pg_port, dbname="agora", user="agora")
    pg.autocommit = True
    cur = pg.cursor()
    cur.execute("SELECT k.account_id, k.id FROM api_keys k WHERE k.kind = 'inference' LIMIT 1")
    return (cur,) + tuple(cur.fetchone())


def steady(rate, secs):
    st, tmp = bench_stack()
    try:
        cur, account, key = stack_cursor(st)
        if os.environ.get("BENCH_SQL"):      # a variant to compare, e.g. "DROP INDEX ..."
            cur.execute(os.environ["BENCH_SQL"])
        if os.environ.get("BENCH_REDIS"):    # e.g. "CONFIG SET appendonly no"
            redis.Redis(port=st.redis_port).execute_command(*os.environ["BENCH_REDIS"].split())
        steady_run(st, cur, account, key, rate, 2, 0)                 # warm-up
        totals = {}
        for rep in range(int(os.environ.get("BENCH_REPS", "1"))):
            n, d, wall = steady_run(st, cur, account, key, rate, secs, (rep + 1) * 10_000_000)
            pgsum = sum(v for k, v in d.items() if k.startswith("pg "))
            print("rate %d/s, %d events in %.1f s: us CPU/event  redis %.2f  billing %.2f  postgres %.2f  total %.2f"
                  % (rate, n, wall, d["redis"] / n * 1e6, d["billing"] / n * 1e6, pgsum / n * 1e6,
                     (d["redis"] + d["billing"] + pgsum) / n * 1e6))
            print("    postgres: " + "  ".join("%s %.2f" % (k[3:], v / n * 1e6) for k, v in sorted(d.items())
                                                if k.startswith("pg ") and v > 0))
            for k, v in d.items():
                totals[k] = totals.get(k, 0) + v / n * 1e6
        cur.execute("SELECT (SELECT sum(cost_nusd) FROM usage_events), (SELECT -sum(amount_nusd) FROM ledger"
                    " WHERE kind = 'usage'), (SELECT sum(cost_nusd) FROM usage_daily),"
                    " (SELECT sum(cost_nusd) FROM usage_hourly)")
        sums = cur.fetchone()
        print("sums (events = ledger = daily = hourly): %s" % ("agree" if len(set(sums)) == 1 else sums))
        return 0 if len(set(sums)) == 1 else 1
    finally:
        stack_stop(st, tmp)


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "--rate":
        return steady(int(sys.argv[2]), float(sys.argv[3]) if len(sys.argv) > 3 else 20)
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    st, tmp = bench_stack()
    try:
        cur, account, key = stack_cursor(st)
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
        stack_stop(st, tmp)


if __name__ == "__main__":
    sys.exit(main())
