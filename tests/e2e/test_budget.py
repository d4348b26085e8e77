"""Prepaid credits through budget leases in Redis, shared by two routers:
concurrent requests never commit more than the account's credits (plus the
README's bound), the rest get 402 in the OpenRouter shape, the Redis counter
ends equal to what was billed, a top-up works within seconds, and steady
traffic takes its reservations with no round trip to Redis."""
import json
import subprocess
import threading
import time

from conftest import wait_for
from test_ratelimit import second_router

PROMPT_PRICE, COMPLETION_PRICE = 500000, 1000000      # test/solo, uusd per Mtok (conftest.py)


def worst_case(body):
    """What the router reserves: the body at ~4 bytes a token, plus max_tokens."""
    blen = len(json.dumps(body).encode())
    return (blen + 3) // 4 * PROMPT_PRICE // 1000 + body["max_tokens"] * COMPLETION_PRICE // 1000


def usd(nusd):
    return "%d.%09d" % divmod(nusd, 10 ** 9)


def new_account(stack, name, credits_nusd):
    acct = stack.ctl("account", "create", name, "--credits", usd(credits_nusd)).stdout.strip()
    key = stack.ctl("key", "create", name, "--name", name).stdout.strip()
    return int(acct), key


def redis_get(stack, key):
    out = subprocess.run(["redis-cli", "-p", str(stack.redis_port), "--raw", "GET", key],
                         capture_output=True, text=True).stdout.strip()
    return int(out) if out else None


def charges(stack, acct):
    """(generations billed, what the ledger charged) for the account."""
    return stack.sql("SELECT (SELECT count(*) FROM usage_events WHERE account_id = %s),"
                     " (SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE account_id = %s AND kind = 'usage')",
                     acct, acct)[0]


def burst(stack, key, body, n, ports):
    """n requests at once, spread over the routers; [(status, raw)]."""
    out, lock, gate = [], threading.Lock(), threading.Barrier(n)

    def one(i):
        gate.wait()
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=key, port=ports[i % len(ports)])
        with lock:
            out.append((s, raw))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


def assert_402_shape(raw):
    e = json.loads(raw)
    assert set(e) == {"error"} and e["error"]["code"] == 402, raw
    assert "insufficient credits" in e["error"]["message"], raw


def test_concurrent_requests_on_two_routers_stay_within_credits(stack):
    body = {"model": "test/solo", "max_tokens": 1000, "messages": [{"role": "user", "content": "x"}]}
    w = worst_case(body)
    credits = 10 * w + w // 2                 # room for 10 worst cases, not 11
    acct, key = new_account(stack, "budget-burst", credits)
    stack.mock("solo").config(ttft_ms=700)    # every request is in flight at once
    proc, port2 = second_router(stack)
    try:
        res = burst(stack, key, body, 40, [None, port2])
    finally:
        proc.terminate()
        proc.wait(10)
    ok = [raw for s, raw in res if s == 200]
    for s, raw in res:
        if s != 200:
            assert s == 402, raw
            assert_402_shape(raw)
    # All 40 were in flight together: each 200 holds a whole worst case,
    # and the mock's usage stays within it, so the bound adds nothing here.
    assert len(ok) * w <= credits, (len(ok), w, credits)
    # Leases do not strand much: near the end each router may refuse while
    # less than a worst case (or a lease being given back) sits unused.
    assert len(ok) >= 6, len(ok)
    # Billing: the ledger charges no more than the credits.
    assert wait_for(lambda: charges(stack, acct)[0] == len(ok), 15)
    n, charged = charges(stack, acct)
    assert charged <= credits
    # Leases go back after budget_lease_idle_ms: the counter is then exactly
    # what was spent (and billed).
    assert wait_for(lambda: redis_get(stack, "budget:{%d}" % acct) == charged, 10), \
        (redis_get(stack, "budget:{%d}" % acct), charged)


def test_costs_above_the_reservation_are_the_bound(stack):
    # Many one-letter words: the provider counts a token per word, the
    # reservation ~4 bytes a token, so each generation costs about twice
    # what it reserved. The README's bound: charges <= credits + the sum of
    # what generations cost above their reservation.
    body = {"model": "test/solo", "max_tokens": 1, "messages": [{"role": "user", "content": "a " * 400}]}
    w = worst_case(body)
    credits = 8 * w
    acct, key = new_account(stack, "budget-overshoot", credits)
    stack.mock("solo").config(ttft_ms=300)
    proc, port2 = second_router(stack)
    try:
        res = []
        for _ in range(3):
            res += burst(stack, key, body, 12, [None, port2])
    finally:
        proc.terminate()
        proc.wait(10)
    ok = [json.loads(raw) for s, raw in res if s == 200]
    for s, raw in res:
        if s != 200:
            assert s == 402, raw
            assert_402_shape(raw)
    assert ok
    costs = [round(b["usage"]["cost"] * 10 ** 9) for b in ok]
    assert all(c > w for c in costs), (costs, w)        # the case the bound is about
    assert wait_for(lambda: charges(stack, acct)[0] == len(ok), 15)
    n, charged = charges(stack, acct)
    assert charged == sum(costs)
    assert charged <= credits + sum(c - w for c in costs), (charged, credits, costs, w)
    # and what went above a reservation is still counted in Redis
    assert wait_for(lambda: redis_get(stack, "budget:{%d}" % acct) == charged, 10)


def test_top_up_works_within_seconds_on_every_router(stack):
    body = {"model": "test/solo", "max_tokens": 1000, "messages": [{"role": "user", "content": "x"}]}
    w = worst_case(body)
    acct, key = new_account(stack, "budget-topup", w // 2)
    proc, port2 = second_router(stack)
    try:
        for port in (None, port2):
            s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=key, port=port)
            assert s == 402, raw
            assert_402_shape(raw)
        stack.ctl("credits", "add", "budget-topup", usd(5 * w))
        t0 = time.time()
        for port in (None, port2):
            assert wait_for(lambda: stack.request("POST", "/api/v1/chat/completions", body, key=key,
                                                  port=port)[0] == 200, 5)
        assert time.time() - t0 < 5
    finally:
        proc.terminate()
        proc.wait(10)


def metric(stack, name):
    text = stack.request("GET", "/metrics")[2].decode()
    return int([l for l in text.splitlines() if l.startswith("agora_router_%s " % name)][0].split()[1])


def test_steady_traffic_does_not_wait_for_redis(stack):
    body = {"model": "test/solo", "max_tokens": 50, "messages": [{"role": "user", "content": "x"}]}
    assert stack.chat(body)[0] == 200         # the demo account's lease (may wait once)
    waits = metric(stack, "budget_waits")
    for _ in range(20):
        assert stack.chat(body)[0] == 200
    assert metric(stack, "budget_waits") == waits
