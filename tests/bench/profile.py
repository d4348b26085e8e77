"""Instructions per request of agora-router, counted by callgrind: a figure that
does not drift with the machine's load, for before/after comparisons.

    /usr/bin/python3 tests/bench/profile.py          (make profile runs it)

Starts the benchmark's stack (tests/bench/router.py: the canned nginx upstream,
PostgreSQL, Redis, agora-billing, every feature on), runs one agora-router
under `valgrind --tool=callgrind`, warms it up, zeroes the counters, then sends
a fixed load and dumps: JSON completions (the benchmark's 1.1 KB chat body),
then 24-event streams. Prints the instructions per request of each and, with
PROFILE_TOP=N, the N functions costing most (inclusive) for each load; the
dumps stay under PROFILE_OUT (default: a temporary directory, printed) for
callgrind_annotate or kcachegrind.

Environment: PROFILE_SECONDS (8: each load; valgrind makes the router ~50x
slower, so this is a few thousand requests), PROFILE_CONNS (4), PROFILE_TOP
(0), PROFILE_METERING (on), PROFILE_PRELOAD (a library the router runs with,
e.g. another malloc), AGORA_BUILD (build).
"""
import glob
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as B  # noqa: E402  (its canned upstream, catalog, bodies and loads)

SECONDS = float(os.environ.get("PROFILE_SECONDS", "8"))
CONNS = int(os.environ.get("PROFILE_CONNS", "4"))
TOP = int(os.environ.get("PROFILE_TOP", "0"))


def total_ir(path):
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise RuntimeError("no totals in " + path)


def dump(pid, out, label):
    """Dumps the counters since the last zeroing into out/<label>.cg and zeroes them."""
    before = set(glob.glob(os.path.join(out, "callgrind.out.%d*" % pid)))
    subprocess.run(["callgrind_control", "-d", label, str(pid)], check=True, capture_output=True)
    end = time.time() + 30
    while time.time() < end:
        new = set(glob.glob(os.path.join(out, "callgrind.out.%d*" % pid))) - before
        if new:
            time.sleep(0.5)             # written whole
            path = os.path.join(out, label + ".cg")
            os.rename(new.pop(), path)
            return path
        time.sleep(0.2)
    raise RuntimeError("callgrind wrote no dump")


def top(path, n):
    r = subprocess.run(["callgrind_annotate", "--inclusive=yes", path], capture_output=True, text=True)
    rows = [x for x in r.stdout.splitlines() if re.match(r"^\s*[\d,]+ \(", x)]
    return rows[:n]


def main():
    tmp = tempfile.mkdtemp(prefix="agora-profile-")
    os.chmod(tmp, 0o755)
    out = os.environ.get("PROFILE_OUT") or os.path.join(tmp, "callgrind")
    os.makedirs(out, exist_ok=True)
    st, upstream = B.canned_stack(tmp, "profile")
    started = [upstream]
    try:
        wrap = ["valgrind", "--tool=callgrind", "--callgrind-out-file=" + os.path.join(out, "callgrind.out.%p")]
        extra = {"LD_PRELOAD": os.environ["PROFILE_PRELOAD"]} if os.environ.get("PROFILE_PRELOAD") else {}
        proc, port = st.extra_router("profile", wrap=wrap, **extra,
                                     AGORA_METERING=os.environ.get("PROFILE_METERING", "on"),
                                     AGORA_UPSTREAM_FIRST_BYTE_TIMEOUT_MS="60000")
        started.append(proc)
        url = "http://127.0.0.1:%d/api/v1/chat/completions" % port
        figures = {}
        for kind, stream in (("json", False), ("sse", True)):
            body = os.path.join(tmp, "body-%s.json" % kind)
            with open(body, "w") as f:
                f.write(B.chat_body("bench/chat", stream))
            h = ["Content-Type: application/json", "Authorization: Bearer " + st.key,
                 "Accept: " + ("text/event-stream" if stream else "application/json")]
            B.run_loadgen(url, body, h, CONNS, 2, warmup=0)                # warm-up, not counted
            dump(proc.pid, out, "warmup-" + kind)
            o = B.run_loadgen(url, body, h, CONNS, SECONDS, warmup=0)
            if o.get("errors"):
                raise RuntimeError("%s: %d errors" % (kind, o["errors"]))
            path = dump(proc.pid, out, kind)
            figures[kind] = (total_ir(path), o["requests"], path)
        print("agora-router under callgrind (metering %s, %d connections, %g s a load; dumps in %s)"
              % (os.environ.get("PROFILE_METERING", "on"), CONNS, SECONDS, out))
        for kind, (ir, n, path) in figures.items():
            what = "JSON completion" if kind == "json" else "24-event stream"
            print("  instructions per %s: %s (%d requests)" % (what, format(ir // max(1, n), ","), n))
            if TOP:
                for row in top(path, TOP):
                    print("    " + row)
    finally:
        for s in reversed(started):
            s.stop() if isinstance(s, B.Nginx) else B.stop_proc(s)
        st.stop()


if __name__ == "__main__":
    main()
