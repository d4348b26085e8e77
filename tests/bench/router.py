"""The router against a plain reverse proxy, measured side by side in one run.

    /usr/bin/python3 tests/bench/router.py          (make bench runs it)

Three targets answer the same realistic chat request (a ~1 KB body) with the
same canned answer:

  upstream   nginx (1 worker) serving a canned chat completion (JSON) and a
             canned SSE stream from static files: the fixed-answer provider
  nginx      a plain nginx reverse proxy (1 worker) in front of it: HTTP/1.1
             keep-alive pool, proxy_buffering off; forwarding and nothing else
             (no access log): the floor
  agora      agora-router (1 worker) in front of the same upstream with every
             feature on: key authentication, rate limits, credit leases,
             routing, usage metering to Redis (XADD + live counters) and
             agora-billing writing it to PostgreSQL as it comes

plus agora with `metering = off` (identical otherwise) and both proxies with
N workers. Loads: wrk (1 thread) for JSON answers, tests/bench/loadgen for
streams (time to the first event, bytes per second) and idle connections.
Every figure is the median of BENCH_REPS runs (default 3, interleaved
across targets so drift hits every target alike) with the spread (min-max);
this machine is shared: ratios first, absolute numbers second.

Metering at the same load: closed loop, metering on serves fewer requests,
so its latency mixes lower throughput with overhead. Agora with metering on
and with it off are also driven open loop (tests/bench/loadgen -r: requests
sent on a fixed schedule, latency counted from when each was due) at the
same rate, OPEN_SHARE (40%) of metering on's closed-loop JSON throughput in
this run, over OPEN_CONNS connections, OPEN_SECONDS each, on/off/off/on;
median of the two runs of each.

Memory: the router's VmRSS idle, with 10,000 idle client connections, and
with 1,000 streams in flight (a slow mock provider), each on a fresh router.

Everything runs on loopback ports picked free, under a temporary directory,
and is stopped at the end. Environment: BENCH_SECONDS (10: each loaded run;
the single-connection and long-stream runs take half), BENCH_REPS (3),
BENCH_CONNS (32), BENCH_WORKERS (2), BENCH_WAIT_LOAD (300: seconds to wait at
most for the 1-minute load average to fall under 1.5 before measuring),
AGORA_BUILD (build).
"""
import json
import os
import resource
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

import redis

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "tests", "e2e"))
from conftest import BUILD, Stack, free_ports, wait_for  # noqa: E402  (the test suite's stack, reused)

SECONDS = float(os.environ.get("BENCH_SECONDS", "10"))
REPS = int(os.environ.get("BENCH_REPS", "3"))
CONNS = int(os.environ.get("BENCH_CONNS", "32"))
WORKERS = int(os.environ.get("BENCH_WORKERS", "2"))
LOADGEN = os.path.join(BUILD, "bench", "loadgen")
IDLE_CONNS = 10000
OPEN_SHARE = 0.4        # open loop: this share of metering on's closed-loop JSON requests/s
OPEN_CONNS = 16
OPEN_SECONDS = 6.0      # each of 4 runs (+1 s warm-up): ~28 s in all
STREAMS = 1000

# ---- the canned provider ----

UP_MODEL = "bench-upstream-model"
CREATED = 1767225600


