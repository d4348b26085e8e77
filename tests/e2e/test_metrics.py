"""/metrics of the three processes in the Prometheus text format (checked
line by line by a strict reader here), router readiness (/health 503 while
draining), billing's listener, and every metric the Grafana dashboard
(deploy/grafana/agora.json) queries present in a live scrape."""
import http.client
import json
import os
import re
import signal
import threading
import time

from conftest import ROOT, wait_for

SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def scrape(port):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    assert r.status == 200 and r.getheader("Content-Type").startswith("text/plain; version=0.0.4")
    return parse(body)


def parse(text):
    """{(name, frozenset(labels)): value}, after checking the format: HELP and
    TYPE before a family's samples, each family once, labels well escaped,
    values numbers, histogram buckets cumulative and ending at +Inf = _count."""
    types, samples, seen_families, current = {}, {}, [], None
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split(" ")[2]
            assert current not in seen_families, "family %s twice" % current
            seen_families.append(current)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert name == current and typ in ("counter", "gauge", "histogram"), line
            types[name] = typ
            continue
        m = SAMPLE.match(line)
        assert m, "not a sample line: %r" % line
        name, labels = m.group(1), {}
        if m.group(3):
            rest = m.group(3)
            while rest:
                lm = LABEL.match(rest)
                assert lm, "bad labels in %r" % line
                labels[lm.group(1)] = lm.group(2)
                rest = rest[lm.end():]
        family = re.sub(r"_(bucket|sum|count)$", "", name) if types.get(current) == "histogram" else name
        assert family == current, "%s outside its family %s" % (name, current)
        v = float(m.group(4))
        key = (name, frozenset(labels.items()))
        assert key not in samples, "sample twice: %s" % line
        samples[key] = v
    for fam, typ in types.items():
        if typ != "histogram":
            continue
        series = {}
        for (name, labels), v in samples.items():
            if name == fam + "_bucket":
                d = dict(labels)
                le = d.pop("le")
                series.setdefault(frozenset(d.items()), []).append((float(le), v))
        for labels, buckets in series.items():
            buckets.sort()
            assert buckets[-1][0] == float("inf")
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), fam
            assert samples[(fam + "_count", labels)] == buckets[-1][1]
    return samples


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0)


def total(samples, name, **labels):
    """Sum over every series of name whose labels include these."""
    return sum(v for (n, ls), v in samples.items() if n == name and set(labels.items()) <= ls)


def chat(stack, model, stream=False):
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}
    return stack.chat(body)[0]


def test_router_metrics(stack):
    before = scrape(stack.router_port)
    assert chat(stack, "test/three") == 200
    assert chat(stack, "test/three", stream=True) == 200
    stack.mock("solo").config(fail="500")
    assert chat(stack, "test/solo") == 502
    stack.mock("solo").config(fail="reset")
    assert chat(stack, "test/solo") in (502, 503)
    after = scrape(stack.router_port)
    d = lambda name, **l: total(after, name, **l) - total(before, name, **l)
    assert d("agora_router_responses_total", code="2xx") >= 2
    assert d("agora_router_responses_total", code="5xx") >= 2
    assert d("agora_router_upstream_outcomes_total", outcome="ok") >= 2
    assert d("agora_router_upstream_outcomes_total", provider="solo", outcome="http_5xx") == 1
    assert d("agora_router_upstream_outcomes_total", provider="solo", outcome="reset") == 1
    assert d("agora_router_request_duration_seconds_count", kind="json") >= 3
    assert d("agora_router_request_duration_seconds_count", kind="stream") >= 1
    assert d("agora_router_ttft_seconds_count", kind="stream") >= 1
    assert value(after, "agora_router_ready") == 1 and value(after, "agora_router_draining") == 0
    assert value(after, "agora_router_streams_in_flight") == 0
    assert ("agora_router_spool_bytes", frozenset()) in after


