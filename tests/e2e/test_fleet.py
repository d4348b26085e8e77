"""A fleet on one Redis and one PostgreSQL (deploy/operations.md): three
routers and two billing workers. Concurrent traffic over every router is
billed exactly once (events = ledger = rollups) by both workers, one of
which is stopped with SIGTERM mid-traffic (billing and analytics reload on
SIGHUP and keep running); a key's requests-per-minute limit
and an account's credits hold across the three routers within the
README's bounds; an endpoint failing as seen through one router is avoided
by the other two within the health sync interval."""
import json
import os
import signal
import subprocess
import threading
import time

import pytest

from conftest import wait_for
from test_budget import burst, charges, new_account, worst_case
from test_health import endpoint
from test_ratelimit import away_from_minute_edge

MSG = {"model": "test/solo", "messages": [{"role": "user", "content": "fleet"}]}
RATELIMIT_SYNC_S = 0.2          # conftest: the default ratelimit_sync_ms


def billing_worker(stack, name):
    return stack.extra_billing(name, AGORA_LOG_LEVEL="debug")   # one line per batch


def new_events(log):
    """Events this worker billed for the first time, from its batch lines."""
    with open(log) as f:
        return sum(int(line.rsplit(", ", 1)[1].split()[0]) for line in f if "billing: batch" in line)


@pytest.fixture(scope="module")
def fleet(stack):
    """Routers 1 (the stack's), 2 and 3; billing workers A and B instead of
    the stack's (stopped with SIGTERM, started again at the end)."""
    with open(os.path.join(stack.dir, "run", "billing.pid")) as f:
        os.kill(int(f.read()), signal.SIGTERM)
    workers = [billing_worker(stack, "billing-a"), billing_worker(stack, "billing-b")]
    routers = [stack.extra_router("fleet2"), stack.extra_router("fleet3")]
    try:
        yield [None] + [port for _, port in routers], workers
    finally:
        for proc, _ in routers + workers:
            proc.terminate()
            proc.wait(20)
        r = stack.stack("start")
        assert r.returncode == 0, r.stdout + r.stderr