def chunk(delta, finish=None, usage=None):
    o = {"id": "chatcmpl-bench0001", "object": "chat.completion.chunk", "created": CREATED, "model": UP_MODEL,
         "system_fingerprint": "fp_bench", "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                                        "finish_reason": finish}]}
    if usage is not None:
        o["choices"] = []
        o["usage"] = usage
    return "data: " + json.dumps(o, separators=(",", ":")) + "\n\n"


def sse_stream(words):
    """An OpenAI-shaped stream: role, one chunk a word, finish, usage, [DONE]."""
    parts = [chunk({"role": "assistant", "content": ""})]
    text = ["Certainly", " here", " is", " a", " short", " answer", " about", " the", " question", " you", " asked"]
    for i in range(words):
        parts.append(chunk({"content": text[i % len(text)]}))
    parts.append(chunk({}, "stop"))
    parts.append(chunk(None, usage={"prompt_tokens": 212, "completion_tokens": words, "total_tokens": 212 + words}))
    parts.append("data: [DONE]\n\n")
    return "".join(parts)


ANSWER = {"id": "chatcmpl-bench0001", "object": "chat.completion", "created": CREATED, "model": UP_MODEL,
          "system_fingerprint": "fp_bench",
          "choices": [{"index": 0, "message": {"role": "assistant", "content":
                       "Hamlet, Prince of Denmark, feigns madness to avenge his father's murder by his uncle "
                       "Claudius, who has taken the throne and married Hamlet's mother. His hesitation and the "
                       "deaths it sets off end with the court of Denmark, Hamlet included, destroyed.",
                       "refusal": None}, "logprobs": None, "finish_reason": "stop"}],
          "usage": {"prompt_tokens": 212, "completion_tokens": 58, "total_tokens": 270}}


def chat_body(model, stream):
    b = {"model": model, "messages": [
        {"role": "system", "content": "You are a careful literary assistant. Answer in plain prose, no lists, "
                                      "two sentences at most, and never invent quotations. " * 3},
        {"role": "user", "content": "Summarise the plot of Hamlet in two sentences, naming the main characters "
                                    "and how the play ends. Keep it under sixty words."},
        {"role": "assistant", "content": "Sure. Do you want the ending spoiled?"},
        {"role": "user", "content": "Yes, include the ending."}],
        "temperature": 0.7, "top_p": 0.95, "max_tokens": 256, "user": "bench-user-0001"}
    if stream:
        b["stream"] = True
        b["stream_options"] = {"include_usage": True}
    return json.dumps(b, separators=(",", ":"))


def write_canned(www):
    os.makedirs(os.path.join(www, "canned"), exist_ok=True)
    with open(os.path.join(www, "canned", "chat.json"), "w") as f:
        json.dump(ANSWER, f, separators=(",", ":"))
    with open(os.path.join(www, "canned", "chat.sse"), "w") as f:
        f.write(sse_stream(24))
    long = sse_stream(4300)             # ~1 MB of events
    with open(os.path.join(www, "canned", "long.sse"), "w") as f:
        f.write(long)
    return len(long)


# ---- nginx ----

NGINX_COMMON = """
user root;
daemon off;
master_process on;
worker_processes {workers};
worker_rlimit_nofile {nofile};
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 16384; }}
http {{
  access_log off;
  client_body_temp_path {d}/tmp/body;
  proxy_temp_path {d}/tmp/proxy;
  fastcgi_temp_path {d}/tmp/fastcgi;
  uwsgi_temp_path {d}/tmp/uwsgi;
  scgi_temp_path {d}/tmp/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 300s;
{body}
}}
"""

# The fixed-answer provider: POSTs are answered from static files (the
# static module refuses POST with 405, turned into a GET of the file).
NGINX_UPSTREAM = """
  types {{ application/json json; text/event-stream sse; }}
  open_file_cache max=16;
  etag off;
  map $http_accept $canned {{ default /canned/chat.json; "text/event-stream" /canned/chat.sse; }}
  map $http_accept $canned_long {{ default /canned/chat.json; "text/event-stream" /canned/long.sse; }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    root {www};
    location = /v1/chat/completions {{ rewrite ^ $canned last; }}
    location = /long/v1/chat/completions {{ rewrite ^ $canned_long last; }}
    location /canned/ {{ internal; error_page 405 =200 $uri; }}
  }}
"""

NGINX_PROXY = """
  upstream provider {{
    server 127.0.0.1:{up};
    keepalive 64;
    keepalive_requests 100000000;
  }}
  server {{
    listen 127.0.0.1:{port} reuseport;
    location / {{
      proxy_pass http://provider;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
    }}
  }}
"""


class Nginx:
    def pid(self):
        with open(os.path.join(self.dir, "nginx.pid")) as f:
            return int(f.read().strip())

    def __init__(self, d, port, workers, body):
        self.dir, self.port = d, port
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            os.makedirs(os.path.join(d, "tmp", sub), exist_ok=True)
        self.conf = os.path.join(d, "nginx.conf")
        with open(self.conf, "w") as f:
            f.write(NGINX_COMMON.format(workers=workers, d=d, body=body,
                                        nofile=resource.getrlimit(resource.RLIMIT_NOFILE)[0]))
        self.proc = subprocess.Popen(["nginx", "-p", d, "-e", os.path.join(d, "error.log"), "-c", self.conf],
                                     stdout=subprocess.DEVNULL, stderr=open(os.path.join(d, "stderr.log"), "w"))

        def up():
            try:
                with urllib.request.urlopen("http://127.0.0.1:%d/" % port, timeout=1):
                    return True
            except urllib.error.HTTPError:
                return True
            except OSError:
                return False
        if not wait_for(up, 10):
            raise RuntimeError("nginx did not start: " + open(os.path.join(d, "stderr.log")).read())

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


# ---- loads ----

WRK_LUA = """
wrk.method = "POST"
local f = io.open("{body}", "rb")
wrk.body = f:read("*a")
f:close()
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{{"requests":%d,"seconds":%.3f,"errors":%d,"non2xx":%d,'
    .. '"lat_p50_ms":%.3f,"lat_p90_ms":%.3f,"lat_p99_ms":%.3f,"lat_max_ms":%.3f}}\\n',
    summary.requests, summary.duration / 1e6, e.connect + e.read + e.write + e.timeout, e.status,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000))
end
"""


def run_wrk(tmp, url, body_file, headers, conns, secs):
    lua = os.path.join(tmp, "wrk-%d.lua" % conns)
    with open(lua, "w") as f:
        f.write(WRK_LUA.format(body=body_file, headers="\n".join(
            'wrk.headers["%s"] = "%s"' % tuple(h.split(": ", 1)) for h in headers)))
    r = subprocess.run(["wrk", "-t1", "-c%d" % conns, "-d%ds" % max(1, round(secs)), "--timeout", "10s",
                        "-s", lua, url], capture_output=True, text=True, timeout=secs + 60)
    line = [x for x in r.stdout.splitlines() if x.startswith("{")]
    if not line:
        raise RuntimeError("wrk: " + r.stdout + r.stderr)
    o = json.loads(line[-1])
    o["rps"] = (o["requests"] - o["non2xx"]) / o["seconds"]
    return o


def run_loadgen(url, body_file, headers, conns, secs, warmup=1.0, rate=None):
    """loadgen's JSON line; rate: open loop at that many requests/s in all."""
    args = [LOADGEN, "-u", url, "-m", "POST", "-b", body_file, "-c", str(conns), "-d", str(secs),
            "-w", str(warmup)]
    if rate:
        args += ["-r", "%.1f" % rate]
    for h in headers:
        args += ["-H", h]
    r = subprocess.run(args, capture_output=True, text=True, timeout=secs + warmup + 60)
    if r.returncode != 0 or not r.stdout.strip():
        raise RuntimeError("loadgen: " + r.stdout + r.stderr)
    return json.loads(r.stdout.strip().splitlines()[-1])


# ---- processes: memory and CPU ----

def family(pid):
    """pid and its descendants (nginx workers, agora-router workers, PostgreSQL backends)."""
    out, queue = [], [pid]
    while queue:
        p = queue.pop()
        out.append(p)
        try:
            with open("/proc/%d/task/%d/children" % (p, p)) as f:
                queue += [int(x) for x in f.read().split()]
        except OSError:
            pass
    return out


def cpu_seconds(pids):
    """User + system CPU time of processes and their descendants (the live ones)."""
    total = 0
    for root in pids:
        for p in family(root):
            try:
                with open("/proc/%d/stat" % p) as f:
                    st = f.read()
                fields = st[st.rindex(")") + 2:].split()
                total += int(fields[11]) + int(fields[12])
            except (OSError, ValueError):
                pass
    return total / os.sysconf("SC_CLK_TCK")


def billing_idle(r, timeout=60):
    """Waits until agora-billing has taken every usage event of the stream."""
    end = time.time() + timeout
    while time.time() < end:
        try:
            groups = r.xinfo_groups("usage")
        except Exception:
            return
        if all((g.get("lag") or 0) == 0 and (g.get("pending") or 0) == 0 for g in groups):
            return
        time.sleep(0.2)


def measured(fn, groups, r=None):
    """Runs fn(); adds to its result the CPU microseconds per answered request each
    process group spent meanwhile (cpu_<group>), billing's catching up included
    (r: the stack's Redis, to wait for it)."""
    if r is not None:
        billing_idle(r)
    before = {g: cpu_seconds(p) for g, p in groups.items()}
    o = fn()
    if r is not None:
        billing_idle(r)
    done = max(1, o.get("requests", 0) - o.get("non2xx", 0))
    for g, p in groups.items():
        o["cpu_" + g] = (cpu_seconds(p) - before[g]) * 1e6 / done
    return o


def rss_kib(pid):
    """VmRSS of a process and of its children (agora-router workers), KiB."""
    total = 0
    pids = [pid]
    try:
        with open("/proc/%d/task/%d/children" % (pid, pid)) as f:
            pids += [int(x) for x in f.read().split()]
    except OSError:
        pass
    for p in pids:
        with open("/proc/%d/status" % p) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def metric(port, name):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port, timeout=5) as r:
        for line in r.read().decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


