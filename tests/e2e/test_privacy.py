"""Private by default: provider credentials are sealed at rest, and canary
strings sent in prompts and returned in answers reach neither PostgreSQL,
Redis, the spool nor any log."""
import glob
import os
import subprocess

from conftest import wait_for

MSG = [{"role": "user", "content": "hello"}]


def test_provider_keys_sealed_at_rest_and_used(stack):
    rows = stack.sql("SELECT id, api_key_sealed FROM providers WHERE api_key_sealed IS NOT NULL ORDER BY id")
    assert {r[0] for r in rows} >= {"alpha", "beta", "gamma", "solo"}
    for pid, sealed in rows:
        assert sealed.startswith("v1:")
        clear = stack.provider_keys.get("TEST_KEY_" + pid.upper())
        if clear:
            assert clear not in sealed
    # the router uses the sealed key (not the environment): a wrong one fails, the right one works
    stack.ctl("provider", "set-key", "solo", input_text="pk-wrong\n")
    assert wait_for(lambda: stack.chat_json({"model": "test/solo", "messages": MSG})[0] != 200, 5)
    stack.ctl("provider", "set-key", "solo", input_text=stack.provider_keys["TEST_KEY_SOLO"] + "\n")
    assert wait_for(lambda: stack.chat_json({"model": "test/solo", "messages": MSG})[0] == 200, 5)


def test_master_key_rotation(stack):
    new = os.path.join(stack.dir, "master2.key")
    with open(new, "w") as f:
        f.write(subprocess.run(["openssl", "rand", "-hex", "32"], capture_output=True, text=True).stdout)
    before = dict(stack.sql("SELECT id, api_key_sealed FROM providers WHERE api_key_sealed IS NOT NULL"))
    out = stack.ctl("secrets", "rotate", "--new-key-file", new).stdout
    assert "re-sealed %d provider keys" % len(before) in out
    after = dict(stack.sql("SELECT id, api_key_sealed FROM providers WHERE api_key_sealed IS NOT NULL"))
    assert after.keys() == before.keys() and all(after[k] != before[k] for k in after)
    # rotate back with the new key as the configured one, so the running router keeps working
    r = stack.ctl("secrets", "rotate", "--new-key-file", os.path.join(stack.dir, "master.key"),
                  env={"AGORA_MASTER_KEY_FILE": new})
    assert r.returncode == 0
    assert wait_for(lambda: stack.chat_json({"model": "test/solo", "messages": MSG})[0] == 200, 5)
    # a wrong master key refuses to rotate and changes nothing
    r = stack.ctl("secrets", "rotate", "--new-key-file", new, env={"AGORA_MASTER_KEY_FILE": new}, check=False)
    assert r.returncode != 0 and "nothing changed" in r.stderr


def _everything_stored(stack):
    """PostgreSQL (a full dump), Redis (every key and value), spools, logs."""
    pg_bin = sorted(glob.glob("/usr/lib/postgresql/*/bin"))[-1]
    dump = subprocess.run([os.path.join(pg_bin, "pg_dump"), "-h", "127.0.0.1", "-p", str(stack.pg_port),
                           "-U", "agora", "agora"], capture_output=True, text=True, timeout=60)
    assert dump.returncode == 0, dump.stderr
    out = [dump.stdout]
    import redis
    r = redis.Redis(port=stack.redis_port)
    for key in r.scan_iter(count=1000):
        t = r.type(key).decode()
        out.append(key.decode(errors="replace"))
        if t == "string":
            out.append(repr(r.get(key)))
        elif t == "hash":
            out.append(repr(r.hgetall(key)))
        elif t == "stream":
            out.append(repr(r.xrange(key, count=100000)))
        elif t == "list":
            out.append(repr(r.lrange(key, 0, -1)))
        elif t == "set":
            out.append(repr(r.smembers(key)))
        elif t == "zset":
            out.append(repr(r.zrange(key, 0, -1)))
    for pattern in ("spool/*", "log/*.log", "*.spool"):
        for path in glob.glob(os.path.join(stack.dir, pattern)):
            with open(path, errors="replace") as f:
                out.append(f.read())
    return "\n".join(out)


def test_canaries_in_prompts_and_answers_are_stored_nowhere(stack):
    prompt_canary = "canary-prompt-5d1e9b7c"
    answer_canary = "canary-answer-0a4f2e61"
    stack.mock("solo").config(say=answer_canary)
    for stream in (False, True):
        body = {"model": "test/solo", "stream": stream, "messages": [{"role": "user", "content": prompt_canary}]}
        s, h, raw = stack.chat(body, headers={"X-Title": "privacy-test"})
        assert s == 200
        assert answer_canary in raw.decode()          # the answer did carry it
    s, h, raw = stack.chat({"model": "test/three", "messages": [{"role": "user", "content": prompt_canary}],
                            "provider": {"only": ["alpha"]}})
    assert s == 200
    n = stack.sql("SELECT count(*) FROM usage_events WHERE app_title = 'privacy-test'")[0][0]
    assert wait_for(lambda: stack.sql("SELECT count(*) FROM usage_events WHERE app_title = 'privacy-test'")[0][0] >= 2
                    or n >= 2, 10)
    stored = _everything_stored(stack)
    assert prompt_canary not in stored
    assert answer_canary not in stored
    # neither the client's API key nor a provider's key in clear
    assert stack.key not in stored
    for v in stack.provider_keys.values():
        assert v not in stored
    # no client IP addresses in PostgreSQL
    assert "127.0.0.1" not in stack.sql("SELECT string_agg(t::text, ' ') FROM usage_events t")[0][0]
