"""PostgreSQL at scale (deploy/postgres.md), on a stack of its own (retention
drops events, which the shared stack's global events = ledger checks would
then miss):

- PgBouncer in transaction mode (a pool of 2 server connections, so clients
  share them) in front of the stack's PostgreSQL: a router, a billing worker
  and an analytics server with pg_dsn through it and pg_listen_dsn direct.
  Traffic is billed exactly once (events = ledger = rollups = key usage), a
  key revoked through the pooled router stops at once on it (NOTIFY through
  the pool, LISTEN direct; key cache 10 minutes), analytics answers as the
  direct one does, agoractl works through it, and no session setting leaks
  into the pool's server connections.
- A streaming replica (pg_basebackup -R) with an agora-analytics reading
  from it (analytics_pg_dsn): the same answers as the primary's analytics
  after replay, its connections on the replica, a reconciliation import
  through it lands on the primary, and its lag in /metrics.
- Retention: two months of 2019 billed through agora-billing (and one
  filled in SQL, for speed); `agoractl partitions retain` archives the
  months past the window, resumes a partition detached by a "crash", keeps a
  verified archive as it is, rewrites a damaged one, never touches the kept
  months; statements, balances and analytics are unchanged; an archived
  generation is a 404 that says it is past retention, and its redelivery is
  not billed again (late_events); the archive restores.
"""
import calendar
import gzip
import hashlib
import json
import os
import shutil
import signal
import subprocess
import time

import psycopg2
import pytest

from conftest import BUILD, free_ports, new_stack, wait_for

PGBIN = sorted(d for d in (os.path.join("/usr/lib/postgresql", v, "bin")
                           for v in os.listdir("/usr/lib/postgresql")) if os.path.isdir(d))[-1]
PGBOUNCER = shutil.which("pgbouncer") or ("/usr/sbin/pgbouncer" if os.path.exists("/usr/sbin/pgbouncer") else None)


