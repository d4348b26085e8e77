"""Every generation is metered once: router -> Redis stream -> billing ->
PostgreSQL, and events = ledger = rollups = key usage."""
import concurrent.futures
import json
import os
import re
import threading
import time
import urllib.request

from conftest import sse_events, wait_for


def totals(stack):
    return stack.sql(
        "SELECT (SELECT count(*) FROM usage_events), (SELECT coalesce(sum(cost_nusd), 0) FROM usage_events),"
        " (SELECT coalesce(-sum(amount_nusd), 0) FROM ledger WHERE kind = 'usage'),"
        " (SELECT coalesce(sum(cost_nusd), 0) FROM usage_daily),"
        " (SELECT coalesce(sum(requests), 0) FROM usage_daily),"
        " (SELECT coalesce(sum(usage_nusd), 0) FROM api_keys),"
        " (SELECT coalesce(sum(cost_nusd), 0) FROM usage_hourly),"
        " (SELECT coalesce(sum(requests), 0) FROM usage_hourly),"
        " (SELECT coalesce(sum(completion_tokens), 0) FROM usage_events),"
        " (SELECT coalesce(sum(completion_tokens), 0) FROM usage_hourly)")[0]


def sums_agree(t):
    """totals(): events = ledger = daily and hourly rollups = key usage, in money and requests."""
    events, ev_cost, ledger, rollup, rollup_reqs, key_usage, hourly, hourly_reqs, ev_ct, hourly_ct = t
    assert ev_cost == ledger == rollup == key_usage == hourly
    assert rollup_reqs == events == hourly_reqs


def stream_writer(stack, prefix):
    """For events written to the stream by hand: (redis client, tag: a
    generation id prefix of this run, ev(gid, **kw): an event of the
    stack's inference key, now)."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    acct, key = stack.sql("SELECT account_id, id FROM api_keys WHERE kind = 'inference' LIMIT 1")[0]
    now = int(time.time() * 1000)
    return r, "%s-%d" % (prefix, now), lambda gid, **kw: usage_event(acct, key, gid, now, **kw)


def billing_metric(stack, name):
    """A counter of agora-billing's /metrics, as an int."""
    raw = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % stack.billing_port, timeout=5).read().decode()
    return int(float(re.search(r"^%s (\S+)$" % name, raw, re.M).group(1)))


def usage_event(acct, key, gid, now, **kw):
    """A usage event as a router writes it (JSON) at now, with kw's members over the defaults."""
    e = {"id": gid, "ts": now, "account": acct, "key": key, "model": "test/three", "author": "test",
         "provider": "alpha", "endpoint": 1, "pt": 10, "ct": 20, "cost": 777, "pcost": 700,
         "latency_ms": 50, "ttft_ms": 10, "tps_milli": 1000, "stream": False, "estimated": False,
         "status": 200, "attempts": 1, "finish": "stop"}
    e.update(kw)
    return json.dumps(e)


