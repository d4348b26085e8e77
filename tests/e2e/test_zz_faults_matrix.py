"""The fault matrix (issue 7, "Faults"). Runs last, on its OWN stack (tight
time-outs, two routers), so its kills disturb no other test.

For each fault, one at a time: steady concurrent traffic (8 client threads,
streaming and not, models with fail-over and without, spread over two
routers), the fault injected for a few seconds, then repaired (the component
restarted by `deploy/devstack.sh start`, or the mock provider healed), traffic
a little longer. Then, per row:

- every answer was a 200 with a valid body (a stream: valid chunks ending
  `[DONE]`) or a clear error: `{"error":{"code","message"}}` with that status,
  a stream ending with an error event, or (only for the killed router's own
  clients) a refused or dropped connection;
- no request took longer than the configured time-outs allow
  (pg_timeout + max_attempts x upstream_total_timeout) plus a margin;
- each router's RSS grew by less than RSS_BOUND_MB during the row;
- the stack answers normally again by itself (every model, JSON and stream,
  through both routers; Redis and spool back; a new key works after
  PostgreSQL returns);
- once billing caught up, every generation that got a 200 (and every stream
  that ended with an error event, which is metered too) is in usage_events
  exactly once, no generation twice, and events = ledger = usage_daily =
  usage_hourly = keys' usage.

The table of what was tried and what held goes to build/test-output/faults.txt
and to the end of pytest's report."""
import collections
import http.client
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from conftest import BUILD, ROOT, Stack, sse_events, wait_for
from test_zfaults import sums_agree

# The stack's time-outs (tight, so the matrix stays fast).
T = dict(connect=1000, first_byte=1500, idle=1500, total=4000, pg=2000, attempts=3)
OVERRIDES = {
    "AGORA_UPSTREAM_CONNECT_TIMEOUT_MS": str(T["connect"]),
    "AGORA_UPSTREAM_FIRST_BYTE_TIMEOUT_MS": str(T["first_byte"]),
    "AGORA_UPSTREAM_IDLE_TIMEOUT_MS": str(T["idle"]),
    "AGORA_UPSTREAM_TOTAL_TIMEOUT_MS": str(T["total"]),
    "AGORA_MAX_ATTEMPTS": str(T["attempts"]),
    "AGORA_PG_TIMEOUT_MS": str(T["pg"]),
    "AGORA_MAX_RESPONSE_BYTES": str(1 << 20),
    "AGORA_FAILURE_COOLDOWN_MS": "2000",
    "AGORA_BILLING_CLAIM_IDLE_MS": "2000",
    "AGORA_KEY_CACHE_TTL_MS": "1000",
    "AGORA_LOG_LEVEL": "warn",
    # Crash-safe PostgreSQL (fsync and synchronous commits on): with the
    # suite's AGORA_PG_FAST=1 (synchronous_commit=off) a kill -9 of the server
    # loses its last commits, which billing has already acknowledged.
    "AGORA_PG_FAST": "0",
}
# The longest a request may take: a key lookup that times out, then every
# attempt up to its total time-out. Past it (plus a margin) a request hangs.
BOUND_S = (T["pg"] + T["attempts"] * T["total"]) / 1000.0 + 3.0
CLIENT_GIVE_UP_S = BOUND_S + 5.0
RSS_BOUND_MB = 64
THREADS = 8
PAUSE_S = 0.04                 # between a thread's requests
MAX_REQUESTS = 3000            # per row, whatever happens
MODELS = ["test/three", "test/solo", "test/three", "test/claude"]
FAULTY = ["alpha", "solo", "anthro"]     # the provider faults hit these mocks

# (id, what the table says, seconds the fault lasts)
ROWS = [
    ("redis", "kill -9 Redis", 3),
    ("postgres", "kill -9 PostgreSQL", 3),
    ("billing", "kill -9 billing worker", 3),
    ("router", "kill -9 one router of two", 3),
    ("hang", "provider hangs", 3),
    ("reset", "provider resets connections", 3),
    ("cut", "provider cuts streams mid-way", 3),
    ("invalid_json", "provider answers invalid JSON", 3),
    ("huge", "provider answers 20 MB", 3),
    ("drip", "provider drips 1 byte/s", 5),
]
RESULTS = {}                   # row id -> dict of what was measured
COLUMNS = ["fault", "requests", "200s", "clear errors", "unclear", "hangs", "max latency",
           "router RSS growth", "recovered", "billed exactly once", "sums agree"]
