"""Per-key rate limits, shared by several router instances through Redis."""
import json
import os
import subprocess
import time

from conftest import BUILD, free_ports, wait_for

MSG = {"model": "test/solo", "messages": [{"role": "user", "content": "x"}]}


def away_from_minute_edge():
    if time.time() % 60 > 50:
        time.sleep(61 - time.time() % 60)


def second_router(stack):
    port = free_ports(1)[0]
    env = dict(stack.env, AGORA_LISTEN="127.0.0.1:%d" % port,
               AGORA_SPOOL_PATH=os.path.join(stack.dir, "spool", "usage-router2.spool"))
    env.update(stack.provider_keys)
    proc = subprocess.Popen([os.path.join(BUILD, "agora-router"), "-c", os.path.join(stack.dir, "agora.conf")],
                            env=env, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(stack.dir, "log", "router2.log"), "w"))
    assert wait_for(lambda: _health(port), 10)
    return proc, port


def _health(port):
    try:
        import http.client
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        c.request("GET", "/health")
        return c.getresponse().status == 200
    except OSError:
        return False


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