def test_n_requests_n_events_and_sums_agree(stack):
    before = totals(stack)
    ids, lock = [], threading.Lock()

    def one(i):
        body = {"model": "test/three", "stream": bool(i % 2), "messages": [{"role": "user", "content": "m %d" % i}]}
        s, h, raw = stack.chat(body, headers={"X-Title": "metering-test"})
        assert s == 200
        with lock:
            ids.append(s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(30)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(ids) == 30
    assert wait_for(lambda: totals(stack)[0] - before[0] >= 30, 15)
    after = totals(stack)
    assert after[0] - before[0] == 30
    events, ev_cost, ledger, rollup, rollup_reqs, key_usage, hourly, hourly_reqs, ev_ct, hourly_ct = after
    assert ev_cost == ledger == rollup == key_usage == hourly
    assert rollup_reqs == events == hourly_reqs
    assert ev_ct == hourly_ct
    apps = stack.sql("SELECT count(*) FROM usage_events WHERE app_title = 'metering-test'")[0][0]
    assert apps == 30


def test_billed_entries_leave_the_stream(stack):
    """agora-billing trims what it billed (XTRIM MINID below the group's
    oldest pending entry): of the 150 entries (and whatever earlier tests
    added), whole stream nodes (100 entries each) are gone once billed."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    added = r.xinfo_stream("usage")["entries-added"] if r.exists("usage") else 0
    for i in range(150):       # sequential: billing sees small batches, then trims
        assert stack.chat({"model": "test/solo", "messages": [{"role": "user", "content": "t %d" % i}]})[0] == 200
    # events reach Redis up to metering_flush_ms after their answers
    assert wait_for(lambda: r.xinfo_stream("usage")["entries-added"] - added >= 150, 5)
    info = r.xinfo_stream("usage")
    assert wait_for(lambda: r.xlen("usage") < 120, 15), (r.xlen("usage"), info["entries-added"],
                                                           r.xpending("usage", "billing"))
    pending = r.xpending("usage", "billing")["pending"]
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 15), pending


def test_a_burst_leaves_the_stream_once_billed(stack):
    """A burst far larger than what one XTRIM removes (Redis's approximate
    trim stops at 100 nodes' worth: 10,000 entries) still leaves the stream
    once billed, though no more traffic follows to trim again."""
    r, tag, ev = stream_writer(stack, "gen-burst")
    n = 30000
    for i in range(0, n, 5000):
        p = r.pipeline(transaction=False)
        for j in range(i, i + 5000):
            p.xadd("usage", {"e": ev("%s-%d" % (tag, j), pt=1, ct=1, cost=1, pcost=1)})
        p.execute()
    billed = lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id LIKE %s", tag + "%")[0][0]
    assert wait_for(lambda: billed() == n, 60), billed()
    assert wait_for(lambda: r.xlen("usage") < 1000, 30), r.xlen("usage")


def test_generation_ids_match_responses(stack):
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "x"}]})
    assert s == 200
    rows = wait_for(lambda: stack.sql("SELECT provider_id, prompt_tokens, completion_tokens, cost_nusd FROM usage_events"
                                      " WHERE generation_id = %s", body["id"]), 10)
    assert rows[0][0] == "solo"
    assert rows[0][1] == body["usage"]["prompt_tokens"] and rows[0][2] == body["usage"]["completion_tokens"]
    # it lives in its month's partition, made ahead of time (this month and the next two)
    part = stack.sql("SELECT tableoid::regclass::text FROM usage_events WHERE generation_id = %s", body["id"])[0][0]
    assert part == "usage_events_" + time.strftime("%Y%m", time.gmtime())
    parts = [r[0] for r in stack.sql("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
                                     " WHERE i.inhparent = 'usage_events'::regclass")]
    assert len([p for p in parts if p != "usage_events_default"]) >= 3


def test_no_prompt_text_stored(stack):
    canary = "canary-7f3a9d-do-not-store"
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": canary}]})
    assert s == 200
    wait_for(lambda: stack.sql("SELECT 1 FROM usage_events WHERE generation_id = %s", body["id"]), 10)
    for table in ("usage_events", "ledger", "usage_daily", "api_keys", "accounts"):
        rows = stack.sql("SELECT t::text FROM %s t" % table)
        assert canary not in repr(rows), table
    for log in ("router", "billing"):
        assert canary not in stack.log(log)


def test_generation_and_credits_match_the_ledger(stack):
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "x"}]},
                              headers={"X-Title": "gen-test"})
    assert s == 200
    gid = body["id"]
    s, g = wait_for(lambda: (lambda r: r if r[0] == 200 else None)(stack.get("/api/v1/generation?id=" + gid, key=stack.key)), 10)
    d = g["data"]
    assert d["id"] == gid and d["model"] == "test/solo" and d["provider_name"] == "Solo AI"
    assert d["tokens_prompt"] == body["usage"]["prompt_tokens"]
    assert d["tokens_completion"] == body["usage"]["completion_tokens"]
    assert d["total_cost"] == body["usage"]["cost"]
    assert d["app"] == "gen-test" and d["attempts"] == 1 and d["streamed"] is False
    assert [(t["provider"], t["status"]) for t in d["provider_responses"]] == [("solo", 200)]
    cost = stack.sql("SELECT cost_nusd FROM usage_events WHERE generation_id = %s", gid)[0][0]
    assert round(d["total_cost"] * 1e9) == cost
    # the ledger charges the account its events' sum, in entries per billing batch and day
    ev, led, gens = stack.sql(
        "SELECT (SELECT sum(cost_nusd) FROM usage_events e JOIN accounts a ON a.id = e.account_id"
        "  WHERE a.name = 'demo'),"
        " (SELECT -sum(amount_nusd) FROM ledger l JOIN accounts a ON a.id = l.account_id"
        "  WHERE a.name = 'demo' AND kind = 'usage'),"
        " (SELECT sum(generations) FROM ledger l JOIN accounts a ON a.id = l.account_id"
        "  WHERE a.name = 'demo' AND kind = 'usage')")[0]
    assert ev == led
    assert gens == stack.sql("SELECT count(*) FROM usage_events e JOIN accounts a ON a.id = e.account_id"
                             " WHERE a.name = 'demo'")[0][0]
    # another account cannot see it
    other = stack.ctl("key", "create", "operator", "--name", "other").stdout.strip()
    s, e = stack.get("/api/v1/generation?id=" + gid, key=other)
    assert s == 404
    s, e = stack.get("/api/v1/generation?id=" + gid)
    assert s == 401
    # credits = what the ledger says for this account
    s, c = stack.get("/api/v1/credits", key=stack.key)
    assert s == 200
    credits, usage = stack.sql(
        "SELECT coalesce(sum(amount_nusd) FILTER (WHERE kind <> 'usage'), 0),"
        " coalesce(-sum(amount_nusd) FILTER (WHERE kind = 'usage'), 0) FROM ledger l"
        " JOIN accounts a ON a.id = l.account_id WHERE a.name = 'demo'")[0]
    assert round(c["data"]["total_credits"] * 1e9) == credits
    assert round(c["data"]["total_usage"] * 1e9) == usage


def test_402_when_credits_or_key_limit_cannot_cover(stack):
    stack.ctl("account", "create", "poor", "--credits", "0.000001", "--if-missing")
    poor = stack.ctl("key", "create", "poor", "--name", "poor").stdout.strip()
    body = {"model": "test/solo", "max_tokens": 100, "messages": [{"role": "user", "content": "x"}]}
    s, h, raw = stack.chat(body, key=poor)
    assert s == 402, raw
    e = json.loads(raw)["error"]
    assert e["code"] == 402 and "insufficient credits" in e["message"]
    # a top-up makes it work (after the key cache's TTL at most)
    stack.ctl("credits", "add", "poor", "5")
    assert wait_for(lambda: stack.chat(body, key=poor)[0] == 200, 5)
    # a key limit below the worst case refuses, with the same shape
    limited = stack.ctl("key", "create", "demo", "--name", "limited", "--limit", "0.0001").stdout.strip()
    s, h, raw = stack.chat(body, key=limited)
    assert s == 402 and "credit limit" in json.loads(raw)["error"]["message"]
    s, h, raw = stack.chat(dict(body, max_tokens=1), key=limited)
    assert s == 200


def test_statement_adds_up(stack):
    out = stack.ctl("statement", "demo", "--from", "2000-01-01", "--to", "2100-01-01")
    assert "WARNING" not in out.stderr
    closing = [l for l in out.stdout.splitlines() if l.startswith("closing balance:")][0]
    balance, ledger = stack.sql("SELECT balance_nusd, (SELECT sum(amount_nusd) FROM ledger l WHERE l.account_id = a.id)"
                                " FROM accounts a WHERE name = 'demo'")[0]
    assert balance == ledger
    from decimal import Decimal
    assert Decimal(closing.split()[2]) * 10 ** 9 == ledger


def test_live_counters_per_minute(stack):
    import redis
    r = redis.Redis(port=stack.redis_port, decode_responses=True)
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "live"}]})
    assert s == 200
    key = "live:%d" % (body["created"] // 60)
    assert wait_for(lambda: r.hget(key, "r|test/solo|solo"), 5)
    assert int(r.hget(key, "t|test/solo|solo")) >= body["usage"]["total_tokens"]
    assert 0 < r.ttl(key) <= 7200
    assert all(f.split("|")[0] in ("r", "t") for f in r.hkeys(key))   # counts only, no text


def test_entries_that_are_not_usage_events_are_skipped(stack):
    """agora-billing reads each event into columns (billing/evcols.c): an
    entry that is not JSON, lacks a field the tables require, has a number
    that is no integer or a `tried` PostgreSQL refuses (found on the re-read
    after the refused batch) is acknowledged and skipped; the good events
    beside them, escapes decoded, are billed once and the sums agree."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    acct, key = stack.sql("SELECT account_id, id FROM api_keys WHERE kind = 'inference' LIMIT 1")[0]
    now = int(time.time() * 1000)

    def ev(gid, **kw):
        e = {"id": gid, "ts": now, "account": acct, "key": key, "app_title": "caf\u00e9 \U0001F600", "model": "test/three",
             "author": "test", "provider": "alpha", "endpoint": 1, "pt": 10, "ct": 20, "cost": 1234, "pcost": 1000,
             "latency_ms": 50, "ttft_ms": 10, "tps_milli": 1000, "stream": False, "estimated": False, "status": 200,
             "attempts": 1, "finish": "stop"}
        e.update(kw)
        return json.dumps(e)

    tag = "gen-evcols-%d" % now
    before = totals(stack)
    p = r.pipeline(transaction=False)
    p.xadd("usage", {"e": ev(tag + "-a")})
    p.xadd("usage", {"e": "not json"})
    p.xadd("usage", {"e": ev(tag + "-b", pt=1.5)})
    noid = json.loads(ev("x"))
    del noid["id"]
    p.xadd("usage", {"e": json.dumps(noid)})
    p.xadd("usage", {"e": ev(tag + "-c").replace('"finish": "stop"', '"tried": [1 2], "finish": "stop"')})
    p.xadd("usage", {"e": ev(tag + "-d", tried=[{"model": "test/three", "provider": "beta", "endpoint_id": 2},
                                                 {"model": "test/three", "provider": "alpha", "endpoint_id": 1}],
                             attempts=2)})
    p.xadd("usage", {"e": ev(tag + "-a")})                    # a redelivery: billed once
    p.execute()
    assert wait_for(lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id LIKE %s",
                                      tag + "%")[0][0] >= 2, 20)
    assert wait_for(lambda: all((g.get("pending") or 0) == 0 and (g.get("lag") or 0) == 0
                                for g in r.xinfo_groups("usage")), 20)
    rows = stack.sql("SELECT generation_id, app_title, attempts, provider_responses IS NOT NULL FROM usage_events"
                     " WHERE generation_id LIKE %s ORDER BY 1", tag + "%")
    assert rows == [(tag + "-a", "caf\u00e9 \U0001F600", 1, False), (tag + "-d", "caf\u00e9 \U0001F600", 2, True)]
    after = totals(stack)
    assert after[0] - before[0] == 2
    sums_agree(after)


def test_events_billed_before_are_billed_once_beside_new_ones(stack):
    """Billing writes a batch's events with a plain INSERT (the primary key
    is checked anyway) and, when PostgreSQL answers that one of them was
    billed before (23505, unique_violation), writes the same batch again with
    ON CONFLICT DO NOTHING. Events billed before sent again beside new ones
    (as a router's spool replay can), and an event twice in one entry: every
    generation billed once, the sums agree, the second try counted."""
    r, tag, ev = stream_writer(stack, "gen-again")
    billed = lambda: sorted(g for (g,) in stack.sql("SELECT generation_id FROM usage_events"
                                                    " WHERE generation_id LIKE %s", tag + "%"))
    drained = lambda: r.xpending("usage", "billing")["pending"] == 0 and all(
        (g.get("lag") or 0) == 0 for g in r.xinfo_groups("usage"))
    before = totals(stack)
    r.execute_command("XADD", "usage", "*", "ev", ev(tag + "-a"), "ev", ev(tag + "-b"))
    assert wait_for(lambda: len(billed()) == 2 and drained(), 20), stack.log("billing")[-2000:]
    retries0 = billing_metric(stack, "agora_billing_conflict_retries_total")
    dups0 = billing_metric(stack, "agora_billing_events_duplicate_total")
    r.execute_command("XADD", "usage", "*", "ev", ev(tag + "-a"), "ev", ev(tag + "-c"), "ev", ev(tag + "-b"),
                      "ev", ev(tag + "-d"), "ev", ev(tag + "-d"))
    assert wait_for(lambda: len(billed()) == 4 and drained(), 20), stack.log("billing")[-2000:]
    assert billed() == sorted(tag + s for s in ("-a", "-b", "-c", "-d"))
    assert billing_metric(stack, "agora_billing_conflict_retries_total") - retries0 == 1
    assert billing_metric(stack, "agora_billing_events_duplicate_total") - dups0 == 3
    after = totals(stack)
    assert after[0] - before[0] == 4
    assert after[1] - before[1] == 4 * 777
    sums_agree(after)
    assert r.xlen("usage:dead") == 0 or not any(tag.encode() in e[1].get(b"e", b"") for e in r.xrange("usage:dead"))


def raw_chat(stack, title_bytes):
    """A completion whose X-Title header is title_bytes, sent as they are
    (http.client would encode a str as Latin-1): its generation id."""
    import socket
    body = json.dumps({"model": "test/solo", "messages": [{"role": "user", "content": "utf8"}]}).encode()
    req = (b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + stack.key.encode() +
           b"\r\nContent-Type: application/json\r\nX-Title: " + title_bytes +
           b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    with socket.create_connection(("127.0.0.1", stack.router_port), timeout=30) as s:
        s.sendall(req)
        raw = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            raw += chunk
    head, _, payload = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), raw[:300]
    return json.loads(payload)["id"]


def test_titles_not_utf8_are_billed(stack):
    """An X-Title that is not UTF-8 (a lead byte 0xF5, which billing once took
    for a 3-byte start: PostgreSQL refused the batch again and again) and a
    CJK title longer than the router's 200 bytes (cut mid-character, which
    billing once refused: a generation never billed) are both billed, and
    events = ledger = rollups."""
    before = totals(stack)
    bad = raw_chat(stack, b"\xf5\x80\x80")
    cjk = raw_chat(stack, "\u4e2d\u6587\u6807\u9898".encode() * 20)   # 240 bytes: cut at 200
    rows = lambda: stack.sql("SELECT generation_id, app_title FROM usage_events WHERE generation_id IN (%s, %s)",
                             bad, cjk)
    assert wait_for(lambda: len(rows()) == 2, 15), (rows(), stack.log("billing")[-2000:])
    titles = dict(rows())
    assert titles[bad] == "\ufffd" * 3
    assert titles[cjk] == ("\u4e2d\u6587\u6807\u9898" * 20)[:66]          # 198 bytes: whole characters
    assert wait_for(lambda: totals(stack)[0] - before[0] == 2, 10)
    sums_agree(totals(stack))


def test_refused_entry_goes_to_the_dead_letter_stream(stack):
    """An entry billing cannot bill (a required field missing, a number that
    is no integer) is copied to `usage:dead` before it is acknowledged, and
    billing goes on."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    dead0 = r.xlen("usage:dead")
    before = totals(stack)
    bad1 = r.xadd("usage", {"e": json.dumps({"id": "gen-dead-1", "ts": int(time.time() * 1000)})})
    bad2 = r.xadd("usage", {"e": '{"id":"gen-dead-2","pt":1.5}', "x": "y"})
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "after"}]})
    assert s == 200
    assert wait_for(lambda: r.xlen("usage:dead") - dead0 >= 2, 15), stack.log("billing")[-2000:]
    dead = {e[1][b"dead_id"]: e[1] for e in r.xrange("usage:dead")}
    assert dead[bad1][b"dead_stream"] == b"usage" and b"gen-dead-1" in dead[bad1][b"e"]
    assert dead[bad2][b"e"] == b'{"id":"gen-dead-2","pt":1.5}' and dead[bad2][b"x"] == b"y"
    assert wait_for(lambda: stack.sql("SELECT 1 FROM usage_events WHERE generation_id = %s", body["id"]), 10)
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 10)   # acknowledged
    log = stack.log("billing")
    assert bad1.decode() in log and "usage:dead" in log
    after = totals(stack)
    assert after[0] - before[0] == 1 and after[1] == after[2] == after[3]


def test_events_held_by_metering_flush_ms_are_all_billed(stack):
    """metering_flush_ms > 0: events wait up to that long and go to Redis
    together; every one is billed, also those still held when SIGTERM
    comes (the drain waits for them)."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    proc, port = stack.extra_router("flush", AGORA_METERING_FLUSH_MS="1000")

    def one(i):
        body = {"model": "test/solo", "stream": bool(i % 2), "messages": [{"role": "user", "content": "f %d" % i}]}
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=stack.key, port=port)
        assert s == 200
        return json.loads(sse_events(raw)[0] if i % 2 else raw)["id"]
    added = r.xinfo_stream("usage")["entries-added"]
    try:
        with concurrent.futures.ThreadPoolExecutor(30) as ex:
            ids = list(ex.map(one, range(30)))
        assert r.xinfo_stream("usage")["entries-added"] - added < 30    # some are still held
        proc.terminate()                      # the drain sends them at once
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wait_for(lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id = ANY(%s)",
                                      ids)[0][0] == 30, 15)
    # sent together: several events a stream entry (XADD usage * ev <event> ev <event> ...)
    assert r.xinfo_stream("usage")["entries-added"] - added < 30