def bench_catalog(up_port, slow_port):
    def provider(pid, base):
        return {"id": pid, "name": pid.capitalize(), "api": "openai", "base_url": base, "region": "EU",
                "data_policy": {"training": False, "retention_days": 0}}

    def model(mid, pid):
        return {"id": mid, "name": mid, "author": "bench", "context_length": 131072,
                "supported_parameters": ["temperature", "top_p", "max_tokens", "stream", "user"],
                "endpoints": [{"provider": pid, "upstream_model": UP_MODEL, "max_output": 8192,
                               "price": {"prompt_uusd_per_mtok": 150000, "completion_uusd_per_mtok": 600000}}]}
    return {"providers": [provider("fixed", "http://127.0.0.1:%d/v1" % up_port),
                          provider("fixedlong", "http://127.0.0.1:%d/long/v1" % up_port),
                          dict(provider("slow", "http://127.0.0.1:%d/v1" % slow_port), api_key_env="TEST_KEY_ALPHA")],
            "models": [model("bench/chat", "fixed"), model("bench/long", "fixedlong"), model("bench/slow", "slow")]}


DEPLOYMENT_DEFAULTS = ("AGORA_CATALOG_POLL_MS", "AGORA_MAX_BODY_BYTES", "AGORA_UPSTREAM_FIRST_BYTE_TIMEOUT_MS",
                       "AGORA_FAILURE_COOLDOWN_MS", "AGORA_KEY_CACHE_TTL_MS", "AGORA_CLIENT_HEADER_TIMEOUT_MS",
                       "AGORA_BILLING_BATCH")   # the test suite's short time-outs, dropped


