"""The integration suite's stack: real PostgreSQL, Redis, mock providers and
the three services, started by deploy/devstack.sh in a temporary directory on
free ports, with a catalog made for the tests, and always stopped."""
import contextlib
import http.client
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time

import psycopg2
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.join(ROOT, os.environ.get("AGORA_BUILD", "build"))

# provider id -> (scheme, price prompt, price completion) for model test/three
THREE = {"alpha": ("http", 100000, 200000), "beta": ("http", 300000, 600000),
         "gamma": ("https", 900000, 1800000)}
# model test/claude: provider id -> (api, price prompt, price completion); the two
# Anthropic Messages providers first, the OpenAI-compatible solo last
CLAUDE = {"anthro": ("anthropic", 200000, 1000000), "anthro2": ("anthropic", 300000, 1500000),
          "solo": ("openai", 400000, 2000000)}


def free_ports(n):
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def make_catalog(mock_ports):
    providers, eps = [], []
    for i, (pid, (scheme, pp, cp)) in enumerate(THREE.items()):
        providers.append({"id": pid, "name": pid.capitalize() + " AI", "api": "openai",
                          "base_url": "%s://127.0.0.1:%d/v1" % (scheme, mock_ports[pid]),
                          "api_key_env": "TEST_KEY_" + pid.upper(), "region": ["US", "EU", "SG"][i],
                          "data_policy": {"training": i == 2, "retention_days": 30 * i}})
        eps.append({"provider": pid, "upstream_model": "up-%s-three" % pid, "quantization": "fp8",
                    "max_output": 4096, "price": {"prompt_uusd_per_mtok": pp, "completion_uusd_per_mtok": cp}})
    providers.append({"id": "solo", "name": "Solo AI", "api": "openai",
                      "base_url": "http://127.0.0.1:%d/v1" % mock_ports["solo"], "api_key_env": "TEST_KEY_SOLO"})
    for pid in ("anthro", "anthro2"):
        providers.append({"id": pid, "name": pid.capitalize() + " Messages", "api": "anthropic",
                          "base_url": "http://127.0.0.1:%d/v1" % mock_ports[pid],
                          "api_key_env": "TEST_KEY_" + pid.upper(), "region": "US"})
    params = ["tools", "tool_choice", "response_format", "temperature", "top_p", "max_tokens", "stop", "seed"]
    models = [
        {"id": "test/three", "name": "Test: Three", "author": "test", "origin": "CN", "license": "MIT",
         "context_length": 32768, "description": "three endpoints", "supported_parameters": params,
         "endpoints": eps},
        {"id": "test/solo", "name": "Test: Solo", "context_length": 8192, "supported_parameters": params,
         "endpoints": [{"provider": "solo", "upstream_model": "up-solo", "max_output": 1024,
                        "price": {"prompt_uusd_per_mtok": 500000, "completion_uusd_per_mtok": 1000000}}]},
        {"id": "test/claude", "name": "Test: Claude", "author": "test", "context_length": 200000,
         "supported_parameters": params,
         "endpoints": [{"provider": pid, "upstream_model": "up-%s-claude" % pid, "max_output": 8192,
                        "price": {"prompt_uusd_per_mtok": pp, "completion_uusd_per_mtok": cp}}
                       for pid, (_, pp, cp) in CLAUDE.items()]},
    ]
    return {"providers": providers, "models": models}