TABLE_PATH = os.path.join(BUILD, "test-output", "faults.txt")


# ---- the stack ----

class Fleet:
    """The matrix's own stack: devstack's router plus a second one."""

    def __init__(self, stack, r2_proc, r2_port):
        self.s, self.r2, self.r2_port = stack, r2_proc, r2_port

    @property
    def ports(self):
        return [self.s.router_port, self.r2_port]

    def router_pids(self):
        out = {}
        try:
            out[self.s.router_port] = run_pid(self.s, "router")
        except (OSError, ValueError):
            pass
        out[self.r2_port] = self.r2.pid
        return out


def run_pid(stack, name):
    with open(os.path.join(stack.dir, "run", name + ".pid")) as f:
        return int(f.read())


class TablePlugin:
    """Prints the table at the end of pytest's report (pytest -s is not used)."""

    def pytest_terminal_summary(self, terminalreporter):
        if RESULTS:
            terminalreporter.write_sep("=", "fault matrix (also in %s)" % os.path.relpath(TABLE_PATH, ROOT))
            for line in table_lines():
                terminalreporter.write_line(line)


@pytest.fixture(scope="module")
def fleet(request):
    tmp = tempfile.mkdtemp(prefix="agora-faults-")
    s = Stack(tmp)
    s.env.update(OVERRIDES)
    if "ASAN_OPTIONS" in s.env:     # make asan: freed memory waits in ASan's quarantine (256 MB by default)
        s.env["ASAN_OPTIONS"] += ":quarantine_size_mb=16"
    r2 = None
    request.config.pluginmanager.register(TablePlugin(), "agora-fault-table")
    try:
        s.start()
        r2, r2_port = s.extra_router("router2")
        yield Fleet(s, r2, r2_port)
    finally:
        if r2 is not None:
            r2.kill()
            r2.wait()
        r = s.stop()
        if r.returncode != 0:
            print(r.stdout, r.stderr)
        if os.environ.get("AGORA_KEEP_TEST_DIR") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


# ---- one client request, classified ----

def valid_error(obj, status):
    err = obj.get("error") if isinstance(obj, dict) else None
    return (isinstance(err, dict) and isinstance(err.get("message"), str) and err["message"] != ""
            and isinstance(err.get("code"), int) and (status is None or err["code"] == status))


def classify(model, stream, status, headers, raw):
    """(kind, generation id): kind is ok, error (clear), stream_error (a clear
    error after the stream started: metered) or unclear."""
    if status != 200:
        try:
            return ("error" if valid_error(json.loads(raw), status) else "unclear"), None
        except ValueError:
            return "unclear", None
    if not stream:
        try:
            o = json.loads(raw)
        except ValueError:
            return "unclear", None
        gid = o.get("id")
        msg = (o.get("choices") or [{}])[0].get("message") or {}
        u = o.get("usage") or {}
        good = (isinstance(gid, str) and gid.startswith("gen-") and o.get("model") == model
                and isinstance(msg.get("content"), str) and isinstance(u.get("completion_tokens"), int)
                and "cost" in u)
        return ("ok" if good else "unclear"), gid
    gid = headers.get("x-generation-id")
    try:
        evs = sse_events(raw)
    except UnicodeDecodeError:
        return "unclear", gid
    if not evs or not gid:
        return "unclear", gid
    chunks = []
    for e in evs[:-1] if evs[-1] == "[DONE]" else evs:
        try:
            chunks.append(json.loads(e))
        except ValueError:
            return "unclear", gid
    if any(not isinstance(c, dict) or c.get("id") != gid for c in chunks):
        return "unclear", gid
    if evs[-1] == "[DONE]":
        good = chunks and not any("error" in c for c in chunks) and all(c.get("model") == model for c in chunks)
        return ("ok" if good else "unclear"), gid
    last = chunks[-1] if chunks else None
    if last is not None and valid_error(last, None) and not any("error" in c for c in chunks[:-1]):
        return "stream_error", gid
    return "unclear", gid


