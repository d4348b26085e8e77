"""Client connections byte by byte (lib/sockio under lib/httpd): requests
pipelined on one connection are answered in order, Expect: 100-continue gets
its interim answer, a client that stops reading is cut after
client_write_timeout_ms, the connection limit answers 503, input pipelined
past the bound is read while closing, and an answer refused before its
handler keeps its path. A provider connect that fails inside the connect
call answers 502/503. The raw socket is the point: an HTTP library would
hide each of these."""
import http.client
import io
import json
import socket
import threading
import time

import pytest

from conftest import canned_stream_provider, serve_provider, wait_for

BIG = b"".join(("data: " + json.dumps({"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "up-big",
                                       "choices": [{"index": 0, "delta": {"content": "y" * 200},
                                                    "finish_reason": None}]}) + "\n\n").encode()
               for _ in range(40000)) + b"data: [DONE]\n\n"


def stop_router(stack, proc):
    """Stops an extra router and puts the stack's own catalog back."""
    proc.terminate()
    try:
        proc.wait(20)
    except Exception:
        proc.kill()
        proc.wait(5)
    stack.write_catalog(stack.catalog)
    stack.ctl("catalog", "import", stack.catalog_path)


BigProvider = canned_stream_provider(BIG)    # streams BIG (~11 MB) as fast as the socket takes it


