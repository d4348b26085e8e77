"""agora-router under valgrind's memcheck: the benchmark's stack (canned
nginx upstream, PostgreSQL, Redis, agora-billing, every feature on), JSON
completions and 24-event streams from 4 connections for a few seconds each,
a few bodies taking the odd paths (an escaped key, bad JSON, an unknown
model, a fractional max_tokens), then SIGTERM (the drain). Exits non-zero if
memcheck saw an error or a definite or indirect leak.

    /usr/bin/python3 tests/bench/memcheck.py          (make memcheck runs it)

jemalloc is the router's allocator: --soname-synonyms=somalloc=*jemalloc*
lets memcheck see its malloc and free. Environment: MEMCHECK_SECONDS (4),
MEMCHECK_KEEP (1: the directory, its log included, stays), AGORA_BUILD (build).
"""
import os
import shutil
import signal
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import router as B  # noqa: E402  (its canned upstream, catalog, bodies and loads)

SECONDS = float(os.environ.get("MEMCHECK_SECONDS", "4"))
ODD = ['{"model":"bench/chat","messages":[{"r\\u006fle":"user","content":"x"}]}', '{bad',
       '{"model":"nope","messages":[{"role":"user"}]}',
       '{"model":"bench/chat","messages":[{"role":"user","content":"' + "x" * 5000 + '"}],"max_tokens":1.5}']


def main():
    tmp = tempfile.mkdtemp(prefix="agora-memcheck-")
    os.chmod(tmp, 0o755)
    st, up = B.canned_stack(tmp, "memcheck")
    log = os.path.join(tmp, "memcheck.log")
    try:
        wrap = ["valgrind", "--error-exitcode=9", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                "--errors-for-leak-kinds=definite,indirect", "--soname-synonyms=somalloc=*jemalloc*",
                "--log-file=" + log]
        proc, port = st.extra_router("memcheck", wrap=wrap, AGORA_UPSTREAM_FIRST_BYTE_TIMEOUT_MS="60000")
        url = "http://127.0.0.1:%d/api/v1/chat/completions" % port
        for kind, stream in (("JSON completions", False), ("24-event streams", True)):
            body = os.path.join(tmp, "body.json")
            with open(body, "w") as f:
                f.write(B.chat_body("bench/chat", stream))
            h = ["Content-Type: application/json", "Authorization: Bearer " + st.key,
                 "Accept: " + ("text/event-stream" if stream else "application/json")]
            o = B.run_loadgen(url, body, h, 4, SECONDS, warmup=0)
            print("%s: %d answered, %d errors" % (kind, o["requests"], o["errors"]))
        print("odd bodies: " + " ".join(str(st.request("POST", "/api/v1/chat/completions", b, key=st.key,
                                                       port=port)[0]) for b in ODD))
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(120)
        with open(log) as f:
            summary = [x.split("== ", 1)[-1] for x in f if "ERROR SUMMARY" in x or "definitely lost" in x
                       or "indirectly lost" in x]
        print("memcheck: " + "; ".join(s.strip() for s in summary))
        print("router exit status %d (9: memcheck found errors)" % rc)
        return 0 if rc == 0 else 1
    finally:
        up.stop()
        st.stop()
        if os.environ.get("MEMCHECK_KEEP") == "1":
            print("kept " + tmp)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
