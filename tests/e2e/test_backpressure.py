"""Backpressure both ways, on a router of its own: a client reading slowly from a
fast provider does not make the router buffer the stream (its memory stays within
stream_buffer_bytes and a margin), and a provider dripping slowly to a fast client
does not make it spin (its CPU time stays low). Behaviour, not speed: the speed
figures are `make bench`'s (tests/bench/router.py)."""
import json
import os
import socket
import time

import pytest

from conftest import canned_stream_provider, serve_provider, wait_for

BUFFER = 65536                  # the router's stream_buffer_bytes here
MARGIN = 3 << 20                # allocator slack, parser and socket buffers
EVENTS = 60000                  # ~17 MB of SSE: far more than BUFFER + MARGIN


def chunk(content, finish=None):
    return ("data: " + json.dumps({"id": "chatcmpl-fast", "object": "chat.completion.chunk", "created": 1,
                                   "model": "up-fast", "choices": [{"index": 0, "delta": {"content": content},
                                                                    "finish_reason": finish}]},
                                  separators=(",", ":")) + "\n\n").encode()


STREAM = b"".join([chunk("x" * 200)] * EVENTS) + chunk("", "stop") + \
    b'data: {"id":"chatcmpl-fast","object":"chat.completion.chunk","created":1,"model":"up-fast","choices":[],' \
    b'"usage":{"prompt_tokens":5,"completion_tokens":60000,"total_tokens":60005}}\n\ndata: [DONE]\n\n'


FastProvider = canned_stream_provider(STREAM)    # STREAM to every completion, as fast as it goes


@pytest.fixture(scope="module")
def fast_model(stack):
    """A provider (a thread here) that streams 17 MB as fast as it can, as model test/fast."""
    server, url = serve_provider(FastProvider)
    stack.import_model("test/fast", [("fast", url)], "up-fast")
    try:
        yield "test/fast"
    finally:
        stack.write_catalog(stack.catalog)
        stack.ctl("catalog", "import", stack.catalog_path)
        server.shutdown()


@pytest.fixture(scope="module")
def router(stack, fast_model):
    extra = {}
    if os.environ.get("ASAN_OPTIONS"):
        # `make asan`: freed memory waits in ASan's quarantine, so RSS would
        # count every byte the stream moved, not what the router holds
        extra["ASAN_OPTIONS"] = os.environ["ASAN_OPTIONS"] + ":quarantine_size_mb=0:thread_local_quarantine_size_kb=0"
    proc, port = stack.extra_router("router-backpressure", AGORA_STREAM_BUFFER_BYTES=str(BUFFER), **extra)

    def has_model():
        s, body = stack.get("/api/v1/models")
        return s == 200 and fast_model in {m["id"] for m in body["data"]}
    assert wait_for(has_model, 10)
    yield proc, port
    proc.terminate()            # drains what is in flight, 10 s at most
    try:
        proc.wait(20)
    except Exception:
        proc.kill()
        proc.wait(5)


def rss(pid):
    with open("/proc/%d/status" % pid) as f:
        return int([line for line in f if line.startswith("VmRSS:")][0].split()[1]) * 1024


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100.0     # utime + stime, in clock ticks of 1/100 s


def metric(stack, port, name):
    s, h, raw = stack.request("GET", "/metrics", port=port)
    return int(float([l for l in raw.decode().splitlines() if l.startswith(name + " ")][0].split()[1]))


def open_stream(stack, port, model, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", port))
    body = json.dumps({"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]})
    sock.sendall(("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                  "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                  % (stack.key, len(body), body)).encode())
    return sock


def test_slow_reader_keeps_router_memory_bounded(stack, router, fast_model):
    proc, port = router
    s, h, raw = stack.request("POST", "/api/v1/chat/completions", {"model": "test/solo", "stream": True,
                              "messages": [{"role": "user", "content": "warm up"}]}, key=stack.key, port=port)
    assert s == 200
    time.sleep(0.5)
    base = rss(proc.pid)
    pauses = metric(stack, port, "agora_router_backpressure_pauses")
    sock = open_stream(stack, port, fast_model, rcvbuf=8192)
    try:
        sock.settimeout(10)
        got, peak = b"", base
        end = time.time() + 4
        while time.time() < end:                # ~50 KB/s while the provider could send 17 MB at once
            got += sock.recv(1024)
            peak = max(peak, rss(proc.pid))
            time.sleep(0.02)
        assert 0 < len(got) < len(STREAM) // 4
        assert metric(stack, port, "agora_router_backpressure_pauses") > pauses
        assert peak - base < BUFFER + MARGIN, "router grew by %d bytes for a slow reader" % (peak - base)
        # then read fast: the whole stream arrives, in order, nothing lost
        sock.settimeout(60)
        while not got.endswith(b"0\r\n\r\n"):
            part = sock.recv(1 << 20)
            assert part, "stream cut"
            got += part
    finally:
        sock.close()
    assert got.count(b'"content":"' + b"x" * 200 + b'"') == EVENTS
    assert b'"finish_reason":"stop"' in got and b"data: [DONE]" in got


def test_slow_provider_does_not_spin_the_router(stack, router):
    proc, port = router
    solo = stack.mock("solo")
    solo.config(tps=4, words=40)                # an event every 250 ms, ~10 s a stream
    socks = [open_stream(stack, port, "test/solo") for _ in range(20)]
    time.sleep(1)                               # every stream under way
    cpu0, t0 = cpu_seconds(proc.pid), time.time()
    got = [b""] * len(socks)
    for s in socks:
        s.setblocking(False)
    while time.time() - t0 < 5:                 # a fast client: reads whatever comes, at once
        for i, s in enumerate(socks):
            try:
                got[i] += s.recv(65536)
            except BlockingIOError:
                pass
        time.sleep(0.005)
    used = cpu_seconds(proc.pid) - cpu0
    for s in socks:
        s.close()
    assert all(g.count(b"data: ") >= 10 for g in got), "streams did not flow"
    # 20 streams x ~20 events in 5 s cost milliseconds; a busy loop would cost ~5 s
    assert used < 0.5, "router used %.2f s of CPU in 5 s of slow streams" % used


def test_dripping_provider_does_not_spin_the_router(stack, router):
    proc, port = router
    stack.mock("solo").config(fail="drip")      # the answer one byte a second
    socks = [open_stream(stack, port, "test/solo") for _ in range(10)]
    time.sleep(1)
    cpu0 = cpu_seconds(proc.pid)
    time.sleep(4)
    used = cpu_seconds(proc.pid) - cpu0
    for s in socks:
        s.close()
    assert used < 0.3, "router used %.2f s of CPU in 4 s of dripping answers" % used