def test_health_not_ready_while_draining(stack):
    """A router answers /health 503 from SIGTERM on (the readiness probe
    takes it out of the Service), while a stream in flight finishes."""
    proc, port = stack.extra_router("drain")
    for name in ("alpha", "beta", "gamma"):
        stack.mock(name).config(tps=10, words=20)     # a stream of about two seconds
    # During the drain the listener is closed and every answer closes its
    # connection: one kept-alive connection per question asked after SIGTERM.
    keeps = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(3)]
    for keep in keeps:
        keep.request("GET", "/health")
        r = keep.getresponse()
        assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    out = {}

    def slow():
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
        c.request("POST", "/api/v1/chat/completions", headers={"Authorization": "Bearer " + stack.key},
                  body=json.dumps({"model": "test/three", "stream": True,
                                   "messages": [{"role": "user", "content": "x"}]}))
        r = c.getresponse()
        out["status"], out["body"] = r.status, r.read()
    t = threading.Thread(target=slow)
    t.start()
    try:
        assert wait_for(lambda: value(scrape(port), "agora_router_streams_in_flight") == 1, 5)
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.05)          # idle connections are closed after 200 ms of the drain
        keeps[0].request("GET", "/health")
        keeps[1].request("GET", "/health/live")
        keeps[2].request("GET", "/metrics")
        r = keeps[0].getresponse()
        assert r.status == 503 and b"draining" in r.read()
        r = keeps[1].getresponse()
        assert r.status == 200 and r.read()
        r = keeps[2].getresponse()
        m = parse(r.read().decode())
        assert value(m, "agora_router_draining") == 1 and value(m, "agora_router_ready") == 0
        t.join(20)
        assert out.get("status") == 200 and out["body"].rstrip().endswith(b"data: [DONE]")
        assert proc.wait(15) == 0
    finally:
        for keep in keeps:
            keep.close()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_billing_listener(stack):
    assert chat(stack, "test/three") == 200
    c = http.client.HTTPConnection("127.0.0.1", stack.billing_port, timeout=5)
    c.request("GET", "/health")
    r = c.getresponse()
    assert r.status == 200 and json.loads(r.read()) == {"status": "ok"}
    assert wait_for(lambda: total(scrape(stack.billing_port), "agora_billing_batch_size_count") > 0, 10)
    assert wait_for(lambda: value(scrape(stack.billing_port), "agora_billing_stream_pending") == 0, 10)
    m = scrape(stack.billing_port)
    assert value(m, "agora_billing_batches_total") == value(m, "agora_billing_batch_size_count") > 0
    assert value(m, "agora_billing_events_total") >= value(m, "agora_billing_batches_total")
    assert value(m, "agora_billing_commit_seconds_count") == value(m, "agora_billing_batches_total")
    assert 0 <= value(m, "agora_billing_lag_seconds") < 600
    assert value(m, "agora_billing_stream_lag") == 0 and value(m, "agora_billing_stream_length") >= 1
    assert value(m, "agora_billing_redis_up") == 1 and value(m, "agora_billing_pg_up") == 1
    c.request("GET", "/nope")
    assert c.getresponse().status == 404


def test_analytics_metrics(stack):
    base = scrape(stack.analytics_port)
    c = http.client.HTTPConnection("127.0.0.1", stack.analytics_port, timeout=10)
    c.request("GET", "/api/v1/analytics/share", headers={"Authorization": "Bearer " + stack.admin_key})
    r = c.getresponse()
    assert r.status == 200 and r.read()
    c.request("GET", "/api/v1/analytics/spend", headers={"Authorization": "Bearer nope"})
    assert c.getresponse().status == 401
    after = scrape(stack.analytics_port)
    d = lambda name, **l: total(after, name, **l) - total(base, name, **l)
    assert d("agora_analytics_responses_total", endpoint="share", code="2xx") == 1
    assert d("agora_analytics_responses_total", endpoint="spend", code="4xx") == 1
    assert d("agora_analytics_request_duration_seconds_count", endpoint="share") == 1
    assert d("agora_analytics_responses_total", endpoint="metrics", code="2xx") == 1


def dashboard_metrics():
    """Every metric name in the dashboard's PromQL expressions."""
    with open(os.path.join(ROOT, "deploy/grafana/agora.json")) as f:
        dash = json.load(f)
    names = set()
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            names |= set(re.findall(r"\b(agora_[a-z0-9_]+)", t["expr"]))
    return names


def test_dashboard_queries_exist(stack):
    assert chat(stack, "test/three", stream=True) == 200
    wait_for(lambda: total(scrape(stack.billing_port), "agora_billing_batches_total") > 0, 10)
    live = set()
    for port in (stack.router_port, stack.billing_port, stack.analytics_port):
        for (name, _), _ in scrape(port).items():
            live.add(name)
    wanted = dashboard_metrics()
    assert len(wanted) >= 15
    assert wanted <= live, "queried but not exported: %s" % sorted(wanted - live)