def test_entry_postgresql_refuses_is_set_apart(stack):
    """An event whose fields have the right types but that PostgreSQL still
    refuses (a time before 4713 BC, an id too long for the primary key's
    index) no longer stalls its
    shard: once the batch has been refused twice, its entries are billed one
    at a time, each one refused alone goes to `usage:dead` with
    PostgreSQL's reason, and the good events beside them are billed once."""
    r, tag, ev = stream_writer(stack, "gen-pgref")
    dead0 = r.xlen("usage:dead")
    before = totals(stack)
    p = r.pipeline(transaction=False)
    p.xadd("usage", {"e": ev(tag + "-a")})
    p.xadd("usage", {"e": ev(tag + "-old", ts=-9 * 10**15)})
    p.xadd("usage", {"e": ev(tag + "-b")})
    import base64
    long_id = tag + "-long-" + base64.b64encode(os.urandom(6000)).decode()   # no compression gets it under 2.7 kB
    p.xadd("usage", {"e": ev(long_id)})
    p.xadd("usage", {"e": ev(tag + "-c")})
    ids = p.execute()
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "after refused"}]})
    assert s == 200
    billed = lambda: [g for (g,) in stack.sql("SELECT generation_id FROM usage_events WHERE generation_id LIKE %s"
                                              " OR generation_id = %s ORDER BY 1", tag + "%", body["id"])]
    assert wait_for(lambda: len(billed()) == 4, 30), (billed(), stack.log("billing")[-3000:])
    assert sorted(billed()) == sorted([tag + "-a", tag + "-b", tag + "-c", body["id"]])
    assert wait_for(lambda: r.xlen("usage:dead") - dead0 >= 2, 10)
    time.sleep(1.5)                                     # a second copy would be there by now
    copies = r.xrange("usage:dead")[dead0:]
    assert sorted(e[1][b"dead_id"] for e in copies) == sorted([ids[1], ids[3]]), copies
    dead = {e[1][b"dead_id"]: e[1] for e in copies}
    for i in (ids[1], ids[3]):
        assert dead[i][b"dead_stream"] == b"usage"
        assert dead[i][b"dead_reason"].startswith(b"refused by PostgreSQL"), dead[i]
    assert b"-old" in dead[ids[1]][b"e"] and long_id.encode() in dead[ids[3]][b"e"]
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 10)
    after = totals(stack)
    assert after[0] - before[0] == 4
    sums_agree(after)