def canned_stack(tmp, note, env=None):
    """The stack the router is measured on, started under tmp: the test
    suite's Stack with a deployment's defaults (env: AGORA_* over them, for
    billing and the other processes the stack starts), the canned nginx
    upstream (1 worker), the bench catalog and credits. (stack, upstream
    Nginx); the caller stops both."""
    st = Stack(tmp)
    for k in DEPLOYMENT_DEFAULTS:
        st.env.pop(k, None)
    st.env.update(env or {})
    up_port, = free_ports(1)
    www = os.path.join(tmp, "www")
    write_canned(www)
    upstream = Nginx(os.path.join(tmp, "ng-upstream"), up_port, 1, NGINX_UPSTREAM.format(port=up_port, www=www))
    try:
        st.start()
        cat = os.path.join(tmp, "bench-catalog.json")
        with open(cat, "w") as f:
            json.dump(bench_catalog(up_port, st.mock_ports["alpha"]), f)
        st.ctl("catalog", "import", cat)
        st.ctl("credits", "add", "demo", "1000000", "--note", note)
    except Exception:
        upstream.stop()
        st.stop()
        raise
    return st, upstream


def agora(st, name, **overrides):
    proc, port = st.extra_router(name, **{k: str(v) for k, v in overrides.items()})
    status, _, raw = st.request("POST", "/api/v1/chat/completions", chat_body("bench/chat", False), key=st.key,
                                port=port)
    if status != 200:
        raise RuntimeError("router %s: %d %s" % (name, status, raw[:300]))
    return proc, port


def stop_proc(proc):
    proc.terminate()
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# ---- figures ----

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def spread(xs, fmt):
    if len(xs) < 2:
        return ""
    return "(" + fmt % min(xs) + "-" + fmt % max(xs) + ")"


class Results:
    def __init__(self):
        self.runs = {}

    def add(self, key, o):
        self.runs.setdefault(key, []).append(o)

    def vals(self, key, field):
        return [o[field] for o in self.runs.get(key, []) if o.get(field) is not None and o[field] >= 0]

    def m(self, key, field):
        return med(self.vals(key, field))

    def cell(self, key, field, fmt):
        v = self.vals(key, field)
        if not v:
            return "-"
        return (fmt % med(v)) + " " + spread(v, fmt)


