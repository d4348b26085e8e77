"""Per-key rate limits, shared by several router instances through Redis."""
import json
import time


MSG = {"model": "test/solo", "messages": [{"role": "user", "content": "x"}]}


def away_from_minute_edge():
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def second_router(stack):
    return stack.extra_router("router2")


def chat(stack, key, port=None):
    return stack.request("POST", "/api/v1/chat/completions", MSG, key=key, port=port)


def test_rpm_shared_by_two_routers(stack):
    key = stack.ctl("key", "create", "demo", "--name", "rpm4", "--rpm", "4").stdout.strip()
    proc, port2 = second_router(stack)
    try:
        away_from_minute_edge()
        assert chat(stack, key)[0] == 200
        assert chat(stack, key)[0] == 200
        assert chat(stack, key, port2)[0] == 200
        assert chat(stack, key, port2)[0] == 200
        time.sleep(0.8)                       # a few sync intervals
        for port in (None, port2):
            s, h, raw = chat(stack, key, port)
            assert s == 429, raw
            assert 1 <= int(h["retry-after"]) <= 60
            assert json.loads(raw)["error"]["code"] == 429
        assert chat(stack, stack.key)[0] == 200   # other keys are not affected
    finally:
        proc.terminate()
        proc.wait(10)


def test_tpm(stack):
    key = stack.ctl("key", "create", "demo", "--name", "tpm30", "--tpm", "30").stdout.strip()
    away_from_minute_edge()
    assert chat(stack, key)[0] == 200         # ~18 tokens
    assert chat(stack, key)[0] == 200         # ~36: over from now on
    s, h, raw = chat(stack, key)
    assert s == 429 and "tokens" in json.loads(raw)["error"]["message"]
