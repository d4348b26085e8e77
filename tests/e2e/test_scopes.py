"""Operator keys are separate from inference keys and carry scopes: keys
(provisioning), analytics (market-wide reads), finance (every account's
money, reconciliation). Each scope is checked where it is needed."""
import http.client
import json


def analytics(stack, path, key):
    c = http.client.HTTPConnection("127.0.0.1", stack.analytics_port, timeout=30)
    c.request("GET", path, headers={"Authorization": "Bearer " + key})
    r = c.getresponse()
    body = r.read()
    c.close()
    return r.status, json.loads(body) if body else None


def op_key(stack, scopes):
    return stack.ctl("key", "create", "operator", "--name", "scoped-" + scopes, "--operator",
                     "--scopes", scopes).stdout.strip()


def test_scopes_are_enforced(stack):
    only_analytics = op_key(stack, "analytics")
    only_keys = op_key(stack, "keys")
    only_finance = op_key(stack, "finance")
    demo = stack.sql("SELECT id FROM accounts WHERE name = 'demo'")[0][0]
    # provisioning API: 'keys'
    s, h, raw = stack.request("GET", "/api/v1/keys", key=only_analytics)
    assert s == 403 and "'keys' scope" in json.loads(raw)["error"]["message"]
    assert stack.request("GET", "/api/v1/keys", key=only_keys)[0] == 200
    # market-wide analytics: 'analytics'
    assert analytics(stack, "/api/v1/analytics/share?by=model", only_analytics)[0] == 200
    s, e = analytics(stack, "/api/v1/analytics/share?by=model", only_keys)
    assert s == 403 and "'analytics' scope" in e["error"]["message"]
    # reconciliation and other accounts' money: 'finance'
    assert analytics(stack, "/api/v1/analytics/reconciliation", only_finance)[0] == 200
    s, e = analytics(stack, "/api/v1/analytics/reconciliation", only_analytics)
    assert s == 403 and "'finance' scope" in e["error"]["message"]
    assert analytics(stack, "/api/v1/analytics/spend?by=model&account=%d" % demo, only_finance)[0] == 200
    assert analytics(stack, "/api/v1/analytics/spend?by=model&account=%d" % demo, only_analytics)[0] == 403
    # an operator key of any scope cannot complete
    s, h, raw = stack.chat({"model": "test/solo", "messages": [{"role": "user", "content": "x"}]},
                           key=only_finance)
    assert s == 403
    # scopes are checked when keys are made
    r = stack.ctl("key", "create", "operator", "--operator", "--scopes", "root", check=False)
    assert r.returncode != 0
    r = stack.ctl("key", "create", "demo", "--scopes", "keys", check=False)
    assert r.returncode != 0 and "operator" in r.stderr
    # the stack's admin key (no scopes set) has them all
    assert stack.request("GET", "/api/v1/keys", key=stack.admin_key)[0] == 200
    assert analytics(stack, "/api/v1/analytics/share?by=model", stack.admin_key)[0] == 200