def test_entry_of_several_events_with_one_refused_is_split(stack):
    """A router writes the events a loop turn finishes as one stream entry
    (fields ev, ev, ...). When one of them is refused (by billing's checks or
    by PostgreSQL), the entry's events go back to the stream one an entry
    (`split_from` = the entry), and are billed or set apart alone: the
    refused one alone reaches `usage:dead`, the others are billed once."""
    r, tag, ev = stream_writer(stack, "gen-split")

    def metric():
        return billing_metric(stack, "agora_billing_split_entries_total")
    dead0, split0 = r.xlen("usage:dead"), metric()
    before = totals(stack)
    # as a router sends them: one XADD, several fields ev
    pg_refuses = r.execute_command("XADD", "usage", "*", "ev", ev(tag + "-a"), "ev", ev(tag + "-old", ts=-9 * 10**15),
                                   "ev", ev(tag + "-b"))
    checks_refuse = r.execute_command("XADD", "usage", "*", "ev", ev(tag + "-c"), "ev", ev(tag + "-frac", pt=1.5),
                                      "ev", ev(tag + "-d"))
    billed = lambda: sorted(g for (g,) in stack.sql("SELECT generation_id FROM usage_events"
                                                    " WHERE generation_id LIKE %s", tag + "%"))
    assert wait_for(lambda: len(billed()) == 4, 30), (billed(), stack.log("billing")[-3000:])
    assert billed() == sorted(tag + s for s in ("-a", "-b", "-c", "-d"))
    assert wait_for(lambda: r.xlen("usage:dead") - dead0 >= 2, 15), stack.log("billing")[-3000:]
    time.sleep(1.5)                                     # a second copy would be there by now
    copies = [e[1] for e in r.xrange("usage:dead")[dead0:]]
    assert len(copies) == 2, copies
    by_event = {json.loads(c[b"e"])["id"]: c for c in copies}
    assert sorted(by_event) == [tag + "-frac", tag + "-old"]
    assert by_event[tag + "-old"][b"split_from"] == pg_refuses
    assert by_event[tag + "-old"][b"dead_reason"].startswith(b"refused by PostgreSQL")
    assert by_event[tag + "-frac"][b"split_from"] == checks_refuse
    assert metric() - split0 == 2
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 10)
    after = totals(stack)
    assert after[0] - before[0] == 4
    sums_agree(after)


