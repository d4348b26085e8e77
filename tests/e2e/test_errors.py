"""Every failure a client can cause or meet answers {"error":{"code","message"}}
with the right status, and the router survives bad input."""
import json
import socket
import time

from conftest import wait_for

MSG = [{"role": "user", "content": "hi"}]


def err(stack, status, raw):
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    assert body["error"]["code"] == status and body["error"]["message"], body
    return body["error"]["message"]


def test_400_malformed_json(stack):
    s, h, raw = stack.chat('{"model": "test/three", "messages": [')
    assert s == 400
    assert "JSON" in err(stack, 400, raw)


def test_400_missing_fields(stack):
    for body, word in (({"messages": MSG}, "model"), ({"model": "test/three"}, "messages"),
                       ({"model": "test/three", "messages": []}, "messages"),
                       ({"model": "test/three", "messages": MSG, "max_tokens": -1}, "max_tokens"),
                       ({"model": "test/three", "messages": MSG, "stream": "yes"}, "stream")):
        s, h, raw = stack.chat(body)
        assert s == 400, body
        assert word in err(stack, 400, raw)


def test_401_missing_unknown_and_malformed_keys(stack):
    body = {"model": "test/three", "messages": MSG}
    for key in ("", "sk-ag-v1-" + "0" * 64, "not-a-key"):
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body,
                                  headers={"Authorization": "Bearer " + key} if key else {})
        assert s == 401, key
        err(stack, 401, raw)


def test_401_revoked_key_within_seconds(stack):
    key = stack.ctl("key", "create", "demo", "--name", "to-revoke").stdout.strip()
    s, h, raw = stack.chat({"model": "test/three", "messages": MSG}, key=key)
    assert s == 200
    stack.ctl("key", "revoke", key[:20])
    t0 = time.time()
    assert wait_for(lambda: stack.chat({"model": "test/three", "messages": MSG}, key=key)[0] == 401, 5)
    assert time.time() - t0 < 5


def test_403_operator_key_cannot_complete(stack):
    s, h, raw = stack.chat({"model": "test/three", "messages": MSG}, key=stack.admin_key)
    assert s == 403
    err(stack, 403, raw)


def test_404_unknown_model_and_path(stack):
    s, h, raw = stack.chat({"model": "nobody/nothing", "messages": MSG})
    assert s == 404 and "nobody/nothing" in err(stack, 404, raw)
    s, h, raw = stack.request("GET", "/api/v1/nope")
    assert s == 404
    err(stack, 404, raw)


def test_413_body_too_large(stack):
    big = {"model": "test/three", "messages": [{"role": "user", "content": "x" * 70000}]}
    s, h, raw = stack.chat(big)
    assert s == 413
    err(stack, 413, raw)


def test_502_garbage(stack):
    stack.mock("solo").config(fail="garbage")
    s, h, raw = stack.chat({"model": "test/solo", "messages": MSG})
    assert s == 502
    err(stack, 502, raw)


def test_503_provider_down(stack):
    stack.mock("solo").config(fail="reset")
    s, h, raw = stack.chat({"model": "test/solo", "messages": MSG})
    assert s == 503
    err(stack, 503, raw)


def test_503_all_three_down(stack):
    for m in ("alpha", "beta", "gamma"):
        stack.mock(m).config(fail="reset")
    s, h, raw = stack.chat({"model": "test/three", "messages": MSG})
    assert s == 503
    assert "all 3 providers failed" in err(stack, 503, raw)


def test_504_provider_hangs(stack):
    stack.mock("solo").config(fail="hang")
    t0 = time.time()
    s, h, raw = stack.chat({"model": "test/solo", "messages": MSG})
    assert s == 504
    err(stack, 504, raw)
    assert 1.0 < time.time() - t0 < 10


def test_429_passes_retry_after(stack):
    stack.mock("solo").config(fail="429", retry_after=7)
    s, h, raw = stack.chat({"model": "test/solo", "messages": MSG})
    assert s == 429
    assert h.get("retry-after") == "7"
    err(stack, 429, raw)


def test_400_from_provider_is_the_clients(stack):
    stack.mock("solo").config(fail="400")
    s, h, raw = stack.chat({"model": "test/solo", "messages": MSG})
    assert s == 400
    assert "mock bad request" in err(stack, 400, raw)


def _raw(stack, data, wait=0.3):
    sock = socket.create_connection(("127.0.0.1", stack.router_port), timeout=5)
    sock.sendall(data)
    time.sleep(wait)
    try:
        out = sock.recv(65536)
    except socket.timeout:
        out = b""
    sock.close()
    return out


def test_router_survives_bad_input(stack):
    assert _raw(stack, b"\x00\x01\x02 garbage\r\n\r\n").startswith(b"HTTP/1.1 400")
    assert _raw(stack, b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 40000 + b"\r\n\r\n").startswith(b"HTTP/1.1 431")
    assert _raw(stack, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                       b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n").startswith(b"HTTP/1.1 400")
    headers = b"".join(b"X-%d: y\r\n" % i for i in range(150))
    assert _raw(stack, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n").startswith(b"HTTP/1.1 431")
    # truncated bodies and half requests, then silence
    for data in (b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"mod",
                 b"GET /hea", b"\r\n\r\n\r\n"):
        _raw(stack, data, wait=0.05)
    # a slow client that never finishes its request gets 408
    out = _raw(stack, b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\n\r\n{", wait=2.6)
    assert out.startswith(b"HTTP/1.1 408"), out[:60]
    s, body = stack.get("/health")
    assert s == 200 and body == {"status": "ok"}


def test_hostile_bodies_get_a_clear_4xx_and_change_nothing(stack):
    before = stack.sql("SELECT count(*) FROM usage_events")[0][0]
    solo_before = stack.mock("solo").stats()["requests"]
    cases = [
        (b'{"model":"test/solo","messages":[{"role":"user","content":"\xff\xfe bad utf-8"}]}', 400, "UTF-8"),
        (b'{"model":"test/solo","messages":[{"role":"user","content":"\xed\xa0\x80"}]}', 400, "UTF-8"),
        (('{"model":"test/solo","messages":[{"role":"user","content":' + "[" * 5000 + "]" * 5000 + "}]}").encode(),
         400, "JSON"),
        (json.dumps({"model": "test/solo", "messages": MSG, "max_tokens": 10 ** 15}).encode(), 400, "max_tokens"),
        (json.dumps({"model": "test/solo", "messages": MSG, "max_tokens": 2000000000}).encode(), 404, "does not fit"),
    ]
    for field in ("max_tokens", "max_completion_tokens", "temperature", "top_p", "top_k", "frequency_penalty",
                  "presence_penalty", "repetition_penalty", "n", "top_logprobs", "min_p", "top_a"):
        cases.append((json.dumps({"model": "test/solo", "messages": MSG, field: -7}).encode(), 400, field))
    for sub in ({"max_price": {"prompt": -1}}, {"max_price": {"completion": -0.5}}):
        cases.append((json.dumps({"model": "test/solo", "messages": MSG, "provider": sub}).encode(), 400, "max_price"))
    for raw, status, word in cases:
        s, h, out = stack.chat(raw)
        e = json.loads(out)["error"]
        assert s == status and e["code"] == status and word in e["message"], (raw[:80], s, e)
    # nothing reached a provider, nothing was metered, the router is fine
    assert stack.mock("solo").stats()["requests"] == solo_before
    time.sleep(0.5)
    assert stack.sql("SELECT count(*) FROM usage_events")[0][0] == before
    assert stack.get("/health")[0] == 200
