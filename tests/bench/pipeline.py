#!/usr/bin/python3
"""Where one answer's CPU goes, in a minute rather than `make bench`'s eleven:
agora-router on the benchmark's stack (tests/bench/router.py: canned nginx
upstream, every feature on), driven by wrk for a while, then the CPU each
process family spent per answer (router, Redis, billing + PostgreSQL,
billing's catching up included) and billing's batches. The figures the
README quotes as "wrk, 8 s, back to back" come from here. A benchmark, not a
test: it asserts nothing.

  /usr/bin/python3 tests/bench/pipeline.py [--conns 32] [--seconds 8]
      [--metering on|off] [--flush-ms N] [--pin] [--stop-billing] [--strace]
      [--billing-linger-ms N] [--billing-batch N] [--idle] [--pg-set K=V]
      [--sched]

Also prints how idle the machine was while wrk ran (/proc/stat).

--pin: the router on CPU 0, Redis, billing and PostgreSQL on CPU 1.
--stop-billing: agora-billing stopped (SIGSTOP) while wrk runs.
--strace: `strace -c` of the router while wrk runs (system calls per answer).
--idle: agora-billing and every PostgreSQL process under SCHED_IDLE (chrt -i).
--pg-set K=V: a PostgreSQL setting (ALTER SYSTEM, reloaded), e.g.
synchronous_commit=off; may be repeated.
--sched: `perf sched record` of the whole machine for 3 s of the run, then
the time each CPU sat idle while a woken task waited to run on the other
one, and each process family's wait to run (README "Performance").
--billing-linger-ms, --billing-batch: agora-billing's billing_linger_ms (25)
and billing_batch (2000).
"""
import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request

from psycopg2 import sql as psql

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as B  # noqa: E402  (the benchmark's stack and load helpers)


def pids_of(st):
    def pidfile(name):
        with open(os.path.join(st.dir, "run", name + ".pid")) as f:
            return int(f.read().strip())
    with open(os.path.join(st.dir, "pg", "postmaster.pid")) as f:
        pg = int(f.readline().strip())
    return pidfile("redis"), pidfile("billing"), pg


def billing_metrics(st):
    raw = urllib.request.urlopen("http://127.0.0.1:%d/metrics" % st.billing_port, timeout=5).read().decode()
    out = {}
    for name in ("agora_billing_batch_size_sum", "agora_billing_batch_size_count",
                 "agora_billing_commit_seconds_sum"):
        m = re.search(r"^%s (\S+)$" % name, raw, re.M)
        out[name] = float(m.group(1)) if m else 0.0
    return out


def taskset(cpu, pids):
    for p in pids:
        for q in B.family(p):
            subprocess.run(["taskset", "-a", "-p", "-c", str(cpu), str(q)], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)


def cpu_idle():
    """(idle, total) jiffies of the whole machine, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return v[3] + v[4], sum(v[:8])


def sched_summary(data):
    """From `perf sched timehist` of data: how long each CPU sat idle while a
    task woken on another CPU waited there to run, and each family's wait."""
    out = subprocess.run(["perf", "sched", "timehist", "-i", data], capture_output=True, text=True).stdout
    idle, waiting, waits, busy = {}, {}, {}, 0.0      # per CPU: idle spans, spans a task waited to run
    for line in out.splitlines():
        p = line.split()
        if len(p) < 6 or not re.match(r"^\d+\.\d+$", p[0]) or not p[1].startswith("["):
            continue
        try:
            t, cpu, task, delay, run = float(p[0]) * 1e3, p[1], p[2], float(p[4]), float(p[5])
        except ValueError:
            continue
        busy += run
        if task == "<idle>":
            idle.setdefault(cpu, []).append((t - run, t))
        elif delay > 0:
            name = task.split("[")[0].split(":")[0]
            waits[name] = waits.get(name, 0.0) + delay
            waiting.setdefault(cpu, []).append((t - run - delay, t - run))
    lost = 0.0
    for cpu, spans in idle.items():
        merged = []                     # the times some task waited on another CPU
        for a0, a1 in sorted(x for c, xs in waiting.items() if c != cpu for x in xs):
            if merged and a0 <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], a1)
            else:
                merged.append([a0, a1])
        for i0, i1 in spans:
            lost += sum(max(0.0, min(i1, w1) - max(i0, w0)) for w0, w1 in merged if w0 < i1 and w1 > i0)
    fam = sorted(waits.items(), key=lambda kv: -kv[1])
    return ("perf sched over %.0f ms of CPU: idle %.1f%%; a CPU idle while a task waited to run on another: "
            "%.1f%% of all CPU time\nwaits to run (ms): %s" % (
                busy, 100.0 * sum(b - a for xs in idle.values() for a, b in xs) / max(1e-9, busy),
                100.0 * lost / max(1e-9, busy), ", ".join("%s %.0f" % kv for kv in fam[:8])))