def chat_request(key, model, stream=False, extra=""):
    body = json.dumps({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
    head = ("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            "Content-Type: application/json\r\nContent-Length: %d\r\n%s\r\n" % (key, len(body), extra))
    return head.encode(), body.encode()


class KeptReader(io.BufferedReader):
    def close(self):        # http.client closes it after each answer
        pass


class OneReader:
    """One buffered reader for every answer on a socket: http.client's own
    would swallow the pipelined answers after the first."""
    def __init__(self, sock):
        self.fp = KeptReader(socket.SocketIO(sock, "rb"))

    def makefile(self, mode):
        return self.fp


def read_answer(reader):
    r = http.client.HTTPResponse(reader)
    r.begin()
    return r.status, r.getheader("Connection"), r.read()


def test_pipelined_requests_answered_in_order(stack):
    reqs = []
    for content in ("first", "second", "third"):
        body = json.dumps({"model": "test/solo", "messages": [{"role": "user", "content": content}]})
        reqs.append(("POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
                     "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                     % (stack.key, len(body), body)).encode())
    with socket.create_connection(("127.0.0.1", stack.router_port), timeout=15) as sock:
        reader = OneReader(sock)
        sock.sendall(b"".join(reqs))            # one write: all three wait in the input
        answers = [read_answer(reader) for _ in reqs]
        # and the connection is still good for one more
        sock.sendall(reqs[0])
        answers.append(read_answer(reader))
    for status, conn, body in answers:
        assert status == 200, body
        assert conn == "keep-alive"
        assert json.loads(body)["object"] == "chat.completion"
    ids = [json.loads(b)["id"] for _, _, b in answers]
    assert len(set(ids)) == len(ids)


def test_expect_100_continue(stack):
    head, body = chat_request(stack.key, "test/solo", extra="Expect: 100-continue\r\n")
    with socket.create_connection(("127.0.0.1", stack.router_port), timeout=15) as sock:
        sock.sendall(head)
        interim = b""
        while not interim.endswith(b"\r\n\r\n"):
            interim += sock.recv(1)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        status, conn, raw = read_answer(OneReader(sock))
    assert status == 200
    assert json.loads(raw)["object"] == "chat.completion"


@pytest.fixture(scope="module")
def big_router(stack):
    """A router of its own (write time-out 500 ms, stream_buffer_bytes 64 KiB)
    and model test/big, ~11 MB of stream from a provider thread."""
    server, url = serve_provider(BigProvider)
    stack.import_model("test/big", [("big", url)], "up-big")
    proc, port = stack.extra_router("router-conn-io", AGORA_CLIENT_WRITE_TIMEOUT_MS="500",
                                    AGORA_STREAM_BUFFER_BYTES="65536", AGORA_MAX_CONNECTIONS="3")

    def has_model():
        s, h, raw = stack.request("GET", "/api/v1/models", port=port)
        return s == 200 and "test/big" in {m["id"] for m in json.loads(raw)["data"]}
    assert wait_for(has_model, 10)
    try:
        yield port
    finally:
        stop_router(stack, proc)
        server.shutdown()


def test_client_that_stops_reading_is_cut_after_the_write_timeout(stack, big_router):
    head, body = chat_request(stack.key, "test/big", stream=True)
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", big_router))
    sock.settimeout(15)
    sock.sendall(head + body)
    time.sleep(2.5)             # reads nothing: the router's output stalls, 500 ms pass
    got = b""
    try:
        while True:
            b = sock.recv(1 << 16)
            if not b:
                break
            got += b
    except ConnectionResetError:
        pass
    sock.close()
    assert got.startswith(b"HTTP/1.1 200 ")
    assert len(got) < len(BIG) // 2         # cut: socket buffers and stream_buffer_bytes at most
    assert b"[DONE]" not in got
    # the router goes on serving
    s, h, raw = stack.request("POST", "/api/v1/chat/completions",
                              {"model": "test/solo", "messages": [{"role": "user", "content": "after"}]},
                              key=stack.key, port=big_router)
    assert s == 200


def test_connection_limit_answers_503(stack, big_router):
    held = [socket.create_connection(("127.0.0.1", big_router), timeout=10) for _ in range(3)]
    try:
        with socket.create_connection(("127.0.0.1", big_router), timeout=10) as extra:
            status, conn, raw = read_answer(OneReader(extra))
            assert status == 503
            assert conn == "close"
            assert json.loads(raw)["error"]["code"] == 503
    finally:
        for s in held:
            s.close()

    def served():   # the closed ones are counted out again
        try:
            s, h, raw = stack.request("GET", "/api/v1/models", port=big_router)
            return s == 200
        except OSError:
            return False
    assert wait_for(served, 10)


def test_head_in_fragments_with_many_long_headers(stack):
    """A head past the request's inline arena (1 KiB of strings, 16 headers),
    arriving in pieces that split names and values: the key, last, still reads."""
    body = json.dumps({"model": "test/solo", "messages": [{"role": "user", "content": "pieces"}]})
    filler = "".join("X-Filler-%02d: %s\r\n" % (i, "v" * (40 + i)) for i in range(30))
    head = ("POST /api/v1/chat/completions?x=1 HTTP/1.1\r\nHost: x\r\n%sContent-Type: application/json\r\n"
            "Content-Length: %d\r\nAuthorization: Bearer %s\r\n\r\n" % (filler, len(body), stack.key)).encode()
    with socket.create_connection(("127.0.0.1", stack.router_port), timeout=15) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        data = head + body.encode()
        for i in range(0, len(data), 7):
            sock.sendall(data[i:i + 7])
            if i % 70 == 0:
                time.sleep(0.001)   # separate reads on the router's side
        status, conn, raw = read_answer(OneReader(sock))
    assert status == 200, raw
    assert json.loads(raw)["object"] == "chat.completion"


@pytest.fixture(scope="module")
def unreachable_router(stack):
    """A router of its own and model test/unreach, whose providers (plain and
    TLS) are at 255.255.255.255: connect(2) fails at once (ENETUNREACH, or
    EACCES on a broadcast route) inside the connect call, the IP literal
    answered by evdns on the spot."""
    stack.import_model("test/unreach", [("unreach", "http://255.255.255.255:80/v1"),
                                        ("unreach-tls", "https://255.255.255.255:443/v1")],
                       "up-unreach", max_output=1024)
    proc, port = stack.extra_router("router-unreach")

    def has_model():
        s, h, raw = stack.request("GET", "/api/v1/models", port=port)
        return s == 200 and "test/unreach" in {m["id"] for m in json.loads(raw)["data"]}
    assert wait_for(has_model, 10)
    try:
        yield proc, port
    finally:
        stop_router(stack, proc)


def test_connect_failing_at_once_answers_and_keeps_serving(stack, unreachable_router):
    """The connect's error came from inside the connect call, and the
    connection was freed there while the request went on to use it (ASan:
    heap-use-after-free; AGORA_BUILD=build-asan)."""
    proc, port = unreachable_router
    for stream in (False, True, False):
        body = {"model": "test/unreach", "stream": stream, "messages": [{"role": "user", "content": "hi"}]}
        s, h, raw = stack.request("POST", "/api/v1/chat/completions", body, key=stack.key, port=port)
        assert s in (502, 503), raw
    s, h, raw = stack.request("POST", "/api/v1/chat/completions",
                              {"model": "test/solo", "messages": [{"role": "user", "content": "after"}]},
                              key=stack.key, port=port)
    assert s == 200, raw
    assert proc.poll() is None


def test_pipelined_bytes_past_the_bound_are_read_while_closing(stack):
    """A request with Connection: close and more than the 64 KiB of pipelined
    input a connection holds while handling: once answered, the router reads
    (and drops) the rest while it lingers, instead of leaving it unread
    until the linger ends in a reset."""
    stack.mock("solo").config(ttft_ms=300)      # the junk arrives while handling
    head, body = chat_request(stack.key, "test/solo", extra="Connection: close\r\n")
    junk = b"x" * (16 << 20)                    # more than the socket buffers hold
    sock = socket.create_connection(("127.0.0.1", stack.router_port), timeout=15)
    sent = {}

    def send():
        try:
            sock.sendall(head + body + junk)
            sent["done"] = time.time()
        except OSError as e:
            sent["error"] = e
    t = threading.Thread(target=send, daemon=True)
    t.start()
    try:
        status, conn, raw = read_answer(OneReader(sock))
        answered = time.time()
        assert status == 200, raw
        assert conn == "close"
        t.join(1.5)                             # the linger lasts 2 s
        assert "done" in sent, sent             # all of it taken, not stuck until the reset
        assert sent["done"] - answered < 1.5
        sock.settimeout(5)
        assert sock.recv(100) == b""            # then our FIN: nothing more
    finally:
        sock.close()
        t.join(5)


def scrape_analytics(stack):
    c = http.client.HTTPConnection("127.0.0.1", stack.analytics_port, timeout=10)
    c.request("GET", "/metrics")
    text = c.getresponse().read().decode()
    c.close()
    out = {}
    for line in text.splitlines():
        if line.startswith("agora_analytics_responses_total{"):
            labels, v = line.rsplit(" ", 1)
            out[labels] = float(v)
    return out


def test_answers_failed_before_dispatch_keep_their_path(stack):
    """A request refused before its handler (here 413, Content-Length past
    the limit) is reported under its own path to the done callback: the
    analytics service counts answers by endpoint class."""
    key = 'agora_analytics_responses_total{endpoint="health",code="4xx"}'
    before = scrape_analytics(stack).get(key, 0)
    with socket.create_connection(("127.0.0.1", stack.analytics_port), timeout=10) as sock:
        sock.sendall(b"POST /health HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999999\r\n\r\n")
        status, conn, raw = read_answer(OneReader(sock))
    assert status == 413
    assert wait_for(lambda: scrape_analytics(stack).get(key, 0) == before + 1, 5)