def load_avg():
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def main():
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]      # `ulimit -n` as high as allowed, inherited
    hard = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)   # by every server started here
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tempfile.mkdtemp(prefix="agora-bench-router-")
    os.chmod(tmp, 0o755)
    st = Stack(tmp)
    for k in DEPLOYMENT_DEFAULTS:   # the defaults of a real deployment
        st.env.pop(k, None)
    up_port, ng_port, ngn_port = free_ports(3)
    started = []
    res = Results()
    try:
        www = os.path.join(tmp, "www")
        long_len = write_canned(www)
        upstream = Nginx(os.path.join(tmp, "ng-upstream"), up_port, 1,
                         NGINX_UPSTREAM.format(port=up_port, www=www))
        started.append(upstream)
        ng_proxy = Nginx(os.path.join(tmp, "ng-proxy"), ng_port, 1, NGINX_PROXY.format(port=ng_port, up=up_port))
        started.append(ng_proxy)
        ng_proxy_n = Nginx(os.path.join(tmp, "ng-proxy-n"), ngn_port, WORKERS,
                           NGINX_PROXY.format(port=ngn_port, up=up_port))
        started.append(ng_proxy_n)
        st.start()
        cat_path = os.path.join(tmp, "bench-catalog.json")
        with open(cat_path, "w") as f:
            json.dump(bench_catalog(up_port, st.mock_ports["alpha"]), f)
        st.ctl("catalog", "import", cat_path)
        st.ctl("credits", "add", "demo", "1000000", "--note", "benchmark")

        routers = {}
        for name, ov in (("on", {"AGORA_METERING": "on"}), ("off", {"AGORA_METERING": "off"}),
                         ("n", {"AGORA_METERING": "on", "AGORA_WORKERS": WORKERS})):
            proc, port = agora(st, "bench-" + name, **ov)
            started.append(proc)
            routers[name] = (proc, port)

        bodies = {}
        for name, model, stream in (("json", "bench/chat", False), ("sse", "bench/chat", True),
                                    ("long", "bench/long", True), ("slow", "bench/slow", True)):
            bodies[name] = os.path.join(tmp, "body-%s.json" % name)
            with open(bodies[name], "w") as f:
                f.write(chat_body(model, stream))
        h_json = ["Content-Type: application/json", "Accept: application/json", "Authorization: Bearer " + st.key]
        h_sse = ["Content-Type: application/json", "Accept: text/event-stream", "Authorization: Bearer " + st.key]
        path = "/v1/chat/completions"
        urls = {"upstream": "http://127.0.0.1:%d%s" % (up_port, path),
                "nginx": "http://127.0.0.1:%d%s" % (ng_port, path),
                "agora": "http://127.0.0.1:%d/api%s" % (routers["on"][1], path),
                "agora-off": "http://127.0.0.1:%d/api%s" % (routers["off"][1], path),
                "nginx-n": "http://127.0.0.1:%d%s" % (ngn_port, path),
                "agora-n": "http://127.0.0.1:%d/api%s" % (routers["n"][1], path)}
        long_urls = {"upstream": "http://127.0.0.1:%d/long%s" % (up_port, path),
                     "nginx": "http://127.0.0.1:%d/long%s" % (ng_port, path), "agora": urls["agora"]}

        def pidfile(name):
            with open(os.path.join(tmp, "run", name)) as f:
                return int(f.read().strip())
        with open(os.path.join(tmp, "pg", "postmaster.pid")) as f:
            pg_pid = int(f.readline().strip())
        pipeline = [pidfile("redis.pid"), pidfile("billing.pid"), pg_pid]     # metering and billing
        proxies = {"upstream": [], "nginx": [ng_proxy.pid()], "agora": [routers["on"][0].pid],
                   "agora-off": [routers["off"][0].pid], "nginx-n": [ng_proxy_n.pid()],
                   "agora-n": [routers["n"][0].pid]}

        rds = redis.Redis(port=st.redis_port, decode_responses=True)

        def cpu_groups(t):
            return {"proxy": proxies[t], "upstream": [upstream.pid()], "pipeline": pipeline}

        # waits (a while) for a quieter machine; the figures say what the load was
        t0 = time.time()
        while load_avg() > 1.5 and time.time() - t0 < float(os.environ.get("BENCH_WAIT_LOAD", "300")):
            time.sleep(5)
        load_before = load_avg()
        half = max(1.0, SECONDS / 2)
        for t in ("upstream", "nginx", "agora", "agora-off", "nginx-n", "agora-n"):   # warm up
            run_wrk(tmp, urls[t], bodies["json"], h_json, CONNS, 1)
        for rep in range(REPS):
            print("router bench: run %d of %d (load %.2f)" % (rep + 1, REPS, load_avg()), flush=True)
            for t in ("upstream", "nginx", "agora", "agora-off", "nginx-n", "agora-n"):
                res.add(("json", t), measured(lambda: run_wrk(tmp, urls[t], bodies["json"], h_json, CONNS, SECONDS),
                                              cpu_groups(t), rds))
            for t in ("upstream", "nginx", "agora", "agora-off"):
                res.add(("json1", t), run_wrk(tmp, urls[t], bodies["json"], h_json, 1, half))
            for t in ("upstream", "nginx", "agora"):
                res.add(("sse", t), measured(lambda: run_loadgen(urls[t], bodies["sse"], h_sse, CONNS, SECONDS),
                                             cpu_groups(t), rds))
                res.add(("sse1", t), run_loadgen(urls[t], bodies["sse"], h_sse, 1, half))
                res.add(("long", t), measured(lambda: run_loadgen(long_urls[t], bodies["long"], h_sse, 1, half),
                                              cpu_groups(t), rds))

        # ---- metering on vs off at the same offered load (open loop) ----
        open_rate = OPEN_SHARE * res.m(("json", "agora"), "rps")
        open_secs = min(OPEN_SECONDS, SECONDS)
        print("router bench: metering on / off, open loop at %.0f requests/s (load %.2f)" % (open_rate, load_avg()),
              flush=True)
        for t in ("agora", "agora-off", "agora-off", "agora"):     # drift hits both alike
            billing_idle(rds)
            res.add(("open", t), run_loadgen(urls[t], bodies["json"], h_json, OPEN_CONNS, open_secs, rate=open_rate))
        load_after = load_avg()

        # ---- memory, each on a fresh router ----
        mem = {}
        proc, port = agora(st, "bench-mem-idle", AGORA_METERING="on")
        started.append(proc)
        time.sleep(1)
        mem["idle"] = rss_kib(proc.pid)
        lg = subprocess.Popen([LOADGEN, "-u", "http://127.0.0.1:%d/" % port, "--idle", "-c", str(IDLE_CONNS),
                               "-d", "120"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = lg.stdout.readline()
        held = json.loads(line)["connected"] if line.startswith("{") else 0
        time.sleep(1)
        mem["conns"] = rss_kib(proc.pid)
        mem["conns_seen"] = metric(port, "agora_router_client_connections")
        mem["conns_held"] = held
        lg.stdin.close()
        lg.wait(30)
        stop_proc(proc)

        proc, port = agora(st, "bench-mem-streams", AGORA_METERING="on")
        started.append(proc)
        time.sleep(1)
        mem["idle2"] = rss_kib(proc.pid)
        st.mock("alpha").config(ttft_ms=300, tps=10, words=40)        # ~4 s a stream
        lg = subprocess.Popen([LOADGEN, "-u", "http://127.0.0.1:%d/api%s" % (port, path), "-m", "POST",
                               "-b", bodies["slow"], "-c", str(STREAMS), "-d", "8", "-w", "0"]
                              + sum((["-H", h] for h in h_sse), []), stdout=subprocess.PIPE, text=True)
        peak, inflight = 0, 0
        t0 = time.time()
        while lg.poll() is None and time.time() - t0 < 60:
            peak = max(peak, rss_kib(proc.pid))
            try:
                inflight = max(inflight, metric(port, "agora_router_inflight") or 0)
            except OSError:
                pass
            time.sleep(0.25)
        slow = json.loads(lg.communicate()[0].strip().splitlines()[-1])
        st.mock("alpha").reset()
        mem["streams"] = peak
        mem["inflight"] = inflight
        stop_proc(proc)

        # ---- the table ----
        def ratio(a, b):
            return "%.2fx" % (a / b) if b and a == a and b == b else "n/a"

        def added_ratio(a, b):
            # an added latency the floor shows below zero (its p99 under the
            # upstream's own, at one connection) is noise: no ratio to take
            return ratio(a, b) if b > 0 and a >= 0 else "n/a"

        up, ng, ag, off = "upstream", "nginx", "agora", "agora-off"
        rps = {t: res.m(("json", t), "rps") for t in urls}
        add = {t: res.m(("json", t), "lat_p50_ms") - res.m(("json", up), "lat_p50_ms") for t in (ng, ag, off)}
        add99 = {t: res.m(("json", t), "lat_p99_ms") - res.m(("json", up), "lat_p99_ms") for t in (ng, ag, off)}
        add1 = {t: res.m(("json1", t), "lat_p50_ms") - res.m(("json1", up), "lat_p50_ms") for t in (ng, ag, off)}
        add1_99 = {t: res.m(("json1", t), "lat_p99_ms") - res.m(("json1", up), "lat_p99_ms") for t in (ng, ag, off)}
        ttfb1 = {t: res.m(("sse1", t), "ttfb_p50_ms") - res.m(("sse1", up), "ttfb_p50_ms") for t in (ng, ag)}
        srps = {t: res.m(("sse", t), "rps") for t in (up, ng, ag)}
        mbs = {t: res.m(("long", t), "body_bytes_per_s") / 1e6 for t in (up, ng, ag)}
        print()
        print("Router vs a plain reverse proxy (%d connections, keep-alive, %gs runs, median of %d (min-max);"
              " load average %.2f before, %.2f after)" % (CONNS, SECONDS, REPS, load_before, load_after))
        print("  ratios")
        print("  %-62s %9s" % ("throughput, JSON, agora / nginx (1 worker each)", ratio(rps[ag], rps[ng])))
        print("  %-62s %9s" % ("throughput, SSE (24-event stream), agora / nginx", ratio(srps[ag], srps[ng])))
        print("  %-62s %9s   (%+.3f ms vs %+.3f ms)" % ("added p50 latency at %d conns, agora / nginx" % CONNS,
                                                            added_ratio(add[ag], add[ng]), add[ag], add[ng]))
        print("  %-62s %9s   (%+.3f ms vs %+.3f ms)" % ("added p99 latency at %d conns, agora / nginx" % CONNS,
                                                            added_ratio(add99[ag], add99[ng]), add99[ag], add99[ng]))
        print("  %-62s %9s   (%+.3f ms vs %+.3f ms)" % ("added p50 latency, 1 connection, agora / nginx",
                                                            added_ratio(add1[ag], add1[ng]), add1[ag], add1[ng]))
        print("  %-62s %9s   (%+.3f ms vs %+.3f ms)" % ("added p99 latency, 1 connection, agora / nginx",
                                                            added_ratio(add1_99[ag], add1_99[ng]), add1_99[ag], add1_99[ng]))
        print("  %-62s %9s   (%+.3f ms vs %+.3f ms)" % ("added time to first event, 1 connection, agora / nginx",
                                                            ratio(ttfb1[ag], ttfb1[ng]), ttfb1[ag], ttfb1[ng]))
        print("  %-62s %9s" % ("long stream bytes/s, agora / nginx", ratio(mbs[ag], mbs[ng])))
        print("  %-62s %9s   (%.1f us vs %.1f us)" % ("CPU per JSON answer, agora router / nginx proxy",
                                                          ratio(res.m(("json", ag), "cpu_proxy"),
                                                                res.m(("json", ng), "cpu_proxy")),
                                                          res.m(("json", ag), "cpu_proxy"),
                                                          res.m(("json", ng), "cpu_proxy")))
        print("  %-62s %9s   (%.1f us vs %.1f us)" % ("CPU per JSON answer, agora + metering pipeline / nginx",
                                                          ratio(res.m(("json", ag), "cpu_proxy")
                                                                + res.m(("json", ag), "cpu_pipeline"),
                                                                res.m(("json", ng), "cpu_proxy")),
                                                          res.m(("json", ag), "cpu_proxy")
                                                          + res.m(("json", ag), "cpu_pipeline"),
                                                          res.m(("json", ng), "cpu_proxy")))
        print("  %-62s %9s" % ("metering off / on: throughput", ratio(rps[off], rps[ag])))
        print("  %-62s %9s" % ("metering off / on: p50 latency, 1 connection",
                                  ratio(res.m(("json1", off), "lat_p50_ms"), res.m(("json1", ag), "lat_p50_ms"))))
        for q in ("p50", "p99"):
            a, b = res.m(("open", ag), "lat_%s_ms" % q), res.m(("open", off), "lat_%s_ms" % q)
            print("  %-62s %9s   (%.3f vs %.3f ms: %+.3f ms)"
                  % ("metering on / off, same load (%.0f req/s, open loop): %s" % (open_rate, q),
                     ratio(a, b), a, b, a - b))
        print("  %-62s %9s" % ("scaling, nginx %d workers / 1" % WORKERS, ratio(rps["nginx-n"], rps[ng])))
        print("  %-62s %9s" % ("scaling, agora %d workers / 1" % WORKERS, ratio(rps["agora-n"], rps[ag])))
        print("  absolute")
        names = {"upstream": "upstream (nginx, canned)", "nginx": "nginx proxy, 1 worker",
                 "agora": "agora, 1 worker, metering on", "agora-off": "agora, 1 worker, metering off",
                 "nginx-n": "nginx proxy, %d workers" % WORKERS, "agora-n": "agora, %d workers, metering on" % WORKERS}
        print("  JSON, %d connections        %-22s %-22s %-22s" % (CONNS, "requests/s", "p50 ms", "p99 ms"))
        for t in urls:
            print("    %-30s %-22s %-22s %-22s" % (names[t], res.cell(("json", t), "rps", "%.0f"),
                                                 res.cell(("json", t), "lat_p50_ms", "%.3f"),
                                                 res.cell(("json", t), "lat_p99_ms", "%.3f")))
        print("  JSON, 1 connection          %-22s %-22s %-22s" % ("requests/s", "p50 ms", "p99 ms"))
        for t in (up, ng, ag, off):
            print("    %-30s %-22s %-22s %-22s" % (names[t], res.cell(("json1", t), "rps", "%.0f"),
                                                 res.cell(("json1", t), "lat_p50_ms", "%.3f"),
                                                 res.cell(("json1", t), "lat_p99_ms", "%.3f")))
        print("  JSON, open loop, %-2d conns    %-22s %-22s %-22s %s"
              % (OPEN_CONNS, "requests/s (%.0f sent)" % open_rate, "p50 ms (from due)", "p99 ms (from due)",
                 "late > 1 ms (of all)"))
        for t in (ag, off):
            print("    %-30s %-22s %-22s %-22s %s (%d)" % (names[t], res.cell(("open", t), "rps", "%.0f"),
                                                      res.cell(("open", t), "lat_p50_ms", "%.3f"),
                                                      res.cell(("open", t), "lat_p99_ms", "%.3f"),
                                                      res.cell(("open", t), "late", "%.0f"),
                                                      res.m(("open", t), "requests")))
        print("  SSE, %d connections         %-22s %-22s %-22s" % (CONNS, "streams/s", "first event p50 ms",
                                                                     "first event p99 ms"))
        for t in (up, ng, ag):
            print("    %-30s %-22s %-22s %-22s" % (names[t], res.cell(("sse", t), "rps", "%.0f"),
                                                 res.cell(("sse", t), "ttfb_p50_ms", "%.3f"),
                                                 res.cell(("sse", t), "ttfb_p99_ms", "%.3f")))
        print("  SSE, 1 connection           %-22s %-22s %-22s" % ("streams/s", "first event p50 ms",
                                                                     "first event p99 ms"))
        for t in (up, ng, ag):
            print("    %-30s %-22s %-22s %-22s" % (names[t], res.cell(("sse1", t), "rps", "%.0f"),
                                                 res.cell(("sse1", t), "ttfb_p50_ms", "%.3f"),
                                                 res.cell(("sse1", t), "ttfb_p99_ms", "%.3f")))
        print("  long stream (%.1f MB of SSE), 1 connection  MB/s" % (long_len / 1e6))
        for t in (up, ng, ag):
            v = [x / 1e6 for x in res.vals(("long", t), "body_bytes_per_s")]
            print("    %-30s %-22s" % (names[t], "%.1f %s" % (med(v), spread(v, "%.1f"))))
        print("  CPU per answer, microseconds      %-22s %-22s %-22s" % ("proxy process(es)", "upstream nginx",
                                                                        "Redis+billing+PostgreSQL"))
        for key, label, ts, scale in (("json", "JSON", (ng, ag, off, "nginx-n", "agora-n"), 1),
                                      ("sse", "SSE, 24 events", (ng, ag), 1),
                                      ("long", "long stream, per MB", (ng, ag), 1e6 / long_len)):
            print("    %s" % label)
            for t in ts:
                print("      %-28s %-22s %-22s %-22s" % (names[t], "%.1f" % (res.m((key, t), "cpu_proxy") * scale),
                                                      "%.1f" % (res.m((key, t), "cpu_upstream") * scale),
                                                      "%.1f" % (res.m((key, t), "cpu_pipeline") * scale)))
        errs = sum(o.get("errors", 0) + o.get("non2xx", 0) for runs in res.runs.values() for o in runs)
        print("  errors or non-2xx answers during the runs: %d" % errs)
        print("  memory (agora-router VmRSS)")
        per_conn = (mem["conns"] - mem["idle"]) / max(1, mem["conns_held"])
        per_stream = (mem["streams"] - mem["idle2"]) / STREAMS
        print("    %-52s %8d KiB" % ("idle (catalog loaded, one request served)", mem["idle"]))
        print("    %-52s %8d KiB   %.2f KiB per connection (%d held, router saw %d)"
              % ("with %d idle client connections" % IDLE_CONNS, mem["conns"], per_conn, mem["conns_held"],
                 mem["conns_seen"] or 0))
        print("    %-52s %8d KiB   %.1f KiB per stream (peak in flight %d; %d streams done, %d errors)"
              % ("with %d streams in flight (slow provider)" % STREAMS, mem["streams"], per_stream,
                 mem["inflight"], slow["requests"], slow["errors"]))
        return 0 if errs == 0 else 1
    finally:
        for s in reversed(started):
            if isinstance(s, Nginx):
                s.stop()
            else:
                stop_proc(s)
        st.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