def test_traffic_over_three_routers_is_billed_once_by_two_workers(stack, fleet):
    ports, workers = fleet
    acct, key = new_account(stack, "fleet-load", 10 ** 12)
    (proc_a, log_a), (proc_b, log_b) = workers
    ok, lock, n_threads, per_thread = [], threading.Lock(), 6, 25

    def client(t):
        for i in range(per_thread):
            body = dict(MSG, stream=(i % 2 == 0))
            s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=key,
                                      port=ports[(t + i) % 3])
            assert s == 200, raw
            with lock:
                ok.append(s)
            time.sleep(0.01)

    threads = [threading.Thread(target=client, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    # Both workers bill; then B is stopped with SIGTERM while traffic goes on.
    assert wait_for(lambda: new_events(log_a) > 0 and new_events(log_b) > 0, 20), \
        (new_events(log_a), new_events(log_b))
    proc_b.send_signal(signal.SIGTERM)
    assert proc_b.wait(15) == 0
    for t in threads:
        t.join()
    n = n_threads * per_thread
    assert len(ok) == n
    assert wait_for(lambda: charges(stack, acct)[0] >= n, 20), charges(stack, acct)
    time.sleep(0.5)
    events, distinct, ev_cost, ledger, daily, key_usage = stack.sql(
        "SELECT count(*), count(DISTINCT generation_id), sum(cost_nusd),"
        " (SELECT -sum(amount_nusd) FROM ledger WHERE account_id = %s AND kind = 'usage'),"
        " (SELECT sum(cost_nusd) FROM usage_daily WHERE account_id = %s),"
        " (SELECT sum(usage_nusd) FROM api_keys WHERE account_id = %s)"
        " FROM usage_events WHERE account_id = %s", acct, acct, acct, acct)[0]
    assert events == distinct == n
    assert ev_cost == ledger == daily == key_usage > 0
    a, b = new_events(log_a), new_events(log_b)
    assert a > 0 and b > 0 and a + b >= n, (a, b)
    s, h, raw = stack.request("GET", "/api/v1/analytics/check", key=stack.admin_key, port=stack.analytics_port)
    assert s == 200 and json.loads(raw)["data"]["ok"] is True, raw[:500]
    # B stopped between batches: what it had read was committed and acknowledged.
    pending = subprocess.run(["redis-cli", "-p", str(stack.redis_port), "XPENDING", "usage", "billing"],
                             capture_output=True, text=True).stdout.split()
    assert pending[0] == "0", pending


def test_billing_and_analytics_reload_on_sighup(stack, fleet):
    _, workers = fleet
    (proc_a, log_a), _ = workers
    proc_a.send_signal(signal.SIGHUP)
    with open(os.path.join(stack.dir, "run", "analytics.pid")) as f:
        os.kill(int(f.read()), signal.SIGHUP)
    assert wait_for(lambda: "reload: done" in open(log_a).read(), 5)
    assert wait_for(lambda: "reload: done" in stack.log("analytics"), 5)
    assert proc_a.poll() is None
    s, h, raw = stack.request("GET", "/health", port=stack.analytics_port)
    assert s == 200, raw


def test_rpm_limit_holds_across_three_routers(stack, fleet):
    """README: the overshoot is at most routers x sync interval x arrival rate."""
    ports, _ = fleet
    limit, rate, sent = 20, 20.0, 40
    key = stack.ctl("key", "create", "demo", "--name", "fleet-rpm", "--rpm", str(limit)).stdout.strip()
    away_from_minute_edge()
    statuses = []
    for i in range(sent):                     # 20 requests a second, round robin
        t = time.time()
        statuses.append(stack.request("POST", "/api/v1/chat/completions", MSG, key=key, port=ports[i % 3])[0])
        time.sleep(max(0.0, 1 / rate - (time.time() - t)))
    accepted = statuses.count(200)
    bound = limit + 3 * RATELIMIT_SYNC_S * rate * 2     # x2: a sync round trip on each side
    assert set(statuses) <= {200, 429}, statuses
    assert limit <= accepted <= bound, (accepted, bound, statuses)


def test_credits_hold_across_three_routers(stack, fleet):
    ports, _ = fleet
    body = dict(MSG, max_tokens=1000)
    w = worst_case(body)
    credits = 10 * w + w // 2                 # room for 10 worst cases
    acct, key = new_account(stack, "fleet-credits", credits)
    stack.mock("solo").config(ttft_ms=500)    # all in flight together
    res = burst(stack, key, body, 30, ports)
    ok = [raw for s, raw in res if s == 200]
    assert {s for s, _ in res} <= {200, 402}
    assert 3 <= len(ok) and len(ok) * w <= credits, (len(ok), w, credits)
    assert wait_for(lambda: charges(stack, acct)[0] == len(ok), 15)
    assert charges(stack, acct)[1] <= credits


def test_endpoint_failing_through_one_router_is_avoided_by_the_others(stack, fleet):
    ports, _ = fleet
    three = {"model": "test/three", "messages": [{"role": "user", "content": "fleet health"}]}
    alpha = stack.mock("alpha")
    # Router 2 meets alpha's 429 (Retry-After 4 s) and fails over to beta.
    alpha.config(fail="429", retry_after=4, fail_count=1)
    s, h, raw = stack.request("POST", "/api/v1/chat/completions",
                              dict(three, provider={"order": ["alpha", "beta"]}), key=stack.key, port=ports[1])
    assert s == 200 and h["x-agora-attempts"].startswith("alpha=429"), h
    t0 = time.time()
    for port in (ports[0], ports[2]):         # within a health sync interval or two
        assert wait_for(lambda: endpoint(port or stack.router_port, "alpha")["status"] == -1, 3)
    learnt = time.time() - t0
    before = alpha.stats()
    for port in (ports[0], ports[2]):         # default routing would pick alpha 89% of the time
        for _ in range(3):
            s, h, raw = stack.request("POST", "/api/v1/chat/completions", three, key=stack.key, port=port)
            assert s == 200 and "alpha" not in h["x-agora-attempts"], h
    assert alpha.stats() == before
    assert learnt < 3
    # The deadline passes: a probe through each router finds alpha well again.
    time.sleep(max(0.0, 4.2 - (time.time() - t0)))
    for port in ports:
        s, h, raw = stack.request("POST", "/api/v1/chat/completions",
                                  dict(three, provider={"order": ["alpha"]}), key=stack.key, port=port)
        assert s == 200 and h["x-agora-attempts"] == "alpha=200", h
        assert wait_for(lambda: endpoint(port or stack.router_port, "alpha")["status"] == 0, 5)