def as_pg(cmd):
    return (["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []) + cmd


def dsn(port):
    return "host=127.0.0.1 port=%d dbname=agora user=agora" % port


def own_dir(s, name):
    d = os.path.join(s.dir, name)
    os.makedirs(d, mode=0o700, exist_ok=True)
    if os.getuid() == 0:
        shutil.chown(d, "postgres")
    return d


@pytest.fixture(scope="module")
def st():
    with new_stack("agora-pgscale-") as s:
        yield s


def spawn(s, name, binary, **env):
    e = dict(s.env, **env)
    e.update(s.provider_keys)
    return subprocess.Popen([os.path.join(BUILD, binary), "-c", os.path.join(s.dir, "agora.conf")], env=e,
                            stdout=subprocess.DEVNULL, stderr=open(os.path.join(s.dir, "log", name + ".log"), "w"))


def stop(*procs):
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def analytics(s, name, **env):
    port = free_ports(1)[0]
    p = spawn(s, name, "agora-analytics", AGORA_ANALYTICS_LISTEN="127.0.0.1:%d" % port, **env)
    assert wait_for(lambda: up(s, port), 15), s.log(name)
    return p, port


def up(s, port):
    try:
        return s.request("GET", "/health", port=port, timeout=2)[0] == 200
    except OSError:
        return False


def aget(s, port, path, key=None):
    st_, h, raw = s.request("GET", path, key=key or s.admin_key, port=port)
    assert st_ == 200, (path, st_, raw[:300])
    return json.loads(raw)


def sums(s):
    return s.sql("SELECT (SELECT coalesce(sum(cost_nusd), 0) FROM usage_events),"
                 " (SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE kind = 'usage'),"
                 " (SELECT coalesce(sum(cost_nusd), 0) FROM usage_daily),"
                 " (SELECT coalesce(sum(usage_nusd), 0) FROM api_keys),"
                 " (SELECT count(*) - count(DISTINCT generation_id) FROM usage_events)")[0]


# ---- PgBouncer ----

@pytest.fixture(scope="module")
def bouncer(st):
    if not PGBOUNCER:
        pytest.skip("pgbouncer is not installed (deploy/install-deps.sh installs it): PgBouncer NOT tested")
    d = own_dir(st, "pgbouncer")
    port = free_ports(1)[0]
    with open(os.path.join(d, "users.txt"), "w") as f:
        f.write('"agora" ""\n"postgres" ""\n')
    ini = os.path.join(d, "pgbouncer.ini")
    with open(ini, "w") as f:
        f.write("[databases]\nagora = host=127.0.0.1 port=%d dbname=agora\n[pgbouncer]\n"
                "listen_addr = 127.0.0.1\nlisten_port = %d\nunix_socket_dir =\nauth_type = trust\n"
                "auth_file = %s/users.txt\npool_mode = transaction\ndefault_pool_size = 2\n"
                "max_client_conn = 200\nignore_startup_parameters = extra_float_digits,options\n"
                "logfile = %s/pgbouncer.log\npidfile = %s/pgbouncer.pid\nadmin_users = postgres\n"
                % (st.pg_port, port, d, d, d))
    r = subprocess.run(as_pg([PGBOUNCER, "-d", ini]), capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stdout + r.stderr
    pidfile = os.path.join(d, "pgbouncer.pid")
    assert wait_for(lambda: os.path.exists(pidfile), 10)
    yield port
    with open(pidfile) as f:
        os.kill(int(f.read()), signal.SIGTERM)


def test_pgbouncer_transaction_mode(st, bouncer):
    pooled, direct = dsn(bouncer), dsn(st.pg_port)
    # agoractl through the pool (migrations, a listing with its COPY-free reads)
    assert "up to date" in st.ctl("migrate", env={"AGORA_PG_DSN": pooled}).stdout
    assert "usage_events_" in st.ctl("partitions", "list", env={"AGORA_PG_DSN": pooled}).stdout
    # only the pooled billing worker bills now
    with open(os.path.join(st.dir, "run", "billing.pid")) as f:
        os.kill(int(f.read()), signal.SIGTERM)
    env = dict(AGORA_PG_DSN=pooled, AGORA_PG_LISTEN_DSN=direct)
    # two billing workers through the pool (their prepared statements meet
    # on the pool's 2 server connections), one restarted mid-traffic
    billing = lambda name: spawn(st, name, "agora-billing", AGORA_BILLING_LISTEN="127.0.0.1:%d" % free_ports(1)[0],
                                 AGORA_BILLING_BATCH="8", AGORA_BILLING_CLAIM_IDLE_MS="1000", **env)
    bill, bill2 = billing("billing-pooled"), billing("billing-pooled2")
    router, rport = st.extra_router("router-pooled", AGORA_KEY_CACHE_TTL_MS="600000", **env)
    ana, aport = analytics(st, "analytics-pooled", **env)
    n0 = st.sql("SELECT count(*) FROM usage_events")[0][0]
    try:
        for i in range(120):
            if i == 40:                                           # a billing restart mid-traffic
                stop(bill2)
                bill2 = billing("billing-pooled2b")
            if i == 80:                                           # the pool's server connections recycled
                admin = psycopg2.connect(host="127.0.0.1", port=bouncer, dbname="pgbouncer", user="postgres")
                admin.autocommit = True
                with admin.cursor() as cur:
                    cur.execute("RECONNECT agora")
                admin.close()
            s_, h, raw = st.request("POST", "/api/v1/chat/completions",
                                    {"model": "test/three", "stream": i % 3 == 0,
                                     "messages": [{"role": "user", "content": "pooled %d" % i}]},
                                    key=st.key, port=rport)
            assert s_ == 200, raw
        n = lambda: st.sql("SELECT count(*) FROM usage_events")[0][0] - n0
        assert wait_for(lambda: n() >= 120, 30), (n(), st.log("billing-pooled")[-1500:])
        assert n() == 120                                         # N events for N requests
        assert wait_for(lambda: len(set(sums(st)[:4])) == 1, 10), sums(st)
        assert sums(st)[4] == 0                                   # no generation twice
        hourly = st.sql("SELECT (SELECT sum(requests) FROM usage_hourly), (SELECT count(*) FROM usage_events),"
                        " (SELECT sum(cost_nusd) FROM usage_hourly), (SELECT sum(cost_nusd) FROM usage_events)")[0]
        assert hourly[0] == hourly[1] and hourly[2] == hourly[3], hourly
        logs = st.log("billing-pooled") + st.log("billing-pooled2") + st.log("billing-pooled2b")
        # no batch refused for a statement the pool lost (26000 / 42P05): pgc
        # goes unnamed at the first sign of the pool and sends it again at once
        assert "not written" not in logs, logs[-3000:]
        # a key revoked through the pooled router: NOTIFY through the pool, LISTEN direct
        s_, h, raw = st.request("POST", "/api/v1/keys", {"name": "pooled", "account": "demo"},
                                key=st.admin_key, port=rport)
        assert s_ == 201, raw
        out = json.loads(raw)
        chat = lambda: st.request("POST", "/api/v1/chat/completions",
                                  {"model": "test/solo", "messages": [{"role": "user", "content": "x"}]},
                                  key=out["key"], port=rport)[0]
        assert chat() == 200
        # revoked by agoractl through the pool: only NOTIFY can tell the router (key cache: 10 minutes)
        kid = st.sql("SELECT id FROM api_keys WHERE hash = decode(%s, 'hex')", out["data"]["hash"])[0][0]
        st.ctl("key", "revoke", str(kid), env={"AGORA_PG_DSN": pooled})
        t0 = time.time()
        assert wait_for(lambda: chat() == 401, 3), "revocation did not reach the pooled router"
        print("revocation seen by the pooled router after %.0f ms" % ((time.time() - t0) * 1000))
        # analytics through the pool answers what the direct one does
        for path in ("/api/v1/analytics/spend?by=account", "/api/v1/analytics/share?by=provider",
                     "/api/v1/analytics/check"):
            assert aget(st, aport, path)["data"] == aget(st, st.analytics_port, path)["data"], path
        assert aget(st, aport, "/api/v1/analytics/check")["data"]["ok"] is True
        # no session setting of analytics leaked into the pool's server connections
        c = psycopg2.connect(host="127.0.0.1", port=bouncer, dbname="agora", user="agora")
        c.autocommit = True
        with c.cursor() as cur:
            for _ in range(6):
                cur.execute("SHOW work_mem")
                assert cur.fetchone()[0] == "4MB"
                cur.execute("SHOW statement_timeout")
                assert cur.fetchone()[0] == "0"
        c.close()
    finally:
        stop(router, ana, bill, bill2)
        st.stack("start")                                         # the stack's own billing again


# ---- streaming replica ----

@pytest.fixture(scope="module")
def replica(st):
    d = own_dir(st, "replica")
    run = own_dir(st, "replica-run")
    port = free_ports(1)[0]
    r = subprocess.run(as_pg([os.path.join(PGBIN, "pg_basebackup"), "-h", "127.0.0.1", "-p", str(st.pg_port),
                              "-U", "postgres", "-D", d, "-R", "-X", "stream", "-c", "fast"]),
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    opts = "-p %d -c listen_addresses=127.0.0.1 -c unix_socket_directories=%s -c hot_standby=on" % (port, run)
    r = subprocess.run(as_pg([os.path.join(PGBIN, "pg_ctl"), "-D", d, "-l", os.path.join(run, "replica.log"),
                              "-o", opts, "-w", "-t", "60", "start"]), capture_output=True, text=True, timeout=90)
    assert r.returncode == 0, r.stdout + r.stderr
    yield port
    subprocess.run(as_pg([os.path.join(PGBIN, "pg_ctl"), "-D", d, "-m", "fast", "-w", "stop"]),
                   capture_output=True, timeout=60)


def replica_sql(port, q):
    c = psycopg2.connect(host="127.0.0.1", port=port, dbname="agora", user="agora")
    c.autocommit = True
    with c.cursor() as cur:
        cur.execute(q)
        out = cur.fetchall()
    c.close()
    return out


def test_analytics_reads_a_streaming_replica(st, replica):
    assert replica_sql(replica, "SELECT pg_is_in_recovery()")[0][0] is True
    ana, port = analytics(st, "analytics-replica", AGORA_ANALYTICS_PG_DSN=dsn(replica))
    try:
        # new traffic on the primary, then the replica's analytics catch up
        start = st.sql("SELECT now()")[0][0]
        for i in range(5):
            assert st.chat({"model": "test/solo", "messages": [{"role": "user", "content": "r%d" % i}]})[0] == 200
        assert wait_for(lambda: st.sql("SELECT count(*) FROM usage_events WHERE created_at >= %s", start)[0][0] >= 5,
                        15)
        t0, mark = time.time(), st.sql("SELECT max(created_at) FROM usage_events")[0][0]
        assert wait_for(lambda: replica_sql(replica, "SELECT max(created_at) FROM usage_events")[0][0] >= mark, 10)
        print("replica caught up %.0f ms after the primary's last commit was read" % ((time.time() - t0) * 1000))
        for path in ("/api/v1/analytics/spend?by=account", "/api/v1/analytics/spend?by=model",
                     "/api/v1/analytics/share?by=model", "/api/v1/analytics/share/series?by=provider",
                     "/api/v1/analytics/statement?account=1", "/api/v1/analytics/check"):
            assert aget(st, port, path)["data"] == aget(st, st.analytics_port, path)["data"], path
        # its read connections are on the replica
        assert replica_sql(replica, "SELECT count(*) FROM pg_stat_activity WHERE usename = 'agora' "
                                    "AND datname = 'agora'")[0][0] >= 1
        # a write through it goes to the primary
        day = time.strftime("%Y-%m-%d", time.gmtime())
        s_, h, raw = st.request("POST", "/api/v1/analytics/reconciliation/import?provider=solo&label=replica-test",
                                "date,model,input_tokens,output_tokens,amount\n%s,up-solo,10,20,0.001\n" % day,
                                key=st.admin_key, port=port, headers={"Content-Type": "text/csv"})
        assert s_ == 200, raw
        assert st.sql("SELECT count(*) FROM recon_imports WHERE label = 'replica-test'")[0][0] == 1
        # the lag gauge
        def lag():
            raw = st.request("GET", "/metrics", port=port)[2].decode()
            v = [ln.split()[-1] for ln in raw.splitlines() if ln.startswith("agora_analytics_pg_replica_lag_seconds")]
            return v and float(v[0])
        assert wait_for(lambda: lag() is not False and lag() is not None and lag() != [], 6)
        assert 0 <= lag() < 5
    finally:
        stop(ana)


# ---- retention ----

def gen_id(ts_ms, n):
    return "gen-%d-ret%05d" % (ts_ms // 1000, n)


def ms(y, m, d, h=12):
    return calendar.timegm((y, m, d, h, 0, 0)) * 1000


@pytest.fixture(scope="module")
def ret(st):
    st.ctl("account", "create", "ret", "--credits", "100", "--if-missing")
    key = st.ctl("key", "create", "ret", "--name", "ret").stdout.strip()
    acct, kid = st.sql("SELECT a.id, k.id FROM accounts a JOIN api_keys k ON k.account_id = a.id "
                       "WHERE a.name = 'ret'")[0]
    ep = st.sql("SELECT id FROM endpoints WHERE model_id = 'test/solo'")[0][0]
    st.sql("SELECT agora_event_partitions_between('2019-08-01', '2019-12-31')")
    evs = []
    for (y, m, n) in ((2019, 10, 120), (2019, 11, 80), (2019, 12, 10)):
        for i in range(n):
            ts = ms(y, m, 1 + i % 28, i % 24)
            evs.append({"id": gen_id(ts, len(evs)), "ts": ts, "account": acct, "key": kid, "model": "test/solo",
                        "author": "test", "provider": "solo", "endpoint": ep, "pt": 100 + i, "ct": 50,
                        "cached": 0, "reasoning": 0, "cost": 1000 + i, "pcost": 900, "latency_ms": 500,
                        "ttft_ms": 50, "tps_milli": 40000, "stream": False, "estimated": False, "status": 200,
                        "attempts": 1, "finish": "stop", "app_title": "ret, \"quoted\"\napp"})
    st.xadd_usage(evs)
    n = lambda: st.sql("SELECT count(*) FROM usage_events WHERE account_id = %s", acct)[0][0]
    assert wait_for(lambda: n() == len(evs), 30), n()
    # a bigger month filled in SQL (no ledger: only for the archive's speed)
    st.sql("INSERT INTO usage_events (generation_id, created_at, account_id, key_id, model_id, model_author, "
           "provider_id, endpoint_id, prompt_tokens, completion_tokens, cost_nusd, provider_cost_nusd, latency_ms, "
           "ttft_ms, tps_milli, streamed, estimated, status, attempts, finish_reason) "
           "SELECT 'gen-bulk-' || g, '2019-08-01'::timestamptz + g * interval '20 ms', 0, 0, 'bulk/m', 'bulk', "
           "'bulk', 0, 10, 20, 30, 20, 100, 10, 1000, false, false, 200, 1, 'stop' "
           "FROM generate_series(1, 100000) g")
    now = time.gmtime()
    keep = (now.tm_year - 2019) * 12 + now.tm_mon - 12 + 1      # 2019-12 and everything after it stay
    return {"acct": acct, "key": key, "evs": evs, "keep": str(keep), "dir": os.path.join(st.dir, "archive")}


def views(st, r):
    a = r["acct"]
    q = "?account=%d&from=2019-10-01&to=2020-01-01" % a
    return {"statement": aget(st, st.analytics_port, "/api/v1/analytics/statement" + q)["data"],
            "spend": aget(st, st.analytics_port, "/api/v1/analytics/spend" + q + "&by=day")["data"],
            "share": aget(st, st.analytics_port, "/api/v1/analytics/share?from=2019-10-01&to=2020-01-01")["data"],
            "credits": json.loads(st.request("GET", "/api/v1/credits", key=r["key"])[2])["data"],
            "ctl": st.ctl("statement", "ret", "--from", "2019-10-01", "--to", "2020-01-01").stdout,
            "ledger": st.sql("SELECT count(*), sum(amount_nusd) FROM ledger WHERE account_id = %s", a)[0],
            "rollups": st.sql("SELECT sum(cost_nusd), sum(requests) FROM usage_daily WHERE account_id = %s", a)[0]}


def manifest(d, part):
    with open(os.path.join(d, part + ".manifest.json")) as f:
        return json.load(f)


def test_retention_archives_old_months(st, ret):
    d, keep = ret["dir"], ret["keep"]
    parts = ["usage_events_201908", "usage_events_201909", "usage_events_201910", "usage_events_201911"]
    before = views(st, ret)
    oct_gen = ret["evs"][0]["id"]
    s_, body = st.get("/api/v1/generation?id=" + oct_gen, key=ret["key"])
    assert s_ == 200 and body["data"]["app"] == "ret, \"quoted\"\napp"
    # refused: no window, or under a month
    for bad in (["--keep-months", "0"], ["--keep-months", "x"], []):
        r = st.ctl("partitions", "retain", "--archive-dir", d, *bad, check=False)
        assert r.returncode == 1 and "--keep-months" in r.stderr
    # a dry run changes nothing; keep=1 would never name the current or a future month
    r = st.ctl("partitions", "retain", "--keep-months", "1", "--archive-dir", d, "--dry-run")
    cur = time.strftime("usage_events_%Y%m", time.gmtime())
    assert "would archive" in r.stdout and cur not in r.stdout and not os.path.exists(d)
    # a crash after a detach: the table is finished by the next run
    st.sql("ALTER TABLE usage_events DETACH PARTITION usage_events_201910")
    r = st.ctl("partitions", "retain", "--keep-months", keep, "--archive-dir", d, "--keep-detached")
    print(r.stdout)
    assert "4 partitions past the" in r.stdout and ", 0 failed" in r.stdout
    attached = [x[0] for x in st.sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                                     "WHERE i.inhparent = 'usage_events'::regclass")]
    assert not set(parts) & set(attached) and "usage_events_201912" in attached and cur in attached
    for p in parts:
        m = manifest(d, p)
        assert m["rows"] == st.sql("SELECT count(*) FROM " + p)[0][0]
        with open(os.path.join(d, m["file"]), "rb") as f:
            raw = f.read()
        assert hashlib.sha256(raw).hexdigest() == m["sha256"] and len(raw) == m["bytes"]
        assert hashlib.sha256(gzip.decompress(raw)).hexdigest() == m["csv_sha256"]
    assert manifest(d, "usage_events_201910")["rows"] == 120 and manifest(d, "usage_events_201908")["rows"] == 100000
    # rerun: a verified archive is kept as it is, a damaged one written again, then the tables dropped
    mtime = os.stat(os.path.join(d, "usage_events_201910.csv.gz")).st_mtime_ns
    with open(os.path.join(d, "usage_events_201911.csv.gz"), "ab") as f:
        f.write(b"x")
    r = st.ctl("partitions", "retain", "--keep-months", keep, "--archive-dir", d)
    print(r.stdout)
    assert "usage_events_201910: archive" in r.stdout and "verified" in r.stdout
    assert "usage_events_201911: exported 80 rows" in r.stdout
    assert os.stat(os.path.join(d, "usage_events_201910.csv.gz")).st_mtime_ns == mtime
    assert st.sql("SELECT count(*) FROM pg_class WHERE relname = ANY(%s)", parts)[0][0] == 0
    assert st.sql("SELECT count(*) FROM partition_archives WHERE dropped_at IS NOT NULL")[0][0] == 4
    assert "archived, dropped" in st.ctl("partitions", "list").stdout
    # nothing left to do
    r = st.ctl("partitions", "retain", "--keep-months", keep, "--archive-dir", d)
    assert "0 partitions" in r.stdout
    # ledger and rollups untouched: statements, balances and dashboards are exact
    assert views(st, ret) == before
    assert st.sql("SELECT count(*) FROM usage_events WHERE account_id = %s", ret["acct"])[0][0] == 10
    check = aget(st, st.analytics_port, "/api/v1/analytics/check?from=2019-10-01&to=2020-01-01")["data"]
    assert check["ok"] is True and check["checked"]["events"] == 10, check    # archived days: ledger = rollups
    # an archived generation: 404 saying so; an unknown recent one: the usual 404
    s_, body = st.get("/api/v1/generation?id=" + oct_gen, key=ret["key"])
    assert s_ == 404 and "past retention" in body["error"]["message"] and "2019-12-01" in body["error"]["message"]
    s_, body = st.get("/api/v1/generation?id=gen-%d-nothing" % int(time.time()), key=ret["key"])
    assert s_ == 404 and "past retention" not in body["error"]["message"]
    dec_gen = [e["id"] for e in ret["evs"] if e["ts"] >= ms(2019, 12, 1, 0)][0]
    assert st.get("/api/v1/generation?id=" + dec_gen, key=ret["key"])[0] == 200
    # a redelivery of an archived generation is not billed again: kept in late_events
    st.xadd_usage([ret["evs"][0]])
    assert wait_for(lambda: st.sql("SELECT count(*) FROM late_events WHERE generation_id = %s", oct_gen)[0][0] == 1,
                    15)
    assert views(st, ret) == before
    assert st.sql("SELECT count(*) FROM usage_events WHERE generation_id = %s", oct_gen)[0][0] == 0
    assert "1 late events of archived months" in st.ctl("partitions", "list").stdout
    # the restore of deploy/postgres.md: the archive loads back into a table of the same shape
    with st.db() as c, c.cursor() as cur:
        cur.execute("CREATE TABLE restored_201910 (LIKE usage_events INCLUDING DEFAULTS)")
        with gzip.open(os.path.join(d, "usage_events_201910.csv.gz"), "rt", newline="") as f:
            cols = f.readline().strip()
            f.seek(0)
            cur.copy_expert("COPY restored_201910 (%s) FROM STDIN (FORMAT csv, HEADER)" % cols, f)
        cur.execute("SELECT count(*), sum(cost_nusd), min(app_title) FROM restored_201910")
        assert cur.fetchone() == (120, sum(e["cost"] for e in ret["evs"][:120]), "ret, \"quoted\"\napp")
        cur.execute("DROP TABLE restored_201910")