class Stack:
    def __init__(self, tmp):
        self.dir = tmp
        names = list(THREE) + ["solo", "anthro", "anthro2"]
        ports = free_ports(5 + len(names))
        self.pg_port, self.redis_port, self.router_port, self.analytics_port, self.billing_port = ports[:5]
        self.mock_ports = dict(zip(names, ports[5:]))
        self.catalog = make_catalog(self.mock_ports)
        self.catalog_path = os.path.join(tmp, "catalog.json")
        self.write_catalog(self.catalog)
        self.env = dict(os.environ, AGORA_BUILD=BUILD, AGORA_CATALOG=self.catalog_path,
                        AGORA_PG_PORT=str(self.pg_port), AGORA_REDIS_PORT=str(self.redis_port),
                        AGORA_ROUTER_PORT=str(self.router_port), AGORA_ANALYTICS_PORT=str(self.analytics_port),
                        AGORA_BILLING_LISTEN="127.0.0.1:%d" % self.billing_port,
                        AGORA_PG_FAST="1", AGORA_CATALOG_POLL_MS="200", AGORA_MAX_BODY_BYTES="65536",
                        AGORA_UPSTREAM_FIRST_BYTE_TIMEOUT_MS="1500", AGORA_FAILURE_COOLDOWN_MS="0",
                        AGORA_KEY_CACHE_TTL_MS="1000", AGORA_CLIENT_HEADER_TIMEOUT_MS="2000",
                        AGORA_BILLING_BATCH="500", AGORA_LOG_LEVEL="info")
        self.env.pop("AGORA_CONF", None)

    def write_catalog(self, cat):
        with open(self.catalog_path, "w") as f:
            json.dump(cat, f)

    def import_model(self, model_id, providers, upstream_model, max_output=100000):
        """Imports the stack's catalog plus model_id, served by providers
        [(provider id, base URL)], OpenAI-style, one endpoint each at 1,000
        micro-USD per million tokens. Re-import self.catalog to undo it."""
        cat = json.loads(json.dumps(self.catalog))
        for pid, url in providers:
            cat["providers"].append({"id": pid, "name": pid + " AI", "api": "openai", "base_url": url})
        cat["models"].append({"id": model_id, "name": "Test: " + model_id, "context_length": 8192,
                              "endpoints": [{"provider": pid, "upstream_model": upstream_model,
                                             "max_output": max_output,
                                             "price": {"prompt_uusd_per_mtok": 1000,
                                                       "completion_uusd_per_mtok": 1000}}
                                            for pid, _ in providers]})
        self.write_catalog(cat)
        self.ctl("catalog", "import", self.catalog_path)

    def stack(self, cmd):
        return subprocess.run(["bash", os.path.join(ROOT, "deploy/devstack.sh"), cmd, self.dir],
                              env=self.env, capture_output=True, text=True, timeout=180)

    def start(self):
        r = self.stack("start")
        if r.returncode != 0:
            raise RuntimeError("stack did not start:\n" + r.stdout + r.stderr)
        self.start_output = r.stdout
        with open(os.path.join(self.dir, "agora.env")) as f:
            self.vars = dict(line.strip().split("=", 1) for line in f if "=" in line)
        self.key = self.vars["AGORA_KEY"]
        self.admin_key = self.vars["AGORA_ADMIN_KEY"]
        with open(os.path.join(self.dir, "provider_keys.env")) as f:
            self.provider_keys = dict(line.strip()[len("export "):].split("=", 1) for line in f if "=" in line)

    def stop(self):
        return self.stack("stop")

    # ---- clients ----
    def request(self, method, path, body=None, key=None, headers=None, port=None, timeout=30):
        h = {"Content-Type": "application/json"}
        if key:
            h["Authorization"] = "Bearer " + key
        h.update(headers or {})
        c = http.client.HTTPConnection("127.0.0.1", port or self.router_port, timeout=timeout)
        data = body if isinstance(body, (bytes, str)) or body is None else json.dumps(body)
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        raw = r.read()
        c.close()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, raw

    def get(self, path, key=None):
        s, h, raw = self.request("GET", path, key=key)
        return s, json.loads(raw) if raw else None

    def chat(self, body, key=None, path="/api/v1/chat/completions", headers=None):
        s, h, raw = self.request("POST", path, body, key=self.key if key is None else key, headers=headers)
        return s, h, raw

    def chat_json(self, body, **kw):
        s, h, raw = self.chat(body, **kw)
        return s, json.loads(raw)

    def mock(self, name):
        return Mock(self.mock_ports[name], name == "gamma")

    def ctl(self, *args, check=True, input_text=None, env=None):
        r = subprocess.run([os.path.join(BUILD, "agoractl"), "-c", os.path.join(self.dir, "agora.conf"),
                            "--migrations", os.path.join(ROOT, "migrations")] + list(args),
                           env=dict(self.env, **(env or {})), capture_output=True, text=True, timeout=60,
                           input=input_text)
        if check and r.returncode != 0:
            raise RuntimeError("agoractl %s: %s" % (" ".join(args), r.stderr))
        return r

    def xadd_usage(self, events):
        """Usage events (dicts in the router's format) onto the stream `usage`,
        pipelined, for agora-billing to bill."""
        import redis
        pipe = redis.Redis(port=self.redis_port).pipeline(transaction=False)
        for e in events:
            pipe.xadd("usage", {"e": json.dumps(e)})
        pipe.execute()

    def db(self):
        c = psycopg2.connect(host="127.0.0.1", port=self.pg_port, dbname="agora", user="agora")
        c.autocommit = True
        return c

    def sql(self, query, *args):
        with self.db() as c, c.cursor() as cur:
            cur.execute(query, args)
            return cur.fetchall() if cur.description else None

    def extra_router(self, name, tls=False, wrap=(), **overrides):
        """Another agora-router on the same PostgreSQL, Redis and catalog, on a
        free port, with AGORA_* overrides: (process, port). The caller
        terminates it. tls: its /health is checked over HTTPS (the stack's CA).
        wrap: a command the router runs under (valgrind ...), given time to start."""
        port = free_ports(1)[0]
        env = dict(self.env, AGORA_LISTEN="127.0.0.1:%d" % port,
                   AGORA_SPOOL_PATH=os.path.join(self.dir, "spool", "usage-%s.spool" % name))
        env.update(self.provider_keys)
        env.update(overrides)
        proc = subprocess.Popen(list(wrap) + [os.path.join(BUILD, "agora-router"), "-c",
                                                os.path.join(self.dir, "agora.conf")],
                                env=env, stdout=subprocess.DEVNULL,
                                stderr=open(os.path.join(self.dir, "log", name + ".log"), "w"))

        def up():
            try:
                if not tls:
                    return self.request("GET", "/health", port=port, timeout=2)[0] == 200
                import ssl
                ctx = ssl.create_default_context(cafile=os.path.join(self.dir, "tls", "ca.pem"))
                c = http.client.HTTPSConnection("127.0.0.1", port, context=ctx, timeout=2)
                c.request("GET", "/health")
                return c.getresponse().status == 200
            except OSError:
                return False
        assert wait_for(up, 60 if wrap else 10), "router %s did not start" % name
        return proc, port

    def extra_billing(self, name, **overrides):
        """Another agora-billing worker on the stack's PostgreSQL and Redis,
        with its own metrics listener on a free port and AGORA_* overrides;
        its log is log/<name>.log: (process, log path). The caller terminates it."""
        log = os.path.join(self.dir, "log", name + ".log")
        env = dict(self.env, AGORA_BILLING_LISTEN="127.0.0.1:%d" % free_ports(1)[0])
        env.update(overrides)
        proc = subprocess.Popen([os.path.join(BUILD, "agora-billing"), "-c", os.path.join(self.dir, "agora.conf")],
                                env=env, stdout=subprocess.DEVNULL, stderr=open(log, "w"))
        return proc, log

    def log(self, name):
        with open(os.path.join(self.dir, "log", name + ".log")) as f:
            return f.read()


