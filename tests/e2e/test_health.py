"""Endpoint health learnt by one router and shared with the fleet through
Redis: windowed percentiles in /models/.../endpoints and /metrics, a second
router that learns a slow endpoint's speed and a dead endpoint's breaker
without sending it a single request, and the Redis hashes behind it."""
import http.client
import json
import re
import subprocess

from conftest import wait_for

THREE = "/api/v1/models/test/three/endpoints"


def second_router(stack):
    return stack.extra_router("router-health")


def get(port, path):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        c.request("GET", path)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, raw
    except OSError:
        return 0, b""


def endpoint(port, provider):
    s, raw = get(port, THREE)
    assert s == 200, raw
    return next(e for e in json.loads(raw)["data"]["endpoints"] if e["provider_id"] == provider)


def beta_only(stack):
    return stack.chat({"model": "test/three", "messages": [{"role": "user", "content": "health"}],
                       "provider": {"order": ["beta"], "allow_fallbacks": False}})


def redis_hash(stack, key):
    out = subprocess.run(["redis-cli", "-p", str(stack.redis_port), "--raw", "HGETALL", key],
                         capture_output=True, text=True, timeout=10).stdout.split("\n")
    out = [x for x in out if x]
    return dict(zip(out[0::2], out[1::2]))


def metric(port, name, provider):
    text = get(port, "/metrics")[1].decode()
    m = re.search(r'^%s\{provider="%s",model="test/three",[^}]*\} (\S+)$' % (name, provider), text, re.M)
    return float(m.group(1)) if m else None


def test_window_shown_in_endpoints_and_metrics(stack):
    stack.mock("alpha").config(tps=200)
    for _ in range(4):
        assert stack.chat({"model": "test/three", "messages": [{"role": "user", "content": "w"}], "stream": True,
                           "provider": {"order": ["alpha"], "allow_fallbacks": False}})[0] == 200
    e = endpoint(stack.router_port, "alpha")
    assert 0 < e["throughput_last_30m"]["p90"] <= e["throughput_last_30m"]["p50"]
    assert set(e["latency_last_30m"]) == {"p50", "p75", "p90", "p99"}
    assert 0 < e["latency_last_30m"]["p50"] <= e["latency_last_30m"]["p90"]
    assert 0 < e["uptime_last_30m"] <= 100
    assert e["health"]["source"] in ("local", "fleet")
    assert e["health"]["attempts_last_30m"] >= 4
    text = get(stack.router_port, "/metrics")[1].decode()
    assert re.search(r'^agora_endpoint_ttft_ms\{provider="alpha",model="test/three",endpoint="\d+",'
                     r'quantile="0.9"\} [0-9.e+]+$', text, re.M), text[-3000:]
    assert metric(stack.router_port, "agora_endpoint_breaker_open", "alpha") == 0
    assert metric(stack.router_port, "agora_endpoint_tps", "alpha") > 0


def test_second_router_learns_speed_and_breaker(stack):
    beta_id = stack.sql("SELECT id FROM endpoints WHERE model_id = 'test/three' AND provider_id = 'beta'")[0][0]
    proc, port_b = second_router(stack)
    try:
        cold = endpoint(port_b, "beta")
        assert cold["latency_last_30m"] is None and cold["uptime_last_30m"] is None   # nothing seen here

        # Router A learns that beta is slow...
        stack.mock("beta").config(ttft_ms=600)
        for _ in range(6):
            assert beta_only(stack)[0] == 200
        # ...and writes it to Redis: one field per router instance.
        fields = wait_for(lambda: [v for v in redis_hash(stack, "eph:{%d}" % beta_id).values()
                                   if float(v.split(",")[0]) > 300 and int(v.split(",")[2]) >= 6], 5)
        assert fields, redis_hash(stack, "eph:{%d}" % beta_id)
        ttft, tps, samples, until, updated = fields[0].split(",")
        assert int(until) == 0 and int(updated) > 0
        ttl = int(subprocess.run(["redis-cli", "-p", str(stack.redis_port), "TTL", "eph:{%d}" % beta_id],
                                 capture_output=True, text=True).stdout)
        assert 0 < ttl <= 300

        # Router B, which never sent beta a request, knows within seconds.
        def learnt():
            h = endpoint(port_b, "beta")["health"]
            return h if h["source"] == "fleet" and h["ttft_ms"] > 300 and h["samples"] >= 6 else None
        h = wait_for(learnt, 8)
        assert h, endpoint(port_b, "beta")
        assert h["routers"] >= 1
        assert endpoint(port_b, "beta")["latency_last_30m"] is None     # B's own window stays empty
        assert metric(port_b, "agora_endpoint_ttft_avg_ms", "beta") > 300

        # A finds beta dead (429, Retry-After 30 s): B tries it last too.
        stack.mock("beta").config(ttft_ms=0, fail="429", retry_after=30, fail_count=1)
        assert beta_only(stack)[0] == 429
        assert endpoint(stack.router_port, "beta")["status"] == -1
        e = wait_for(lambda: (lambda x: x if x["status"] == -1 else None)(endpoint(port_b, "beta")), 8)
        assert e, endpoint(port_b, "beta")
        assert e["status_text"] == "degraded" and e["health"]["fleet_open_until_ms"] is not None
        assert metric(port_b, "agora_endpoint_breaker_open", "beta") == 1
        assert metric(port_b, "agora_endpoint_breaker_open", "alpha") == 0

        # beta recovers on A (its one probe succeeds): B hears it long before the 30 s.
        assert beta_only(stack)[0] == 200
        assert endpoint(stack.router_port, "beta")["status"] == 0
        assert wait_for(lambda: endpoint(port_b, "beta")["status"] == 0, 8), endpoint(port_b, "beta")
        assert metric(port_b, "agora_endpoint_breaker_open", "beta") == 0
    finally:
        proc.terminate()
        proc.wait(10)
