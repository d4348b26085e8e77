"""Chat completions through the router: shapes, streaming, pass-through,
fail-over, TLS upstreams, client disconnects."""
import json
import socket
import threading
import time
from decimal import Decimal

from conftest import THREE, sse_events, wait_for

# sort by price: the cheapest (alpha) first, so fail-over order is known; the
# default load balancing has tests of its own (test_routing.py).
HELLO = {"model": "test/three", "messages": [{"role": "user", "content": "Hello there"}],
         "provider": {"sort": "price"}}


def expected_cost(usage, provider):
    _, pp, cp = THREE[provider]
    nusd = usage["prompt_tokens"] * pp // 1000 + usage["completion_tokens"] * cp // 1000
    return Decimal(nusd) / Decimal(10 ** 9)


def test_non_streaming_shape_and_exact_cost(stack):
    s, h, raw = stack.chat(HELLO)
    assert s == 200, raw
    body = json.loads(raw, parse_float=Decimal)
    assert body["id"].startswith("gen-")
    assert body["object"] == "chat.completion"
    assert body["model"] == "test/three"
    assert body["provider"] == "Alpha AI"          # the cheapest endpoint
    assert body["choices"][0]["message"]["content"].startswith("Hello from alpha")
    u = body["usage"]
    assert u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"] > 0
    assert u["cost"] == expected_cost(u, "alpha")   # exact, from integer nano-USD
    assert h["content-type"] == "application/json"


def test_v1_alias_and_unique_ids(stack):
    ids = set()
    for path in ("/v1/chat/completions", "/api/v1/chat/completions"):
        for _ in range(3):
            s, h, raw = stack.chat(HELLO, path=path)
            assert s == 200
            ids.add(json.loads(raw)["id"])
    assert len(ids) == 6


def test_streaming_with_usage(stack):
    body = dict(HELLO, stream=True, stream_options={"include_usage": True})
    s, h, raw = stack.chat(body)
    assert s == 200
    assert h["content-type"].startswith("text/event-stream")
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e, parse_float=Decimal) for e in events[:-1]]
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("gen-")
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "test/three" for c in chunks)
    assert all(c["provider"] == "Alpha AI" for c in chunks)
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text.startswith("Hello from alpha")
    assert any(c["choices"] and c["choices"][0]["finish_reason"] == "stop" for c in chunks)
    usage = [c for c in chunks if c.get("usage")]
    assert len(usage) == 1 and usage[0]["choices"] == [] and usage is not None
    assert usage[0]["usage"]["cost"] == expected_cost(usage[0]["usage"], "alpha")


def test_streaming_without_usage_has_no_usage_chunk(stack):
    s, h, raw = stack.chat(dict(HELLO, stream=True))
    assert s == 200
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks and not any("usage" in c for c in chunks)
    # ...but the provider was asked for usage all the same, so it is metered
    last = stack.mock("alpha").stats()["last_request"]
    assert last["stream_options"] == {"include_usage": True}


def test_parameters_pass_through_and_keys(stack):
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    body = dict(HELLO, temperature=0.25, top_p=0.5, max_tokens=7, stop=["END"], seed=42,
                tools=tools, tool_choice="auto", response_format={"type": "json_object"},
                provider={"sort": "price"}, models=["test/three"])
    s, h, raw = stack.chat(body)
    assert s == 200, raw
    st = stack.mock("alpha").stats()
    sent = st["last_request"]
    assert sent["model"] == "up-alpha-three"
    for k in ("temperature", "top_p", "max_tokens", "stop", "seed", "tools", "tool_choice", "response_format"):
        assert sent[k] == body[k], k
    assert "provider" not in sent and "models" not in sent
    assert st["last_headers"]["authorization"] == "Bearer " + stack.provider_keys["TEST_KEY_ALPHA"]
    assert stack.key not in json.dumps(st)
    msg = json.loads(raw)["choices"][0]
    assert msg["finish_reason"] == "tool_calls"
    assert msg["message"]["tool_calls"][0]["function"]["name"] == "get_weather"


def test_failover_on_500_and_reset(stack):
    for mode in ("500", "reset", "429", "garbage"):
        stack.mock("alpha").config(fail=mode)
        s, body = stack.chat_json(HELLO)
        assert s == 200, (mode, body)
        assert body["provider"] == "Beta AI", mode
        assert body["usage"]["cost"] == float(expected_cost(body["usage"], "beta"))
    assert stack.mock("alpha").stats()["requests"] >= 4


def test_failover_to_https_provider(stack):
    stack.mock("alpha").config(fail="500")
    stack.mock("beta").config(fail="reset")
    s, body = stack.chat_json(HELLO)
    assert s == 200, body
    assert body["provider"] == "Gamma AI"           # verified TLS with the stack's CA
    s, h, raw = stack.chat(dict(HELLO, stream=True))
    assert s == 200 and sse_events(raw)[-1] == "[DONE]"


def test_streaming_failover_before_first_byte(stack):
    stack.mock("alpha").config(fail="garbage")
    s, h, raw = stack.chat(dict(HELLO, stream=True))
    assert s == 200
    chunks = [json.loads(e) for e in sse_events(raw)[:-1]]
    assert chunks[0]["provider"] == "Beta AI"


