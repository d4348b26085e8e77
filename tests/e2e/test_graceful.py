"""Graceful operations (deploy/operations.md): SIGTERM drains (streams in
flight finish and are billed once, new connections are refused, keep-alive
connections get Connection: close), a stream longer than drain_timeout_ms
is cut and billed as cut, SIGHUP reloads the configuration and the TLS
certificate without a restart (a broken one is refused), and SIGUSR2
upgrades the binary in place with zero failed requests under load."""
import ctypes
import http.client
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time

from conftest import BUILD, free_ports, sse_events, wait_for
from test_ratelimit import away_from_minute_edge

SOLO = {"model": "test/solo", "messages": [{"role": "user", "content": "graceful"}]}


def conf_keys():
    out = subprocess.run([os.path.join(BUILD, "agora-router"), "--dump-config"], capture_output=True, text=True,
                         env={"AGORA_KEY_SECRET": "x"}).stdout
    return {line.split(" = ")[0] for line in out.splitlines() if " = " in line and not line.startswith("#")}


class Router:
    """An agora-router of its own: every setting in its own config file (the
    environment would win over the file, and SIGHUP re-reads the file)."""

    def __init__(self, stack, name, tls=False, **settings):
        self.stack, self.name, self.tls = stack, name, tls
        self.port = free_ports(1)[0]
        self.path = os.path.join(stack.dir, "%s.conf" % name)
        self.logpath = os.path.join(stack.dir, "log", name + ".log")
        keys = conf_keys()
        with open(os.path.join(stack.dir, "agora.conf")) as f:
            self.base = [line.rstrip("\n") for line in f if not line.startswith("listen")]
        self.base += ["%s = %s" % (k[6:].lower(), v) for k, v in stack.env.items()
                      if k.startswith("AGORA_") and k[6:].lower() in keys]
        self.base += ["listen = 127.0.0.1:%d" % self.port,
                      "spool_path = %s" % os.path.join(stack.dir, "spool", "usage-%s.spool" % name)]
        self.settings = dict(settings)
        self.write()
        env = {k: v for k, v in stack.env.items() if not k.startswith("AGORA_")}
        env.update(stack.provider_keys)
        self.proc = subprocess.Popen([os.path.join(BUILD, "agora-router"), "-c", self.path], env=env,
                                     stdout=subprocess.DEVNULL, stderr=open(self.logpath, "w"))
        self.pid = self.proc.pid
        assert wait_for(self.healthy, 15), "router %s did not start:\n%s" % (name, self.log())

    def write(self, extra=""):
        lines = [line for line in self.base if line.split(" = ")[0] not in self.settings]
        lines += ["%s = %s" % kv for kv in self.settings.items()]
        with open(self.path, "w") as f:
            f.write("\n".join(lines) + "\n" + extra)

    def set(self, **settings):
        self.settings.update(settings)
        self.write()

    def healthy(self):
        try:
            if self.tls:
                return bool(served_cert(self.port))
            return self.request("GET", "/health", timeout=2)[0] == 200
        except OSError:
            return False

    def request(self, method, path, body=None, timeout=30):
        return self.stack.request(method, path, body, key=self.stack.key, port=self.port, timeout=timeout)

    def log(self):
        with open(self.logpath) as f:
            return f.read()

    def signal(self, sig):
        os.kill(self.pid, sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


def open_stream(port, key, body):
    """A streamed completion started: (connection, response) with the head read."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    c.request("POST", "/api/v1/chat/completions", body=json.dumps(dict(body, stream=True)),
              headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    r = c.getresponse()
    assert r.status == 200
    return c, r


def gen_id(raw):
    return json.loads(sse_events(raw)[0])["id"]


def billed(stack, gid):
    return stack.sql("SELECT count(*), min(status), min(completion_tokens) FROM usage_events"
                     " WHERE generation_id = %s", gid)[0]


def refused(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return False
    except ConnectionRefusedError:
        return True


def test_sigterm_drains_a_stream_refuses_new_connections_and_bills_once(stack):
    r = Router(stack, "drain1", drain_timeout_ms=15000)
    try:
        idle = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)   # a keep-alive client
        idle.request("GET", "/health")
        assert idle.getresponse().read() and True
        busy = http.client.HTTPConnection("127.0.0.1", r.port, timeout=10)
        busy.request("GET", "/health")
        resp = busy.getresponse()
        resp.read()
        assert resp.getheader("Connection") == "keep-alive"

        stack.mock("solo").config(tps=20, words=40)       # a 2 s stream
        c, resp = open_stream(r.port, stack.key, SOLO)
        t0 = time.time()
        r.signal(signal.SIGTERM)
        time.sleep(0.05)
        busy.request("GET", "/health")             # on a kept-alive connection, during the drain
        late = busy.getresponse()
        assert late.status == 503 and late.getheader("Connection") == "close"   # not ready
        late.read()
        assert wait_for(lambda: refused(r.port), 2), "new connections are still accepted"
        raw = resp.read()                                 # the stream runs to its end
        took = time.time() - t0
        events = sse_events(raw)
        assert events[-1] == "[DONE]" and not any('"error"' in e for e in events), events[-3:]
        assert sum(1 for e in events if '"content"' in e) >= 40
        c.close()
        assert r.proc.wait(10) == 0
        assert took > 1.0                                  # it did wait for the stream
        with pytest_raises_closed():                      # the idle connection was closed
            idle.request("GET", "/health")
            idle.getresponse()
        gid = gen_id(raw)
        assert wait_for(lambda: billed(stack, gid)[0] == 1, 10), billed(stack, gid)
        assert billed(stack, gid)[1] == 200
        assert "draining 1 requests" in r.log()
    finally:
        r.stop()


class pytest_raises_closed:
    def __enter__(self):
        return self

    def __exit__(self, typ, val, tb):
        assert typ is not None and issubclass(typ, (http.client.HTTPException, ConnectionError)), typ
        return True


def test_stream_longer_than_the_drain_limit_is_cut_and_billed_as_cut(stack):
    r = Router(stack, "drain2", drain_timeout_ms=1000)
    try:
        stack.mock("solo").config(tps=10, words=200)      # 20 s
        c, resp = open_stream(r.port, stack.key, SOLO)
        first = resp.read1(65536) if hasattr(resp, "read1") else resp.read(64)
        t0 = time.time()
        r.signal(signal.SIGTERM)
        raw = first
        try:
            while True:
                chunk = resp.read1(65536)
                if not chunk:
                    break
                raw += chunk
        except (http.client.IncompleteRead, ConnectionError) as e:
            raw += getattr(e, "partial", b"")
        took = time.time() - t0
        assert 0.8 < took < 6, took
        assert b"[DONE]" not in raw                       # cut
        assert r.proc.wait(10) == 0
        gid = json.loads(re.search(rb"data: (\{.*?\})\n", raw).group(1))["id"]
        assert wait_for(lambda: billed(stack, gid)[0] == 1, 10), billed(stack, gid)
        n, status, tokens = billed(stack, gid)
        assert status == 499 and 0 < tokens < 200, (status, tokens)
        assert "cut (billed as cut)" in r.log()
    finally:
        r.stop()


def served_cert(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        with ctx.wrap_socket(s) as t:
            return t.getpeercert(binary_form=True)


def make_cert(d, name):
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=" + name,
                    "-keyout", os.path.join(d, name + ".key"), "-out", os.path.join(d, name + ".pem"),
                    "-days", "2"], check=True, capture_output=True)
    der = subprocess.run(["openssl", "x509", "-in", os.path.join(d, name + ".pem"), "-outform", "DER"],
                         check=True, capture_output=True).stdout
    return os.path.join(d, name + ".pem"), os.path.join(d, name + ".key"), der


def test_sighup_reloads_log_level_rate_limit_and_certificate(stack):
    d = os.path.join(stack.dir, "hup-tls")
    os.makedirs(d, exist_ok=True)
    cert1, key1, der1 = make_cert(d, "one")
    cert2, key2, der2 = make_cert(d, "two")
    r = Router(stack, "hup", tls=True, tls_cert_file=cert1, tls_key_file=key1)
    try:
        assert served_cert(r.port) == der1
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        old = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=10)
        old.request("GET", "/health")
        assert old.getresponse().read()

        key = stack.ctl("key", "create", "demo", "--name", "hup-rpm").stdout.strip()
        away_from_minute_edge()
        r.set(tls_cert_file=cert2, tls_key_file=key2, key_rpm_default=3, log_level="warn")
        r.signal(signal.SIGHUP)
        assert wait_for(lambda: "reload: done" in r.log(), 5), r.log()
        log = r.log()
        assert "reload: key_rpm_default: 0 -> 3" in log and "reload: log_level: info -> warn" in log
        assert served_cert(r.port) == der2                 # new connections: the new certificate
        old.request("GET", "/health")                      # an open one keeps its session
        assert old.getresponse().status == 200

        def chat():
            c = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=30)
            c.request("POST", "/api/v1/chat/completions", body=json.dumps(SOLO),
                      headers={"Authorization": "Bearer " + key, "Content-Type": "application/json"})
            return c.getresponse().status
        assert [chat() for _ in range(4)] == [200, 200, 200, 429]
        assert "status=200" not in r.log().split("reload: done")[-1]   # info lines are off now

        # A broken configuration, then a broken certificate: kept the old, still serving.
        r.write(extra="this is not a key\n")
        r.signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the running configuration" in r.log(), 5)
        bad = os.path.join(d, "bad.pem")
        with open(bad, "w") as f:
            f.write("not a certificate\n")
        r.set(tls_cert_file=bad, workers=2)
        r.signal(signal.SIGHUP)
        assert wait_for(lambda: "keeping the certificate in use" in r.log(), 5), r.log()
        assert "workers changed (1 -> 2): needs a restart" in r.log()
        assert r.proc.poll() is None
        assert served_cert(r.port) == der2
        s = http.client.HTTPSConnection("127.0.0.1", r.port, context=ctx, timeout=10)
        s.request("GET", "/health")
        assert s.getresponse().status == 200
    finally:
        r.stop()


# ---- zero-downtime restart ----

PR_SET_CHILD_SUBREAPER = 36


class Load:
    """Client threads while the router restarts: new connections and
    kept-alive ones, JSON and streams. A kept-alive connection the server
    closed while idle is retried on a new one (as HTTP clients do; nothing
    was answered, so nothing was served), counted in `retries`."""

    def __init__(self, port, key):
        self.port, self.key = port, key
        self.ok, self.failures, self.retries = [], [], 0
        self.lock, self.stop = threading.Lock(), threading.Event()

    def one(self, conn, stream):
        body = dict(SOLO, stream=stream)
        conn.request("POST", "/api/v1/chat/completions", body=json.dumps(body),
                     headers={"Authorization": "Bearer " + self.key, "Content-Type": "application/json"})
        r = conn.getresponse()
        raw = r.read()
        if r.status != 200:
            raise RuntimeError("status %d: %s" % (r.status, raw[:200]))
        if stream:
            ev = sse_events(raw)
            assert ev[-1] == "[DONE]", raw[-200:]
            return json.loads(ev[0])["id"], r.getheader("Connection") == "close"
        return json.loads(raw)["id"], r.getheader("Connection") == "close"

    def worker(self, keep, stream):
        conn, reused = None, False
        while not self.stop.is_set():
            if conn is None:
                conn, reused = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30), False
            try:
                gid, closing = self.one(conn, stream)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                conn.close()
                conn = None
                if reused:
                    with self.lock:
                        self.retries += 1
                    continue
                with self.lock:
                    self.failures.append(repr(e))
                continue
            except Exception as e:   # noqa: BLE001 -- every failure is counted
                with self.lock:
                    self.failures.append("%s (keep-alive %s, stream %s)" % (repr(e), keep, stream))
                conn.close()
                conn = None
                continue
            with self.lock:
                self.ok.append(gid)
            if closing or not keep:
                conn.close()
                conn = None
            else:
                reused = True

    def run(self, kinds):
        self.threads = [threading.Thread(target=self.worker, args=k) for k in kinds]
        for t in self.threads:
            t.start()

    def join(self):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def new_pid(log):
    m = re.findall(r"upgrade: started \S+ as pid (\d+)", log)
    return int(m[-1]) if m else None


def test_zero_downtime_upgrade_under_load(stack):
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)     # the new binary is reparented here
    r = Router(stack, "upgrade", workers=2, drain_timeout_ms=15000)
    pid2 = None
    try:
        key = stack.ctl("key", "create", "demo", "--name", "upgrade-load").stdout.strip()
        stack.mock("solo").config(ttft_ms=30, tps=200, words=30)     # ~0.2 s a request
        load = Load(r.port, key)
        load.run([(False, False), (False, True), (True, False), (True, True), (True, True), (False, False)])
        stack.mock("alpha").config(tps=20, words=40)       # one 2 s stream across the switch
        slow = {"model": "test/three", "provider": {"order": ["alpha"], "allow_fallbacks": False},
                "messages": [{"role": "user", "content": "slow"}]}
        c, resp = open_stream(r.port, key, slow)
        time.sleep(1.5)
        before = len(load.ok)
        t0 = time.time()
        r.signal(signal.SIGUSR2)
        assert wait_for(lambda: new_pid(r.log()), 5), r.log()
        pid2 = new_pid(r.log())
        assert wait_for(lambda: r.proc.poll() is not None, 20), "the old router did not drain"
        assert r.proc.returncode == 0
        drained = time.time() - t0
        raw = resp.read()                                 # the old one finished it
        assert sse_events(raw)[-1] == "[DONE]"
        load.ok.append(gen_id(raw))
        time.sleep(1.5)                                   # the new one alone
        load.join()
        assert load.failures == [], load.failures[:5]
        assert len(load.ok) > before + 20 and before > 10, (before, len(load.ok))
        assert os.path.exists("/proc/%d" % pid2)
        assert wait_for(lambda: stack.request("GET", "/health", port=r.port)[0] == 200, 5)
        log = r.log()
        assert "upgrade: pid %d serves: this one drains" % pid2 in log
        assert "inherited" in log
        # Every 200 billed exactly once.
        ids = load.ok
        assert len(set(ids)) == len(ids)

        def count():
            return stack.sql("SELECT count(*), count(DISTINCT generation_id) FROM usage_events"
                             " WHERE generation_id = ANY(%s)", ids)[0]
        assert wait_for(lambda: count()[0] >= len(ids), 15), (count(), len(ids))
        time.sleep(0.5)
        assert count() == (len(ids), len(ids))
        print("upgrade under load: %d requests ok (%d before the signal), 0 failed, %d retried on a "
              "closed idle keep-alive connection; the old router drained in %.1f s"
              % (len(ids), before, load.retries, drained))
    finally:
        if pid2:
            try:
                os.kill(pid2, signal.SIGTERM)
                os.waitpid(pid2, 0)
            except (ProcessLookupError, ChildProcessError):
                pass
        r.stop()
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
