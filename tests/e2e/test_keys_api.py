"""The provisioning API (OpenRouter's /api/v1/keys), operator keys only."""
import json

from conftest import wait_for


def call(stack, method, path, body=None, key=None):
    s, h, raw = stack.request(method, "/api/v1/keys" + path, body, key=key or stack.admin_key)
    return s, json.loads(raw)


def test_key_lifecycle(stack):
    s, out = call(stack, "POST", "", {"name": "ci-bot", "limit": 2.5, "account": "demo"})
    assert s == 201, out
    secret, d = out["key"], out["data"]
    assert secret.startswith("sk-ag-v1-") and d["name"] == "ci-bot" and d["limit"] == 2.5
    assert d["account"] == "demo" and d["disabled"] is False and len(d["hash"]) == 64
    # only the hash is stored; the secret works
    assert secret not in json.dumps(stack.sql("SELECT encode(hash, 'hex'), prefix, name FROM api_keys"))
    s, h, raw = stack.chat({"model": "test/solo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]},
                           key=secret)
    assert s == 200
    s, one = call(stack, "GET", "/" + d["hash"])
    assert s == 200 and one["data"]["name"] == "ci-bot"
    s, lst = call(stack, "GET", "?account=demo")
    assert d["hash"] in [k["hash"] for k in lst["data"]]
    s, p = call(stack, "PATCH", "/" + d["hash"], {"disabled": True, "name": "ci-bot-2", "limit": None})
    assert s == 200 and p["data"]["disabled"] is True and p["data"]["limit"] is None
    assert wait_for(lambda: stack.chat({"model": "test/solo", "messages": [{"role": "user", "content": "x"}]},
                                       key=secret)[0] == 401, 3)
    s, out = call(stack, "DELETE", "/" + d["hash"])
    assert s == 200 and out["data"]["success"] is True
    s, out = call(stack, "GET", "/" + d["hash"])
    assert s == 404


def test_keys_api_refuses_others(stack):
    s, out = call(stack, "GET", "", key=stack.key)          # an inference key
    assert s == 403 and out["error"]["code"] == 403
    s, h, raw = stack.request("GET", "/api/v1/keys")
    assert s == 401
    for body, word in (({"limit": 1}, "name"), ({"name": "x", "limit": -1}, "limit"),
                       ({"name": "x", "disabled": "no"}, "disabled")):
        s, out = call(stack, "POST", "", body)
        assert s == 400 and word in out["error"]["message"]
    s, out = call(stack, "POST", "", {"name": "x", "account": "nobody-here"})
    assert s == 404
    s, out = call(stack, "GET", "/" + "0" * 64)
    assert s == 404