class Mock:
    def __init__(self, port, tls):
        self.port, self.tls = port, tls

    def _req(self, method, path, body=None):
        if self.tls:
            import ssl
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            c = http.client.HTTPSConnection("127.0.0.1", self.port, context=ctx, timeout=10)
        else:
            c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        c.request(method, path, body=json.dumps(body) if body is not None else None)
        r = c.getresponse()
        out = json.loads(r.read())
        c.close()
        return out

    def config(self, **kw):
        return self._req("POST", "/mock/config", kw)

    def stats(self):
        return self._req("GET", "/mock/stats")

    def reset(self):
        self.config(fail="none", ttft_ms=0, tps=0, fail_count=0, words=12, retry_after=1, say="")
        self._req("POST", "/mock/reset_stats", {})


@contextlib.contextmanager
def new_stack(prefix):
    """A whole stack in a temporary directory, stopped (and removed, unless
    AGORA_KEEP_TEST_DIR=1) at the end."""
    tmp = tempfile.mkdtemp(prefix=prefix)
    s = Stack(tmp)
    try:
        s.start()
        yield s
    finally:
        r = s.stop()
        if r.returncode != 0:
            print(r.stdout, r.stderr)
        if os.environ.get("AGORA_KEEP_TEST_DIR") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(scope="session")
def stack():
    with new_stack("agora-test-") as s:
        yield s


@pytest.fixture(autouse=True)
def clean_mocks(request):
    """Every test starts with well-behaved mocks."""
    if "stack" not in request.fixturenames:
        yield
        return
    s = request.getfixturevalue("stack")
    for name in s.mock_ports:
        s.mock(name).reset()
    yield


def canned_stream_provider(body):
    """An HTTP handler class (for http.server) answering every POST with the
    SSE bytes body, as fast as the socket takes them."""
    from http.server import BaseHTTPRequestHandler

    class Canned(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", "0")))
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                self.wfile.write(body)
            except OSError:
                pass            # the router went away (a test ended early)

        def log_message(self, *args):
            pass
    return Canned


def serve_provider(handler):
    """An http.server of handler on a free loopback port, in a thread: (server,
    its base URL). The caller shuts it down."""
    import threading
    from http.server import ThreadingHTTPServer

    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, "http://127.0.0.1:%d/v1" % server.server_address[1]


def sse_events(raw):
    """The data payloads of an SSE body, in order."""
    out = []
    for block in raw.decode().split("\n\n"):
        for line in block.split("\n"):
            if line.startswith("data: "):
                out.append(line[6:])
    return out


def wait_for(fn, timeout=10.0, every=0.1):
    end = time.time() + timeout
    while time.time() < end:
        v = fn()
        if v:
            return v
        time.sleep(every)
    return fn()