def strace_summary(path, answers):
    calls = {}
    with open(path) as f:
        for line in f:
            parts = line.split()
            if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1].isidentifier() and parts[-1] != "total":
                calls[parts[-1]] = int(parts[3])
    return {k: round(v / max(1, answers), 2) for k, v in sorted(calls.items(), key=lambda kv: -kv[1])}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--conns", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=8)
    ap.add_argument("--metering", choices=("on", "off"), default="on")
    ap.add_argument("--flush-ms", type=int, default=0)
    ap.add_argument("--pin", action="store_true")
    ap.add_argument("--stop-billing", action="store_true")
    ap.add_argument("--strace", action="store_true")
    ap.add_argument("--idle", action="store_true")
    ap.add_argument("--pg-set", action="append", default=[])
    ap.add_argument("--sched", action="store_true")
    ap.add_argument("--router-nice", type=int)
    ap.add_argument("--billing-linger-ms", type=int)
    ap.add_argument("--billing-batch", type=int)
    a = ap.parse_args()
    env = {}
    if a.billing_linger_ms is not None:
        env["AGORA_BILLING_LINGER_MS"] = str(a.billing_linger_ms)
    if a.billing_batch is not None:
        env["AGORA_BILLING_BATCH"] = str(a.billing_batch)

    tmp = tempfile.mkdtemp(prefix="agora-pipeline-")
    os.chmod(tmp, 0o755)
    st, upstream = B.canned_stack(tmp, "pipeline", env)
    proc = None
    try:
        proc, port = B.agora(st, "pipeline", AGORA_METERING=a.metering, AGORA_METERING_FLUSH_MS=a.flush_ms)
        body = os.path.join(tmp, "body.json")
        with open(body, "w") as f:
            f.write(B.chat_body("bench/chat", False))
        headers = ["Content-Type: application/json", "Accept: application/json", "Authorization: Bearer " + st.key]
        url = "http://127.0.0.1:%d/api/v1/chat/completions" % port
        B.run_wrk(tmp, url, body, headers, a.conns, 2)          # warm-up
        redis_pid, billing_pid, pg_pid = pids_of(st)
        import redis
        r = redis.Redis(port=st.redis_port, decode_responses=True)
        B.billing_idle(r)
        if a.pin:
            taskset(0, [proc.pid])
            taskset(1, [redis_pid, billing_pid, pg_pid])
        for kv in a.pg_set:
            k, v = kv.split("=", 1)
            c = st.db()         # ALTER SYSTEM takes no parameters: the name and value quoted
            c.cursor().execute(psql.SQL("ALTER SYSTEM SET {} = {}").format(psql.Identifier(k), psql.Literal(v)))
            c.cursor().execute("SELECT pg_reload_conf()")
            c.close()
        if a.idle:
            for q in B.family(billing_pid) + B.family(pg_pid):
                subprocess.run(["chrt", "-i", "-a", "-p", "0", str(q)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if a.router_nice is not None:
            os.setpriority(os.PRIO_PROCESS, proc.pid, a.router_nice)
        recorder = tracer = None
        if a.sched:
            sched_data = os.path.join(tmp, "sched.data")
            recorder = subprocess.Popen(["perf", "sched", "record", "-a", "-o", sched_data, "--", "sleep",
                                       str(min(3.0, a.seconds / 2))],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if a.strace:
            trace = os.path.join(tmp, "strace.txt")
            tracer = subprocess.Popen(["strace", "-c", "-f", "-o", trace, "-p", str(proc.pid)],
                                      stderr=subprocess.DEVNULL)
            time.sleep(0.5)
        m0 = billing_metrics(st)
        c0 = [B.cpu_seconds([p]) for p in (proc.pid, redis_pid)] + [B.cpu_seconds([billing_pid, pg_pid])]
        if a.stop_billing:
            os.kill(billing_pid, signal.SIGSTOP)
        s0 = cpu_idle()
        try:
            o = B.run_wrk(tmp, url, body, headers, a.conns, a.seconds)
        finally:
            if a.stop_billing:
                os.kill(billing_pid, signal.SIGCONT)
        c1_router = B.cpu_seconds([proc.pid])
        s1 = cpu_idle()
        if recorder:
            recorder.wait(30)
        if tracer:
            tracer.send_signal(signal.SIGINT)
            tracer.wait(30)
        B.billing_idle(r)
        c1 = [c1_router, B.cpu_seconds([redis_pid]), B.cpu_seconds([billing_pid, pg_pid])]
        m1 = billing_metrics(st)
        n = max(1, o["requests"])
        batches = m1["agora_billing_batch_size_count"] - m0["agora_billing_batch_size_count"]
        print(json.dumps(o))
        print("CPU per answer: router %.1f us, Redis %.1f us, billing + PostgreSQL %.1f us"
              % tuple((c1[i] - c0[i]) * 1e6 / n for i in range(3)))
        print("machine idle while wrk ran: %.1f%% of %d CPUs" % (
            100.0 * (s1[0] - s0[0]) / max(1e-9, s1[1] - s0[1]), os.cpu_count()))
        if batches:
            print("billing: %d batches, %.1f entries a batch, %.2f ms from statement to commit" % (
                batches, (m1["agora_billing_batch_size_sum"] - m0["agora_billing_batch_size_sum"]) / batches,
                (m1["agora_billing_commit_seconds_sum"] - m0["agora_billing_commit_seconds_sum"]) * 1e3 / batches))
        if a.sched:
            print(sched_summary(sched_data))
        if a.strace:
            print("system calls per answer (router):", json.dumps(strace_summary(trace, o["requests"])))
    finally:
        if proc:
            B.stop_proc(proc)
        upstream.stop()
        st.stop()


if __name__ == "__main__":
    main()