def error_text(raw, in_stream):
    """'status message' of a clear error, digits and generation ids masked."""
    try:
        o = json.loads(sse_events(raw)[-1] if in_stream else raw)
        text = "%s%d %s" % ("stream " if in_stream else "", o["error"]["code"], o["error"]["message"])
    except (ValueError, KeyError, IndexError, TypeError):
        return "?"
    return re.sub(r"gen-\S+", "gen-*", text)[:110]


def error_summary(recs):
    counts = collections.Counter(r["detail"] if r["kind"] != "conn" else r["detail"].split(":")[0]
                                 for r in recs)
    return "; ".join("%dx %s" % (n, d) for d, n in counts.most_common(4))


def call(port, model, stream, n):
    """One completion; never blocks past CLIENT_GIVE_UP_S."""
    body = {"model": model, "stream": stream, "max_tokens": 16,
            "messages": [{"role": "user", "content": "fault matrix request %d" % n}]}
    if stream and n % 4 == 0:
        body["stream_options"] = {"include_usage": True}
    rec = {"port": port, "model": model, "stream": stream, "t0": time.monotonic(), "gid": None,
           "status": None, "detail": ""}
    c = None
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_GIVE_UP_S)
        c.request("POST", "/api/v1/chat/completions", body=json.dumps(body),
                  headers={"Authorization": "Bearer " + KEY[0], "Content-Type": "application/json"})
        r = c.getresponse()
        rec["status"] = r.status
        headers = {k.lower(): v for k, v in r.getheaders()}
        rec["gid"] = headers.get("x-generation-id")
        parts = []
        while True:
            if time.monotonic() - rec["t0"] > CLIENT_GIVE_UP_S:
                rec["kind"] = "hang"
                rec["detail"] = "still reading after %.0fs" % CLIENT_GIVE_UP_S
                break
            b = r.read1(65536)
            if not b:
                break
            parts.append(b)
        if "kind" not in rec:
            raw = b"".join(parts)
            rec["kind"], gid = classify(model, stream, r.status, headers, raw)
            rec["gid"] = gid or rec["gid"]
            if rec["kind"] == "unclear":
                rec["detail"] = "%d %r" % (r.status, raw[:300])
            elif rec["kind"] in ("error", "stream_error"):
                rec["detail"] = error_text(raw, stream and r.status == 200)
    except socket.timeout:
        rec["kind"], rec["detail"] = "hang", "socket time-out"
    except (ConnectionError, http.client.HTTPException, OSError) as e:
        rec["kind"], rec["detail"] = "conn", "%s: %s" % (type(e).__name__, e)
    except Exception as e:          # an answer of an unexpected shape
        rec["kind"], rec["detail"] = "unclear", "%s: %s" % (type(e).__name__, e)
    finally:
        if c is not None:
            c.close()
    rec["t1"] = time.monotonic()
    rec["latency"] = rec["t1"] - rec["t0"]
    return rec


KEY = [None]     # the inference key the clients use