def test_postgresql_refusing_everything_sets_nothing_apart(stack):
    """When PostgreSQL refuses every event (a schema fault, here a trigger
    raising check_violation), billing sets no event apart: an entry refused
    alone is set apart only when PostgreSQL takes an event it billed before
    (the probe, which PostgreSQL rolls back), and here it refuses that too. Billing stalls
    and retries, and once the fault is mended every event is billed. A lone
    entry PostgreSQL refuses, the fault mended, is set apart at once."""
    import redis
    r = redis.Redis(port=stack.redis_port)
    acct, key = stack.sql("SELECT account_id, id FROM api_keys WHERE kind = 'inference' LIMIT 1")[0]
    now = int(time.time() * 1000)
    tag = "gen-refall-%d" % now
    ev = {"ts": now, "account": acct, "key": key, "model": "test/three", "author": "test", "provider": "alpha",
          "endpoint": 1, "pt": 1, "ct": 2, "cost": 5, "pcost": 4, "latency_ms": 5, "ttft_ms": 1, "tps_milli": 1,
          "stream": False, "estimated": False, "status": 200, "attempts": 1, "finish": "stop"}
    dead0 = r.xlen("usage:dead")
    log0 = len(stack.log("billing"))
    said = lambda: stack.log("billing")[log0:].count("the fault is not the entries'")
    probe_rows = lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id LIKE 'agora-billing-probe-%%'")[0][0]
    # billing has an event it billed to probe with, whatever ran before
    s0, b0 = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "before the fault"}]})
    assert s0 == 200
    assert wait_for(lambda: stack.sql("SELECT 1 FROM usage_events WHERE generation_id = %s", b0["id"]), 10)
    stack.sql("CREATE FUNCTION agora_test_refuse() RETURNS trigger LANGUAGE plpgsql AS"
              " $$BEGIN RAISE EXCEPTION 'test: refuse all' USING ERRCODE = 'check_violation'; END$$")
    stack.sql("CREATE TRIGGER agora_test_refuse BEFORE INSERT ON usage_events"
              " FOR EACH ROW EXECUTE FUNCTION agora_test_refuse()")
    try:
        p = r.pipeline(transaction=False)
        for i in range(12):
            p.xadd("usage", {"e": json.dumps(dict(ev, id="%s-%02d" % (tag, i)))})
        p.execute()
        assert wait_for(lambda: said() >= 1, 20), stack.log("billing")[-2000:]
        time.sleep(2.5)                         # retries: nothing set apart, and said once
        assert r.xlen("usage:dead") == dead0
        assert r.xpending("usage", "billing")["pending"] == 12
        assert said() == 1
    finally:
        stack.sql("DROP TRIGGER agora_test_refuse ON usage_events")
        stack.sql("DROP FUNCTION agora_test_refuse()")
    billed = lambda: stack.sql("SELECT count(*) FROM usage_events WHERE generation_id LIKE %s", tag + "%")[0][0]
    assert wait_for(lambda: billed() == 12, 15), stack.log("billing")[-2000:]
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 10)
    assert r.xlen("usage:dead") == dead0
    # the probe left nothing behind (rolled back)
    assert probe_rows() == 0
    # a lone entry PostgreSQL refuses: the probe passes, it is set apart
    old = r.xadd("usage", {"e": json.dumps(dict(ev, id=tag + "-old", ts=-9 * 10**15))})
    assert wait_for(lambda: r.xlen("usage:dead") - dead0 == 1, 15), stack.log("billing")[-2000:]
    last = r.xrange("usage:dead")[-1][1]
    assert last[b"dead_id"] == old and last[b"dead_reason"].startswith(b"refused by PostgreSQL")
    assert wait_for(lambda: r.xpending("usage", "billing")["pending"] == 0, 10)
    assert probe_rows() == 0
    s, body = stack.chat_json({"model": "test/solo", "messages": [{"role": "user", "content": "after the fault"}]})
    assert s == 200
    assert wait_for(lambda: stack.sql("SELECT 1 FROM usage_events WHERE generation_id = %s", body["id"]), 10)