def test_cut_stream_ends_with_error_event(stack):
    stack.mock("solo").config(fail="cut", words=20)
    s, h, raw = stack.chat({"model": "test/solo", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert s == 200                                  # bytes had reached the client: no retry
    events = sse_events(raw)
    assert events[-1] != "[DONE]"
    last = json.loads(events[-1])
    assert last["error"]["code"] == 502


def _open_stream(stack, model="test/solo"):
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "x"}]})
    sock = socket.create_connection(("127.0.0.1", stack.router_port), timeout=10)
    sock.sendall(("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (stack.key, len(body), body)).encode())
    got = b""
    while b"data: " not in got:
        chunk = sock.recv(4096)
        assert chunk, "stream ended early"
        got += chunk
    return sock


def test_client_disconnect_cancels_upstream(stack):
    solo = stack.mock("solo")
    solo.config(tps=5, words=100)
    sock = _open_stream(stack)
    before = solo.stats()["aborted_streams"]
    sock.close()
    assert wait_for(lambda: solo.stats()["aborted_streams"] > before, 5), "upstream stream not closed"
    # the router keeps serving others meanwhile
    s, body = stack.chat_json(HELLO)
    assert s == 200


def test_slow_streams_do_not_block_others(stack):
    stack.mock("solo").config(tps=2, words=10)
    socks = [_open_stream(stack) for _ in range(5)]
    t0 = time.time()
    for _ in range(10):
        s, _ = stack.chat_json(HELLO)
        assert s == 200
    assert time.time() - t0 < 5
    for s in socks:
        s.close()


def test_concurrent_requests(stack):
    results = []

    def one(i):
        s, h, raw = stack.chat(dict(HELLO, stream=bool(i % 2)))
        results.append(s)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [200] * 40


def test_provider_preferences(stack):
    def who(provider, model="test/three"):
        s, body = stack.chat_json(dict(HELLO, model=model, provider=provider))
        return s, body.get("provider") or body["error"]["message"]

    assert who({"order": ["gamma", "alpha"]}) == (200, "Gamma AI")
    assert who({"only": ["Beta AI"]}) == (200, "Beta AI")
    assert who({"ignore": ["alpha"], "sort": "price"}) == (200, "Beta AI")
    assert who({"data_collection": "deny"}) == (200, "Alpha AI")
    assert who({"max_price": {"prompt": 0.05}})[0] == 404
    assert who({"sort": "price"}, model="test/three:floor") == (200, "Alpha AI")
    s, msg = who({"order": "alpha"})
    assert s == 400 and "provider.order" in msg
    # no fallback: the ordered provider fails, and nothing else is tried
    stack.mock("beta").config(fail="500")
    s, msg = who({"order": ["beta"], "allow_fallbacks": False})
    assert s == 502
    assert who({"order": ["beta"]}) == (200, "Alpha AI")


def test_speed_sorts_use_measured_speeds(stack):
    """On a fresh router (health from the priors, and no fleet averages for
    a minute), so that no earlier test's history weighs on the averages."""
    proc, port = stack.extra_router("router-speeds", AGORA_HEALTH_SYNC_MS="60000")

    def chat(body):
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=stack.key, port=port)
        return s, raw

    try:
        stack.mock("alpha").config(ttft_ms=300, tps=20)      # cheapest, but slow
        for name in ("alpha", "beta", "gamma"):
            for _ in range(2):
                s, raw = chat(dict(HELLO, stream=True, provider={"only": [name]}))
                assert s == 200
        s, raw = chat(dict(HELLO, provider={"sort": "latency"}))
        assert s == 200 and json.loads(raw)["provider"] != "Alpha AI"
        s, raw = chat(dict(HELLO, model="test/three:nitro"))
        assert s == 200 and json.loads(raw)["provider"] != "Alpha AI"
        s, raw = chat(HELLO)                                  # sort "price" stays by price
        assert s == 200 and json.loads(raw)["provider"] == "Alpha AI"
    finally:
        proc.terminate()
        proc.wait(10)


def test_breaker_degrades_then_recovers(stack):
    stack.mock("alpha").config(fail="500")
    for _ in range(3):                                    # breaker_failures = 3
        s, body = stack.chat_json(HELLO)
        assert s == 200 and body["provider"] == "Beta AI"
    eps = stack.get("/api/v1/models/test/three/endpoints")[1]["data"]["endpoints"]
    alpha = [e for e in eps if e["provider_name"] == "Alpha AI"][0]
    assert alpha["status"] == -1 and alpha["status_text"] == "degraded"
    assert "agora_router_breaker_opens" in stack.request("GET", "/metrics")[2].decode()
    stack.mock("alpha").config(fail="none")
    s, body = stack.chat_json(HELLO)                      # the probe succeeds, the breaker closes
    assert s == 200 and body["provider"] == "Alpha AI"
    eps = stack.get("/api/v1/models/test/three/endpoints")[1]["data"]["endpoints"]
    assert [e for e in eps if e["provider_name"] == "Alpha AI"][0]["status"] == 0