class Traffic:
    """THREADS clients, each looping over models, stream or not, and both
    routers, until stopped (or MAX_REQUESTS in all)."""

    def __init__(self, fleet):
        self.fleet, self.recs, self.stop_ev = fleet, [], threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,), daemon=True) for i in range(THREADS)]

    def run(self, i):
        j = 0
        while not self.stop_ev.is_set():
            with self.lock:
                if len(self.recs) >= MAX_REQUESTS:
                    return
            ports = self.fleet.ports
            n = i * 100000 + j
            rec = call(ports[(i + j) % len(ports)], MODELS[(i + j // 2) % len(MODELS)], (i + j) % 2 == 0, n)
            with self.lock:
                self.recs.append(rec)
            j += 1
            time.sleep(PAUSE_S)

    def start(self):
        for t in self.threads:
            t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        for t in self.threads:
            t.join(CLIENT_GIVE_UP_S + 10)
        assert not any(t.is_alive() for t in self.threads), "a client thread never returned"
        return list(self.recs)


class RssWatch:
    """Samples each router's VmRSS every 100 ms; growth = the most any router
    process grew over its first sample."""

    def __init__(self, fleet):
        self.fleet, self.first, self.peak = fleet, {}, {}
        self.stop_ev = threading.Event()
        self.t = threading.Thread(target=self.run, daemon=True)

    @staticmethod
    def rss_kb(pid):
        try:
            with open("/proc/%d/status" % pid) as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            return None
        return None

    def sample(self):
        for pid in self.fleet.router_pids().values():
            kb = self.rss_kb(pid)
            if kb is None:
                continue
            self.first.setdefault(pid, kb)
            self.peak[pid] = max(self.peak.get(pid, 0), kb)

    def run(self):
        while not self.stop_ev.is_set():
            self.sample()
            time.sleep(0.1)

    def start(self):
        self.sample()
        self.t.start()
        return self

    def stop(self):
        self.stop_ev.set()
        self.t.join()
        self.sample()
        return max([self.peak[p] - self.first[p] for p in self.peak] or [0]) / 1024.0


# ---- faults ----

def kill9(pid):
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return

    def gone():
        try:
            with open("/proc/%d/stat" % pid) as f:
                return f.read().split()[2] == "Z"
        except OSError:
            return True
    assert wait_for(gone, 5, 0.05), "pid %d survived kill -9" % pid


def children(ppid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == ppid:
                        out.append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    return out


def restart(fleet):
    r = fleet.s.stack("start")          # starts what is not running, leaves the rest
    assert r.returncode == 0, r.stdout + r.stderr


def mocks_normal(fleet):
    for name in fleet.s.mock_ports:
        fleet.s.mock(name).reset()
        fleet.s.mock(name).config(ttft_ms=10, tps=200)


class Fault:
    """inject() then repair(); notes gathered on the way."""

    def __init__(self, fleet, kind):
        self.f, self.kind, self.notes = fleet, kind, []
        self.metrics0 = {}

    def metric(self, port, name):
        try:
            _, _, raw = self.f.s.request("GET", "/metrics", port=port, timeout=3)
        except OSError:
            return None
        for line in raw.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
        return None

    def inject(self):
        s, k = self.f.s, self.kind
        if k == "redis":
            self.metrics0 = {p: self.metric(p, "agora_router_usage_spooled") for p in self.f.ports}
            kill9(run_pid(s, "redis"))
        elif k == "postgres":
            with open(os.path.join(s.dir, "pg", "postmaster.pid")) as f:
                pm = int(f.readline())
            procs = [pm] + children(pm)
            for p in procs:                 # the whole server at once, as a crash
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for p in procs:
                kill9(p)
        elif k == "billing":
            kill9(run_pid(s, "billing"))
        elif k == "router":
            kill9(run_pid(s, "router"))
        else:
            for name in FAULTY:
                s.mock(name).config(fail=k)

    def billing_backlog(self):
        """Events waiting in the Redis stream for billing: not yet read by
        the group (lag) plus read and not acknowledged (pending)."""
        r = subprocess.run(["redis-cli", "-p", str(self.f.s.redis_port), "XINFO", "GROUPS", "usage"],
                           capture_output=True, text=True, timeout=10)
        v = r.stdout.split("\n")
        info = dict(zip(v[0::2], v[1::2]))
        try:
            return int(info.get("lag") or 0) + int(info.get("pending") or 0)
        except ValueError:
            return None

    def repair(self):
        k = self.kind
        if k in ("postgres", "billing"):
            self.notes.append("%s events waited in Redis for billing when it returned" % self.billing_backlog())
        if k in ("redis", "postgres", "billing", "router"):
            restart(self.f)
        else:
            for name in FAULTY:
                self.f.s.mock(name).config(fail="none")

    def recovered(self):
        """The stack answers normally again, by itself."""
        s, k = self.f.s, self.kind

        def probes():
            n = 0
            for port in self.f.ports:
                for model in ("test/three", "test/solo", "test/claude"):
                    for stream in (False, True):
                        n += 1
                        rec = call(port, model, stream, 900000 + n)
                        if rec["kind"] != "ok":
                            self.last_probe = "%s %s stream=%s: %s %s" % (port, model, stream, rec["kind"],
                                                                           rec["detail"][:200])
                            return False
            return True
        self.last_probe = ""
        if not wait_for(probes, 20, 0.5):
            self.notes.append("probes failing: " + self.last_probe)
            return False
        if k == "redis":
            for p in self.f.ports:
                if not wait_for(lambda: self.metric(p, "agora_router_redis_up") == 1
                                and self.metric(p, "agora_router_spool_bytes") == 0, 15):
                    self.notes.append("router %d: Redis not back or spool not replayed" % p)
                    return False
            spooled = sum((self.metric(p, "agora_router_usage_spooled") or 0) - (self.metrics0.get(p) or 0)
                          for p in self.f.ports)
            self.notes.append("%d events spooled while Redis was away, all replayed" % spooled)
        if k == "postgres":                  # a key never seen: the routers reach PostgreSQL again
            newkey = s.ctl("key", "create", "demo", "--name", "after-pg").stdout.strip()
            for p in self.f.ports:
                ok = wait_for(lambda: s.request("POST", "/api/v1/chat/completions", key=newkey, port=p, timeout=10,
                                                body={"model": "test/three", "messages": [
                                                    {"role": "user", "content": "after"}]})[0] == 200, 15, 0.3)
                if not ok:
                    self.notes.append("router %d: a new key is not accepted after PostgreSQL returned" % p)
                    return False
        return True


# ---- billing ----

def billing_check(fleet, must_once, at_most_once, notes):
    """(billed exactly once, sums agree)."""
    s = fleet.s
    must = sorted(set(must_once))

    def counts(ids):
        if not ids:
            return {}
        return dict(s.sql("SELECT generation_id, count(*) FROM usage_events WHERE generation_id = ANY(%s)"
                          " GROUP BY 1", list(ids)))
    wait_for(lambda: len(counts(must)) == len(must), 45, 0.5)
    time.sleep(0.5)
    c = counts(must)
    missing = [g for g in must if c.get(g, 0) == 0]
    twice = [g for g in must if c.get(g, 0) > 1]
    other = counts(set(at_most_once) - set(must))
    twice += [g for g, n in other.items() if n > 1]
    total, distinct = s.sql("SELECT count(*), count(DISTINCT generation_id) FROM usage_events")[0]
    once = not missing and not twice and total == distinct
    if missing:
        notes.append("%d generations that got a 200 are not billed, e.g. %s" % (len(missing), missing[:3]))
    if twice:
        notes.append("%d generations billed twice, e.g. %s" % (len(twice), twice[:3]))
    if total != distinct:
        notes.append("usage_events: %d rows for %d generations" % (total, distinct))
    agree = sums_agree(s)
    if not agree:
        notes.append("events, ledger and rollups disagree")
    return once, agree


# ---- the rows ----

@pytest.mark.parametrize("row", [r[0] for r in ROWS])
def test_fault(fleet, row):
    label, hold = next((lbl, h) for r, lbl, h in ROWS if r == row)
    KEY[0] = fleet.s.key
    mocks_normal(fleet)
    fault = Fault(fleet, row)
    rss = RssWatch(fleet).start()
    traffic = Traffic(fleet).start()
    repaired = False
    try:
        time.sleep(1.0)
        t_fault = time.monotonic()
        fault.inject()
        time.sleep(hold)
        t_repair = time.monotonic()
        fault.repair()
        repaired = True
        t_repaired = time.monotonic()
        time.sleep(2.0)
    finally:
        recs = traffic.stop()
        growth = rss.stop()
        if not repaired:            # leave a whole stack to the next rows
            RESULTS[row] = {"fault": label, "held": False, "notes": ["the fault could not be run or repaired"]}
            mocks_normal(fleet)
            restart(fleet)
    recovered = fault.recovered()
    mocks_normal(fleet)

    killed_port = fleet.s.router_port if row == "router" else None
    for r in recs:
        if r["kind"] == "hang" or r["latency"] > BOUND_S:
            r["cat"] = "hang"
        elif r["kind"] == "ok":
            r["cat"] = "200"
        elif r["kind"] in ("error", "stream_error"):
            r["cat"] = "clear"
        elif r["kind"] == "conn" and r["port"] == killed_port and t_fault <= r["t1"] and r["t0"] <= t_repaired:
            r["cat"] = "clear"      # the killed router's own clients: refused or dropped connections
        else:
            r["cat"] = "unclear"
    n200 = [r for r in recs if r["cat"] == "200"]
    clear = [r for r in recs if r["cat"] == "clear"]
    hangs = [r for r in recs if r["cat"] == "hang"]
    unclear = [r for r in recs if r["cat"] == "unclear"]
    during = [r for r in n200 if t_fault <= r["t0"] <= t_repair]
    notes = fault.notes
    if clear:
        notes.append("errors seen: " + error_summary(clear))
    for r in unclear[:3]:
        notes.append("unclear: port %d %s stream=%s %s %s" % (r["port"], r["model"], r["stream"], r["kind"],
                                                               r["detail"][:300]))
    for r in hangs[:3]:
        notes.append("hang: %s stream=%s %.1fs %s" % (r["model"], r["stream"], r["latency"], r["detail"]))
    must = [r["gid"] for r in n200] + [r["gid"] for r in recs if r["kind"] == "stream_error" and r["cat"] == "clear"]
    maybe = [r["gid"] for r in recs if r["gid"]]
    once, agree = billing_check(fleet, must, maybe, notes)
    res = {
        "fault": label, "requests": len(recs), "200s": len(n200), "during": len(during),
        "clear errors": len(clear), "unclear": len(unclear), "hangs": len(hangs),
        "max latency": max([r["latency"] for r in recs] or [0]),
        "router RSS growth": growth, "recovered": recovered, "billed exactly once": once,
        "sums agree": agree, "notes": notes,
    }
    res["held"] = (not unclear and not hangs and growth < RSS_BOUND_MB and recovered and once and agree
                   and len(n200) > 0)
    if row in ("redis", "postgres", "billing") and not during:
        notes.append("no request succeeded while the fault lasted")
        res["held"] = False
    RESULTS[row] = res
    write_table()
    assert res["held"], "%s: %s" % (label, "; ".join(notes) or res)


def fmt(res, col):
    v = res[col]
    if col == "200s":
        return "%d (%d during)" % (v, res["during"])
    if col == "max latency":
        return "%.1f s" % v
    if col == "router RSS growth":
        return "%+.1f MB" % v
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return str(v)


def table_lines():
    rows = [COLUMNS] + [[fmt(RESULTS[r], c) if c in RESULTS[r] else "-" for c in COLUMNS]
                        for r, _, _ in ROWS if r in RESULTS]
    w = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS))]
    line = lambda row: "| " + " | ".join(v.ljust(w[i]) for i, v in enumerate(row)) + " |"
    out = [line(rows[0]), "|" + "|".join("-" * (x + 2) for x in w) + "|"] + [line(r) for r in rows[1:]]
    out.append("time-outs: upstream first byte %d ms, idle %d ms, total %d ms, %d attempts, pg %d ms; "
               "hang = over %.0f s; RSS bound +%d MB; %d client threads"
               % (T["first_byte"], T["idle"], T["total"], T["attempts"], T["pg"], BOUND_S, RSS_BOUND_MB, THREADS))
    for r, _, _ in ROWS:
        if r in RESULTS:
            for n in RESULTS[r]["notes"]:
                out.append("%s: %s" % (RESULTS[r]["fault"], n))
    return out


def write_table():
    os.makedirs(os.path.dirname(TABLE_PATH), exist_ok=True)
    with open(TABLE_PATH, "w") as f:
        f.write("\n".join(table_lines()) + "\n")


def test_fault_table(fleet):
    """The table of what was tried and what held (every row ran and held)."""
    write_table()
    print("\n".join(table_lines()))
    missing = [r for r, _, _ in ROWS if r not in RESULTS]
    failed = [RESULTS[r]["fault"] for r, _, _ in ROWS if r in RESULTS and not RESULTS[r]["held"]]
    assert not missing and not failed, "rows not run: %s; rows that did not hold: %s" % (missing, failed)
