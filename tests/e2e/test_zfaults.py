"""Faults around metering (runs last: it stops and restarts parts of the
stack). Whatever dies, every generation that got a 200 is billed exactly
once and the ledger equals the events."""
import os
import signal
import subprocess
import threading
import time

from conftest import wait_for


def pid(stack, name):
    with open(os.path.join(stack.dir, "run", name + ".pid")) as f:
        return int(f.read())


def restart(stack):
    r = stack.stack("start")     # starts whatever is not running, leaves the rest
    assert r.returncode == 0, r.stdout + r.stderr


def events(stack):
    return stack.sql("SELECT count(*), count(DISTINCT generation_id) FROM usage_events")[0]


def sums_agree(stack):
    ev, led, roll, keys, hourly = stack.sql(
        "SELECT (SELECT coalesce(sum(cost_nusd), 0) FROM usage_events),"
        " (SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE kind = 'usage'),"
        " (SELECT coalesce(sum(cost_nusd), 0) FROM usage_daily),"
        " (SELECT coalesce(sum(usage_nusd), 0) FROM api_keys),"
        " (SELECT coalesce(sum(cost_nusd), 0) FROM usage_hourly)")[0]
    return ev == led == roll == keys == hourly


def traffic(stack, n, ids, stream_every=2):
    def one(i):
        s, h, raw = stack.chat({"model": "test/three", "stream": i % stream_every == 0,
                                "messages": [{"role": "user", "content": "fault %d" % i}]})
        if s == 200:
            ids.append(i)
    threads = []
    for i in range(n):
        t = threading.Thread(target=one, args=(i,))
        t.start()
        threads.append(t)
        time.sleep(0.01)
    return threads


def settle(stack, expected, timeout=30):
    assert wait_for(lambda: events(stack)[0] >= expected, timeout), (events(stack), expected)
    time.sleep(1.0)
    total, distinct = events(stack)
    assert total == distinct == expected
    assert sums_agree(stack)


def test_billing_killed_mid_flow(stack):
    base = events(stack)[0]
    ids = []
    threads = traffic(stack, 60, ids)
    time.sleep(0.2)
    os.kill(pid(stack, "billing"), signal.SIGKILL)
    for t in threads:
        t.join()
    assert len(ids) == 60            # requests never wait on billing
    restart(stack)
    settle(stack, base + 60)


def test_billing_started_trims_what_was_billed_before(stack):
    """A worker that starts trims the entries its group acknowledged before
    (here by a worker gone for good), with no new traffic for it to bill:
    Redis does not keep them until the next event."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    worker = pid(stack, "billing")
    os.kill(worker, signal.SIGTERM)
    assert wait_for(lambda: not os.path.exists("/proc/%d" % worker), 15)
    p = r.pipeline(transaction=False)
    for i in range(5000):
        p.xadd("usage", {"e": "{}"})
    p.execute()
    got = r.xreadgroup("billing", "a-worker-gone", {"usage": ">"}, count=10000)
    ids = [i for _, entries in got for i, _ in entries]
    assert len(ids) >= 5000
    for i in range(0, len(ids), 1000):
        r.xack("usage", "billing", *ids[i:i + 1000])
    assert r.xlen("usage") >= 5000
    restart(stack)
    assert wait_for(lambda: r.xlen("usage") < 200, 20), r.xlen("usage")
    r.xgroup_delconsumer("usage", "billing", "a-worker-gone")


def test_redis_down_spools_and_replays(stack):
    base = events(stack)[0]
    subprocess.run(["redis-cli", "-p", str(stack.redis_port), "shutdown"], capture_output=True)
    assert wait_for(lambda: "agora_router_redis_up 0" in stack.request("GET", "/metrics")[2].decode(), 5)
    ids = []
    for t in traffic(stack, 25, ids):
        t.join()
    assert len(ids) == 25            # requests still succeed
    metrics = stack.request("GET", "/metrics")[2].decode()
    assert "agora_router_usage_spooled 0" not in metrics
    restart(stack)                   # Redis returns; the router replays its spool
    settle(stack, base + 25)
    assert wait_for(lambda: "agora_router_spool_bytes 0" in stack.request("GET", "/metrics")[2].decode(), 10)


def test_a_full_spool_replayed_past_the_in_flight_bound_loses_nothing(stack):
    """A router whose spool filled while Redis was away (it answered 503
    once full) replays it when Redis returns. A replay sends no more than
    metering_max_inflight events before their answers: the rest wait and go
    as answers come back, without another reconnect (they once went back
    to the spool, held to a bound that still counted the file being
    replayed, and were lost)."""
    base = events(stack)[0]
    proc, port = stack.extra_router("router-full-spool", AGORA_SPOOL_MAX_BYTES="65536",
                                    AGORA_METERING_MAX_INFLIGHT="32")
    metrics = lambda: stack.request("GET", "/metrics", port=port)[2].decode()
    try:
        subprocess.run(["redis-cli", "-p", str(stack.redis_port), "shutdown"], capture_output=True)
        assert wait_for(lambda: "agora_router_redis_up 0" in metrics(), 5)
        ok = 0
        for i in range(400):
            s, _, _ = stack.request("POST", "/api/v1/chat/completions",
                                    {"model": "test/solo", "messages": [{"role": "user", "content": "full %d" % i}]},
                                    key=stack.key, port=port)
            if s == 503:
                break
            assert s == 200
            ok += 1
        assert 40 < ok < 400, ok                   # the spool filled up, then 503
        restart(stack)                            # Redis returns: the spool is replayed
        settle(stack, base + ok, timeout=60)
        assert wait_for(lambda: "agora_router_spool_bytes 0" in metrics(), 20)
        assert "lost" not in open(os.path.join(stack.dir, "log", "router-full-spool.log")).read()
    finally:
        proc.terminate()
        proc.wait(15)


def test_router_killed_with_a_spool_replays_it(stack):
    base = events(stack)[0]
    subprocess.run(["redis-cli", "-p", str(stack.redis_port), "shutdown"], capture_output=True)
    assert wait_for(lambda: "agora_router_redis_up 0" in stack.request("GET", "/metrics")[2].decode(), 5)
    ids = []
    for t in traffic(stack, 10, ids):
        t.join()
    assert len(ids) == 10
    time.sleep(0.5)                  # the spool thread has written and fsync'd
    os.kill(pid(stack, "router"), signal.SIGKILL)
    spool = os.path.join(stack.dir, "spool", "usage.spool")
    assert os.path.getsize(spool) > 0
    time.sleep(0.3)
    restart(stack)                   # Redis and the router come back; the spool is replayed
    settle(stack, base + 10)
    s, body = stack.get("/health")
    assert s == 200
